//! The response cache (quick_cache).
//!
//! One cache per action with a `cache` block, bounded to `Config::cache_capacity` entries
//! (quick_cache: sharded, scan-resistant S3-FIFO eviction that keeps frequently read keys; no
//! background work, no per-entry timers). The key is the values of the declared key inputs (as
//! JSON), plus the call id for `scope call` (a `scope call` action called without `X-Call-Id`
//! is not cached). Only mapped outputs of successful calls are stored; `say` is rendered per
//! answer.
//!
//! `fresh` holds entries for `ttl` (an expired entry is never answered; it stays until
//! evicted, replaced or its call ends) and coalesces concurrent misses of one key into one
//! upstream exchange whose result, success or not, every waiting caller gets
//! ([`ActionCache::get_or_load`], on quick_cache's placeholders). With `stale_if_error`, `stale`
//! keeps a copy for `ttl + stale_if_error`, read only when the upstream fails.
//!
//! A load is kept only if nothing made it outdated while it ran: an invalidation of the
//! action (a write that `invalidates` it: the load may hold what the write changed), or, for
//! `scope call`, the end of its call (the call's entries are gone and must stay gone). Such a
//! load still answers its caller; callers that waited for it load again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mca_compiler::ir::{self, CacheScope};
use serde_json::{Map, Value};

use crate::execute::Miss;
use crate::response::{CallContext, Outputs};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub call: Option<Box<str>>,
    /// The key inputs' values as JSON text.
    pub key: Box<str>,
}

/// Mapped outputs. Only their values are held, in the order of the action's outputs: the
/// names are the action's, and an entry is small (the cache holds many).
#[derive(Debug)]
pub(crate) struct Entry {
    values: Arc<[Value]>,
    /// The upstream status the outputs were mapped from.
    pub status: Option<u16>,
    /// In an action with steps: the values of its steps (deferred steps and `say` read them).
    pub steps: Option<Box<crate::render::StepValues>>,
}

impl Entry {
    /// `output` has one member per output of the action, in the action's order (as
    /// `map_outputs` makes it).
    pub(crate) fn new(output: Map<String, Value>, status: Option<u16>) -> Entry {
        Entry::of_values(output.into_iter().map(|(_, v)| v).collect(), status)
    }

    /// `values`: one per output of the action, in the action's order.
    pub(crate) fn of_values(values: Vec<Value>, status: Option<u16>) -> Entry {
        Entry {
            values: values.into(),
            status,
            steps: None,
        }
    }

    /// The outputs, named (`names`: the action's outputs, in order); the values are shared.
    pub(crate) fn output(&self, names: &Arc<[String]>) -> Outputs {
        Outputs::new(names.clone(), self.values.clone())
    }
}

/// What a cache holds for a key: an entry until it expires, or for a moment the failure of
/// an exchange that concurrent callers waited for (handed to them, then removed).
#[derive(Clone)]
enum Slot {
    Held { entry: Arc<Entry>, until: Instant },
    Failed(Arc<Miss>),
}

type Store = quick_cache::sync::Cache<CacheKey, Slot>;

pub(crate) struct ActionCache {
    fresh: Store,
    stale: Option<Store>,
    ttl: Duration,
    /// `ttl + stale_if_error`: how long the stale copy is kept.
    stale_for: Duration,
    decl: ir::Cache,
    /// Counts invalidations: a load that began before one is not kept.
    invalidations: AtomicU64,
    /// The calls that ended lately (shared by the project's caches); a `scope call` load
    /// for one of them is not kept.
    ended: Arc<Mutex<EndedCalls>>,
}

/// How long an ended call is remembered: longer than any load can run (a load runs under its
/// action's timeout, which the compiler bounds to 10 s).
const ENDED_FOR: Duration = Duration::from_secs(30);

/// Calls that ended within [`ENDED_FOR`], by id, and in the order they ended (for forgetting).
#[derive(Default)]
struct EndedCalls {
    by_id: HashMap<Box<str>, Instant>,
    order: VecDeque<(Instant, Box<str>)>,
}

impl EndedCalls {
    fn add(&mut self, id: &str, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ENDED_FOR {
                break;
            }
            if let Some((at, old)) = self.order.pop_front() {
                if self.by_id.get(&old) == Some(&at) {
                    self.by_id.remove(&old);
                }
            }
        }
        self.by_id.insert(id.into(), now);
        self.order.push_back((now, id.into()));
    }
}

impl ActionCache {
    fn new(decl: &ir::Cache, capacity: u64, ended: Arc<Mutex<EndedCalls>>) -> ActionCache {
        let capacity = usize::try_from(capacity.max(1)).unwrap_or(usize::MAX);
        let ttl = Duration::from_millis(decl.ttl_ms.max(1));
        let stale_for = ttl + Duration::from_millis(decl.stale_if_error_ms.unwrap_or(0));
        ActionCache {
            fresh: Store::new(capacity),
            stale: decl.stale_if_error_ms.map(|_| Store::new(capacity)),
            ttl,
            stale_for,
            decl: decl.clone(),
            invalidations: AtomicU64::new(0),
            ended,
        }
    }

    /// Did an invalidation (since `invalidations` was read) or the end of the key's call make
    /// a load for `key` outdated?
    fn outdated(&self, key: &CacheKey, invalidations: u64) -> bool {
        if self.invalidations.load(Ordering::SeqCst) != invalidations {
            return true;
        }
        let Some(call) = &key.call else { return false };
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.by_id.contains_key(call)
    }

    /// Drops `entry` from both stores if it is still what they hold for `key`.
    fn forget(&self, key: &CacheKey, entry: &Arc<Entry>) {
        for store in self.stores() {
            store.remove_if(
                key,
                |s| matches!(s, Slot::Held { entry: e, .. } if Arc::ptr_eq(e, entry)),
            );
        }
    }

    /// The key for these inputs, or `None` when the call cannot be cached.
    pub(crate) fn key(&self, inputs: &Map<String, Value>, call: &CallContext) -> Option<CacheKey> {
        let call = match self.decl.scope {
            CacheScope::Global => None,
            CacheScope::Call => Some(Box::from(call.id.as_deref()?)),
        };
        // The JSON array of the key's values, written without a vector of them first.
        let mut key = Vec::with_capacity(64);
        key.push(b'[');
        for (i, name) in self.decl.key.iter().enumerate() {
            if i > 0 {
                key.push(b',');
            }
            serde_json::to_writer(&mut key, inputs.get(name).unwrap_or(&Value::Null)).ok()?;
        }
        key.push(b']');
        Some(CacheKey {
            call,
            key: String::from_utf8(key).ok()?.into(),
        })
    }

    /// The fresh entry held for `key`, if any.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        live(&self.fresh.get(key)?).cloned()
    }

    /// The fresh entry for `key`: one held, the result of a concurrent caller's exchange for
    /// the same key (success or failure: concurrent misses make one upstream exchange), or
    /// else `load`'s, which is then held for `ttl` (and, with `stale_if_error`, a copy for
    /// `ttl + stale_if_error`) unless it is outdated (module doc). `true` with an entry this
    /// caller loaded. A caller that stops waiting (its deadline) drops its part only: when the
    /// loader goes away, one of the waiters loads instead.
    pub(crate) async fn get_or_load(
        &self,
        key: &CacheKey,
        load: impl Future<Output = Result<Arc<Entry>, Miss>>,
    ) -> Result<(Arc<Entry>, bool), Arc<Miss>> {
        let guard = loop {
            match self.fresh.get_value_or_guard_async(key).await {
                Ok(Slot::Failed(miss)) => return Err(miss),
                Ok(slot) => match live(&slot) {
                    Some(entry) => return Ok((entry.clone(), false)),
                    // Expired: dropped (unless replaced meanwhile), then loaded again.
                    None => {
                        self.fresh.remove_if(key, |s| live(s).is_none());
                    }
                },
                Err(guard) => break guard,
            }
        };
        let invalidations = self.invalidations.load(Ordering::SeqCst);
        match load.await {
            Ok(entry) => {
                if self.outdated(key, invalidations) {
                    // Not kept; the waiters (the guard goes unused) load again.
                    return Ok((entry, true));
                }
                let until = Instant::now() + self.ttl;
                let _ = guard.insert(Slot::Held {
                    entry: entry.clone(),
                    until,
                });
                if let Some(stale) = &self.stale {
                    let until = Instant::now() + self.stale_for;
                    stale.insert(
                        key.clone(),
                        Slot::Held {
                            entry: entry.clone(),
                            until,
                        },
                    );
                }
                // An invalidation or the call's end between the check and the insert: it
                // cleared the stores before the insert, so take the entry out again.
                if self.outdated(key, invalidations) {
                    self.forget(key, &entry);
                }
                Ok((entry, true))
            }
            Err(miss) => {
                let miss = Arc::new(miss);
                let _ = guard.insert(Slot::Failed(miss.clone()));
                // The waiters have it; later callers try again.
                self.fresh.remove_if(
                    key,
                    |s| matches!(s, Slot::Failed(m) if Arc::ptr_eq(m, &miss)),
                );
                Err(miss)
            }
        }
    }

    /// The expired entry `stale_if_error` still allows, if any.
    pub(crate) fn get_stale(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        live(&self.stale.as_ref()?.get(key)?).cloned()
    }

    fn stores(&self) -> impl Iterator<Item = &Store> {
        std::iter::once(&self.fresh).chain(self.stale.as_ref())
    }

    fn invalidate_all(&self) {
        // First counted, then cleared: a load that finishes in between sees the count.
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        for store in self.stores() {
            store.clear();
        }
    }

    /// Drops the call's entries (after [`EndedCalls::add`]: first remembered, then dropped, so
    /// a load for the call that finishes in between sees it).
    fn drop_call(&self, id: &str) {
        if self.decl.scope != CacheScope::Call {
            return;
        }
        for store in self.stores() {
            store.retain(|k, _| k.call.as_deref() != Some(id));
        }
    }

    /// Entries held, and how many of them are the call's.
    fn footprint(&self, id: &str) -> (u64, usize) {
        let (mut held, mut of_call) = (0, 0);
        for store in self.stores() {
            held += store.len() as u64;
            of_call += store
                .iter()
                .filter(|(k, _)| k.call.as_deref() == Some(id))
                .count();
        }
        (held, of_call)
    }
}

/// The entry of a slot that holds one that has not expired.
fn live(slot: &Slot) -> Option<&Arc<Entry>> {
    match slot {
        Slot::Held { entry, until } if Instant::now() < *until => Some(entry),
        _ => None,
    }
}

pub(crate) struct Caches {
    by_action: crate::NameMap<ActionCache>,
    ended: Arc<Mutex<EndedCalls>>,
    /// Whether any cache has `scope call` (only then are ended calls remembered).
    any_call_scope: bool,
}

impl Caches {
    pub(crate) fn new<'a>(
        decls: impl Iterator<Item = (&'a str, &'a ir::Cache)>,
        capacity: u64,
    ) -> Caches {
        let ended = Arc::new(Mutex::new(EndedCalls::default()));
        let by_action: crate::NameMap<ActionCache> = decls
            .map(|(name, decl)| {
                let cache = ActionCache::new(decl, capacity, ended.clone());
                (name.to_string(), cache)
            })
            .collect();
        Caches {
            any_call_scope: by_action.values().any(|c| c.decl.scope == CacheScope::Call),
            by_action,
            ended,
        }
    }

    pub(crate) fn get(&self, action: &str) -> Option<&ActionCache> {
        self.by_action.get(action)
    }

    /// Drops every entry of `action` (after a successful write that `invalidates` it).
    pub(crate) fn invalidate_action(&self, action: &str) {
        if let Some(c) = self.by_action.get(action) {
            c.invalidate_all();
        }
    }

    /// Drops every `scope call` entry of the call; loads for it still running are not kept.
    pub(crate) fn end_call(&self, id: &str) {
        if !self.any_call_scope {
            return;
        }
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(id, Instant::now());
        for c in self.by_action.values() {
            c.drop_call(id);
        }
    }

    /// Entries held in every cache, and how many are the call's.
    pub(crate) fn footprint(&self, id: &str) -> (u64, usize) {
        let (mut held, mut of_call) = (0, 0);
        for c in self.by_action.values() {
            let (h, o) = c.footprint(id);
            held += h;
            of_call += o;
        }
        (held, of_call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(
        ttl_ms: u64,
        capacity: u64,
        scope: CacheScope,
        stale_if_error_ms: Option<u64>,
    ) -> ActionCache {
        let decl = ir::Cache {
            ttl_ms,
            key: vec!["id".into()],
            scope,
            stale_if_error_ms,
        };
        ActionCache::new(&decl, capacity, Arc::default())
    }

    impl ActionCache {
        /// What [`Caches::end_call`] does, for this cache alone.
        fn end_call(&self, id: &str) {
            self.ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(id, Instant::now());
            self.drop_call(id);
        }
    }

    fn cache(ttl_ms: u64, capacity: u64) -> ActionCache {
        cache_of(ttl_ms, capacity, CacheScope::Global, None)
    }

    fn key(k: &str) -> CacheKey {
        CacheKey {
            call: None,
            key: k.into(),
        }
    }

    fn entry(status: u16) -> Arc<Entry> {
        Arc::new(Entry::of_values(vec![Value::from(status)], Some(status)))
    }

    async fn load(c: &ActionCache, k: &str, status: u16) -> (Option<u16>, bool) {
        let (e, loaded) = c
            .get_or_load(&key(k), async { Ok(entry(status)) })
            .await
            .expect("loaded");
        (e.status, loaded)
    }

    /// The key is the JSON array of the key inputs' values (missing ones null), with the call
    /// id for `scope call`, which has no key without a call id.
    #[test]
    fn keys_are_the_json_array_of_the_key_values_and_the_call() {
        let mut decl = ir::Cache {
            ttl_ms: 1000,
            key: vec!["a".into(), "b".into(), "missing".into()],
            scope: CacheScope::Global,
            stale_if_error_ms: None,
        };
        let inputs = serde_json::json!({"b": {"x": [1, "é\""]}, "a": "x", "other": 1});
        let inputs = inputs.as_object().expect("an object");
        let call = CallContext::new(Some("c-1".into()), None);
        let k = ActionCache::new(&decl, 10, Arc::default())
            .key(inputs, &call)
            .expect("a key");
        assert_eq!(&*k.key, r#"["x",{"x":[1,"é\""]},null]"#);
        assert_eq!(k.call, None);
        decl.scope = CacheScope::Call;
        let c = ActionCache::new(&decl, 10, Arc::default());
        assert_eq!(
            c.key(inputs, &call).expect("a key").call.as_deref(),
            Some("c-1")
        );
        assert!(c.key(inputs, &CallContext::default()).is_none());
    }

    #[tokio::test]
    async fn a_loaded_entry_is_held_until_it_expires_then_loaded_again() {
        let c = cache(50, 10);
        assert_eq!(load(&c, "a", 200).await, (Some(200), true));
        assert_eq!(load(&c, "a", 201).await, (Some(200), false));
        assert_eq!(c.get(&key("a")).and_then(|e| e.status), Some(200));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            c.get(&key("a")).is_none(),
            "expired entries are not answered"
        );
        assert_eq!(load(&c, "a", 202).await, (Some(202), true));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_waiter_loads_itself_when_the_loader_goes_away() {
        let c = Arc::new(cache(60_000, 10));
        let loader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.get_or_load(&key("a"), std::future::pending()).await.ok();
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { load(&c, "a", 200).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "the waiter waits for the loader");
        loader.abort();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is not left hanging")
            .expect("no panic");
        assert_eq!(got, (Some(200), true));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn invalidation_and_a_call_ending_during_a_load_break_neither_loader_nor_waiters() {
        let c = Arc::new(cache_of(60_000, 10, CacheScope::Call, Some(60_000)));
        let of_call = CacheKey {
            call: Some("call-1".into()),
            key: "a".into(),
        };
        let slow = move |c: Arc<ActionCache>| async move {
            c.get_or_load(&of_call, async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(entry(200))
            })
            .await
            .map(|(e, loaded)| (e.status, loaded))
            .ok()
        };
        let loader = tokio::spawn(slow.clone()(c.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = tokio::spawn(slow(c.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.invalidate_all();
        c.end_call("call-1");
        let (loader, waiter) = (loader.await.unwrap(), waiter.await.unwrap());
        assert_eq!(loader, Some((Some(200), true)));
        assert_eq!(waiter.map(|w| w.0), Some(Some(200)));
    }

    /// Loads `key` with a load that finishes when `go` fires; `during` runs while it waits.
    /// Returns what the caller got.
    async fn load_across(c: &ActionCache, key: &CacheKey, during: impl FnOnce()) -> Option<u16> {
        let (go, gone) = tokio::sync::oneshot::channel::<()>();
        let loading = c.get_or_load(key, async {
            let _ = gone.await;
            Ok(entry(200))
        });
        let run = async {
            tokio::task::yield_now().await;
            during();
            let _ = go.send(());
        };
        let (got, ()) = tokio::join!(loading, run);
        got.ok()
            .and_then(|(e, loaded)| loaded.then_some(e.status).flatten())
    }

    fn of_call(call: &str, k: &str) -> CacheKey {
        CacheKey {
            call: Some(call.into()),
            key: k.into(),
        }
    }

    #[tokio::test]
    async fn a_load_in_flight_when_the_action_is_invalidated_answers_but_is_not_kept() {
        let c = cache_of(60_000, 10, CacheScope::Global, Some(60_000));
        let got = load_across(&c, &key("a"), || c.invalidate_all()).await;
        assert_eq!(got, Some(200), "the caller still gets its answer");
        assert!(
            c.get(&key("a")).is_none(),
            "a pre-invalidation load was kept"
        );
        assert!(c.get_stale(&key("a")).is_none(), "its stale copy was kept");
        // A load after the invalidation is kept again.
        assert_eq!(load(&c, "a", 201).await, (Some(201), true));
        assert!(c.get(&key("a")).is_some());
        assert!(c.get_stale(&key("a")).is_some());
    }

    #[tokio::test]
    async fn a_load_in_flight_when_its_call_ends_answers_but_is_not_kept() {
        let c = cache_of(60_000, 10, CacheScope::Call, Some(60_000));
        let k = of_call("call-1", "a");
        let got = load_across(&c, &k, || c.end_call("call-1")).await;
        assert_eq!(got, Some(200));
        assert!(c.get(&k).is_none(), "an ended call's load was kept");
        assert!(c.get_stale(&k).is_none());
        assert_eq!(c.footprint("call-1"), (0, 0));
        // Nor is a load for the call that starts after it ended.
        let got = load_across(&c, &k, || {}).await;
        assert_eq!(got, Some(200));
        assert_eq!(c.footprint("call-1"), (0, 0));
    }

    #[tokio::test]
    async fn another_call_ending_does_not_stop_a_load_from_being_kept() {
        let c = cache_of(60_000, 10, CacheScope::Call, None);
        let k = of_call("call-2", "a");
        let got = load_across(&c, &k, || c.end_call("call-1")).await;
        assert_eq!(got, Some(200));
        assert_eq!(c.get(&k).and_then(|e| e.status), Some(200));
    }

    #[test]
    fn ended_calls_are_forgotten_after_a_while() {
        let mut ended = EndedCalls::default();
        let t0 = Instant::now();
        ended.add("old", t0);
        ended.add("again", t0);
        ended.add("again", t0 + ENDED_FOR / 2);
        ended.add("new", t0 + ENDED_FOR + Duration::from_millis(1));
        assert!(!ended.by_id.contains_key("old"));
        assert!(ended.by_id.contains_key("again"), "ended again later: kept");
        assert!(ended.by_id.contains_key("new"));
        assert_eq!(ended.order.len(), 2);
    }

    #[tokio::test]
    async fn entries_beyond_the_capacity_are_evicted() {
        let c = cache(60_000, 100);
        for i in 0..2_000 {
            load(&c, &i.to_string(), 200).await;
        }
        let (held, _) = c.footprint("");
        assert!(held <= 110, "{held} entries held for a capacity of 100");
        assert!(held >= 50, "{held} entries held for a capacity of 100");
    }
}
