//! The plain adapter: flush-core outside the simulator.
//!
//! Real SST files in a local directory, manifests and WAL in memory, and a
//! [`LocalEngine`] that drives one worker with a tiny poll loop instead of a
//! runtime (every port here completes without waiting). Flush jobs queue in
//! [`QueuedJobs`] and run when the engine is stepped, so tests can hold a
//! flush "in flight" and act on the region meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{self, BoxFuture};
use futures::FutureExt;

use crate::buffer::WriteBufferManager;
use crate::error::{ManifestError, StoreError, WalError};
use crate::ids::{RegionId, RequestId};
use crate::manifest::{ManifestChange, RegionManifest};
use crate::ports::{
    Clock, FaultPoint, FaultPoints, Job, JobRejected, JobScheduler, ManifestStore, MemoryNotifier,
    NotifyError, ObjectStore, Ports, TracingEvents, Wal, WorkerNotifier,
};
use crate::request::{BackgroundNotify, ClientRequest, Reply, Request, Responder, WorkerRequest};
use crate::row::WalEntry;
use crate::worker::{RegionWorker, WorkerConfig};

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `future` to completion on this thread. Only for futures that never
/// wait on anything outside themselves, as all local ports are; a future
/// that stays pending is reported instead of spinning forever.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, StuckFuture> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
    }
    Err(StuckFuture)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a local future stayed pending: it waits on something no local port provides")]
pub struct StuckFuture;

/// SST objects as files under a root directory.
#[derive(Clone, Debug)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalObjectStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io_error(path: &str, error: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_string(),
            reason: error.to_string(),
        }
    }

    fn put_now(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let full = self.root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Self::io_error(path, e))?;
        }
        std::fs::write(&full, bytes).map_err(|e| Self::io_error(path, e))
    }

    fn get_now(&self, path: &str) -> Result<Bytes, StoreError> {
        match std::fs::read(self.root.join(path)) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                path: path.to_string(),
            }),
            Err(e) => Err(Self::io_error(path, e)),
        }
    }

    fn list_now(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Self::io_error(prefix, e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| Self::io_error(prefix, e))?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.root) {
                    let key = relative.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        found.push(key);
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn delete_now(&self, path: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.root.join(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Self::io_error(path, e)),
            _ => Ok(()),
        }
    }
}

impl ObjectStore for LocalObjectStore {
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

/// Jobs wait in a queue until the engine runs them. `reject_next` makes
/// the next N submissions fail.
#[derive(Default)]
pub struct QueuedJobs {
    queue: Mutex<VecDeque<Job>>,
    pub reject_next: AtomicUsize,
}

impl QueuedJobs {
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<Job> {
        lock(&self.queue).pop_front()
    }
}

impl JobScheduler for QueuedJobs {
    fn schedule(&self, job: Job) -> Result<(), JobRejected> {
        let armed = self
            .reject_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if armed.is_ok() {
            return Err(JobRejected {
                reason: "injected rejection".to_string(),
            });
        }
        lock(&self.queue).push_back(job);
        Ok(())
    }
}

/// A clock only its owner moves: `sleep` advances it at once (a flush
/// job's backoff passes without waiting), [`ManualClock::advance`] moves it
/// between steps. The local engine runs on it, so a run is the same run
/// whatever the machine's speed.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()> {
        self.advance(duration_ms);
        future::ready(()).boxed()
    }
}

/// Wall-clock time; sleeping blocks the thread (local ports never wait).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

// The real clock behind the Clock port: what a real engine runs on, never
// a simulated one (clippy.toml forbids wall clocks elsewhere).
#[allow(clippy::disallowed_methods)]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()> {
        std::thread::sleep(std::time::Duration::from_millis(duration_ms));
        future::ready(()).boxed()
    }
}

/// Fault points switched by counters: `fail_freezes` fails the next N.
#[derive(Default)]
pub struct CountedFaults {
    pub fail_freezes: AtomicUsize,
}

impl FaultPoints for CountedFaults {
    fn should_fail(&self, point: FaultPoint, _region_id: RegionId) -> bool {
        match point {
            FaultPoint::FreezeMemtable => self
                .fail_freezes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// The worker's inbox for flush results and memory notifications.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<WorkerRequest>>,
}

impl Inbox {
    fn push(&self, request: WorkerRequest) {
        lock(&self.queue).push_back(request);
    }

    fn pop(&self) -> Option<WorkerRequest> {
        lock(&self.queue).pop_front()
    }
}

impl WorkerNotifier for Inbox {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        self.push(WorkerRequest::Background(notify));
        Ok(())
    }
}

impl MemoryNotifier for Inbox {
    fn memory_freed(&self) {
        let mut queue = lock(&self.queue);
        if !matches!(queue.back(), Some(WorkerRequest::MemoryFreed)) {
            queue.push_back(WorkerRequest::MemoryFreed);
        }
    }
}

/// The concrete ports of a [`LocalEngine`], kept so tests can turn knobs.
pub struct LocalPorts {
    pub jobs: Arc<QueuedJobs>,
    /// Files under a directory ([`LocalEngine::new`]) or any other store
    /// ([`LocalEngine::with_object_store`]).
    pub objects: Arc<dyn ObjectStore>,
    pub manifests: Arc<MemoryManifestStore>,
    pub wal: Arc<MemoryWal>,
    pub faults: Arc<CountedFaults>,
    pub inbox: Arc<Inbox>,
    pub clock: Arc<ManualClock>,
}

/// One worker over local ports, driven synchronously.
pub struct LocalEngine {
    worker: RegionWorker,
    ports: LocalPorts,
    buffer: Arc<WriteBufferManager>,
    next_request_id: u64,
}

impl LocalEngine {
    /// An engine storing SSTs under `dir` with a write buffer of
    /// `buffer_bytes`.
    pub fn new(dir: impl Into<PathBuf>, buffer_bytes: usize, config: WorkerConfig) -> Self {
        Self::with_object_store(Arc::new(LocalObjectStore::new(dir)), buffer_bytes, config)
    }

    /// An engine storing SSTs in `objects` (tests and fuzz targets use an
    /// in-memory store: no directory, no file I/O per run).
    pub fn with_object_store(
        objects: Arc<dyn ObjectStore>,
        buffer_bytes: usize,
        config: WorkerConfig,
    ) -> Self {
        let inbox = Arc::new(Inbox::default());
        let ports = LocalPorts {
            jobs: Arc::new(QueuedJobs::default()),
            objects,
            manifests: Arc::new(MemoryManifestStore::default()),
            wal: Arc::new(MemoryWal::default()),
            faults: Arc::new(CountedFaults::default()),
            inbox: inbox.clone(),
            clock: Arc::new(ManualClock::default()),
        };
        let buffer = Arc::new(WriteBufferManager::new(buffer_bytes).with_notifier(inbox.clone()));
        let core_ports = Ports {
            jobs: ports.jobs.clone(),
            objects: ports.objects.clone(),
            manifests: ports.manifests.clone(),
            wal: ports.wal.clone(),
            clock: ports.clock.clone(),
            faults: ports.faults.clone(),
            events: Arc::new(TracingEvents),
        };
        let worker = RegionWorker::new(config, core_ports, buffer.clone(), inbox);
        LocalEngine {
            worker,
            ports,
            buffer,
            next_request_id: 1,
        }
    }

    pub fn ports(&self) -> &LocalPorts {
        &self.ports
    }

    pub fn buffer(&self) -> &Arc<WriteBufferManager> {
        &self.buffer
    }

    pub fn worker(&self) -> &RegionWorker {
        &self.worker
    }

    /// Hands `request` to the worker without running any flush job; the
    /// receiver gets the reply whenever it is given.
    pub fn submit(&mut self, request: Request) -> Result<oneshot::Receiver<Reply>, StuckFuture> {
        let (responder, receiver) = Responder::new(RequestId(self.next_request_id));
        self.next_request_id += 1;
        let request = WorkerRequest::Client(ClientRequest { request, responder });
        block_on(self.worker.handle(request))?;
        self.drain_inbox()?;
        Ok(receiver)
    }

    /// Delivers queued notifications to the worker until none is left.
    pub fn drain_inbox(&mut self) -> Result<(), StuckFuture> {
        while let Some(request) = self.ports.inbox.pop() {
            block_on(self.worker.handle(request))?;
        }
        Ok(())
    }

    /// Runs the oldest queued flush job and delivers what it sends back.
    /// Returns false when no job was queued.
    pub fn run_one_job(&mut self) -> Result<bool, StuckFuture> {
        let Some(job) = self.ports.jobs.pop() else {
            return Ok(false);
        };
        block_on(job)?;
        self.drain_inbox()?;
        Ok(true)
    }

    /// Drops the oldest queued flush job unrun, as a runtime shutting down
    /// would: its end guard reports it lost. Returns false when no job was
    /// queued.
    pub fn lose_one_job(&mut self) -> Result<bool, StuckFuture> {
        let Some(job) = self.ports.jobs.pop() else {
            return Ok(false);
        };
        drop(job);
        self.drain_inbox()?;
        Ok(true)
    }

    /// Runs flush jobs and notifications until nothing is left to do.
    pub fn run_until_idle(&mut self) -> Result<(), StuckFuture> {
        self.drain_inbox()?;
        while self.run_one_job()? {}
        Ok(())
    }

    /// Submits `request`, runs everything it starts, returns its reply.
    pub fn call(&mut self, request: Request) -> Result<Reply, LocalCallError> {
        let mut receiver = self.submit(request)?;
        self.run_until_idle()?;
        match receiver.try_recv() {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(LocalCallError::NoReply),
            Err(oneshot::Canceled) => Err(LocalCallError::Lost),
        }
    }

    /// Moves the engine's clock on (periodic flushes read it).
    pub fn advance_clock(&mut self, ms: u64) {
        self.ports.clock.advance(ms);
    }

    /// Sends a periodic tick (stall relief, stalled-write retry, periodic
    /// flush).
    pub fn tick(&mut self) -> Result<(), StuckFuture> {
        block_on(self.worker.handle(WorkerRequest::Tick))?;
        self.drain_inbox()
    }

    /// Stops the worker, answering everything it holds, and delivers what
    /// the stop itself released (the memory of the regions it let go), so
    /// no notification of the stop waits to be handled after a later
    /// request.
    pub fn shutdown(&mut self) -> Result<(), StuckFuture> {
        self.worker.shutdown();
        self.drain_inbox()
    }
}

/// Why [`LocalEngine::call`] has no reply to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalCallError {
    #[error(transparent)]
    Stuck(#[from] StuckFuture),
    #[error("the request is still waiting (stalled or queued behind a flush)")]
    NoReply,
    #[error("the request's responder was dropped without an answer")]
    Lost,
}

#[cfg(test)]
mod tests {
    use super::*;

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
