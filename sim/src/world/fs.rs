//! A simulated file system with the crash rules of the file-system port
//! (`flush_core::fs`): what a power loss keeps and what it takes.
//!
//! - Bytes written to a file are *unsynced* until `sync` of that file; a
//!   crash keeps the synced bytes and, of the bytes appended since, a
//!   prefix of drawn length (none, some, or all: a torn write). A file
//!   changed in place since its sync (cut or overwritten) goes back to its
//!   synced bytes.
//! - A name (a create, a rename onto it, a removal) is *unsynced* until
//!   `sync_dir` of its directory; a crash puts every directory back to its
//!   entries as last synced, so a file created and synced but never named
//!   durably is gone, and a rename whose directory was not synced is lost.
//! - Any operation may fail with an I/O error, as `should_fail` decides
//!   (the world's fault plan), before it changes anything.
//!
//! - A directory's own creation is a name in its parent: unsynced until
//!   `sync_dir` of the parent; a crash removes a directory whose name (or
//!   an ancestor's) was never made durable, with everything in it.
//!
//! Files are nodes with ids, named by directory entries, so a rename moves
//! the node and its synced bytes with it. Directories are recorded by
//! `create_dir_all` so that `list`, `remove_dir` and crashes behave.
//! Deterministic: a crash draws its tear points from the RNG it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use flush_core::fs::{parent_dir, FileSystem, FsError, FsOp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

type NodeId = u64;

#[derive(Clone, Debug, Default)]
struct Node {
    /// What reads see.
    data: Vec<u8>,
    /// What a crash keeps for sure.
    synced: Vec<u8>,
}

/// Directory -> name -> node.
type Names = BTreeMap<String, BTreeMap<String, NodeId>>;

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<NodeId, Node>,
    /// The namespace as operations left it.
    names: Names,
    /// The namespace as of each directory's last sync.
    durable_names: Names,
    dirs: BTreeSet<String>,
    /// Directories whose own name was durable in their parent at its last
    /// sync (the root always is).
    durable_dirs: BTreeSet<String>,
    next_node: NodeId,
    syncs: u64,
}

/// What a crash did, for the trace and the counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashLoss {
    /// Files whose unsynced appends were cut short (not kept whole).
    pub files_torn: u64,
    /// Unsynced bytes lost in all.
    pub bytes_lost: u64,
    /// Names created, renamed or removed since their directory's sync that
    /// went back.
    pub names_reverted: u64,
    /// Directories whose creation was never made durable (their parent
    /// not synced since): gone, with everything in them.
    pub dirs_lost: u64,
    /// Each file that lost bytes, by the path it has after the crash.
    pub files: Vec<FileLoss>,
}

/// What a crash took from one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLoss {
    pub path: String,
    pub bytes_lost: u64,
    /// A prefix of the unsynced appends survived: the file ends mid-write.
    pub torn: bool,
}

/// Decides whether an operation on a path fails now.
pub type FailPolicy = Box<dyn Fn(FsOp, &str) -> bool + Send + Sync>;

pub struct SimFs {
    state: Mutex<State>,
    should_fail: FailPolicy,
    /// A one-shot failure: the next `op` on a path under the prefix.
    armed: Mutex<Option<(FsOp, String)>>,
}

impl SimFs {
    pub fn new(should_fail: FailPolicy) -> SimFs {
        SimFs {
            state: Mutex::new(State::default()),
            should_fail,
            armed: Mutex::new(None),
        }
    }

    /// Makes the next `op` on a path under `prefix` fail with an I/O error
    /// (once): how a store adapter turns a fault of the plan into a failure
    /// inside the durable code, at the step the plan chose.
    pub fn fail_next(&self, op: FsOp, prefix: &str) {
        *self.armed_lock() = Some((op, prefix.to_string()));
    }

    /// Takes back an armed failure; `true` if no operation consumed it.
    pub fn disarm(&self) -> bool {
        self.armed_lock().take().is_some()
    }

    fn armed_lock(&self) -> MutexGuard<'_, Option<(FsOp, String)>> {
        self.armed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A file system that never fails an operation.
    pub fn reliable() -> SimFs {
        SimFs::new(Box::new(|_, _| false))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(&self, op: FsOp, path: &str) -> Result<(), FsError> {
        let armed = {
            let mut armed = self.armed_lock();
            let hit = armed
                .as_ref()
                .is_some_and(|(armed_op, prefix)| *armed_op == op && path.starts_with(prefix));
            if hit {
                *armed = None;
            }
            hit
        };
        if armed || (self.should_fail)(op, path) {
            return Err(FsError::Io {
                op,
                path: path.to_string(),
                reason: "injected: i/o error".to_string(),
            });
        }
        Ok(())
    }

    /// Syncs of files and directories so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// A power loss: every file and directory goes back to what was
    /// synced, torn appends keeping a drawn prefix.
    pub fn crash(&self, rng: &mut ChaCha8Rng) -> CrashLoss {
        let mut state = self.lock();
        let mut loss = CrashLoss::default();
        let changed: usize = state
            .names
            .iter()
            .map(|(dir, entries)| {
                let durable = state.durable_names.get(dir);
                entries
                    .iter()
                    .filter(|(name, node)| durable.and_then(|d| d.get(*name)) != Some(node))
                    .count()
                    + durable.map_or(0, |d| {
                        d.keys().filter(|name| !entries.contains_key(*name)).count()
                    })
            })
            .sum();
        loss.names_reverted = changed as u64;
        let surviving: BTreeSet<String> = state
            .dirs
            .iter()
            .filter(|dir| dir_is_durable(&state.durable_dirs, dir))
            .cloned()
            .collect();
        loss.dirs_lost = (state.dirs.len() - surviving.len()) as u64;
        state
            .durable_names
            .retain(|dir, _| dir.is_empty() || surviving.contains(dir));
        state.durable_dirs = surviving.clone();
        state.dirs = surviving;
        state.names = state.durable_names.clone();
        let live: BTreeSet<NodeId> = state
            .names
            .values()
            .flat_map(|entries| entries.values().copied())
            .collect();
        state.nodes.retain(|id, _| live.contains(id));
        let paths: BTreeMap<NodeId, String> = state
            .names
            .iter()
            .flat_map(|(dir, entries)| {
                entries
                    .iter()
                    .map(move |(name, node)| (*node, flush_core::fs::join(dir, name)))
            })
            .collect();
        for (id, node) in state.nodes.iter_mut() {
            if node.data == node.synced {
                continue;
            }
            let appended_only = node.data.starts_with(&node.synced);
            let unsynced = node.data.len().saturating_sub(node.synced.len());
            let kept = if appended_only && unsynced > 0 {
                rng.gen_range(0..=unsynced)
            } else {
                0
            };
            let torn = appended_only && kept > 0 && kept < unsynced;
            if kept < unsynced {
                loss.files_torn += u64::from(appended_only);
            }
            let bytes_lost = (unsynced - kept) as u64;
            loss.bytes_lost += bytes_lost;
            if bytes_lost > 0 || !appended_only {
                loss.files.push(FileLoss {
                    path: paths.get(id).cloned().unwrap_or_default(),
                    bytes_lost,
                    torn,
                });
            }
            let mut survived = node.synced.clone();
            if appended_only {
                survived.extend_from_slice(&node.data[node.synced.len()..node.synced.len() + kept]);
            }
            node.data = survived.clone();
            node.synced = survived;
        }
        loss
    }

    fn node_of<'a>(state: &'a mut State, op: FsOp, path: &str) -> Result<&'a mut Node, FsError> {
        let (dir, name) = split(path);
        let id = state
            .names
            .get(dir)
            .and_then(|entries| entries.get(name))
            .copied()
            .ok_or_else(|| FsError::NotFound {
                op,
                path: path.to_string(),
            })?;
        state.nodes.get_mut(&id).ok_or_else(|| FsError::NotFound {
            op,
            path: path.to_string(),
        })
    }
}

/// A directory survives a crash when its name and every ancestor's name
/// were durable.
fn dir_is_durable(durable_dirs: &BTreeSet<String>, dir: &str) -> bool {
    let mut path = dir;
    while !path.is_empty() {
        if !durable_dirs.contains(path) {
            return false;
        }
        path = parent_dir(path);
    }
    true
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl FileSystem for SimFs {
    fn create(&self, path: &str) -> Result<(), FsError> {
        self.check(FsOp::Create, path)?;
        let mut state = self.lock();
        let (dir, name) = split(path);
        if state
            .names
            .get(dir)
            .is_some_and(|entries| entries.contains_key(name))
        {
            return Err(FsError::Exists {
                op: FsOp::Create,
                path: path.to_string(),
            });
        }
        state.next_node += 1;
        let id = state.next_node;
        state.nodes.insert(id, Node::default());
        state
            .names
            .entry(dir.to_string())
            .or_default()
            .insert(name.to_string(), id);
        Ok(())
    }

    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.check(FsOp::Append, path)?;
        let mut state = self.lock();
        Self::node_of(&mut state, FsOp::Append, path)?
            .data
            .extend_from_slice(bytes);
        Ok(())
    }

    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), FsError> {
        self.check(FsOp::WriteAt, path)?;
        let mut state = self.lock();
        let node = Self::node_of(&mut state, FsOp::WriteAt, path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(bytes.len());
        if node.data.len() < end {
            node.data.resize(end, 0);
        }
        node.data[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.check(FsOp::SetLen, path)?;
        let mut state = self.lock();
        let node = Self::node_of(&mut state, FsOp::SetLen, path)?;
        node.data
            .resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.check(FsOp::Read, path)?;
        let mut state = self.lock();
        Ok(Self::node_of(&mut state, FsOp::Read, path)?.data.clone())
    }

    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.check(FsOp::Sync, path)?;
        let mut state = self.lock();
        state.syncs += 1;
        let node = Self::node_of(&mut state, FsOp::Sync, path)?;
        node.synced = node.data.clone();
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.check(FsOp::Rename, from)?;
        let mut state = self.lock();
        let (from_dir, from_name) = split(from);
        let id = state
            .names
            .get_mut(from_dir)
            .and_then(|entries| entries.remove(from_name))
            .ok_or_else(|| FsError::NotFound {
                op: FsOp::Rename,
                path: from.to_string(),
            })?;
        let (to_dir, to_name) = split(to);
        state
            .names
            .entry(to_dir.to_string())
            .or_default()
            .insert(to_name.to_string(), id);
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        self.check(FsOp::List, dir)?;
        let state = self.lock();
        let mut names: BTreeSet<String> = state
            .names
            .get(dir)
            .map(|entries| entries.keys().cloned().collect())
            .unwrap_or_default();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        for sub in &state.dirs {
            if let Some(rest) = sub.strip_prefix(&prefix) {
                if let Some(first) = rest.split('/').next().filter(|part| !part.is_empty()) {
                    names.insert(first.to_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn remove(&self, path: &str) -> Result<(), FsError> {
        self.check(FsOp::Remove, path)?;
        let mut state = self.lock();
        let (dir, name) = split(path);
        if let Some(entries) = state.names.get_mut(dir) {
            entries.remove(name);
        }
        Ok(())
    }

    fn create_dir_all(&self, dir: &str) -> Result<(), FsError> {
        self.check(FsOp::CreateDir, dir)?;
        let mut state = self.lock();
        let mut path = dir;
        while !path.is_empty() {
            state.dirs.insert(path.to_string());
            path = parent_dir(path);
        }
        Ok(())
    }

    fn remove_dir(&self, dir: &str) -> Result<(), FsError> {
        self.check(FsOp::RemoveDir, dir)?;
        let mut state = self.lock();
        let has_files = state.names.get(dir).is_some_and(|e| !e.is_empty());
        if has_files {
            return Err(FsError::Io {
                op: FsOp::RemoveDir,
                path: dir.to_string(),
                reason: "directory not empty".to_string(),
            });
        }
        state.dirs.remove(dir);
        state.names.remove(dir);
        Ok(())
    }

    fn sync_dir(&self, dir: &str) -> Result<(), FsError> {
        self.check(FsOp::SyncDir, dir)?;
        let mut state = self.lock();
        state.syncs += 1;
        let entries = state.names.get(dir).cloned().unwrap_or_default();
        state.durable_names.insert(dir.to_string(), entries);
        let children = children_of(&state.dirs, dir);
        for gone in children_of(&state.durable_dirs, dir) {
            state.durable_dirs.remove(&gone);
        }
        state.durable_dirs.extend(children);
        Ok(())
    }
}

/// The directories of `set` directly under `dir`. Looked up as the range of
/// paths that start with `dir/` (a WAL directory syncs on every new
/// segment, and a plan may have a thousand regions: a walk over every
/// directory per sync was most of such a run).
fn children_of(set: &BTreeSet<String>, dir: &str) -> Vec<String> {
    let direct = |sub: &&String| !sub.is_empty() && parent_dir(sub) == dir;
    if dir.is_empty() {
        return set.iter().filter(direct).cloned().collect();
    }
    // '0' is the character after '/': the range holds every path under dir.
    let (low, high) = (format!("{dir}/"), format!("{dir}0"));
    set.range(low..high).filter(direct).cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flush_core::durable::wal::FileWal;
    use flush_core::ids::RegionId;
    use flush_core::memtable::{RowValue, WalEntry};
    use flush_core::ports::Wal;
    use futures::FutureExt as _;
    use rand::SeedableRng;

    use super::*;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn children_of_a_directory_are_the_paths_right_under_it() {
        let set: BTreeSet<String> = ["", "a", "a/b", "a/b/c", "a-x", "a/c", "a0", "ab", "b"]
            .into_iter()
            .map(String::from)
            .collect();
        let scan = |dir: &str| -> Vec<String> {
            set.iter()
                .filter(|sub| !sub.is_empty() && parent_dir(sub) == dir)
                .cloned()
                .collect()
        };
        for dir in ["", "a", "a/b", "a/b/c", "b", "missing"] {
            assert_eq!(children_of(&set, dir), scan(dir), "{dir:?}");
        }
        assert_eq!(children_of(&set, "a"), ["a/b", "a/c"]);
    }

    #[test]
    fn a_crash_keeps_synced_bytes_and_durable_names_only() {
        let fs = SimFs::reliable();
        flush_core::fs::create_dir_durably(&fs, "d").expect("dir");
        fs.create("d/kept").expect("create");
        fs.append("d/kept", b"synced").expect("append");
        fs.sync("d/kept").expect("sync");
        fs.sync_dir("d").expect("sync dir");
        fs.append("d/kept", b"+unsynced").expect("append");
        fs.create("d/unnamed").expect("create");
        fs.sync("d/unnamed").expect("sync");
        let loss = fs.crash(&mut rng(1));
        assert_eq!(fs.list("d").expect("list"), vec!["kept"]);
        let kept = fs.read("d/kept").expect("read");
        assert!(kept.starts_with(b"synced") && b"synced+unsynced".starts_with(&kept[..]));
        assert_eq!(loss.names_reverted, 1);
    }

    #[test]
    fn a_directory_whose_name_was_never_synced_is_lost_with_its_files() {
        for durable in [false, true] {
            let fs = SimFs::reliable();
            if durable {
                flush_core::fs::create_dir_durably(&fs, "a/b").expect("dirs");
            } else {
                fs.create_dir_all("a/b").expect("dirs");
                fs.sync_dir("a").expect("sync a, not the root");
            }
            fs.create("a/b/f").expect("create");
            fs.append("a/b/f", b"data").expect("append");
            fs.sync("a/b/f").expect("sync");
            fs.sync_dir("a/b").expect("sync dir");
            let loss = fs.crash(&mut rng(4));
            let expected: &[&str] = if durable { &["f"] } else { &[] };
            assert_eq!(fs.list("a/b").expect("list"), expected);
            assert_eq!(loss.dirs_lost, if durable { 0 } else { 2 });
        }
    }

    #[test]
    fn a_rename_is_lost_without_a_directory_sync_and_kept_with_one() {
        for sync_dir in [false, true] {
            let fs = SimFs::reliable();
            fs.create("MANIFEST").expect("create");
            fs.append("MANIFEST", b"old").expect("append");
            fs.sync("MANIFEST").expect("sync");
            fs.sync_dir("").expect("sync dir");
            fs.create("MANIFEST.tmp").expect("create");
            fs.append("MANIFEST.tmp", b"new").expect("append");
            fs.sync("MANIFEST.tmp").expect("sync");
            fs.rename("MANIFEST.tmp", "MANIFEST").expect("rename");
            if sync_dir {
                fs.sync_dir("").expect("sync dir");
            }
            fs.crash(&mut rng(2));
            let expected: &[u8] = if sync_dir { b"new" } else { b"old" };
            assert_eq!(fs.read("MANIFEST").expect("read"), expected);
        }
    }

    #[test]
    fn torn_appends_keep_a_prefix_and_the_wal_repairs_them() {
        let mut torn_seen = false;
        for seed in 0..20 {
            let fs = Arc::new(SimFs::reliable());
            let wal = FileWal::new(fs.clone());
            let entry = |entry_id| WalEntry {
                entry_id,
                first_sequence: entry_id,
                rows: vec![RowValue {
                    series: "s".into(),
                    ts: 1,
                    value: 2.0,
                    fields: Vec::new(),
                }]
                .into(),
            };
            for id in 1..=3 {
                wal.append(RegionId(1), entry(id))
                    .now_or_never()
                    .expect("ready")
                    .expect("append");
            }
            // An append the engine never acknowledged: written, not synced.
            let frame = flush_core::durable::frame::encode(&entry(4)).expect("a small entry");
            fs.append("wal/1/00000000000000000001.wal", &frame)
                .expect("append");
            let loss = fs.crash(&mut rng(seed));
            torn_seen |= loss.files_torn > 0 && loss.bytes_lost > 0;
            let reopened = FileWal::new(fs.clone());
            let replayed = reopened
                .replay(RegionId(1), 0)
                .now_or_never()
                .expect("ready")
                .expect("a torn tail is repaired, not an error");
            let ids: Vec<u64> = replayed.iter().map(|e| e.entry_id).collect();
            assert!(
                ids == [1, 2, 3] || ids == [1, 2, 3, 4],
                "seed {seed}: {ids:?}"
            );
        }
        assert!(torn_seen, "no crash in 20 tore the unsynced frame");
    }

    #[test]
    fn a_manifest_change_saved_but_reported_failed_is_durable_once_read_back() {
        use flush_core::durable::manifest::FileManifestStore;
        use flush_core::manifest::{LeaderState, ManifestChange, RegionManifest};

        let region = RegionId(3);
        let alter = ManifestChange::Alter {
            schema_version: 5,
            add_field: None,
        };
        for read_back in [false, true] {
            let fs = Arc::new(SimFs::reliable());
            let store = FileManifestStore::new(fs.clone());
            store
                .create_now(RegionManifest::new(region))
                .expect("create");
            fs.fail_next(FsOp::SyncDir, "manifest/3");
            let error = store.apply_now(region, &alter).expect_err("dir sync fails");
            assert!(error.is_unsettled(), "{error}");
            if read_back {
                let seen = store.load_now(region).expect("load").expect("a manifest");
                assert_eq!(seen.schema_version, 5, "the rename is visible");
            }
            fs.crash(&mut rng(3));
            let after = FileManifestStore::new(fs.clone())
                .load_now(region)
                .expect("load")
                .expect("a manifest");
            // Unread, the change dies with the unsynced directory; read
            // back, it was made durable first.
            let expected = if read_back { 5 } else { 0 };
            assert_eq!(after.schema_version, expected, "read back: {read_back}");
            assert_eq!(after.leader_state, LeaderState::Writable);
        }
    }

    #[test]
    fn an_injected_error_changes_nothing() {
        let fs = SimFs::new(Box::new(|op, _| op == FsOp::Append));
        fs.create("f").expect("create");
        assert!(matches!(fs.append("f", b"x"), Err(FsError::Io { .. })));
        assert_eq!(fs.read("f").expect("read"), b"");
    }
}
