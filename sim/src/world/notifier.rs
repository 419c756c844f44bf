//! Routing into the workers' queues: client requests, flush results from
//! jobs (`WorkerNotifier`, with transient `notify_failure`s) and memory
//! releases (`MemoryNotifier`, which wakes every worker).
//!
//! Regions are placed on workers by `region_id % workers`, fixed for the
//! run. The inboxes can be replaced, so a restarted engine gets fresh queues
//! behind the same router. While an engine restarts, client requests are
//! held (as a client waits for a server to come back) and delivered in
//! order once its regions are reopened.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::error::RequestError;
use flush_core::ids::RegionId;
use flush_core::ports::{MemoryNotifier, NotifyError, WorkerNotifier};
use flush_core::request::{BackgroundNotify, ClientRequest, WorkerRequest};
use futures::channel::mpsc;
use rand::Rng;

use super::World;
use crate::plan::FaultClass;

/// The sending side of one worker's queue.
#[derive(Clone)]
pub struct WorkerInbox {
    pub sender: mpsc::UnboundedSender<WorkerRequest>,
    /// A `MemoryFreed` is already queued: another one would add nothing.
    /// The worker loop clears it when it takes the message.
    pub memory_freed_queued: Arc<AtomicBool>,
}

pub struct WorkerRouter {
    world: Arc<World>,
    inboxes: Mutex<Vec<WorkerInbox>>,
    /// Per region, the further attempts a full queue still refuses. A
    /// `notify_failure` is a burst, not one refusal: a full queue stays full
    /// for a while. Its length is drawn from 1 to twice the core's retry
    /// limit, so the fault stays transient, yet bursts often outlast the
    /// point where the core logs a result as stuck: they must still end in
    /// delivery, never in a dropped result.
    full_for: Mutex<BTreeMap<RegionId, u32>>,
    max_burst: u32,
    /// `Some` while an engine restarts: client requests wait here.
    held: Mutex<Option<VecDeque<ClientRequest>>>,
}

impl WorkerRouter {
    pub fn new(world: Arc<World>, notify_retry_limit: u32) -> Self {
        WorkerRouter {
            world,
            inboxes: Mutex::new(Vec::new()),
            full_for: Mutex::new(BTreeMap::new()),
            max_burst: notify_retry_limit.saturating_mul(2).max(1),
            held: Mutex::new(None),
        }
    }

    fn inboxes(&self) -> MutexGuard<'_, Vec<WorkerInbox>> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_inboxes(&self, inboxes: Vec<WorkerInbox>) {
        *self.inboxes() = inboxes;
    }

    /// Closes every queue: the workers drain and stop.
    pub fn close_all(&self) {
        for inbox in self.inboxes().iter() {
            inbox.sender.close_channel();
        }
    }

    /// Sends a fresh message to every worker; closed queues are skipped.
    pub fn send_to_all(&self, message: impl Fn() -> WorkerRequest) {
        for inbox in self.inboxes().iter() {
            let _ = inbox.sender.unbounded_send(message());
        }
    }

    /// The worker owning `region_id`.
    pub fn worker_of(&self, region_id: RegionId) -> Option<WorkerInbox> {
        let inboxes = self.inboxes();
        if inboxes.is_empty() {
            return None;
        }
        let index = (region_id.0 % inboxes.len() as u64) as usize;
        inboxes.get(index).cloned()
    }

    fn held(&self) -> MutexGuard<'_, Option<VecDeque<ClientRequest>>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on client requests wait until [`Self::release_clients`].
    pub fn hold_clients(&self) {
        self.held().get_or_insert_with(VecDeque::new);
    }

    /// Delivers the held requests in order; returns how many there were.
    pub fn release_clients(&self) -> usize {
        let held = self.held().take().unwrap_or_default();
        let count = held.len();
        for request in held {
            if let Err(refused) = self.send_client_now(request) {
                let region_id = refused.request.region_id();
                refused
                    .responder
                    .send(Err(RequestError::WorkerStopped { region_id }));
            }
        }
        count
    }

    /// Queues a client request, or holds it while the engine restarts;
    /// gives it back if the worker is gone.
    pub fn send_client(&self, request: ClientRequest) -> Result<(), ClientRequest> {
        if let Some(held) = self.held().as_mut() {
            held.push_back(request);
            return Ok(());
        }
        self.send_client_now(request)
    }

    /// Queues a client request even while others are held (the restart's
    /// own reopens).
    pub fn send_client_now(&self, request: ClientRequest) -> Result<(), ClientRequest> {
        let region_id = request.request.region_id();
        let Some(inbox) = self.worker_of(region_id) else {
            return Err(request);
        };
        inbox
            .sender
            .unbounded_send(WorkerRequest::Client(request))
            .map_err(|error| match error.into_inner() {
                WorkerRequest::Client(request) => request,
                _ => unreachable!("a client request comes back as one"),
            })
    }

    fn full_for(&self) -> MutexGuard<'_, BTreeMap<RegionId, u32>> {
        self.full_for
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the region's queue refuses this attempt: the rest of a burst
    /// (while faults are on), or the start of a new one.
    fn queue_full(&self, region_id: RegionId) -> bool {
        if !self.world.faults_on() {
            self.full_for().remove(&region_id);
            return false;
        }
        let left = self.full_for().get(&region_id).copied().unwrap_or(0);
        if left > 0 {
            self.full_for().insert(region_id, left - 1);
            self.world.record_fault(
                FaultClass::NotifyFailure,
                Some(region_id),
                "worker queue still full",
            );
            return true;
        }
        self.full_for().remove(&region_id);
        if !self.world.inject(
            FaultClass::NotifyFailure,
            Some(region_id),
            "worker queue full",
        ) {
            return false;
        }
        let burst = self
            .world
            .with(|state| state.rng().gen_range(1..=self.max_burst));
        self.full_for().insert(region_id, burst - 1);
        true
    }
}

impl WorkerRouter {
    /// Delivers a flush job's result to its region's worker, unless the
    /// queue is (drawn) full or closed. Jobs reach it only through their
    /// generation's [`GenerationNotifier`], the simulator's one
    /// [`WorkerNotifier`].
    fn deliver_result(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        let region_id = notify.region_id();
        if self.queue_full(region_id) {
            return Err(NotifyError::Full(notify));
        }
        let Some(inbox) = self.worker_of(region_id) else {
            return Err(NotifyError::Closed(notify));
        };
        inbox
            .sender
            .unbounded_send(WorkerRequest::Background(notify))
            .map_err(|error| match error.into_inner() {
                WorkerRequest::Background(notify) => NotifyError::Closed(notify),
                _ => unreachable!("a notification comes back as one"),
            })
    }
}

/// The router as one engine generation's flush jobs see it. Once a crash
/// or a stop has begun the next generation, what they report goes nowhere:
/// their engine is dead, and the next one must not hear of jobs it never
/// ran (a lost job's report fires when its task is dropped, which a kill
/// does too).
pub struct GenerationNotifier {
    router: Arc<WorkerRouter>,
    world: Arc<World>,
    generation: u64,
}

impl GenerationNotifier {
    /// For the generation running now.
    pub fn current(router: Arc<WorkerRouter>, world: Arc<World>) -> GenerationNotifier {
        let generation = world.with(|state| state.crash.generation());
        GenerationNotifier {
            router,
            world,
            generation,
        }
    }
}

impl WorkerNotifier for GenerationNotifier {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        if self.world.with(|state| state.crash.generation()) != self.generation {
            return Err(NotifyError::Closed(notify));
        }
        self.router.deliver_result(notify)
    }
}

impl MemoryNotifier for WorkerRouter {
    fn memory_freed(&self) {
        for inbox in self.inboxes().iter() {
            if inbox.memory_freed_queued.swap(true, Ordering::Relaxed) {
                continue;
            }
            if inbox
                .sender
                .unbounded_send(WorkerRequest::MemoryFreed)
                .is_err()
            {
                inbox.memory_freed_queued.store(false, Ordering::Relaxed);
            }
        }
    }
}
