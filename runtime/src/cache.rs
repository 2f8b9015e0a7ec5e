//! The response cache (moka).
//!
//! One cache per action with a `cache` block, bounded to `Config::cache_capacity` entries. The
//! key is the values of the declared key inputs (as JSON), plus the call id for `scope call`
//! (a `scope call` action called without `X-Call-Id` is not cached). Only mapped outputs of
//! successful calls are stored; `say` is rendered per answer.
//!
//! `fresh` holds entries for `ttl` and coalesces concurrent misses of one key into one upstream
//! call (moka's `try_get_with`, which hands the one result, success or not, to every waiter).
//! With `stale_if_error`, `stale` keeps a copy for `ttl + stale_if_error`, read only when the
//! upstream fails.

use std::sync::Arc;
use std::time::Duration;

use mca_compiler::ir::{self, CacheScope};
use moka::future::Cache;
use serde_json::{Map, Value};

use crate::response::CallContext;

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
    values: Box<[Value]>,
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
            values: values.into_boxed_slice(),
            status,
            steps: None,
        }
    }

    /// The outputs, named (`outputs`: the action's, in order).
    pub(crate) fn output(&self, outputs: &[mca_compiler::ir::Output]) -> Map<String, Value> {
        outputs
            .iter()
            .zip(self.values.iter())
            .map(|(o, v)| (o.name.clone(), v.clone()))
            .collect()
    }
}

pub(crate) struct ActionCache {
    pub fresh: Cache<CacheKey, Arc<Entry>>,
    pub stale: Option<Cache<CacheKey, Arc<Entry>>>,
    decl: ir::Cache,
}

impl ActionCache {
    fn new(decl: &ir::Cache, capacity: u64) -> ActionCache {
        let build = |ttl: Duration| {
            let builder = Cache::builder().max_capacity(capacity).time_to_live(ttl);
            if decl.scope == CacheScope::Call {
                builder.support_invalidation_closures().build()
            } else {
                builder.build()
            }
        };
        let ttl = Duration::from_millis(decl.ttl_ms.max(1));
        ActionCache {
            fresh: build(ttl),
            stale: decl
                .stale_if_error_ms
                .map(|s| build(ttl + Duration::from_millis(s))),
            decl: decl.clone(),
        }
    }

    /// The key for these inputs, or `None` when the call cannot be cached.
    pub(crate) fn key(&self, inputs: &Map<String, Value>, call: &CallContext) -> Option<CacheKey> {
        let call = match self.decl.scope {
            CacheScope::Global => None,
            CacheScope::Call => Some(Box::from(call.id.as_deref()?)),
        };
        let values: Vec<&Value> = self
            .decl
            .key
            .iter()
            .map(|k| inputs.get(k).unwrap_or(&Value::Null))
            .collect();
        Some(CacheKey {
            call,
            key: serde_json::to_string(&values).unwrap_or_default().into(),
        })
    }

    pub(crate) async fn store_stale(&self, key: CacheKey, entry: Arc<Entry>) {
        if let Some(stale) = &self.stale {
            stale.insert(key, entry).await;
        }
    }

    fn invalidate_all(&self) {
        self.fresh.invalidate_all();
        if let Some(s) = &self.stale {
            s.invalidate_all();
        }
    }

    fn end_call(&self, id: &str) {
        if self.decl.scope != CacheScope::Call {
            return;
        }
        for cache in std::iter::once(&self.fresh).chain(self.stale.as_ref()) {
            // The call's keys, found before the predicate hides them; removed at once below so
            // that nothing of the call stays in memory until moka's next maintenance.
            let keys: Vec<Arc<CacheKey>> = cache
                .iter()
                .filter(|(k, _)| k.call.as_deref() == Some(id))
                .map(|(k, _)| k)
                .collect();
            let owned = id.to_string();
            // Cannot fail: invalidation closures are enabled for call-scoped caches.
            let _ = cache.invalidate_entries_if(move |k, _| k.call.as_deref() == Some(&owned));
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let cache = cache.clone();
                handle.spawn(async move {
                    for k in keys {
                        cache.invalidate(k.as_ref()).await;
                    }
                    cache.run_pending_tasks().await;
                });
            }
        }
    }

    /// Entries really held (after pending maintenance), and how many of them are visible for
    /// the call.
    async fn footprint(&self, id: &str) -> (u64, usize) {
        let (mut held, mut of_call) = (0, 0);
        for cache in std::iter::once(&self.fresh).chain(self.stale.as_ref()) {
            cache.run_pending_tasks().await;
            held += cache.entry_count();
            of_call += cache
                .iter()
                .filter(|(k, _)| k.call.as_deref() == Some(id))
                .count();
        }
        (held, of_call)
    }
}

pub(crate) struct Caches {
    by_action: crate::NameMap<ActionCache>,
}

impl Caches {
    pub(crate) fn new<'a>(
        decls: impl Iterator<Item = (&'a str, &'a ir::Cache)>,
        capacity: u64,
    ) -> Caches {
        Caches {
            by_action: decls
                .map(|(name, decl)| (name.to_string(), ActionCache::new(decl, capacity)))
                .collect(),
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

    /// Drops every `scope call` entry of the call.
    pub(crate) fn end_call(&self, id: &str) {
        for c in self.by_action.values() {
            c.end_call(id);
        }
    }

    /// Entries held in every cache, and how many are visible for the call.
    pub(crate) async fn footprint(&self, id: &str) -> (u64, usize) {
        let (mut held, mut of_call) = (0, 0);
        for c in self.by_action.values() {
            let (h, o) = c.footprint(id).await;
            held += h;
            of_call += o;
        }
        (held, of_call)
    }
}
