//! Stores of the local adapter that stay in memory: SST objects in a map,
//! manifests and a WAL, each with the knobs tests turn. SSTs on disk go
//! through the durable [`FileObjectStore`](crate::durable::objects::FileObjectStore)
//! over [`StdFs`](crate::fs::StdFs), the store a real engine uses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::FutureExt;

use super::lock;
use crate::error::{ManifestError, StoreError, WalError};
use crate::ids::RegionId;
use crate::manifest::{ManifestChange, RegionManifest};
use crate::ports::{ManifestStore, ObjectStore, Wal};
use crate::row::WalEntry;

/// SST objects in a map, for runs that should not touch the disk (the op
/// driver's fresh engine per case, the benchmark's direct runs). Never
/// fails.
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

/// Manifests in memory. `fail_next` makes the next N changes fail.
#[derive(Default)]
pub struct MemoryManifestStore {
    manifests: Mutex<BTreeMap<RegionId, RegionManifest>>,
    pub fail_next: AtomicUsize,
}

impl MemoryManifestStore {
    pub fn get(&self, region_id: RegionId) -> Option<RegionManifest> {
        lock(&self.manifests).get(&region_id).cloned()
    }

    fn injected_failure(&self, region_id: RegionId) -> Result<(), ManifestError> {
        let armed = self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        match armed {
            Ok(_) => Err(ManifestError::Io {
                region_id,
                reason: "injected manifest failure".to_string(),
            }),
            Err(_) => Ok(()),
        }
    }
}

impl ManifestStore for MemoryManifestStore {
    fn create(
        &self,
        manifest: RegionManifest,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        let region_id = manifest.region_id;
        let result = self.injected_failure(region_id).and_then(|()| {
            let mut manifests = lock(&self.manifests);
            match manifests.get(&region_id) {
                Some(existing) if !existing.dropped => Err(ManifestError::Exists { region_id }),
                _ => {
                    manifests.insert(region_id, manifest.clone());
                    Ok(manifest)
                }
            }
        });
        future::ready(result).boxed()
    }

    fn load(
        &self,
        region_id: RegionId,
    ) -> BoxFuture<'static, Result<Option<RegionManifest>, ManifestError>> {
        future::ready(Ok(self.get(region_id))).boxed()
    }

    fn apply(
        &self,
        region_id: RegionId,
        change: ManifestChange,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        let result = self.injected_failure(region_id).and_then(|()| {
            let mut manifests = lock(&self.manifests);
            let manifest = manifests
                .get_mut(&region_id)
                .ok_or(ManifestError::NotFound { region_id })?;
            manifest.apply(&change)?;
            Ok(manifest.clone())
        });
        future::ready(result).boxed()
    }
}

/// A WAL in memory: durable for the life of the process.
#[derive(Default)]
pub struct MemoryWal {
    logs: Mutex<BTreeMap<RegionId, VecDeque<WalEntry>>>,
}

impl MemoryWal {
    pub fn entries(&self, region_id: RegionId) -> Vec<WalEntry> {
        lock(&self.logs)
            .get(&region_id)
            .map(|log| log.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Wal for MemoryWal {
    fn append(
        &self,
        region_id: RegionId,
        entry: WalEntry,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        let mut logs = lock(&self.logs);
        let log = logs.entry(region_id).or_default();
        let result = match log.back() {
            Some(last) if last.entry_id >= entry.entry_id => Err(WalError::Append {
                region_id,
                entry_id: entry.entry_id,
                reason: format!("entry id not above the last one ({})", last.entry_id),
            }),
            _ => {
                log.push_back(entry);
                Ok(())
            }
        };
        future::ready(result).boxed()
    }

    fn replay(
        &self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> BoxFuture<'static, Result<Vec<WalEntry>, WalError>> {
        let entries = self
            .entries(region_id)
            .into_iter()
            .filter(|e| e.entry_id > after_entry_id)
            .collect();
        future::ready(Ok(entries)).boxed()
    }

    fn truncate(
        &self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> BoxFuture<'static, Result<(), WalError>> {
        if let Some(log) = lock(&self.logs).get_mut(&region_id) {
            log.retain(|e| e.entry_id > up_to_entry_id);
        }
        future::ready(Ok(())).boxed()
    }

    fn purge(&self, region_id: RegionId) -> BoxFuture<'static, Result<(), WalError>> {
        lock(&self.logs).remove(&region_id);
        future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::block_on;

    #[test]
    fn memory_object_store_puts_gets_lists_and_deletes() {
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
