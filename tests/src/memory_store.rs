//! An object store in memory, for runs that should not touch the disk:
//! the op driver makes a fresh engine for every case and fuzz input.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use flush_core::error::StoreError;
use flush_core::ports::ObjectStore;
use futures::future::{self, BoxFuture};
use futures::FutureExt;

/// SST objects in a map; never fails.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryObjectStore {
    fn objects(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        // Every critical section is one map operation: a panic cannot leave
        // the map half-changed, so a poisoned lock is still consistent.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn len(&self) -> usize {
        self.objects().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ObjectStore for MemoryObjectStore {
    fn put(&self, path: &str, bytes: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        self.objects().insert(path.to_string(), bytes);
        future::ready(Ok(())).boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Bytes, StoreError>> {
        let found = self.objects().get(path).cloned();
        let result = found.ok_or_else(|| StoreError::NotFound {
            path: path.to_string(),
        });
        future::ready(result).boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let paths = self
            .objects()
            .range(prefix.to_string()..)
            .take_while(|(path, _)| path.starts_with(prefix))
            .map(|(path, _)| path.clone())
            .collect();
        future::ready(Ok(paths)).boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        self.objects().remove(path);
        future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flush_core::local::block_on;

    #[test]
    fn put_get_list_delete() {
        let store = MemoryObjectStore::default();
        let put = |path: &str| {
            block_on(store.put(path, Bytes::from_static(b"x")))
                .expect("memory ports never wait")
                .expect("memory puts never fail")
        };
        put("data/1/a.parquet");
        put("data/1/b.parquet");
        put("data/10/c.parquet");
        put("data/2/d.parquet");
        let listed = block_on(store.list("data/1/")).unwrap().unwrap();
        assert_eq!(listed, ["data/1/a.parquet", "data/1/b.parquet"]);
        block_on(store.delete("data/1/a.parquet")).unwrap().unwrap();
        block_on(store.delete("data/1/missing.parquet"))
            .unwrap()
            .unwrap();
        assert!(matches!(
            block_on(store.get("data/1/a.parquet")).unwrap(),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.len(), 3);
    }
}
