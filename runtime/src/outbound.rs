//! Outbound HTTP: pooled reqwest clients with the SSRF guard, routes, and response reading.
//!
//! One shared client, plus one per serving thread that asks for its own
//! ([`Outbound::attach_thread`]): a request sent from such a thread uses connections that only
//! this thread drives, so it never waits for another thread to be woken.
//!
//! The guard (unless `allow_private`):
//! - plain `http://` is refused;
//! - an IP-literal host is checked before any connection is made;
//! - a host name is resolved by [`GuardedResolver`], which checks every address and drops the
//!   ones that are loopback, private, link-local (cloud metadata at 169.254.169.254 included),
//!   unique-local, unspecified, multicast, reserved, or IPv4-mapped/-compatible/NAT64/6to4
//!   forms of those; a name with no address left is refused. The connection is then made to
//!   exactly the checked addresses, so DNS rebinding cannot slip past.
//!
//! Proxies from the environment are ignored (a proxy would resolve names itself), redirects are
//! never followed (a 3xx is an upstream status like any other), certificates are validated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mca_compiler::ir::Reason;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::config::Config;

/// The SSRF guard refused an address.
#[derive(Debug)]
pub(crate) struct Blocked(pub String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Blocked {}

/// Is this address off limits for upstream requests without `allow_private`?
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4_blocked(a),
        IpAddr::V6(a) => v6_blocked(a),
    }
}

fn v4_blocked(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240 // reserved
}

fn v6_blocked(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_blocked(v4);
    }
    let s = a.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 metadata included)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[..6] == [0; 6] && v4_blocked(embedded_v4(s[6], s[7]))) // IPv4-compatible
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] && v4_blocked(embedded_v4(s[6], s[7]))) // NAT64
        || (s[0] == 0x2002 && v4_blocked(embedded_v4(s[1], s[2]))) // 6to4
}

/// Resolves host names and drops every address the guard refuses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    allow_private: bool,
    /// Fixed answers for some names ([`Config::resolve`]), checked like DNS answers.
    fixed: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        let fixed = self.fixed.clone();
        Box::pin(async move {
            let key = host.trim_end_matches('.').to_ascii_lowercase();
            let addrs: Vec<SocketAddr> = match fixed.get(&key) {
                Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if allow_private {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !is_blocked(a.ip()))
                .collect();
            if allowed.is_empty() && !addrs.is_empty() {
                return Err(Box::new(Blocked(format!(
                    "{host} resolves to a private or loopback address ({}); refused without --allow-private",
                    addrs[0].ip()
                ))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The outbound side: the clients, the policy, the routes.
pub(crate) struct Outbound {
    /// Builds requests; sends them from threads without a client of their own.
    pub client: reqwest::Client,
    /// Tells this outbound's per-thread clients apart from other runtimes' in the same process.
    id: u64,
    extra_root_certs: Option<Vec<u8>>,
    resolver: GuardedResolver,
    allow_private: bool,
    routes: HashMap<String, SocketAddr>,
}

/// A request URL as the policy placed it.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    /// Where to send the request.
    pub url: Url,
    /// The `Host` header a routed request carries (the original host).
    pub host: Option<String>,
    /// The upstream's circuit breaker: the original `host:port`.
    pub host_key: String,
}

/// A request's placed origin, kept after its first call ([`Outbound::place_known`]).
#[derive(Debug, Default)]
pub(crate) struct KnownOrigin(OnceLock<(String, Placed)>);

/// `scheme://authority`, the path and the query of a URL whose path starts with `/` and that
/// has no fragment; `None` for any other.
fn split_origin(url: &str) -> Option<(&str, &str, Option<&str>)> {
    let authority = url.find("://")? + 3;
    let end = authority + url[authority..].find(['/', '?', '#'])?;
    let (origin, rest) = url.split_at(end);
    if !rest.starts_with('/') || rest.contains('#') {
        return None;
    }
    Some(match rest.split_once('?') {
        Some((path, query)) => (origin, path, Some(query)),
        None => (origin, rest, None),
    })
}

/// An attempt's failure before a usable response.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub reason: Reason,
    /// Worth retrying (connection errors, resets, per-try timeouts).
    pub transient: bool,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            transient: false,
            message: message.into(),
        }
    }
}

/// A response whose headers arrived.
pub(crate) struct Received {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// Read (up to the limit) only for 2xx responses.
    pub body: Option<Bytes>,
}

static NEXT_OUTBOUND: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The clients this thread sends with, by [`Outbound::id`] ([`Outbound::attach_thread`]).
    static THREAD_CLIENTS: RefCell<Vec<(u64, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

fn build_client(
    resolver: &GuardedResolver,
    extra_root_certs: Option<&[u8]>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = extra_root_certs {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("the extra root certificates do not parse: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(resolver.clone()))
        .user_agent(concat!("mca/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| error_text(&e))
}

impl Outbound {
    pub(crate) fn new(config: &Config) -> Result<Outbound, String> {
        // reqwest is built without a default crypto provider (no cmake/nasm needed): use ring.
        // Installing fails harmlessly when the process already has a default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resolver = GuardedResolver {
            allow_private: config.allow_private,
            fixed: Arc::new(
                config
                    .resolve
                    .iter()
                    .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v.clone()))
                    .collect(),
            ),
        };
        let client = build_client(&resolver, config.extra_root_certs.as_deref())?;
        Ok(Outbound {
            client,
            id: NEXT_OUTBOUND.fetch_add(1, Ordering::Relaxed),
            extra_root_certs: config.extra_root_certs.clone(),
            resolver,
            allow_private: config.allow_private,
            routes: config
                .routes
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                .collect(),
        })
    }

    /// Gives the calling thread a client (a connection pool) of its own: requests sent from
    /// this thread from now on use it. For a thread that runs a single-threaded async runtime,
    /// whose tasks, upstream connections included, never move to another thread.
    pub(crate) fn attach_thread(&self) -> Result<(), String> {
        let client = build_client(&self.resolver, self.extra_root_certs.as_deref())?;
        THREAD_CLIENTS.with_borrow_mut(|clients| {
            clients.retain(|(id, _)| *id != self.id);
            clients.push((self.id, client));
        });
        Ok(())
    }

    /// Resolves a host name through the guard, as a connection would (no connection is made).
    pub(crate) async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let name: Name = host
            .parse()
            .map_err(|_| format!("{host} is not a host name"))?;
        match self.resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Applies routes and the scheme/IP-literal policy to a URL. Returns the URL to send to and,
    /// for a routed request, the `Host` header that names the original host.
    pub(crate) fn place(&self, url: &str) -> Result<(Url, Option<String>), Failure> {
        self.place_via(url, None)
    }

    /// [`Outbound::place_via`] for a request whose placed origin is kept in `known`: once its
    /// origin (scheme, host and port) has been placed, a URL with the same origin text is
    /// placed by setting the path and query of a copy, without parsing the host, routing and
    /// checking again. (A request's origin cannot depend on a call's values: `env` and secret
    /// values are fixed at start.)
    pub(crate) fn place_known(
        &self,
        url: &str,
        route: Option<&SocketAddr>,
        known: &KnownOrigin,
    ) -> Result<Placed, Failure> {
        let parts = split_origin(url);
        if let (Some((origin, path, query)), Some((text, placed))) = (parts, known.0.get()) {
            if origin == text {
                let mut placed = placed.clone();
                placed.url.set_path(path);
                placed.url.set_query(query);
                return Ok(placed);
            }
        }
        let (url, host) = self.place_via(url, route)?;
        let host_key = match &host {
            Some(h) => h.clone(),
            None => format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or(0)
            ),
        };
        let placed = Placed {
            url,
            host,
            host_key,
        };
        if let Some((origin, _, _)) = parts {
            let _ = known.0.set((origin.to_string(), placed.clone()));
        }
        Ok(placed)
    }

    /// [`Outbound::place`], with `route` (when given) used instead of the configured routes.
    pub(crate) fn place_via(
        &self,
        url: &str,
        route: Option<&SocketAddr>,
    ) -> Result<(Url, Option<String>), Failure> {
        let mut url = Url::parse(url).map_err(|e| {
            Failure::new(
                Reason::InvalidRequest,
                format!("the request URL is not valid: {e}"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::new(
                Reason::InvalidRequest,
                "the request URL must be http or https",
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(Failure::new(
                Reason::InvalidRequest,
                "the request URL has no host",
            ));
        };
        let port = url.port_or_known_default().unwrap_or(0);
        let route = route.or_else(|| {
            if self.routes.is_empty() {
                return None;
            }
            self.routes
                .get(&format!("{host}:{port}"))
                .or_else(|| self.routes.get(host))
                .or_else(|| self.routes.get("*"))
        });
        if let Some(to) = route {
            let host = host.to_string();
            let host_header = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            let fail = |_| Failure::new(Reason::InvalidRequest, "cannot route the request URL");
            url.set_scheme("http").map_err(fail)?;
            url.set_ip_host(to.ip()).map_err(fail)?;
            url.set_port(Some(to.port())).map_err(fail)?;
            return Ok((url, Some(host_header)));
        }
        if !self.allow_private {
            if url.scheme() == "http" {
                return Err(Failure::new(
                    Reason::Blocked,
                    format!("plain http to {host} is refused without --allow-private"),
                ));
            }
            let literal = match url.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| is_blocked(*ip)) {
                return Err(Failure::new(
                    Reason::Blocked,
                    format!(
                        "{ip} is a private or loopback address; refused without --allow-private"
                    ),
                ));
            }
        }
        Ok((url, None))
    }

    /// Sends one request and reads the response: the whole body (capped) for 2xx, only the
    /// status and `Retry-After` otherwise.
    pub(crate) async fn send(
        &self,
        request: reqwest::Request,
        max_body: u64,
    ) -> Result<Received, Failure> {
        let sending = THREAD_CLIENTS.with_borrow(|clients| {
            let own = clients.iter().find(|(id, _)| *id == self.id);
            own.map_or(&self.client, |(_, client)| client)
                .execute(request)
        });
        let mut response = sending.await.map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if !(200..300).contains(&status) {
            return Ok(Received {
                status,
                retry_after,
                body: None,
            });
        }
        if response.content_length().is_some_and(|n| n > max_body) {
            return Err(Failure::new(
                Reason::TooLarge,
                format!("the response is larger than {max_body} bytes"),
            ));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (body.len() + chunk.len()) as u64 > max_body {
                return Err(Failure::new(
                    Reason::TooLarge,
                    format!("the response is larger than {max_body} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Received {
            status,
            retry_after,
            body: Some(body.freeze()),
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Not RFC 9110, but sent by some APIs (Shopify: "2.0").
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An error's text with its causes, never with the URL (which may carry a query secret).
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    let mut text = match e.url() {
        Some(_) => {
            // `without_url` needs ownership; rebuild the text from the kind instead.
            let mut s = String::new();
            if e.is_timeout() {
                s.push_str("timed out");
            } else if e.is_connect() {
                s.push_str("cannot connect");
            } else if e.is_body() || e.is_decode() {
                s.push_str("error reading the response body");
            } else if e.is_redirect() {
                s.push_str("redirect");
            } else {
                s.push_str("error sending the request");
            }
            s
        }
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// Maps a transport error to a reason. Everything before a complete response counts as a
/// connection error (refused, reset, closed early) and is transient.
fn classify(e: reqwest::Error) -> Failure {
    if let Some(b) = find_source::<Blocked>(&e) {
        return Failure::new(Reason::Blocked, b.0.clone());
    }
    let message = error_text(&e);
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else if e.is_builder() {
        Reason::InvalidRequest
    } else {
        Reason::Connect
    };
    Failure {
        reason,
        transient: reason != Reason::InvalidRequest,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_blocked(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
    }

    fn outbound(allow_private: bool, routes: &[(&str, &str)]) -> Outbound {
        let mut config = Config {
            allow_private,
            ..Config::default()
        };
        for (k, v) in routes {
            config = config.route(*k, v.parse().unwrap());
        }
        Outbound::new(&config).unwrap()
    }

    #[test]
    fn plain_http_and_literal_loopback_are_refused() {
        let o = outbound(false, &[]);
        assert_eq!(
            o.place("http://example.com/x").unwrap_err().reason,
            Reason::Blocked
        );
        assert_eq!(
            o.place("https://127.0.0.1:8443/x").unwrap_err().reason,
            Reason::Blocked
        );
        assert_eq!(
            o.place("https://[::ffff:7f00:1]/x").unwrap_err().reason,
            Reason::Blocked
        );
        assert!(o.place("https://example.com/x").is_ok());
        let open = outbound(true, &[]);
        assert!(open.place("http://127.0.0.1:1/x").is_ok());
    }

    #[test]
    fn a_known_origin_places_urls_exactly_as_parsing_them_whole_does() {
        let urls = [
            "https://api.example.com/v1/customers?phone=%2B4930123456",
            "https://API.Example.com:443/v1/a%20b/c?x=1&y=%C3%BC",
            "https://api.example.com/v1/../v2/./orders?",
            "https://api.example.com/v1/ü/ö?q=ä ö",
            "https://api.example.com/v1\\x/y?z",
            "https://api.example.com/",
            "https://api.example.com/v1/customers",
            "https://user:pw@api.example.com:8443/v1?a=b?c",
            "https://[2606:4700::1111]:8443/v1/x?y=1",
            "https://shop.example.com/api/orders/1?x=%2B",
        ];
        for routes in [vec![], vec![("shop.example.com", "127.0.0.1:4000")]] {
            let o = outbound(false, &routes);
            for first in urls {
                for url in urls {
                    let known = KnownOrigin::default();
                    let seeded = o.place_known(first, None, &known).unwrap();
                    let whole = o.place(url).unwrap();
                    let fast = o.place_known(url, None, &known).unwrap();
                    assert_eq!(fast.url.as_str(), whole.0.as_str(), "{url} after {first}");
                    assert_eq!(fast.host, whole.1, "{url} after {first}");
                    if split_origin(first).map(|p| p.0) == split_origin(url).map(|p| p.0) {
                        assert_eq!(fast.host_key, seeded.host_key);
                    }
                }
            }
        }
        // A refused origin is never kept: every call is checked again.
        let o = outbound(false, &[]);
        let known = KnownOrigin::default();
        for _ in 0..2 {
            let refused = o.place_known("http://api.example.com/v1", None, &known);
            assert_eq!(refused.unwrap_err().reason, Reason::Blocked);
        }
        assert!(known.0.get().is_none());
    }

    #[test]
    fn routes_rewrite_the_url_and_keep_the_host() {
        let o = outbound(false, &[("shop.example.com", "127.0.0.1:4000")]);
        let (url, host) = o
            .place("https://shop.example.com/api/orders/1?x=%2B")
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4000/api/orders/1?x=%2B");
        assert_eq!(host.as_deref(), Some("shop.example.com"));
        let all = outbound(false, &[("*", "127.0.0.1:4001")]);
        let (url, host) = all.place("https://api.example.com:8443/v1").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4001/v1");
        assert_eq!(host.as_deref(), Some("api.example.com:8443"));
    }
}
