//! The core on tokio (feature `tokio`): the same [`RegionWorker`]s the
//! simulator drives, here one tokio task each behind a bounded queue, flush
//! jobs on a bounded pool that refuses when full ([`jobs`]), tokio time for
//! the clock and the periodic tick, memory releases to every worker
//! ([`router`]), and a graceful stop that answers every pending request.
//!
//! The durable ports do blocking file I/O when polled; on a multi-threaded
//! runtime that holds one runtime thread for the length of a sync.

pub mod jobs;
pub mod router;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt as _};
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::buffer::WriteBufferManager;
use crate::error::RequestError;
use crate::ids::RequestId;
use crate::ports::{
    Clock, EventSink, ManifestStore, NoFaults, ObjectStore, Ports, TracingEvents, Wal,
};
use crate::request::{ClientRequest, Reply, Request, Responder, WorkerRequest};
use crate::worker::{RegionWorker, WorkerConfig, WorkerView};
use jobs::TokioJobs;
use router::{Inbox, Router};

/// How a [`TokioEngine`] is sized.
#[derive(Clone, Debug)]
pub struct TokioEngineConfig {
    pub workers: u32,
    /// Bound of each worker's queue; a client waits for room.
    pub queue_capacity: usize,
    /// Flush jobs running at once, and queued for a slot beyond those.
    pub jobs_running: usize,
    pub jobs_waiting: usize,
    /// The engine-wide write buffer.
    pub buffer_bytes: usize,
    /// Period of the workers' tick (stall relief, periodic checks).
    pub tick: Duration,
    /// Settings every worker starts from (its id is set per worker).
    pub worker: WorkerConfig,
}

impl Default for TokioEngineConfig {
    fn default() -> Self {
        TokioEngineConfig {
            workers: 2,
            queue_capacity: 256,
            jobs_running: 2,
            jobs_waiting: 16,
            buffer_bytes: 8 << 20,
            tick: Duration::from_millis(100),
            worker: WorkerConfig::default(),
        }
    }
}

/// The durable stores an engine runs over.
#[derive(Clone)]
pub struct Stores {
    pub objects: Arc<dyn ObjectStore>,
    pub manifests: Arc<dyn ManifestStore>,
    pub wal: Arc<dyn Wal>,
}

impl From<&crate::durable::DurableStores> for Stores {
    fn from(durable: &crate::durable::DurableStores) -> Stores {
        Stores {
            objects: durable.objects.clone(),
            manifests: durable.manifests.clone(),
            wal: durable.wal.clone(),
        }
    }
}

/// Tokio's clock, counted from the engine's start.
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()> {
        tokio::time::sleep(Duration::from_millis(duration_ms)).boxed()
    }
}

type SharedWorker = Arc<AsyncMutex<RegionWorker>>;

/// The running engine. Start it inside a tokio runtime.
pub struct TokioEngine {
    router: Arc<Router>,
    jobs: Arc<TokioJobs>,
    buffer: Arc<WriteBufferManager>,
    workers: Vec<SharedWorker>,
    /// Taken by [`TokioEngine::stop`].
    loops: std::sync::Mutex<Vec<JoinHandle<()>>>,
    ticker: JoinHandle<()>,
    next_request_id: AtomicU64,
}

impl TokioEngine {
    /// Starts the workers, the job pool and the ticker on the current
    /// runtime.
    pub fn start(config: &TokioEngineConfig, stores: Stores) -> TokioEngine {
        Self::start_with_events(config, stores, Arc::new(TracingEvents::default()))
    }

    /// As [`TokioEngine::start`], reporting core events to `events`.
    pub fn start_with_events(
        config: &TokioEngineConfig,
        stores: Stores,
        events: Arc<dyn EventSink>,
    ) -> TokioEngine {
        let router = Arc::new(Router::default());
        let jobs = Arc::new(TokioJobs::new(config.jobs_running, config.jobs_waiting));
        let buffer =
            Arc::new(WriteBufferManager::new(config.buffer_bytes).with_notifier(router.clone()));
        let ports = Ports {
            jobs: jobs.clone(),
            objects: stores.objects,
            manifests: stores.manifests,
            wal: stores.wal,
            clock: Arc::new(TokioClock {
                start: tokio::time::Instant::now(),
            }),
            faults: Arc::new(NoFaults),
            events,
        };
        let mut inboxes = Vec::new();
        let mut workers = Vec::new();
        let mut loops = Vec::new();
        for worker_id in 0..config.workers.max(1) {
            let worker_config = WorkerConfig {
                worker_id,
                ..config.worker.clone()
            };
            let worker =
                RegionWorker::new(worker_config, ports.clone(), buffer.clone(), router.clone());
            let worker = Arc::new(AsyncMutex::new(worker));
            let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
            let memory_freed_queued = Arc::new(AtomicBool::new(false));
            loops.push(tokio::spawn(worker_loop(
                worker.clone(),
                receiver,
                memory_freed_queued.clone(),
            )));
            inboxes.push(Inbox {
                sender,
                memory_freed_queued,
            });
            workers.push(worker);
        }
        router.set(inboxes);
        let ticker = tokio::spawn(run_ticker(router.clone(), config.tick));
        TokioEngine {
            router,
            jobs,
            buffer,
            workers,
            loops: std::sync::Mutex::new(loops),
            ticker,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Sends `request` and waits for its reply.
    pub async fn call(&self, request: Request) -> Reply {
        let region_id = request.region_id();
        let receiver = self.submit(request).await;
        receiver
            .await
            .unwrap_or(Err(RequestError::WorkerStopped { region_id }))
    }

    /// Queues `request` (waiting for room in its worker's queue) and gives
    /// back where its reply will come.
    pub async fn submit(&self, request: Request) -> oneshot::Receiver<Reply> {
        let id = RequestId(self.next_request_id.fetch_add(1, Ordering::Relaxed));
        let (responder, receiver) = Responder::new(id);
        self.router
            .send_client(ClientRequest { request, responder })
            .await;
        receiver
    }

    pub fn buffer(&self) -> &Arc<WriteBufferManager> {
        &self.buffer
    }

    /// Flush jobs accepted and not yet ended.
    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.in_flight()
    }

    /// What every worker holds, each looked at between two requests.
    pub async fn inspect(&self) -> Vec<WorkerView> {
        let mut views = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            views.push(worker.lock().await.inspect());
        }
        views
    }

    /// Stops gracefully: no new flush job is accepted, every queue is
    /// closed, each worker answers what it has queued and then everything
    /// it still holds (pending flushes, stalled writes, waiting DDLs), and
    /// the jobs still running end. Returns whether all of that happened
    /// within `patience`.
    pub async fn stop(&self, patience: Duration) -> bool {
        self.jobs.close();
        self.router.close();
        let loops = std::mem::take(
            &mut *self
                .loops
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let drained = async {
            for handle in loops {
                let _ = handle.await;
            }
            self.jobs.idle().await;
        };
        let stopped = tokio::time::timeout(patience, drained).await.is_ok();
        self.ticker.abort();
        stopped
    }
}

async fn worker_loop(
    worker: SharedWorker,
    mut inbox: mpsc::Receiver<WorkerRequest>,
    memory_freed_queued: Arc<AtomicBool>,
) {
    while let Some(request) = inbox.recv().await {
        let mut worker = worker.lock().await;
        if matches!(request, WorkerRequest::MemoryFreed) {
            memory_freed_queued.store(false, Ordering::Release);
        }
        worker.handle(request).await;
    }
    worker.lock().await.shutdown();
}

/// Ticks every worker until [`TokioEngine::stop`] aborts it (once the
/// queues are closed a tick reaches no one anyway).
async fn run_ticker(router: Arc<Router>, tick: Duration) {
    let mut interval = tokio::time::interval(tick.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        router.tick();
    }
}
