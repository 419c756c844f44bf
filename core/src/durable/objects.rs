//! The object store over the [`FileSystem`] port: an SST is written under
//! a temp name, synced, renamed into place and its directory synced, so a
//! path that exists holds a whole object, and a crash leaves at most a temp
//! file (never listed, removed by the next put of that path).
//!
//! ```text
//! objects/<path>          e.g. objects/data/3/12.parquet
//! objects/<path>.tmp      a put in progress
//! ```

use std::sync::Arc;

use bytes::Bytes;
use futures::future::{self, BoxFuture, FutureExt as _};

use crate::error::StoreError;
use crate::fs::{
    ignore_missing, join, parent_dir, replace_durably, DurableDirs, FileSystem, FsError,
};
use crate::ports::ObjectStore;

/// Directory of every object, under the file system's root.
pub const OBJECT_DIR: &str = "objects";
const TEMP_SUFFIX: &str = ".tmp";

pub struct FileObjectStore {
    fs: Arc<dyn FileSystem>,
    dirs: DurableDirs,
}

impl FileObjectStore {
    pub fn new(fs: Arc<dyn FileSystem>) -> FileObjectStore {
        FileObjectStore {
            fs,
            dirs: DurableDirs::default(),
        }
    }

    fn put_now(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_path(path)?;
        let full = join(OBJECT_DIR, path);
        self.dirs
            .ensure(self.fs.as_ref(), parent_dir(&full))
            .map_err(|error| io_error(path, &error))?;
        let written = replace_durably(
            self.fs.as_ref(),
            &format!("{full}{TEMP_SUFFIX}"),
            &full,
            bytes,
        );
        written.map_err(|error| io_error(path, &error))
    }

    fn get_now(&self, path: &str) -> Result<Bytes, StoreError> {
        check_path(path)?;
        match self.fs.read(&join(OBJECT_DIR, path)) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(FsError::NotFound { .. }) => Err(StoreError::NotFound {
                path: path.to_string(),
            }),
            Err(error) => Err(io_error(path, &error)),
        }
    }

    /// Objects under `prefix` that sit directly in its directory part
    /// (`data/3/` lists `data/3/*`, which is how the core lists a region's
    /// SSTs; it does not descend). Temp files are never objects.
    fn list_now(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = parent_dir(prefix);
        let names = self
            .fs
            .list(&join(OBJECT_DIR, dir))
            .map_err(|error| io_error(prefix, &error))?;
        let mut paths: Vec<String> = names
            .iter()
            .filter(|name| !name.ends_with(TEMP_SUFFIX))
            .map(|name| join(dir, name))
            .filter(|path| path.starts_with(prefix))
            .collect();
        paths.sort_unstable();
        Ok(paths)
    }

    fn delete_now(&self, path: &str) -> Result<(), StoreError> {
        check_path(path)?;
        let full = join(OBJECT_DIR, path);
        // A directory that never existed: nothing to delete.
        ignore_missing(
            self.fs
                .remove(&full)
                .and_then(|()| self.fs.sync_dir(parent_dir(&full))),
        )
        .map_err(|error| io_error(path, &error))
    }
}

/// Object paths are relative, `/`-separated, without `.` or `..` parts.
fn check_path(path: &str) -> Result<(), StoreError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.ends_with(TEMP_SUFFIX)
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(StoreError::Io {
            path: path.to_string(),
            reason: "not a valid object path".to_string(),
        });
    }
    Ok(())
}

fn io_error(path: &str, error: &FsError) -> StoreError {
    StoreError::Io {
        path: path.to_string(),
        reason: error.to_string(),
    }
}

impl ObjectStore for FileObjectStore {
    fn put(&self, path: &str, bytes: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(self.put_now(path, &bytes)).boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Bytes, StoreError>> {
        future::ready(self.get_now(path)).boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        future::ready(self.list_now(prefix)).boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(self.delete_now(path)).boxed()
    }
}
