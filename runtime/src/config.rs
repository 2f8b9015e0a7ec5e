//! Runtime configuration.
//!
//! # Upstream routes
//!
//! [`Config::routes`] sends the requests for chosen upstream hosts to a fixed socket address over
//! plain HTTP instead of resolving and contacting the real host. A key is matched against the
//! request URL's host, most specific first:
//!
//! 1. `host:port` (the port as written in the URL, or the scheme's default port),
//! 2. `host`,
//! 3. `*` (every upstream request, including OAuth2 token requests).
//!
//! A routed request keeps its path, query, headers and body; its URL becomes
//! `http://ADDRESS/path?query`, and its `Host` header still names the original host (with the
//! port when the URL had a non-default one), so the receiving server can tell the hosts apart.
//! Routed requests bypass the SSRF guard and the HTTPS requirement: routing is the operator's
//! explicit decision, and the target is usually a loopback server. Everything else still goes
//! through the guard, so `allow_private` can stay `false`.
//!
//! Uses:
//! - `mca serve --demo` routes `shop.example.com` (the literal host of `order_status.mca`) and the
//!   demo upstream's own `127.0.0.1:PORT` to the demo upstream (see [`crate::demo::configure`]);
//! - `mca test` routes `*` to an in-process [`crate::stub::Stub`], so no test reaches the network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How the runtime behaves. `Config::default()` is the safe production setting.
#[derive(Debug, Clone)]
pub struct Config {
    /// Permit plain `http://` upstreams and upstream addresses that are loopback, private,
    /// link-local, metadata or otherwise not publicly routable (`--allow-private`).
    pub allow_private: bool,
    /// Where `env.NAME` and `secret.NAME` are read from at start-up. `None` reads the process
    /// environment; `Some(map)` reads only the map (tests never touch the process environment).
    pub env: Option<HashMap<String, String>>,
    /// Bearer token callers must present (`MCA_TOKEN`). Required by [`crate::serve()`] when it
    /// listens on a non-loopback address.
    pub token: Option<String>,
    /// Largest inbound request body accepted by the server.
    pub max_body_bytes: usize,
    /// Most entries kept per cached action.
    pub cache_capacity: u64,
    /// Upstream routes: see the module documentation.
    pub routes: HashMap<String, SocketAddr>,
    /// How long [`crate::serve()`] waits for in-flight requests after shutdown is signalled.
    pub drain_timeout: Duration,
    /// How long the server waits for a caller to send a complete request (headers and body).
    pub request_read_timeout: Duration,
    /// Credentials of the voice platforms, checked on their routes besides the token
    /// (see [`crate::platforms::auth`]).
    pub inbound: crate::platforms::InboundAuth,
    /// PEM bundle of CA certificates trusted for upstream HTTPS in addition to the system's
    /// (for APIs behind a private CA). Certificates are always validated.
    pub extra_root_certs: Option<Vec<u8>>,
    /// Fixed addresses for upstream host names, used instead of DNS (like `curl --resolve`).
    /// The SSRF guard checks them exactly like DNS answers; unlike [`Config::routes`] they
    /// open nothing.
    pub resolve: HashMap<String, Vec<std::net::IpAddr>>,
    /// Circuit breaker and retry budget per upstream host (see [`crate::breaker`]).
    pub breaker: crate::BreakerConfig,
    /// Most action calls the server runs at once; more get a fast `503 overloaded` with
    /// `Retry-After` instead of waiting in a queue (`--max-in-flight`). `0`: no limit.
    pub max_in_flight: usize,
    /// Threads that serve connections (`--threads`), each with a single-threaded async runtime
    /// and its own upstream connection pool: a connection stays on one thread, and so does
    /// every request on it, from the caller's bytes to the upstream's answer. The accepting
    /// task hands each new connection to the thread with the fewest open ones. `0`: connections
    /// are served on the async runtime that runs the server.
    pub worker_threads: usize,
    /// The longest a serving thread keeps checking for new events before it sleeps
    /// (`--idle-poll-us`); the window adapts between zero and this to how soon events come
    /// (see `runtime/src/idle.rs`). Saves the wake-up of a sleeping thread (tens of microseconds on
    /// a VM) when the upstream or the caller answers within it, at the price of at most this
    /// much CPU per idle gap. `0`: sleep at once. Only with [`Config::worker_threads`]. Keep it
    /// well under a millisecond (the CLI allows at most 1 ms): timers fire at millisecond
    /// granularity, and a window that long would learn to poll through a retry's backoff.
    pub idle_poll: Duration,
    /// Where the store of deferred writes and follow-ups lives (`--store`); `None`: the
    /// default, [`crate::outbox::default_store_path`] (`$MCA_STORE` or `.mca/store.sqlite`).
    pub store: Option<std::path::PathBuf>,
    /// Test mode (`mca test`): the requests of these steps go to these addresses, whatever
    /// their host (like [`Config::routes`]).
    #[doc(hidden)]
    pub step_routes: HashMap<String, SocketAddr>,
    /// Test mode: deferred steps are sent once, right after the answer, instead of recorded.
    #[doc(hidden)]
    pub deliver_deferred_inline: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_private: false,
            env: None,
            token: None,
            max_body_bytes: 64 * 1024,
            cache_capacity: 10_000,
            routes: HashMap::new(),
            drain_timeout: Duration::from_secs(30),
            request_read_timeout: Duration::from_secs(10),
            inbound: crate::platforms::InboundAuth::default(),
            extra_root_certs: None,
            resolve: HashMap::new(),
            breaker: crate::BreakerConfig::default(),
            max_in_flight: 1024,
            worker_threads: 0,
            idle_poll: Duration::from_micros(200),
            store: None,
            step_routes: HashMap::new(),
            deliver_deferred_inline: false,
        }
    }
}

impl Config {
    /// Adds a route (see the module documentation). Keys are matched case-insensitively.
    pub fn route(mut self, host: impl Into<String>, to: SocketAddr) -> Self {
        self.routes.insert(host.into().to_ascii_lowercase(), to);
        self
    }

    /// Sets one environment variable in the [`Config::env`] map, creating the map from the
    /// process environment if there is none yet.
    pub fn set_env(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.env
            .get_or_insert_with(|| std::env::vars().collect())
            .insert(name.into(), value.into());
    }

    /// Reads one variable from the configured environment.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}
