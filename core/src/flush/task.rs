//! The flush job: immutable memtables → Parquet SSTs → manifest edit →
//! a notification to the worker.
//!
//! The job owns no reply: the responders waiting on a flush stay in the
//! scheduler's status inside the worker. A job that is rejected, lost or
//! never heard from again therefore cannot take a reply with it; the worker
//! answers them on every path.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;

use crate::buffer::WriteBufferManager;
use crate::bugs::{Bugs, PlantedBug};
use crate::error::{panic_message, FlushError, SstError};
use crate::events::CoreEvent;
use crate::ids::{sst_path, FileId, MemtableId, RegionId};
use crate::manifest::{FileMeta, LeaderState, ManifestChange, RegionEdit};
use crate::memtable::Memtable;
use crate::ports::{Job, NotifyError, Ports, WorkerNotifier};
use crate::region::Region;
use crate::request::{BackgroundNotify, FlushFailed, FlushFinished, FlushReason};
use crate::row::Row;
use crate::schema::RegionSchema;
use crate::sst;
use crate::telemetry;

use super::job_end::{Acceptance, JobEnd, LostReports};

/// What a flush job needs from its worker's world.
#[derive(Clone)]
pub struct FlushEnv {
    pub ports: Ports,
    pub notifier: Arc<dyn WorkerNotifier>,
    pub buffer: Arc<WriteBufferManager>,
    pub bugs: Bugs,
    /// Retries of a full worker queue after which a waiting flush result is
    /// logged as stuck (it keeps retrying: see `deliver`).
    pub notify_retry_limit: u32,
    pub notify_retry_backoff_ms: u64,
    /// Where a lost job's report waits when the worker's queue is full.
    pub lost_reports: Arc<LostReports>,
}

/// The region as the flush sees it, captured right after the freeze: the
/// worker may change the region while the job runs, the job never looks.
pub struct FlushSnapshot {
    pub region_id: RegionId,
    pub epoch: u64,
    pub reason: FlushReason,
    /// The leader state the manifest must still be in at commit time.
    pub expected_state: LeaderState,
    pub memtables: Vec<Arc<Memtable>>,
    pub last_entry_id: u64,
    pub committed_sequence: u64,
}

impl FlushSnapshot {
    /// The expected state is the region's current one (Writable, or
    /// Downgrading during a downgrade), not derived from the reason: a flush
    /// merged into a downgrade must commit under the downgrade's state.
    pub fn capture(region: &Region, reason: FlushReason) -> Self {
        FlushSnapshot {
            region_id: region.region_id,
            epoch: region.epoch,
            reason,
            expected_state: region.leader_state,
            memtables: region.version.immutables().to_vec(),
            last_entry_id: region.version.last_entry_id,
            committed_sequence: region.version.committed_sequence,
        }
    }
}

/// Wraps a flush of `snapshot` as a job for the job scheduler, with the
/// [`JobEnd`] that reports it if it is dropped unfinished once accepted.
pub fn flush_job(env: FlushEnv, snapshot: FlushSnapshot) -> (Job, Acceptance) {
    let (end, acceptance) = JobEnd::new(&env, snapshot.region_id, snapshot.epoch);
    let job = Box::pin(async move {
        run_flush(env, snapshot).await;
        end.finished();
    });
    (job, acceptance)
}

async fn run_flush(env: FlushEnv, snapshot: FlushSnapshot) {
    let region_id = snapshot.region_id;
    let epoch = snapshot.epoch;
    let started_ms = env.ports.clock.now_ms();
    env.ports
        .events
        .record(CoreEvent::FlushJobStarted { region_id, epoch });
    tracing::info!(%region_id, reason = snapshot.reason.as_str(), "flush begins");
    let flushed_memtables: Vec<MemtableId> = snapshot.memtables.iter().map(|m| m.id()).collect();
    let outcome = guarded_flush(&env, &snapshot, started_ms).await;
    // Release our references first: the worker frees the memory when it
    // applies the edit, not when this job happens to end.
    drop(snapshot);
    let failed = outcome.is_err();
    let notify = match outcome {
        Ok(edit) => {
            tracing::info!(%region_id, files = edit.files_to_add.len(), "flush ends");
            BackgroundNotify::FlushFinished(FlushFinished {
                region_id,
                epoch,
                edit,
                flushed_memtables,
            })
        }
        Err(error) => failure_report(&env, region_id, epoch, error),
    };
    deliver(&env, notify).await;
    if failed && env.bugs.has(PlantedBug::InflightGaugeKeptOnFailure) {
        env.buffer.flush_ended();
    } else {
        end_flush(&env);
    }
}

/// A flush job's end, in the buffer and in the exported gauge.
pub(super) fn end_flush(env: &FlushEnv) {
    env.buffer.flush_ended();
    telemetry::flush_ended();
}

/// A failed flush, logged and recorded, as the report its worker gets: for
/// a job that failed, and for one dropped before it finished
/// ([`JobEnd`]).
pub(super) fn failure_report(
    env: &FlushEnv,
    region_id: RegionId,
    epoch: u64,
    error: FlushError,
) -> BackgroundNotify {
    tracing::warn!(%region_id, %error, "flush failed");
    telemetry::flush_failed();
    env.ports.events.record(CoreEvent::FlushFailed {
        region_id,
        epoch,
        reason: error.to_string(),
    });
    BackgroundNotify::FlushFailed(FlushFailed {
        region_id,
        epoch,
        error,
    })
}

/// How far a flush got: what it must clean up, or read back, if it fails
/// or panics on the way.
#[derive(Default)]
struct Progress {
    /// Every SST this flush began to put, in order. A put cut short may
    /// still leave an object (or a prefix of one) behind.
    began_puts: Vec<String>,
    /// The edit, from the moment it went to the manifest store: once it
    /// has, only the manifest can say whether it was saved.
    committing: Option<RegionEdit>,
}

/// Writes and commits, and survives a panic on the way (a bug in an
/// encoder, a store client that panics): the job still ends with a report
/// that tells the truth. A panic inside the commit leaves the commit's
/// fate open, so the manifest is read back as for an unsettled error.
async fn guarded_flush(
    env: &FlushEnv,
    snapshot: &FlushSnapshot,
    started_ms: u64,
) -> Result<RegionEdit, FlushError> {
    let region_id = snapshot.region_id;
    let mut progress = Progress::default();
    let caught = AssertUnwindSafe(write_and_commit(env, snapshot, started_ms, &mut progress))
        .catch_unwind()
        .await;
    let (fate, error) = match caught {
        Ok(Ok(edit)) => return Ok(edit),
        Ok(Err((fate, error))) => (fate, error),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(%region_id, %message, "flush job panicked");
            let error = FlushError::JobPanicked { region_id, message };
            match progress.committing.take() {
                None => (CommitFate::NotSaved, error),
                Some(_) if env.bugs.has(PlantedBug::PanicSkipsReadBack) => {
                    (CommitFate::NotSaved, error)
                }
                Some(edit) => match read_back(env, region_id, &edit).await {
                    Some(true) => {
                        record_committed(env, snapshot, &edit, started_ms);
                        return Ok(edit);
                    }
                    Some(false) => (CommitFate::NotSaved, error),
                    None => (CommitFate::InDoubt, error),
                },
            }
        }
    };
    if fate == CommitFate::NotSaved && !env.bugs.has(PlantedBug::KeepFilesOfFailedFlush) {
        remove_unlisted(env, region_id, &progress.began_puts).await;
    }
    Err(error)
}

/// Whether a failed flush's edit may be in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitFate {
    /// Never sent, refused, or read back without it: the flush's SSTs are
    /// orphans, and the flush removes them.
    NotSaved,
    /// The manifest could not be read back: its SSTs stay, for the next
    /// open to purge if they are not listed.
    InDoubt,
}

/// Removes the SSTs of a flush that did not commit. Best effort: what a
/// failed delete (or a crash) leaves is purged by the region's next open.
async fn remove_unlisted(env: &FlushEnv, region_id: RegionId, paths: &[String]) {
    for path in paths {
        if env.ports.objects.delete(path).await.is_ok() {
            env.ports.events.record(CoreEvent::FailedFlushFileRemoved {
                region_id,
                path: path.clone(),
            });
        }
    }
}

type FlushFailure = (CommitFate, FlushError);

async fn write_and_commit(
    env: &FlushEnv,
    snapshot: &FlushSnapshot,
    started_ms: u64,
    progress: &mut Progress,
) -> Result<RegionEdit, FlushFailure> {
    let region_id = snapshot.region_id;
    let mut files_to_add = Vec::with_capacity(snapshot.memtables.len());
    for memtable in snapshot.memtables.iter().filter(|m| !m.is_empty()) {
        let file = write_sst(env, snapshot, memtable, progress)
            .await
            .map_err(|error| (CommitFate::NotSaved, error))?;
        files_to_add.push(file);
    }
    let flushed_entry_id = if env.bugs.has(PlantedBug::FlushedEntryPastLast) {
        snapshot.last_entry_id + 1
    } else {
        snapshot.last_entry_id
    };
    let edit = RegionEdit {
        files_to_add,
        flushed_entry_id,
        flushed_sequence: snapshot.committed_sequence,
    };
    let change = ManifestChange::Edit {
        edit: edit.clone(),
        expected_state: snapshot.expected_state,
        epoch: snapshot.epoch,
    };
    progress.committing = Some(edit.clone());
    commit_edit(env, region_id, &edit, change).await?;
    progress.committing = None;
    record_committed(env, snapshot, &edit, started_ms);
    Ok(edit)
}

fn record_committed(env: &FlushEnv, snapshot: &FlushSnapshot, edit: &RegionEdit, started_ms: u64) {
    let bytes = edit.files_to_add.iter().map(|file| file.size_bytes).sum();
    let elapsed_ms = env.ports.clock.now_ms().saturating_sub(started_ms);
    telemetry::flush_committed(bytes, elapsed_ms);
    env.ports.events.record(CoreEvent::FlushCommitted {
        region_id: snapshot.region_id,
        epoch: snapshot.epoch,
        flushed_entry_id: edit.flushed_entry_id,
        files: edit.files_to_add.len(),
        bytes,
    });
}

/// How many times a flush reads the manifest back, after a commit whose
/// fate is open, before it gives up and fails.
pub const COMMIT_CHECKS: u32 = 8;

/// Commits a flush edit. When the store fails without a ruling
/// ([`ManifestError::is_unsettled`]) it may still have saved the edit, so
/// the manifest is read back: an edit whose files are listed is committed,
/// whatever the store said. Treating every error as "not saved" would
/// leave the same rows in the memtables and in a listed SST, and would
/// delete files the manifest lists.
async fn commit_edit(
    env: &FlushEnv,
    region_id: RegionId,
    edit: &RegionEdit,
    change: ManifestChange,
) -> Result<(), FlushFailure> {
    let Err(source) = env.ports.manifests.apply(region_id, change).await else {
        return Ok(());
    };
    let error = FlushError::Manifest { region_id, source };
    let unsettled = matches!(&error, FlushError::Manifest { source, .. } if source.is_unsettled());
    if !unsettled || env.bugs.has(PlantedBug::DeleteSstsOnFailedCommit) {
        return Err((CommitFate::NotSaved, error));
    }
    match read_back(env, region_id, edit).await {
        Some(true) => Ok(()),
        Some(false) => Err((CommitFate::NotSaved, error)),
        None => Err((CommitFate::InDoubt, error)),
    }
}

/// Whether the region's manifest holds `edit`: `None` when it could not be
/// read in [`COMMIT_CHECKS`] tries.
async fn read_back(env: &FlushEnv, region_id: RegionId, edit: &RegionEdit) -> Option<bool> {
    for _ in 0..COMMIT_CHECKS {
        match env.ports.manifests.load(region_id).await {
            Ok(Some(manifest)) => return Some(manifest.holds_edit(edit)),
            Ok(None) => return Some(false),
            Err(_) => continue,
        }
    }
    None
}

/// File ids combine the epoch and the memtable id: unique per region
/// incarnation, and a retried flush of the same memtable rewrites the same
/// (uncommitted) object instead of leaving another orphan.
fn file_id_for(epoch: u64, memtable: MemtableId) -> FileId {
    FileId(epoch << 32 | (memtable.0 & 0xffff_ffff))
}

/// Encodes a memtable in the schema its rows were written under.
fn encode_memtable(env: &FlushEnv, path: &str, memtable: &Memtable) -> Result<Bytes, SstError> {
    if !env.bugs.has(PlantedBug::SstDropsAddedFields) {
        return sst::encode_rows(path, memtable.schema(), memtable.rows());
    }
    let base = RegionSchema {
        version: memtable.schema().version,
        added_fields: Vec::new(),
    };
    let rows: Vec<Row> = memtable
        .rows()
        .iter()
        .map(|row| Row {
            fields: Vec::new(),
            ..row.clone()
        })
        .collect();
    sst::encode_rows(path, &base, &rows)
}

async fn write_sst(
    env: &FlushEnv,
    snapshot: &FlushSnapshot,
    memtable: &Memtable,
    progress: &mut Progress,
) -> Result<FileMeta, FlushError> {
    let region_id = snapshot.region_id;
    let file_id = file_id_for(snapshot.epoch, memtable.id());
    let path = sst_path(region_id, file_id);
    let rows = memtable.rows();
    let encode_started_ms = env.ports.clock.now_ms();
    let bytes = encode_memtable(env, &path, memtable)
        .map_err(|source| FlushError::Sst { region_id, source })?;
    telemetry::memtable_encoded(env.ports.clock.now_ms().saturating_sub(encode_started_ms));
    let size_bytes = bytes.len() as u64;
    progress.began_puts.push(path.clone());
    let put = env.ports.objects.put(&path, bytes);
    if env.bugs.has(PlantedBug::FlushedEntryBeforeSstDurable) {
        // The put runs on its own; the edit commits whether it lands or not.
        let _ = env.ports.jobs.schedule(Box::pin(async move {
            let _ = put.await;
        }));
    } else {
        put.await
            .map_err(|source| FlushError::Store { region_id, source })?;
    }
    let min_ts = rows.iter().map(|r| r.ts).min().unwrap_or_default();
    let max_ts = rows.iter().map(|r| r.ts).max().unwrap_or_default();
    env.ports.events.record(CoreEvent::SstWritten {
        region_id,
        file_id,
        rows: rows.len() as u64,
    });
    Ok(FileMeta {
        region_id,
        file_id,
        time_range: (min_ts, max_ts),
        num_rows: rows.len() as u64,
        size_bytes,
        max_sequence: memtable.max_sequence().unwrap_or_default(),
        level: 0,
    })
}

/// Hands the result to the worker, retrying while its queue is full.
///
/// A full queue is back-pressure, never a reason to drop the result: a
/// `FlushFinished` carries an edit the manifest has already committed, and a
/// worker that never hears of it keeps the flushed rows in its memtable too
/// (read twice) and its waiters waiting. So the job waits, with a backoff
/// that doubles up to 64 × the base, for as long as the worker lives; after
/// `notify_retry_limit` retries it says so once in the log. Only a stopped
/// worker (which answered every waiter on its way out) ends the attempts.
async fn deliver(env: &FlushEnv, mut notify: BackgroundNotify) {
    let region_id = notify.region_id();
    let mut attempt: u32 = 0;
    loop {
        match env.notifier.notify(notify) {
            Ok(()) => return,
            Err(NotifyError::Closed(_)) => {
                env.ports
                    .events
                    .record(CoreEvent::NotifyGaveUp { region_id });
                return;
            }
            Err(NotifyError::Full(returned)) => {
                notify = returned;
                attempt = attempt.saturating_add(1);
                env.ports
                    .events
                    .record(CoreEvent::NotifyRetried { region_id, attempt });
                if attempt >= env.notify_retry_limit.max(1)
                    && env.bugs.has(PlantedBug::DropResultOnFullQueue)
                {
                    env.ports
                        .events
                        .record(CoreEvent::NotifyGaveUp { region_id });
                    return;
                }
                if attempt == env.notify_retry_limit.max(1) {
                    tracing::error!(
                        %region_id,
                        attempt,
                        "worker queue still full; the flush result keeps waiting"
                    );
                }
                let backoff_ms = env.notify_retry_backoff_ms << attempt.min(6);
                env.ports.clock.sleep(backoff_ms).await;
            }
        }
    }
}
