//! The object store: SST bytes in a `BTreeMap`, with slow I/O, failed puts
//! and partial objects. A put of a flush is also where the world sends DDLs
//! "during a flush" (`alter_during_flush`, `downgrade_during_flush`), and
//! where a crash can strike mid-write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flush_core::error::StoreError;
use flush_core::ids::RegionId;
use flush_core::ports::ObjectStore;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;

use super::crash::CrashWindow;
use super::World;
use crate::plan::FaultClass;

#[derive(Clone)]
pub struct SimObjectStore {
    world: Arc<World>,
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

/// The region an SST path belongs to: `data/<region>/<file>.parquet`.
pub fn region_of_path(path: &str) -> Option<RegionId> {
    let rest = path.strip_prefix("data/")?;
    let (region, _) = rest.split_once('/')?;
    region.parse().ok().map(RegionId)
}

impl SimObjectStore {
    pub fn new(world: Arc<World>) -> Self {
        SimObjectStore {
            world,
            objects: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every object, for the oracles (no faults, no delay).
    pub fn snapshot(&self) -> BTreeMap<String, Bytes> {
        self.lock().clone()
    }

    /// One object, read at once (no faults, no delay), for the oracles.
    pub fn peek(&self, path: &str) -> Option<Bytes> {
        self.lock().get(path).cloned()
    }

    fn store(&self, path: &str, bytes: Bytes) {
        self.lock().insert(path.to_string(), bytes);
    }

    async fn put_inner(self, path: String, bytes: Bytes) -> Result<(), StoreError> {
        let region_id = region_of_path(&path);
        if let Some(region_id) = region_id {
            for class in [
                FaultClass::AlterDuringFlush,
                FaultClass::DowngradeDuringFlush,
            ] {
                if self.world.inject(class, Some(region_id), &path) {
                    self.world.request_during_flush(class, region_id);
                }
            }
        }
        let delay = self.world.io_delay(region_id, "put");
        super::sleep(delay / 2).await;
        if self.world.crash_point(CrashWindow::MidSstWrite) {
            // The engine dies with the put half done: sometimes a prefix of
            // the object is left behind, an orphan for the next open.
            let cut = self.world.with(|state| {
                let rng = state.rng();
                rng.gen_bool(0.5)
                    .then(|| rng.gen_range(0..bytes.len().max(1)))
            });
            if let Some(cut) = cut {
                self.store(&path, bytes.slice(..cut.min(bytes.len())));
            }
            std::future::pending::<()>().await;
        }
        super::sleep(delay - delay / 2).await;
        let io_error = |reason: &str| StoreError::Io {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if self
            .world
            .inject(FaultClass::SstWriteError, region_id, &path)
        {
            return Err(io_error("injected: put failed"));
        }
        if self
            .world
            .inject(FaultClass::SstPartialObject, region_id, &path)
        {
            let cut = self
                .world
                .with(|state| state.rng().gen_range(0..bytes.len().max(1)));
            self.store(&path, bytes.slice(..cut.min(bytes.len())));
            return Err(io_error("injected: connection reset, partial object left"));
        }
        self.world
            .trace("objects", format_args!("put {path} {} bytes", bytes.len()));
        self.store(&path, bytes);
        if let Some(region_id) = region_id {
            super::jobs::panic_point(&self.world, region_id, "after an SST put", false);
        }
        Ok(())
    }
}

impl ObjectStore for SimObjectStore {
    fn put(&self, path: &str, bytes: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        self.clone().put_inner(path.to_string(), bytes).boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Bytes, StoreError>> {
        let store = self.clone();
        let path = path.to_string();
        async move {
            super::sleep(store.world.io_delay(region_of_path(&path), "get")).await;
            let found = store.lock().get(&path).cloned();
            found.ok_or(StoreError::NotFound { path })
        }
        .boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let store = self.clone();
        let prefix = prefix.to_string();
        async move {
            super::sleep(store.world.io_delay(None, "list")).await;
            let paths = store
                .lock()
                .range(prefix.clone()..)
                .take_while(|(path, _)| path.starts_with(&prefix))
                .map(|(path, _)| path.clone())
                .collect();
            Ok(paths)
        }
        .boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        let path = path.to_string();
        async move {
            super::sleep(store.world.io_delay(region_of_path(&path), "delete")).await;
            store.world.trace("objects", format_args!("delete {path}"));
            store.lock().remove(&path);
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_parsed_from_sst_paths() {
        let path = flush_core::ids::sst_path(RegionId(17), flush_core::ids::FileId(3));
        assert_eq!(region_of_path(&path), Some(RegionId(17)));
        assert_eq!(region_of_path("manifest/1"), None);
        assert_eq!(region_of_path("data/x/1.parquet"), None);
    }
}
