//! Ports: the only ways the core meets the outside world.
//!
//! The simulator implements every trait here with fault injection on madsim;
//! [`crate::local`] implements them for real (local files, inline jobs). The
//! core never names a runtime: it only awaits the boxed futures these traits
//! return, so the same code runs on either side.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::{ManifestError, StoreError, WalError};
use crate::events::CoreEvent;
use crate::ids::RegionId;
use crate::manifest::{ManifestChange, RegionManifest};
use crate::request::BackgroundNotify;
use crate::row::WalEntry;

/// A background job: in practice, one flush of one region.
pub type Job = BoxFuture<'static, ()>;

/// Why the job scheduler refused a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRejected {
    pub reason: String,
}

impl fmt::Display for JobRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Runs background jobs. May refuse one (queue full, shutting down); the
/// refused job is dropped unpolled, so nothing inside it may own a reply.
pub trait JobScheduler: Send + Sync {
    fn schedule(&self, job: Job) -> Result<(), JobRejected>;
}

/// Holds SST bytes under string paths.
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` at `path`. An error may leave a partial object behind.
    fn put(&self, path: &str, bytes: Bytes) -> BoxFuture<'static, Result<(), StoreError>>;
    fn get(&self, path: &str) -> BoxFuture<'static, Result<Bytes, StoreError>>;
    /// Paths under `prefix`, sorted.
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>>;
    /// Deleting a missing object is not an error.
    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// Durable region manifests.
///
/// Implementations persist [`RegionManifest`] values and apply changes with
/// [`RegionManifest::apply`], atomically: the rules (leader state, epochs,
/// monotonic flush marks) are the core's, the storage is the world's.
pub trait ManifestStore: Send + Sync {
    fn create(
        &self,
        manifest: RegionManifest,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>>;
    fn load(
        &self,
        region_id: RegionId,
    ) -> BoxFuture<'static, Result<Option<RegionManifest>, ManifestError>>;
    /// Applies `change`; returns the manifest as it is afterwards.
    fn apply(
        &self,
        region_id: RegionId,
        change: ManifestChange,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>>;
}

/// The write-ahead log. A write is acknowledged only after `append` returns
/// `Ok`: from then on the entry must survive a crash.
pub trait Wal: Send + Sync {
    fn append(
        &self,
        region_id: RegionId,
        entry: WalEntry,
    ) -> BoxFuture<'static, Result<(), WalError>>;
    /// Entries with `entry_id > after_entry_id`, in entry-id order.
    fn replay(
        &self,
        region_id: RegionId,
        after_entry_id: u64,
    ) -> BoxFuture<'static, Result<Vec<WalEntry>, WalError>>;
    /// Discards entries with `entry_id <= up_to_entry_id`: they are in SSTs.
    fn truncate(
        &self,
        region_id: RegionId,
        up_to_entry_id: u64,
    ) -> BoxFuture<'static, Result<(), WalError>>;
    /// Discards the whole log of a dropped region.
    fn purge(&self, region_id: RegionId) -> BoxFuture<'static, Result<(), WalError>>;
}

/// Simulated or real time, for retry back-off.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()>;
}

/// Why a background notification did not reach its worker. The notification
/// comes back so the sender can retry.
#[derive(Debug)]
pub enum NotifyError {
    /// The worker's queue is full right now; retrying may succeed.
    Full(BackgroundNotify),
    /// The worker has stopped; no retry will succeed.
    Closed(BackgroundNotify),
}

/// Delivers flush results from a job back to the worker that owns the region.
pub trait WorkerNotifier: Send + Sync {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError>;
}

/// Told whenever memtable memory is released, wherever that happens, so every
/// worker can retry its stalled writes.
pub trait MemoryNotifier: Send + Sync {
    fn memory_freed(&self);
}

/// Fault points inside the core (FoundationDB's BUGGIFY): the world decides
/// whether the named operation fails this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultPoint {
    /// Freezing the mutable memtable before a flush.
    FreezeMemtable,
}

pub trait FaultPoints: Send + Sync {
    fn should_fail(&self, point: FaultPoint, region_id: RegionId) -> bool;
}

/// Receives the core's state transitions: the simulator hashes them into its
/// trace and counts rare branches; outside it they only go to `tracing`.
pub trait EventSink: Send + Sync {
    fn record(&self, event: CoreEvent);
}

/// Fault points that never fire.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultPoints for NoFaults {
    fn should_fail(&self, _point: FaultPoint, _region_id: RegionId) -> bool {
        false
    }
}

/// The real engine's event sink: logs every event through `tracing` and
/// counts the flushes committed, the one figure a status line (and the
/// plain benchmarks, which drive the real engine) reads off the events.
#[derive(Debug, Default)]
pub struct TracingEvents {
    flushes_committed: AtomicU64,
}

impl TracingEvents {
    pub fn flushes_committed(&self) -> u64 {
        self.flushes_committed.load(Ordering::Relaxed)
    }
}

impl EventSink for TracingEvents {
    fn record(&self, event: CoreEvent) {
        if matches!(event, CoreEvent::FlushCommitted { .. }) {
            self.flushes_committed.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(?event, "core event");
    }
}

/// Every port a worker needs, cloned cheaply into flush jobs.
#[derive(Clone)]
pub struct Ports {
    pub jobs: Arc<dyn JobScheduler>,
    pub objects: Arc<dyn ObjectStore>,
    pub manifests: Arc<dyn ManifestStore>,
    pub wal: Arc<dyn Wal>,
    pub clock: Arc<dyn Clock>,
    pub faults: Arc<dyn FaultPoints>,
    pub events: Arc<dyn EventSink>,
}
