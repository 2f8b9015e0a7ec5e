//! Inbound authentication of platform requests, checked on the raw body before it is parsed.
//!
//! | credential | configured by | accepted on | check |
//! |---|---|---|---|
//! | bearer token | [`Config::token`] (`MCA_TOKEN`) | every protected route | `Authorization: Bearer TOKEN` |
//! | Vapi secret | [`InboundAuth::vapi_secret`] (`MCA_VAPI_SECRET`) | `POST /vapi` | the `X-Vapi-Secret` header (or `X-Vapi-Signature`, where older Vapi versions put it) equals the secret |
//! | Vapi HMAC credential | [`InboundAuth::vapi_hmac`] (`MCA_VAPI_HMAC_SECRET`) | `POST /vapi` | [`HmacScheme`]: HMAC-SHA256 over `{timestamp}.{body}`, timestamp within 5 minutes |
//! | Retell signature | [`InboundAuth::retell_api_key`] (`MCA_RETELL_API_KEY`) | `POST /retell/{action}` | `X-Retell-Signature: v={ms},d={hex}`, the hex HMAC-SHA256 of `body + ms` keyed with the API key, `ms` within 5 minutes |
//!
//! A route is open when none of the credentials it accepts is configured (`mca serve` refuses a
//! non-loopback address without `MCA_TOKEN`). Otherwise one of the configured credentials must
//! verify: a missing, wrong or tampered credential, or a signature whose timestamp is more than
//! [`SIGNATURE_WINDOW`] away from the server's clock (a replay), gets `401` and nothing runs.
//! Every comparison is constant-time: MACs with `hmac`'s `verify_slice`, secrets by comparing
//! their SHA-256 digests with `subtle`. Signatures bind the exact bytes received: a body changed
//! in any way, even re-serialised JSON, does not verify.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

/// How far a signature's timestamp may be from the server's clock, either way.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Credentials of the voice platforms (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct InboundAuth {
    /// The secret Vapi sends in `X-Vapi-Secret` (`MCA_VAPI_SECRET`).
    pub vapi_secret: Option<String>,
    /// Vapi's HMAC credential (`MCA_VAPI_HMAC_SECRET`).
    pub vapi_hmac: Option<HmacScheme>,
    /// The Retell API key that signs requests, the one with the webhook badge
    /// (`MCA_RETELL_API_KEY`).
    pub retell_api_key: Option<String>,
}

/// A Vapi HMAC credential as mca verifies it: algorithm SHA-256, payload `{timestamp}.{body}`
/// (Vapi's default payload format), the signature in hex or base64 (an optional `sha256=`
/// prefix is ignored), the timestamp in Unix seconds or milliseconds.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    pub secret: String,
    /// Header carrying the signature (Vapi's default: `x-signature`).
    pub signature_header: String,
    /// Header carrying the timestamp (Vapi's default: `x-timestamp`).
    pub timestamp_header: String,
}

impl HmacScheme {
    /// The scheme with Vapi's default header names.
    pub fn new(secret: impl Into<String>) -> HmacScheme {
        HmacScheme {
            secret: secret.into(),
            signature_header: "x-signature".into(),
            timestamp_header: "x-timestamp".into(),
        }
    }
}

/// Which platform credentials a route accepts besides the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Vapi,
    Retell,
    /// Only the bearer token (`/mcp`, `/tools`).
    Plain,
}

/// Why a request was refused (for the log; the caller only learns that it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied(pub &'static str);

/// Checks a request's credentials against the configuration (see the module documentation).
pub(crate) fn check(
    config: &Config,
    route: Route,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Denied> {
    let auth = &config.inbound;
    let mut configured = false;
    let mut why = Denied("no credential was presented");
    if let Some(token) = &config.token {
        configured = true;
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match given {
            Some(given) if same_secret(given, token.as_bytes()) => return Ok(()),
            Some(_) => why = Denied("wrong bearer token"),
            None => {}
        }
    }
    if route == Route::Vapi {
        if let Some(secret) = &auth.vapi_secret {
            configured = true;
            let given = header(headers, "x-vapi-secret").or(header(headers, "x-vapi-signature"));
            match given {
                Some(given) if same_secret(given.as_bytes(), secret.as_bytes()) => return Ok(()),
                Some(_) => why = Denied("wrong Vapi secret"),
                None => {}
            }
        }
        if let Some(scheme) = &auth.vapi_hmac {
            configured = true;
            if let Some(signature) = header(headers, &scheme.signature_header) {
                match verify_vapi_hmac(
                    scheme,
                    signature,
                    header(headers, &scheme.timestamp_header),
                    body,
                    now,
                ) {
                    Ok(()) => return Ok(()),
                    Err(d) => why = d,
                }
            }
        }
    }
    if route == Route::Retell {
        if let Some(key) = &auth.retell_api_key {
            configured = true;
            if let Some(signature) = header(headers, "x-retell-signature") {
                match verify_retell(key, signature, body, now) {
                    Ok(()) => return Ok(()),
                    Err(d) => why = d,
                }
            }
        }
    }
    if configured {
        Err(why)
    } else {
        Ok(())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Constant-time equality of two secrets of any length (their SHA-256 digests are compared).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn within_window(timestamp_ms: u128, now: SystemTime) -> bool {
    millis(now).abs_diff(timestamp_ms) <= SIGNATURE_WINDOW.as_millis()
}

/// Retell's `X-Retell-Signature` for `body` at `timestamp_ms`: `v={ms},d={hex}` (what Retell's
/// SDKs compute; for tests and for callers that sign like Retell).
pub fn sign_retell(api_key: &str, body: &[u8], timestamp_ms: u128) -> String {
    let mut m = mac(api_key.as_bytes());
    m.update(body);
    m.update(timestamp_ms.to_string().as_bytes());
    format!("v={timestamp_ms},d={}", hex(&m.finalize().into_bytes()))
}

fn verify_retell(
    api_key: &str,
    signature: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Denied> {
    let mut stamp = None;
    let mut digest = None;
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("v", v)) => stamp = Some(v),
            Some(("d", d)) => digest = Some(d),
            _ => {}
        }
    }
    let (Some(stamp), Some(digest)) = (stamp, digest) else {
        return Err(Denied("malformed X-Retell-Signature"));
    };
    let Ok(timestamp_ms) = stamp.parse::<u128>() else {
        return Err(Denied("malformed X-Retell-Signature timestamp"));
    };
    if !within_window(timestamp_ms, now) {
        return Err(Denied(
            "X-Retell-Signature timestamp outside the 5-minute window",
        ));
    }
    let Some(digest) = unhex(digest) else {
        return Err(Denied("malformed X-Retell-Signature digest"));
    };
    let mut m = mac(api_key.as_bytes());
    m.update(body);
    m.update(stamp.as_bytes());
    m.verify_slice(&digest)
        .map_err(|_| Denied("X-Retell-Signature does not match the body"))
}

/// The hex HMAC-SHA256 of `{timestamp}.{body}`, as a Vapi HMAC credential with the default
/// payload format signs (for tests and for callers that sign like Vapi).
pub fn sign_vapi_hmac(secret: &str, body: &[u8], timestamp: &str) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    hex(&m.finalize().into_bytes())
}

fn verify_vapi_hmac(
    scheme: &HmacScheme,
    signature: &str,
    timestamp: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Denied> {
    let Some(timestamp) = timestamp else {
        return Err(Denied("Vapi HMAC signature without a timestamp"));
    };
    let Ok(stamp) = timestamp.parse::<u128>() else {
        return Err(Denied("malformed Vapi HMAC timestamp"));
    };
    // Seconds until the year 5138; anything larger is milliseconds.
    let stamp_ms = if stamp < 100_000_000_000 {
        stamp * 1000
    } else {
        stamp
    };
    if !within_window(stamp_ms, now) {
        return Err(Denied("Vapi HMAC timestamp outside the 5-minute window"));
    }
    let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    let Some(digest) = unhex(signature).or_else(|| {
        base64::engine::general_purpose::STANDARD
            .decode(signature)
            .ok()
    }) else {
        return Err(Denied("malformed Vapi HMAC signature"));
    };
    let mut m = mac(scheme.secret.as_bytes());
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&digest)
        .map_err(|_| Denied("Vapi HMAC signature does not match the body"))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.is_empty() {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(ms: u128) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn config(auth: InboundAuth, token: Option<&str>) -> Config {
        Config {
            token: token.map(str::to_string),
            inbound: auth,
            ..Config::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retell_signature_matches_the_sdk_scheme() {
        // Retell's SDK: hex(HMAC-SHA256(key, body + String(timestamp))), "v=ts,d=hex".
        let sig = sign_retell("key_123", b"{\"a\":1}", 1_700_000_000_000);
        assert!(sig.starts_with("v=1700000000000,d="), "{sig}");
        assert_eq!(sig.len(), "v=1700000000000,d=".len() + 64);
        let now = at(1_700_000_000_000 + 1000);
        assert_eq!(verify_retell("key_123", &sig, b"{\"a\":1}", now), Ok(()));
        assert!(verify_retell("key_123", &sig, b"{\"a\":2}", now).is_err());
        assert!(verify_retell("other", &sig, b"{\"a\":1}", now).is_err());
        let late = at(1_700_000_000_000 + 5 * 60 * 1000 + 1);
        assert!(verify_retell("key_123", &sig, b"{\"a\":1}", late).is_err());
        let early = at(1_700_000_000_000 - 5 * 60 * 1000 - 1);
        assert!(verify_retell("key_123", &sig, b"{\"a\":1}", early).is_err());
        assert!(verify_retell("key_123", "garbage", b"", now).is_err());
    }

    #[test]
    fn vapi_hmac_in_seconds_or_millis_hex_or_base64() {
        let scheme = HmacScheme::new("s3cret");
        let body = b"{\"message\":{}}";
        let now = at(1_700_000_000_000);
        let hex_sig = sign_vapi_hmac("s3cret", body, "1700000000");
        assert_eq!(
            verify_vapi_hmac(&scheme, &hex_sig, Some("1700000000"), body, now),
            Ok(())
        );
        let prefixed = format!("sha256={hex_sig}");
        assert_eq!(
            verify_vapi_hmac(&scheme, &prefixed, Some("1700000000"), body, now),
            Ok(())
        );
        let ms_sig = sign_vapi_hmac("s3cret", body, "1700000000123");
        assert_eq!(
            verify_vapi_hmac(&scheme, &ms_sig, Some("1700000000123"), body, now),
            Ok(())
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(unhex(&hex_sig).unwrap());
        assert_eq!(
            verify_vapi_hmac(&scheme, &b64, Some("1700000000"), body, now),
            Ok(())
        );
        assert!(verify_vapi_hmac(&scheme, &hex_sig, None, body, now).is_err());
        assert!(verify_vapi_hmac(&scheme, &hex_sig, Some("1700000001"), body, now).is_err());
        let old = sign_vapi_hmac("s3cret", body, "1699999000");
        assert!(verify_vapi_hmac(&scheme, &old, Some("1699999000"), body, now).is_err());
    }

    #[test]
    fn routes_are_open_only_without_any_configured_credential() {
        let now = SystemTime::now();
        let open = config(InboundAuth::default(), None);
        assert!(check(&open, Route::Vapi, &HeaderMap::new(), b"", now).is_ok());

        let vapi = config(
            InboundAuth {
                vapi_secret: Some("vs".into()),
                ..InboundAuth::default()
            },
            Some("tok"),
        );
        assert!(check(&vapi, Route::Vapi, &HeaderMap::new(), b"", now).is_err());
        assert!(check(
            &vapi,
            Route::Vapi,
            &headers(&[("x-vapi-secret", "vs")]),
            b"",
            now
        )
        .is_ok());
        assert!(check(
            &vapi,
            Route::Vapi,
            &headers(&[("x-vapi-secret", "vx")]),
            b"",
            now
        )
        .is_err());
        assert!(check(
            &vapi,
            Route::Vapi,
            &headers(&[("authorization", "Bearer tok")]),
            b"",
            now
        )
        .is_ok());
        // The Vapi secret is no key to other routes.
        assert!(check(
            &vapi,
            Route::Plain,
            &headers(&[("x-vapi-secret", "vs")]),
            b"",
            now
        )
        .is_err());
        assert!(check(
            &vapi,
            Route::Retell,
            &headers(&[("x-vapi-secret", "vs")]),
            b"",
            now
        )
        .is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
