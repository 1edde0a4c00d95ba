//! Time-bounded memoization of what pages need (listings, summaries, usage figures), so a
//! page view costs few or no requests to the store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries a [`TtlMap`] holds at most; beyond it, expired entries are dropped, then all.
const MAX_ENTRIES: usize = 4096;

/// Values by key, each reused for `ttl` after it was computed. Two requests missing the same
/// key at once may both compute it (the last one stored wins); values are immutable
/// snapshots, so either is right.
pub struct TtlMap<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, Arc<V>)>>,
}

impl<K: Eq + Hash + Clone, V> TtlMap<K, V> {
    pub fn new(ttl: Duration) -> Self {
        TtlMap {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh value of `key`, else the result of `compute` (stored when it succeeds).
    pub async fn get_or_try<E, F>(&self, key: &K, compute: F) -> Result<Arc<V>, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.fresh(key) {
            return Ok(v);
        }
        let v = Arc::new(compute.await?);
        let mut entries = self.entries.lock().expect("serve cache");
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key.clone(), (Instant::now(), v.clone()));
        Ok(v)
    }

    fn fresh(&self, key: &K) -> Option<Arc<V>> {
        let entries = self.entries.lock().expect("serve cache");
        let (at, v) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reuses_until_expired_and_never_stores_errors() {
        let m: TtlMap<u8, u32> = TtlMap::new(Duration::from_millis(200));
        let calls = std::sync::atomic::AtomicU32::new(0);
        let compute =
            || async { Ok::<_, ()>(calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) };
        assert_eq!(*m.get_or_try(&1, compute()).await.unwrap(), 0);
        assert_eq!(*m.get_or_try(&1, compute()).await.unwrap(), 0, "cached");
        assert_eq!(*m.get_or_try(&2, compute()).await.unwrap(), 1, "per key");
        assert!(m.get_or_try(&3, async { Err::<u32, _>(()) }).await.is_err());
        assert_eq!(
            *m.get_or_try(&3, compute()).await.unwrap(),
            2,
            "error not kept"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(*m.get_or_try(&1, compute()).await.unwrap(), 3, "expired");
    }
}
