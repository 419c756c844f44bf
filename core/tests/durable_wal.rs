//! The durable WAL on a real directory: entries survive a reopen, segments
//! rotate and truncate whole, a torn tail is cut and counted, corruption
//! before the tail is a typed error, and a failed append never leaves
//! bytes a later frame would follow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flush_core::durable::frame;
use flush_core::durable::wal::FileWal;
use flush_core::error::WalError;
use flush_core::fs::{FileSystem, FsError, FsOp, StdFs};
use flush_core::ids::RegionId;
use flush_core::memtable::{RowValue, WalEntry};
use flush_core::ports::Wal;
use futures::future::BoxFuture;

const REGION: RegionId = RegionId(7);

fn entry(entry_id: u64) -> WalEntry {
    WalEntry {
        entry_id,
        first_sequence: entry_id * 100,
        rows: (0..3)
            .map(|index| RowValue {
                series: format!("host-{entry_id}-{index}").into(),
                ts: entry_id as i64 * 1_000 + index,
                value: entry_id as f64 + index as f64 / 10.0,
                fields: Vec::new(),
            })
            .collect(),
    }
}

/// `FileWal` does its blocking work when polled: its futures are ready on
/// the first poll.
fn block_on<T>(future: BoxFuture<'static, T>) -> T {
    flush_core::local::block_on(future)
        .expect("a file-backed store's future is ready when first polled")
}

fn frame_len() -> u64 {
    frame::encode(&entry(1)).expect("a small entry").len() as u64
}

struct Dir {
    _temp: tempfile::TempDir,
    fs: Arc<StdFs>,
}

fn dir() -> Dir {
    let temp = tempfile::tempdir().expect("a temp dir");
    let fs = Arc::new(StdFs::open(temp.path()).expect("root"));
    Dir { _temp: temp, fs }
}

/// A WAL whose segments hold `per_segment` entries of [`entry`]'s size.
fn wal(dir: &Dir, per_segment: u64) -> FileWal {
    FileWal::with_segment_bytes(dir.fs.clone(), frame_len() * per_segment)
}

fn append_all(wal: &FileWal, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        block_on(wal.append(REGION, entry(id))).expect("append");
    }
}

fn replayed_ids(wal: &FileWal, after: u64) -> Result<Vec<u64>, WalError> {
    block_on(wal.replay(REGION, after))
        .map(|entries| entries.iter().map(|entry| entry.entry_id).collect())
}

#[test]
fn acknowledged_entries_survive_a_reopen_across_segments() {
    let dir = dir();
    append_all(&wal(&dir, 2), 1..=7);
    let reopened = wal(&dir, 2);
    assert_eq!(reopened.segment_paths(REGION).expect("list").len(), 4);
    assert_eq!(
        block_on(reopened.replay(REGION, 0)).expect("replay"),
        (1..=7).map(entry).collect::<Vec<_>>()
    );
    assert_eq!(replayed_ids(&reopened, 4).expect("replay"), vec![5, 6, 7]);
    append_all(&reopened, [8]);
    assert_eq!(replayed_ids(&wal(&dir, 2), 6).expect("replay"), vec![7, 8]);
    assert_eq!(reopened.repairs().torn_tails.load(Ordering::Relaxed), 0);
}

#[test]
fn truncate_removes_whole_obsolete_segments_and_purge_removes_the_log() {
    let dir = dir();
    let wal = wal(&dir, 2);
    append_all(&wal, 1..=7); // segments start at 1, 3, 5, 7
    block_on(wal.truncate(REGION, 3)).expect("truncate");
    // [1, 2] is obsolete; [3, 4] still holds 4.
    assert_eq!(wal.segment_paths(REGION).expect("list").len(), 3);
    assert_eq!(replayed_ids(&wal, 3).expect("replay"), vec![4, 5, 6, 7]);
    block_on(wal.truncate(REGION, 7)).expect("truncate");
    // The segment being written stays until a later one exists.
    assert_eq!(wal.segment_paths(REGION).expect("list").len(), 1);
    assert_eq!(replayed_ids(&wal, 7).expect("replay"), Vec::<u64>::new());
    block_on(wal.purge(REGION)).expect("purge");
    assert!(wal.segment_paths(REGION).expect("list").is_empty());
    assert_eq!(dir.fs.list("wal").expect("list"), Vec::<String>::new());
    // A purged region starts over.
    append_all(&wal, [1]);
    assert_eq!(replayed_ids(&wal, 0).expect("replay"), vec![1]);
}

#[test]
fn entry_ids_must_rise() {
    let dir = dir();
    let wal = wal(&dir, 4);
    append_all(&wal, [5]);
    let error = block_on(wal.append(REGION, entry(5))).expect_err("a repeated id");
    assert!(
        matches!(error, WalError::Append { entry_id: 5, .. }),
        "{error}"
    );
}

#[test]
fn a_torn_tail_is_cut_synced_and_counted_on_open() {
    let dir = dir();
    append_all(&wal(&dir, 10), 1..=3);
    let path = wal(&dir, 10).segment_paths(REGION).expect("list")[0].clone();
    let full = dir.fs.read(&path).expect("read").len() as u64;
    dir.fs.set_len(&path, full - 5).expect("tear");

    let reopened = wal(&dir, 10);
    assert_eq!(replayed_ids(&reopened, 0).expect("replay"), vec![1, 2]);
    assert_eq!(reopened.repairs().torn_tails.load(Ordering::Relaxed), 1);
    assert_eq!(
        reopened.repairs().bytes_dropped.load(Ordering::Relaxed),
        frame_len() - 5
    );
    assert_eq!(
        dir.fs.read(&path).expect("read").len() as u64,
        2 * frame_len()
    );
    // Entry 3 was never acknowledged; the log goes on from 2.
    append_all(&reopened, [3, 4]);
    assert_eq!(
        replayed_ids(&wal(&dir, 10), 0).expect("replay"),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn a_reader_reads_around_a_torn_tail_and_leaves_it_on_disk() {
    let dir = dir();
    append_all(&wal(&dir, 10), 1..=3);
    let path = wal(&dir, 10).segment_paths(REGION).expect("list")[0].clone();
    let torn_len = dir.fs.read(&path).expect("read").len() as u64 - 5;
    dir.fs.set_len(&path, torn_len).expect("tear");

    let reader = FileWal::reader(dir.fs.clone());
    assert_eq!(replayed_ids(&reader, 0).expect("replay"), vec![1, 2]);
    assert_eq!(dir.fs.read(&path).expect("read").len() as u64, torn_len);
}

#[test]
fn an_append_in_two_halves_is_durable_only_after_its_sync() {
    let dir = dir();
    let wal = wal(&dir, 10);
    append_all(&wal, [1]);
    wal.write_entry(REGION, &entry(2)).expect("write 2");
    // One entry per region waits for its sync; a second write is refused
    // and a sync of an entry that does not wait is refused too.
    let refused = wal.write_entry(REGION, &entry(3)).expect_err("2 waits");
    assert!(
        matches!(refused, WalError::Append { entry_id: 3, .. }),
        "{refused}"
    );
    let refused = wal.sync_entry(REGION, 3).expect_err("3 was not written");
    assert!(
        matches!(refused, WalError::Append { entry_id: 3, .. }),
        "{refused}"
    );
    wal.sync_entry(REGION, 2).expect("sync 2");
    append_all(&wal, [3]);
    assert_eq!(replayed_ids(&wal, 0).expect("replay"), vec![1, 2, 3]);
}

#[test]
fn a_flipped_bit_is_a_torn_tail_at_the_end_and_corruption_before_it() {
    let dir = dir();
    append_all(&wal(&dir, 10), 1..=3);
    let path = wal(&dir, 10).segment_paths(REGION).expect("list")[0].clone();
    let bytes = dir.fs.read(&path).expect("read");

    let mut middle = bytes.clone();
    middle[frame_len() as usize + 12] ^= 0x04;
    dir.fs.set_len(&path, 0).expect("rewrite");
    dir.fs.write_at(&path, 0, &middle).expect("rewrite");
    let error = replayed_ids(&wal(&dir, 10), 0).expect_err("corruption before the tail");
    assert!(matches!(error, WalError::Corrupt { .. }), "{error}");
    // Nothing was cut: the evidence stays for a person to look at.
    assert_eq!(dir.fs.read(&path).expect("read"), middle);

    let mut last = bytes;
    let at = last.len() - 3;
    last[at] ^= 0x80;
    dir.fs.write_at(&path, 0, &last).expect("rewrite");
    let reopened = wal(&dir, 10);
    assert_eq!(replayed_ids(&reopened, 0).expect("replay"), vec![1, 2]);
    assert_eq!(reopened.repairs().torn_tails.load(Ordering::Relaxed), 1);
}

#[test]
fn bad_bytes_at_the_end_of_an_older_segment_are_corruption() {
    let dir = dir();
    append_all(&wal(&dir, 2), 1..=4);
    let paths = wal(&dir, 2).segment_paths(REGION).expect("list");
    dir.fs.append(&paths[0], b"garbage").expect("append");
    let error = replayed_ids(&wal(&dir, 2), 0).expect_err("an older segment cannot be torn");
    assert!(
        matches!(&error, WalError::Corrupt { reason, .. } if reason.contains("later segment")),
        "{error}"
    );
}

/// `StdFs` whose next append writes only half its bytes and then fails.
struct HalfAppend {
    inner: StdFs,
    armed: AtomicBool,
}

impl FileSystem for HalfAppend {
    fn create(&self, path: &str) -> Result<(), FsError> {
        self.inner.create(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        if self.armed.swap(false, Ordering::Relaxed) {
            self.inner.append(path, &bytes[..bytes.len() / 2])?;
            return Err(FsError::Io {
                op: FsOp::Append,
                path: path.to_string(),
                reason: "injected: device full".to_string(),
            });
        }
        self.inner.append(path, bytes)
    }
    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.write_at(path, offset, bytes)
    }
    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.inner.set_len(path, len)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.inner.sync(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.inner.rename(from, to)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        self.inner.list(dir)
    }
    fn remove(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove(path)
    }
    fn create_dir_all(&self, dir: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(dir)
    }
    fn remove_dir(&self, dir: &str) -> Result<(), FsError> {
        self.inner.remove_dir(dir)
    }
    fn sync_dir(&self, dir: &str) -> Result<(), FsError> {
        self.inner.sync_dir(dir)
    }
}

#[test]
fn a_failed_append_is_cut_before_the_next_frame_is_written() {
    let dir = dir();
    let flaky = Arc::new(HalfAppend {
        inner: (*dir.fs).clone(),
        armed: AtomicBool::new(false),
    });
    let wal = FileWal::with_segment_bytes(flaky.clone(), frame_len() * 10);
    append_all(&wal, [1]);
    flaky.armed.store(true, Ordering::Relaxed);
    let error = block_on(wal.append(REGION, entry(2))).expect_err("injected");
    assert!(
        matches!(error, WalError::Append { entry_id: 2, .. }),
        "{error}"
    );
    // Cut at once: a reopen now (a crash) finds no trace of the refused
    // entry, not even a torn tail.
    let peek = FileWal::new(dir.fs.clone());
    assert_eq!(replayed_ids(&peek, 0).expect("replay"), vec![1]);
    assert_eq!(peek.repairs().torn_tails.load(Ordering::Relaxed), 0);
    // The caller may retry the same entry: nothing of it was acknowledged.
    append_all(&wal, [2, 3]);
    let reopened = FileWal::new(dir.fs.clone());
    assert_eq!(replayed_ids(&reopened, 0).expect("replay"), vec![1, 2, 3]);
    assert_eq!(reopened.repairs().torn_tails.load(Ordering::Relaxed), 0);
}

#[test]
fn a_stray_file_in_the_log_directory_is_ignored_and_a_lying_name_is_corruption() {
    let dir = dir();
    append_all(&wal(&dir, 10), 1..=2);
    dir.fs.create("wal/7/notes.txt").expect("stray file");
    assert_eq!(replayed_ids(&wal(&dir, 10), 0).expect("replay"), vec![1, 2]);
    // A segment named as if it started above the entries it holds.
    let paths = wal(&dir, 10).segment_paths(REGION).expect("list");
    dir.fs
        .rename(&paths[0], "wal/7/00000000000000000009.wal")
        .expect("rename");
    let error = replayed_ids(&wal(&dir, 10), 0).expect_err("ids below the segment's name");
    assert!(matches!(error, WalError::Corrupt { .. }), "{error}");
}
