//! OAuth2 client credentials (RFC 6749 §4.4) with one token cache per (token URL, client id,
//! scope), shared by every action that uses the same client.
//!
//! The client authenticates with HTTP Basic (`client_secret_basic`, which every authorization
//! server must support), the form carries `grant_type=client_credentials` and the scope. A token
//! is refreshed before it expires (when less than a tenth of its lifetime, at most 60 s, is
//! left), concurrent requests for one key fetch it once, and a token the upstream answered 401
//! to is dropped so the next request fetches a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mca_compiler::ir::Reason;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio::time::Instant;

use crate::outbound::{Failure, Outbound};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub token_url: String,
    pub client_id: String,
    pub scope: Option<String>,
    /// The call whose data (`call.*`, `input.*`) the client id or scope were rendered from:
    /// such a token belongs to that call alone and is dropped when the call ends.
    pub call: Option<String>,
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// Tokens without `expires_in` are kept this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);
const MAX_TOKEN_RESPONSE: u64 = 64 * 1024;
/// Most token slots kept before unused ones are forgotten.
const MAX_SLOTS: usize = 10_000;

#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl TokenCache {
    fn slot(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(key) && slots.len() >= MAX_SLOTS {
            // Client ids or scopes rendered from caller data could grow the table without end:
            // past the bound, forget the tokens nobody is using (they are fetched again).
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// A valid access token, fetched if there is none or it is about to expire.
    pub(crate) async fn token(
        &self,
        outbound: &Outbound,
        key: &TokenKey,
        client_secret: &str,
    ) -> Result<String, Failure> {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let fresh = fetch(outbound, key, client_secret).await?;
        let value = fresh.value.clone();
        *guard = Some(fresh);
        Ok(value)
    }

    /// Drops every token that belongs to the call (see [`TokenKey::call`]).
    pub(crate) fn end_call(&self, call_id: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|k, _| k.call.as_deref() != Some(call_id));
    }

    /// How many tokens (or token slots) belong to the call.
    pub(crate) fn of_call(&self, call_id: &str) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .keys()
            .filter(|k| k.call.as_deref() == Some(call_id))
            .count()
    }

    /// Drops `rejected` (answered 401), unless another request already replaced it.
    pub(crate) async fn reject(&self, key: &TokenKey, rejected: &str) {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|t| t.value == rejected) {
            *guard = None;
        }
    }
}

fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

async fn fetch(outbound: &Outbound, key: &TokenKey, secret: &str) -> Result<Token, Failure> {
    let (url, host) = outbound.place(&key.token_url)?;
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &key.scope {
        form.push(("scope", scope.as_str()));
    }
    let mut builder = outbound
        .client
        .post(url)
        .basic_auth(form_encode(&key.client_id), Some(form_encode(secret)))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    if let Some(host) = host {
        builder = builder.header(reqwest::header::HOST, host);
    }
    let request = builder
        .build()
        .map_err(|_| Failure::new(Reason::InvalidRequest, "cannot build the token request"))?;
    let received = outbound.send(request, MAX_TOKEN_RESPONSE).await?;
    let Some(body) = received.body else {
        return Err(Failure::new(
            Reason::UpstreamStatus,
            format!("the token endpoint answered {}", received.status),
        ));
    };
    let json: Value = serde_json::from_slice(&body).map_err(|_| {
        Failure::new(
            Reason::InvalidResponse,
            "the token endpoint did not answer JSON",
        )
    })?;
    let Some(value) = json.get("access_token").and_then(Value::as_str) else {
        return Err(Failure::new(
            Reason::InvalidResponse,
            "the token endpoint's answer has no access_token",
        ));
    };
    let lifetime = json
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIFETIME);
    let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
    Ok(Token {
        value: value.to_string(),
        refresh_at: Instant::now() + lifetime - margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize, call: Option<&str>) -> TokenKey {
        TokenKey {
            token_url: "https://auth.example.com/token".into(),
            client_id: format!("client-{n}"),
            scope: None,
            call: call.map(str::to_string),
        }
    }

    #[test]
    fn the_table_is_bounded_and_ended_calls_lose_their_tokens() {
        let cache = TokenCache::default();
        let held = cache.slot(&key(0, Some("c1")));
        for n in 1..(MAX_SLOTS + 500) {
            cache.slot(&key(n, None));
        }
        let len = cache.slots.lock().unwrap().len();
        assert!(len <= MAX_SLOTS, "{len}");
        // A slot in use survives the purge.
        assert_eq!(cache.of_call("c1"), 1);
        drop(held);
        cache.end_call("c1");
        assert_eq!(cache.of_call("c1"), 0);
    }
}
