//! The engine under test as the simulation runs it: N region workers, each a
//! madsim task looping over its queue on the engine's node, sharing one
//! write-buffer manager.
//!
//! Every worker sits behind an async mutex that its loop holds while it
//! handles a request, so whoever inspects a worker sees it between two
//! requests, the points where the core's invariants must hold.
//!
//! The engine runs on a node of its own, so a crash can kill it and
//! everything it spawned (flush jobs included) in one go. An
//! [`EngineGeneration`] is one engine with its own buffer manager and event
//! sink over the world's durable stores; [`Engines`] holds the one running
//! now and keeps the crashed ones until the run ends (unpolled, so nothing
//! of theirs answers or reports anything).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
use flush_core::ids::RegionId;
use flush_core::memtable::Row;
use flush_core::ports::Ports;
use flush_core::request::WorkerRequest;
use flush_core::worker::{RegionWorker, WorkerView};
use futures::channel::mpsc;
use futures::lock::Mutex as AsyncMutex;
use futures::StreamExt;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::JoinHandle;

use crate::plan::Workload;
use crate::world::clock::SimClock;
use crate::world::events::SimEvents;
use crate::world::fault_points::SimFaultPoints;
use crate::world::fs::{CrashLoss, SimFs};
use crate::world::jobs::SimJobScheduler;
use crate::world::manifests::SimManifestStore;
use crate::world::notifier::{GenerationNotifier, WorkerInbox, WorkerRouter};
use crate::world::objects::SimObjectStore;
use crate::world::wal::SimWal;
use crate::world::World;

/// The durable part of the world: what survives a crash. The WAL and the
/// manifests are the core's durable stores over one simulated file system.
#[derive(Clone)]
pub struct Stores {
    world: Arc<World>,
    pub fs: Arc<SimFs>,
    pub wal: SimWal,
    pub objects: SimObjectStore,
    pub manifests: SimManifestStore,
}

impl Stores {
    /// `bugs` plants the durable stores' own bugs (the engine's are given
    /// to each engine generation).
    pub fn new(world: &Arc<World>, bugs: Bugs) -> Stores {
        let fs = Arc::new(SimFs::reliable());
        let wal = SimWal::new(world.clone(), fs.clone(), bugs);
        Stores {
            world: world.clone(),
            objects: SimObjectStore::new(world.clone()),
            manifests: SimManifestStore::new(world.clone(), wal.clone(), fs.clone(), bugs),
            wal,
            fs,
        }
    }

    /// A power loss: the file system keeps what was synced (and a drawn
    /// part of what was not), and the stores are opened afresh over it.
    pub fn crash(&self) -> CrashLoss {
        let loss = self.world.with(|state| self.fs.crash(state.rng()));
        self.reopen();
        loss
    }

    /// A new engine process over the same files: the stores are opened
    /// afresh (after a crash, or a graceful stop that lost nothing).
    pub fn reopen(&self) {
        self.wal.reopen();
        self.manifests.reopen();
    }
}

/// One engine from start to crash (or to the end of the run).
pub struct EngineGeneration {
    /// 0 for the first engine, then one more per crash.
    pub number: u64,
    pub engine: Engine,
    pub buffer: Arc<WriteBufferManager>,
    events: Arc<SimEvents>,
}

impl EngineGeneration {
    /// A fresh engine over `stores`: new buffer manager, new workers on a
    /// new node, their queues behind `router`. Must run inside the runtime.
    pub fn start(
        number: u64,
        workload: &Workload,
        bugs: Bugs,
        world: &Arc<World>,
        router: &Arc<WorkerRouter>,
        stores: &Stores,
    ) -> EngineGeneration {
        let events = Arc::new(SimEvents::new(world.clone()));
        let buffer = Arc::new(
            WriteBufferManager::new(workload.global_buffer_bytes).with_notifier(router.clone()),
        );
        events.watch_buffer(buffer.clone());
        let ports = Ports {
            jobs: Arc::new(SimJobScheduler::new(world.clone())),
            objects: Arc::new(stores.objects.clone()),
            manifests: Arc::new(stores.manifests.clone()),
            wal: Arc::new(stores.wal.clone()),
            clock: Arc::new(SimClock::new(world.clone())),
            faults: Arc::new(SimFaultPoints::new(world.clone())),
            events: events.clone(),
        };
        let engine = Engine::start(
            workload,
            bugs,
            ports,
            router.clone(),
            buffer.clone(),
            world.clone(),
        );
        EngineGeneration {
            number,
            engine,
            buffer,
            events,
        }
    }

    /// Kills the engine's node: every worker loop and flush job stops where
    /// it is, and the engine reports nothing more.
    pub fn kill(&self) {
        self.events.mute();
        Handle::current().kill(self.engine.node.id());
    }
}

/// The engine running now, and the crashed ones.
pub struct Engines {
    current: Mutex<Arc<EngineGeneration>>,
    crashed: Mutex<Vec<Arc<EngineGeneration>>>,
}

impl Engines {
    pub fn new(first: EngineGeneration) -> Engines {
        Engines {
            current: Mutex::new(Arc::new(first)),
            crashed: Mutex::new(Vec::new()),
        }
    }

    pub fn current(&self) -> Arc<EngineGeneration> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `next` the running engine; the previous one, already killed,
    /// is kept until [`Self::bury`].
    pub fn replace(&self, next: EngineGeneration) {
        let previous = std::mem::replace(
            &mut *self
                .current
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            Arc::new(next),
        );
        self.crashed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(previous);
    }

    /// Every engine generation whose workers are still alive: the running
    /// one and the crashed ones not yet buried.
    pub fn alive(&self) -> Vec<Arc<EngineGeneration>> {
        let mut alive = self
            .crashed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        alive.push(self.current());
        alive
    }

    /// Drops the crashed engines. Their workers then answer what they still
    /// hold, but every request of theirs was recorded as interrupted at the
    /// crash and nobody listens any more.
    pub fn bury(&self) {
        self.crashed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

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
    loops: Mutex<Vec<JoinHandle<()>>>,
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
        let node = world.create_node("engine");
        let mut inboxes = Vec::new();
        let mut workers = Vec::new();
        let mut loops = Vec::new();
        let mut memory_freed_flags = Vec::new();
        let notifier = Arc::new(GenerationNotifier::current(router.clone(), world.clone()));
        for worker_id in 0..workload.workers.max(1) {
            let config = workload.worker_config(worker_id, bugs);
            let worker = RegionWorker::new(config, ports.clone(), buffer.clone(), notifier.clone());
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
        world.trace("engine", format_args!("started {} workers", workers.len()));
        Engine {
            world,
            router,
            workers,
            memory_freed_flags,
            loops: Mutex::new(loops),
            node,
        }
    }

    /// The node the workers and their flush jobs run on; killing it takes
    /// the whole engine down at once.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Calls `visit` on every worker that is between two requests right
    /// now, and skips the busy ones: no waiting, no timer, no waker, so
    /// looking never moves the run's schedule (the in-run sampling uses
    /// this; `sim/tests/monitoring.rs` holds it to that).
    pub fn visit_idle(&self, mut visit: impl FnMut(Visit<'_>)) {
        for (worker, flag) in self.workers.iter().zip(&self.memory_freed_flags) {
            if let Some(worker) = worker.try_lock() {
                visit(Visit {
                    worker: &worker,
                    memory_freed_queued: flag.load(Ordering::Relaxed),
                });
            }
        }
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
    pub async fn stop(&self, patience: Duration) -> bool {
        self.router.close_all();
        let loops = std::mem::take(
            &mut *self
                .loops
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let stopped = madsim::time::timeout(patience, futures::future::join_all(loops))
            .await
            .is_ok();
        self.world
            .trace("engine", format_args!("stopped: {stopped}"));
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
