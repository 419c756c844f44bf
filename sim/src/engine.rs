//! The engine under test as the simulation runs it: N region workers, each a
//! madsim task looping over its queue on the engine's node, sharing one
//! write-buffer manager.
//!
//! Every worker sits behind an async mutex that its loop holds while it
//! handles a request, so whoever inspects a worker sees it between two
//! requests, the points where the core's invariants must hold.
//!
//! The engine runs on a node of its own, so a crash (issue 8) can kill it
//! and everything it spawned (flush jobs included) in one go and start a
//! new one from the same world.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
use flush_core::ids::RegionId;
use flush_core::memtable::Row;
use flush_core::ports::Ports;
use flush_core::request::WorkerRequest;
use flush_core::worker::{RegionWorker, WorkerConfig, WorkerView};
use futures::channel::mpsc;
use futures::lock::Mutex as AsyncMutex;
use futures::StreamExt;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::JoinHandle;

use crate::plan::Workload;
use crate::world::notifier::{WorkerInbox, WorkerRouter};
use crate::world::World;

type SharedWorker = Arc<AsyncMutex<RegionWorker>>;

/// A worker as a visitor sees it, between two requests.
pub struct Visit<'a> {
    pub worker: &'a RegionWorker,
    /// A `MemoryFreed` waits in its queue, not yet handled.
    pub memory_freed_queued: bool,
}

pub struct Engine {
    world: Arc<World>,
    router: Arc<WorkerRouter>,
    workers: Vec<SharedWorker>,
    memory_freed_flags: Vec<Arc<AtomicBool>>,
    loops: Vec<JoinHandle<()>>,
    node: NodeHandle,
}

impl Engine {
    /// Starts `workload.workers` workers on a fresh node. Must run inside
    /// the runtime.
    pub fn start(
        workload: &Workload,
        bugs: Bugs,
        ports: Ports,
        router: Arc<WorkerRouter>,
        buffer: Arc<WriteBufferManager>,
        world: Arc<World>,
    ) -> Engine {
        let node = Handle::current().create_node().name("engine").build();
        let mut inboxes = Vec::new();
        let mut workers = Vec::new();
        let mut loops = Vec::new();
        let mut memory_freed_flags = Vec::new();
        for worker_id in 0..workload.workers.max(1) {
            let config = WorkerConfig {
                worker_id,
                max_stalled_writes: workload.max_stalled_writes,
                notify_retry_limit: workload.notify_retry_limit,
                notify_retry_backoff_ms: workload.notify_retry_backoff_ms,
                bugs,
            };
            let worker = RegionWorker::new(config, ports.clone(), buffer.clone(), router.clone());
            let worker = Arc::new(AsyncMutex::new(worker));
            let (sender, receiver) = mpsc::unbounded();
            let memory_freed_queued = Arc::new(AtomicBool::new(false));
            inboxes.push(WorkerInbox {
                sender,
                memory_freed_queued: memory_freed_queued.clone(),
            });
            memory_freed_flags.push(memory_freed_queued.clone());
            loops.push(node.spawn(worker_loop(worker.clone(), receiver, memory_freed_queued)));
            workers.push(worker);
        }
        router.set_inboxes(inboxes);
        world.trace("engine", format!("started {} workers", workers.len()));
        Engine {
            world,
            router,
            workers,
            memory_freed_flags,
            loops,
            node,
        }
    }

    /// The node the workers and their flush jobs run on; killing it is how
    /// a crash (issue 8) will take the whole engine down at once.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Calls `visit` on every worker in turn, each between two requests.
    /// Returns `false` if a worker stayed busy past `patience` (stuck inside
    /// a request); the workers after it are not visited.
    pub async fn visit(&self, patience: Duration, mut visit: impl FnMut(Visit<'_>)) -> bool {
        for (worker, flag) in self.workers.iter().zip(&self.memory_freed_flags) {
            match madsim::time::timeout(patience, worker.lock()).await {
                Ok(worker) => visit(Visit {
                    worker: &worker,
                    memory_freed_queued: flag.load(Ordering::Relaxed),
                }),
                Err(_) => return false,
            }
        }
        true
    }

    /// Views plus the rows in every open region's memtables.
    pub async fn inspect_with_rows(
        &self,
        patience: Duration,
    ) -> Option<(Vec<WorkerView>, BTreeMap<RegionId, Vec<Row>>)> {
        let mut views = Vec::with_capacity(self.workers.len());
        let mut rows = BTreeMap::new();
        let complete = self
            .visit(patience, |Visit { worker, .. }| {
                let view = worker.inspect();
                for region_id in view.regions.keys() {
                    rows.insert(*region_id, worker.memtable_rows(*region_id));
                }
                views.push(view);
            })
            .await;
        complete.then_some((views, rows))
    }

    /// Closes every queue and waits for the workers to drain, shut down and
    /// drop their regions. Returns whether all of them stopped in time.
    pub async fn stop(self, patience: Duration) -> bool {
        self.router.close_all();
        let Engine {
            world,
            workers,
            loops,
            ..
        } = self;
        drop(workers);
        let stopped = madsim::time::timeout(patience, futures::future::join_all(loops))
            .await
            .is_ok();
        world.trace("engine", format!("stopped: {stopped}"));
        stopped
    }
}

async fn worker_loop(
    worker: SharedWorker,
    mut inbox: mpsc::UnboundedReceiver<WorkerRequest>,
    memory_freed_queued: Arc<AtomicBool>,
) {
    while let Some(request) = inbox.next().await {
        let mut worker = worker.lock().await;
        // Cleared only once the worker is held: a visitor that sees the
        // flag down knows every release of memory was handled.
        if matches!(request, WorkerRequest::MemoryFreed) {
            memory_freed_queued.store(false, Ordering::Relaxed);
        }
        worker.handle(request).await;
    }
    worker.lock().await.shutdown();
}
