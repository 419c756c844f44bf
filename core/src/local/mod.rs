//! The plain adapter: flush-core outside the simulator, and the core's
//! test kit.
//!
//! A [`LocalEngine`] drives one worker with a tiny poll loop instead of a
//! runtime (every port here completes without waiting): real SST files in a
//! local directory or objects in a map, manifests and WAL in memory
//! ([`stores`]). Flush jobs queue in [`QueuedJobs`] and run when the engine
//! is stepped, so tests can hold a flush "in flight" and act on the region
//! meanwhile. The controllable ports ([`controls`]) and the
//! [`ReplyLedger`](ledger::ReplyLedger) (feature `test-kit`) are what every
//! test rig of the core is built from.

pub mod controls;
#[cfg(any(test, feature = "test-kit"))]
pub mod ledger;
pub mod stores;
pub mod walkthrough;

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;

pub use self::controls::{CountedFaults, Inbox, ManualClock, QueuedJobs, RecordedEvents};
pub use self::stores::{MemoryManifestStore, MemoryObjectStore, MemoryWal};
use crate::buffer::WriteBufferManager;
use crate::durable::objects::FileObjectStore;
use crate::fs::{FsError, StdFs};
use crate::ids::RequestId;
use crate::ports::{ObjectStore, Ports};
use crate::request::{ClientRequest, Reply, Request, Responder, WorkerRequest};
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
    pub events: Arc<RecordedEvents>,
}

/// One worker over local ports, driven synchronously.
pub struct LocalEngine {
    worker: RegionWorker,
    ports: LocalPorts,
    buffer: Arc<WriteBufferManager>,
    next_request_id: u64,
}

impl LocalEngine {
    /// An engine storing SSTs under `dir` (created if missing) with a write
    /// buffer of `buffer_bytes`, through the durable object store a real
    /// engine uses: each SST is synced and renamed into place.
    pub fn new(
        dir: impl Into<PathBuf>,
        buffer_bytes: usize,
        config: WorkerConfig,
    ) -> Result<Self, FsError> {
        let objects = FileObjectStore::new(Arc::new(StdFs::open(dir)?));
        Ok(Self::with_object_store(
            Arc::new(objects),
            buffer_bytes,
            config,
        ))
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
            events: Arc::new(RecordedEvents::default()),
        };
        let buffer = Arc::new(WriteBufferManager::new(buffer_bytes).with_notifier(inbox.clone()));
        let core_ports = Ports {
            jobs: ports.jobs.clone(),
            objects: ports.objects.clone(),
            manifests: ports.manifests.clone(),
            wal: ports.wal.clone(),
            clock: ports.clock.clone(),
            faults: ports.faults.clone(),
            events: ports.events.clone(),
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
