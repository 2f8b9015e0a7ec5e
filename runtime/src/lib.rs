//! The `mca` runtime: executes compiled actions ([`mca_compiler::ir::Project`]) against their
//! upstream APIs and serves them over HTTP.
//!
//! The runtime reads nothing but the IR. [`Runtime::new`] prepares every action once (JSONPaths
//! parsed, `env`/`secret` values read, headers and origins checked) and refuses to start while
//! anything is missing. [`Runtime::execute`] is the single execution path used by `mca serve`,
//! `mca run` and `mca test`: validate inputs, answer from the cache or call the upstream within
//! the action's deadline, map the response, and fall back when anything goes wrong. [`serve()`]
//! puts that behind the HTTP surface of the contract.
//!
//! Behaviour at a glance (details in each module):
//! - **Inputs**: the body must be a JSON object (`400`); each declared input is checked with the
//!   compiler's `Ty::check` (`422` naming the field); defaults fill omitted inputs; undeclared
//!   members are ignored. Nothing is sent upstream for a refused call.
//! - **Deadline**: `timeout` counts from the call's arrival and covers everything (token fetch,
//!   every attempt, backoff); when it passes the answer is produced at once.
//! - **Retries**: only for idempotent methods, `read_only`, or a rendered idempotency key
//!   (sent as `Idempotency-Key`); only after connection errors, resets, per-try timeouts, 429,
//!   502, 503 and 504; capped exponential backoff with jitter; `Retry-After` when it fits.
//! - **Outcomes**: an `on STATUS` block matching the final status answers `status: "ok"` with
//!   its values (it is the action's designed answer to that status, not a failure); a 2xx is
//!   mapped; anything else (and a failed mapping) answers the `fallback` with its `reason`, or a
//!   stale cache entry (`stale: true`) when `stale_if_error` allows. Without a `fallback`, a
//!   failure is a `502` error whose code is the reason.
//! - **say**: rendered with inputs, outputs, `call` and `env`; lists join with `, `; when a value
//!   it refers to is null, `say` is null rather than a sentence with a hole in it.
//! - **Security**: every resolved upstream address is checked (no loopback, private,
//!   link-local or metadata addresses) and plain `http://` is refused, unless `allow_private`
//!   or an explicit [route](crate::config); secret values go only into auth headers and query
//!   parameters, sensitive headers are marked, nothing secret is logged, and every message is
//!   masked for secret values.
//!
//! Module map:
//! - [`breaker`]: circuit breaker and retry budget per upstream host ([`BreakerConfig`]);
//! - [`config`]: [`Config`], including upstream routes (how `--demo` and `mca test` point
//!   upstream requests at a loopback server);
//! - [`response`]: [`ActionResponse`], what an execution answers;
//! - [`server`]: the hyper server ([`serve()`], [`Server`]);
//! - [`platforms`]: tool definitions for voice platforms and MCP, their webhook envelopes
//!   (`/vapi`, `/retell/{action}`, `/mcp`, `/tools`), request signatures, `mca mcp` over stdio;
//! - [`demo`]: the built-in demo upstream for the canonical examples;
//! - [`stub`]: a scriptable loopback upstream with fault injection, for tests and `mca test`;
//! - [`testing`]: runs `test` blocks against the stub (the engine of `mca test`);
//! - [`block_on`] and [`shutdown_signal`]: so callers need not know the async runtime;
//! - internal: input validation, template rendering, the outbound client with its SSRF guard,
//!   OAuth2 token cache, response mapping, the cache and the metrics.

/// A map keyed by names the project or the configuration chose (actions, hosts), looked up on
/// every call: hashed with foldhash (seeded per process) rather than SipHash. Callers only
/// look names up; they never add keys, so flooding one bucket is not theirs to do.
pub(crate) type NameMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

pub mod breaker;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod hooks;
pub mod outbox;
#[doc(hidden)]
pub mod perf;
pub mod platforms;
pub mod response;
pub mod schema;
pub mod server;
pub mod stub;
pub mod testing;

mod cache;
mod execute;
mod idle;
mod input;
mod mapping;
mod metrics;
mod oauth;
mod outbound;
mod prepare;
mod redact;
mod render;

pub use breaker::BreakerConfig;
pub use config::Config;
pub use execute::Runtime;
pub use prepare::{StartupError, StartupProblem};
pub use response::{ActionResponse, Answer, CallContext, Detail, ErrorBody, Outputs, Status};
pub use server::{serve, ServeError, Server};

/// Runs a future to completion on a new multi-threaded async runtime (for the CLI, which does
/// not depend on the async runtime itself).
pub fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    block_on_with(tokio::runtime::Builder::new_multi_thread(), future)
}

/// Runs a future to completion on a new single-threaded async runtime on this thread: for
/// `mca serve`, whose connections are served on threads of their own
/// ([`Config::worker_threads`]), while this one accepts them and runs the background work.
pub fn block_on_current_thread<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    block_on_with(tokio::runtime::Builder::new_current_thread(), future)
}

fn block_on_with<F: std::future::Future>(
    mut builder: tokio::runtime::Builder,
    future: F,
) -> std::io::Result<F::Output> {
    Ok(builder.enable_all().build()?.block_on(future))
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the `shutdown` future for [`serve()`].
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Register the handlers now, not on first poll: a signal that arrives between start-up and
    // the server's first poll must still mean "drain", not the default "die". Must be called
    // inside the async runtime.
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = int => tracing::info!("interrupted; shutting down"),
                () = term => tracing::info!("terminated; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("interrupted; shutting down");
            } else {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    /// A runtime with examples/lookup_customer.mca, its environment set (nothing is sent).
    pub(crate) fn lookup_customer() -> crate::Runtime {
        let project = mca_compiler::compile(&[mca_compiler::Source::new(
            "lookup_customer.mca",
            include_str!("../../examples/lookup_customer.mca"),
        )])
        .ir
        .expect("the example compiles");
        let mut config = crate::Config {
            env: Some(Default::default()),
            ..crate::Config::default()
        };
        config.set_env("CRM_BASE_URL", "https://crm.example");
        config.set_env("CRM_TOKEN", "token");
        crate::Runtime::new(project, config).expect("the example starts")
    }

    /// The size of the future `make` returns, without making one. Every move of a future
    /// (into a wrapper, into a box, into hyper's slot for a request's future) copies all of
    /// it, so the futures of every call stay small: rarely used branches are boxed.
    pub(crate) fn size_of_future<A, F>(_make: impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }
}
