//! The file-system port: the few operations durable code needs, with the
//! durability points explicit.
//!
//! The WAL (and later the manifest and SST stores) are written once over
//! this port and run in both worlds: [`StdFs`] here, on a real directory;
//! a simulated file system in flush-sim that keeps written-but-unsynced
//! bytes apart from synced ones and loses them in a crash. So the rules a
//! crash tests are the rules of the port:
//!
//! - bytes written to a file survive a crash only after [`FileSystem::sync`]
//!   of that file returned `Ok`;
//! - a file's *name* (its creation, a rename onto it, its removal) survives
//!   a crash only after [`FileSystem::sync_dir`] of its directory;
//! - an error leaves the file as the operation found it or with any prefix
//!   of the new bytes: callers must not write after bytes they are unsure
//!   of.
//!
//! Paths are `/`-separated and relative to the file system's root; the
//! calls are blocking (a runtime that cares runs them off its reactor).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

/// What failed in a file-system call, and on which path.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FsError {
    #[error("{op} {path}: not found")]
    NotFound { op: FsOp, path: String },
    #[error("{op} {path}: already exists")]
    Exists { op: FsOp, path: String },
    #[error("{op} {path}: {reason}")]
    Io {
        op: FsOp,
        path: String,
        reason: String,
    },
}

/// The operations of the port, for error messages and fault plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsOp {
    Create,
    Append,
    WriteAt,
    SetLen,
    Read,
    Sync,
    Rename,
    List,
    Remove,
    CreateDir,
    RemoveDir,
    SyncDir,
}

impl fmt::Display for FsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FsOp::Create => "create",
            FsOp::Append => "append",
            FsOp::WriteAt => "write-at",
            FsOp::SetLen => "set-len",
            FsOp::Read => "read",
            FsOp::Sync => "sync",
            FsOp::Rename => "rename",
            FsOp::List => "list",
            FsOp::Remove => "remove",
            FsOp::CreateDir => "create-dir",
            FsOp::RemoveDir => "remove-dir",
            FsOp::SyncDir => "sync-dir",
        };
        f.write_str(name)
    }
}

/// A file system rooted somewhere. See the module docs for what survives a
/// crash.
pub trait FileSystem: Send + Sync {
    /// Creates an empty file; an existing file is an [`FsError::Exists`].
    fn create(&self, path: &str) -> Result<(), FsError>;
    /// Appends `bytes` at the end of an existing file.
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError>;
    /// Writes `bytes` at `offset` of an existing file (extending it).
    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), FsError>;
    /// Cuts (or extends with zeros) an existing file to `len` bytes.
    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError>;
    /// The whole file.
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError>;
    /// Makes the file's bytes durable.
    fn sync(&self, path: &str) -> Result<(), FsError>;
    /// Replaces `to` with `from` atomically (durable after `sync_dir`).
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError>;
    /// Names of the entries of a directory, sorted; a missing directory
    /// has none.
    fn list(&self, dir: &str) -> Result<Vec<String>, FsError>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, path: &str) -> Result<(), FsError>;
    /// Creates a directory and its parents; an existing one is fine.
    fn create_dir_all(&self, dir: &str) -> Result<(), FsError>;
    /// Removes an empty directory; a missing one is not an error.
    fn remove_dir(&self, dir: &str) -> Result<(), FsError>;
    /// Makes the directory's entries (creations, renames, removals)
    /// durable.
    fn sync_dir(&self, dir: &str) -> Result<(), FsError>;
}

/// The parent directory of `path` (`""` for the root).
pub fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Creates `path` empty, or empties it if a crashed earlier attempt left
/// it behind (a temp file, a segment whose name was never made durable).
pub fn create_or_empty(fs: &dyn FileSystem, path: &str) -> Result<(), FsError> {
    match fs.create(path) {
        Err(FsError::Exists { .. }) => fs.set_len(path, 0),
        other => other,
    }
}

/// Replaces `target` with `bytes` so that a crash leaves either the old
/// file or the whole new one: write `temp`, sync it, rename it over
/// `target`, sync the directory. Both paths are in the same directory,
/// which is created if missing.
pub fn replace_durably(
    fs: &dyn FileSystem,
    temp: &str,
    target: &str,
    bytes: &[u8],
) -> Result<(), FsError> {
    replace_skipping(fs, temp, target, bytes, SkippedSteps::default())
}

/// Steps of [`replace_durably`] a planted bug leaves out; none outside a
/// bug hunt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkippedSteps {
    /// Rename the temp file without syncing it first.
    pub temp_sync: bool,
    /// Do not sync the directory after the rename.
    pub dir_sync: bool,
}

/// [`replace_durably`] without the steps in `skipped`: how the planted
/// bugs of a store break the protocol (and the crash tests show it).
pub fn replace_skipping(
    fs: &dyn FileSystem,
    temp: &str,
    target: &str,
    bytes: &[u8],
    skipped: SkippedSteps,
) -> Result<(), FsError> {
    strict_assert_eq!(parent_dir(temp), parent_dir(target));
    let dir = parent_dir(target);
    fs.create_dir_all(dir)?;
    create_or_empty(fs, temp)?;
    fs.append(temp, bytes)?;
    if !skipped.temp_sync {
        fs.sync(temp)?;
    }
    fs.rename(temp, target)?;
    if skipped.dir_sync {
        return Ok(());
    }
    fs.sync_dir(dir)
}

/// Creates `dir` (and its missing parents) and makes its name durable: the
/// parent of every directory on the way up is synced, so a crash cannot
/// take the directory, and the files later made durable in it, away.
pub fn create_dir_durably(fs: &dyn FileSystem, dir: &str) -> Result<(), FsError> {
    fs.create_dir_all(dir)?;
    let mut path = dir;
    while !path.is_empty() {
        let parent = parent_dir(path);
        fs.sync_dir(parent)?;
        path = parent;
    }
    Ok(())
}

/// The directories a store has already made durable, so that the parent
/// syncs of [`create_dir_durably`] happen once per directory, not once per
/// file written in it.
#[derive(Debug, Default)]
pub struct DurableDirs(Mutex<BTreeSet<String>>);

impl DurableDirs {
    pub fn ensure(&self, fs: &dyn FileSystem, dir: &str) -> Result<(), FsError> {
        let mut made = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if made.contains(dir) {
            return Ok(());
        }
        create_dir_durably(fs, dir)?;
        made.insert(dir.to_string());
        Ok(())
    }
}

/// Treats "not found" as done: for removals and directory syncs of things
/// that may already be gone.
pub fn ignore_missing(result: Result<(), FsError>) -> Result<(), FsError> {
    match result {
        Err(FsError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// The real file system under a root directory, through `std::fs`. Every
/// call opens what it needs and closes it again: simple, and nothing stays
/// open across a crash of the process.
#[derive(Clone, Debug)]
pub struct StdFs {
    root: PathBuf,
}

impl StdFs {
    /// A file system rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<StdFs, FsError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|error| io_error(FsOp::CreateDir, &root.display().to_string(), &error))?;
        Ok(StdFs { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        let mut full = self.root.clone();
        full.extend(path.split('/').filter(|part| !part.is_empty()));
        full
    }

    fn open_file(&self, op: FsOp, path: &str, options: &OpenOptions) -> Result<File, FsError> {
        options
            .open(self.full(path))
            .map_err(|error| io_error(op, path, &error))
    }
}

fn io_error(op: FsOp, path: &str, error: &std::io::Error) -> FsError {
    let path = path.to_string();
    match error.kind() {
        ErrorKind::NotFound => FsError::NotFound { op, path },
        ErrorKind::AlreadyExists => FsError::Exists { op, path },
        _ => FsError::Io {
            op,
            path,
            reason: error.to_string(),
        },
    }
}

impl FileSystem for StdFs {
    fn create(&self, path: &str) -> Result<(), FsError> {
        self.open_file(
            FsOp::Create,
            path,
            OpenOptions::new().write(true).create_new(true),
        )
        .map(drop)
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        let mut file = self.open_file(FsOp::Append, path, OpenOptions::new().append(true))?;
        file.write_all(bytes)
            .map_err(|error| io_error(FsOp::Append, path, &error))
    }

    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), FsError> {
        let file = self.open_file(FsOp::WriteAt, path, OpenOptions::new().write(true))?;
        file.write_all_at(bytes, offset)
            .map_err(|error| io_error(FsOp::WriteAt, path, &error))
    }

    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError> {
        let file = self.open_file(FsOp::SetLen, path, OpenOptions::new().write(true))?;
        file.set_len(len)
            .map_err(|error| io_error(FsOp::SetLen, path, &error))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        std::fs::read(self.full(path)).map_err(|error| io_error(FsOp::Read, path, &error))
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        let file = self.open_file(FsOp::Sync, path, OpenOptions::new().write(true))?;
        file.sync_all()
            .map_err(|error| io_error(FsOp::Sync, path, &error))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        std::fs::rename(self.full(from), self.full(to))
            .map_err(|error| io_error(FsOp::Rename, &format!("{from} -> {to}"), &error))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        let entries = match std::fs::read_dir(self.full(dir)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(FsOp::List, dir, &error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| io_error(FsOp::List, dir, &error))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort_unstable();
        Ok(names)
    }

    fn remove(&self, path: &str) -> Result<(), FsError> {
        match std::fs::remove_file(self.full(path)) {
            Err(error) if error.kind() != ErrorKind::NotFound => {
                Err(io_error(FsOp::Remove, path, &error))
            }
            _ => Ok(()),
        }
    }

    fn create_dir_all(&self, dir: &str) -> Result<(), FsError> {
        std::fs::create_dir_all(self.full(dir))
            .map_err(|error| io_error(FsOp::CreateDir, dir, &error))
    }

    fn remove_dir(&self, dir: &str) -> Result<(), FsError> {
        match std::fs::remove_dir(self.full(dir)) {
            Err(error) if error.kind() != ErrorKind::NotFound => {
                Err(io_error(FsOp::RemoveDir, dir, &error))
            }
            _ => Ok(()),
        }
    }

    fn sync_dir(&self, dir: &str) -> Result<(), FsError> {
        // On Linux a directory opened read-only can be fsynced; that is
        // what makes a creation, rename or removal in it durable.
        let file =
            File::open(self.full(dir)).map_err(|error| io_error(FsOp::SyncDir, dir, &error))?;
        file.sync_all()
            .map_err(|error| io_error(FsOp::SyncDir, dir, &error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> (tempfile::TempDir, StdFs) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fs = StdFs::open(dir.path().join("root")).expect("root created");
        (dir, fs)
    }

    #[test]
    fn files_are_created_appended_cut_and_read_back() {
        let (_dir, fs) = fs();
        fs.create_dir_all("a/b").expect("dirs");
        fs.create("a/b/f").expect("create");
        assert!(matches!(fs.create("a/b/f"), Err(FsError::Exists { .. })));
        fs.append("a/b/f", b"hello").expect("append");
        fs.append("a/b/f", b" world").expect("append");
        fs.write_at("a/b/f", 0, b"J").expect("write at");
        fs.sync("a/b/f").expect("sync");
        assert_eq!(fs.read("a/b/f").expect("read"), b"Jello world");
        fs.set_len("a/b/f", 5).expect("cut");
        assert_eq!(fs.read("a/b/f").expect("read"), b"Jello");
        fs.sync_dir("a/b").expect("sync dir");
    }

    #[test]
    fn rename_replaces_and_list_is_sorted() {
        let (_dir, fs) = fs();
        for name in ["d/z", "d/a", "d/m"] {
            fs.create_dir_all(parent_dir(name)).expect("dir");
            fs.create(name).expect("create");
        }
        fs.append("d/z", b"new").expect("append");
        fs.rename("d/z", "d/a").expect("rename");
        assert_eq!(fs.list("d").expect("list"), vec!["a", "m"]);
        assert_eq!(fs.read("d/a").expect("read"), b"new");
        assert_eq!(fs.list("missing").expect("list"), Vec::<String>::new());
    }

    #[test]
    fn missing_things_are_typed_errors_or_no_ops() {
        let (_dir, fs) = fs();
        assert!(matches!(
            fs.read("nope"),
            Err(FsError::NotFound { op: FsOp::Read, .. })
        ));
        assert!(matches!(
            fs.append("nope", b"x"),
            Err(FsError::NotFound { .. })
        ));
        fs.remove("nope").expect("removing a missing file is fine");
        fs.remove_dir("nope")
            .expect("removing a missing dir is fine");
        assert!(matches!(fs.sync_dir("nope"), Err(FsError::NotFound { .. })));
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("wal/1", "x"), "wal/1/x");
        assert_eq!(parent_dir("wal/1/x"), "wal/1");
        assert_eq!(parent_dir("x"), "");
    }
}
