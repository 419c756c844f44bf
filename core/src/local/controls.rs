//! The controllable ports: held flush jobs, a manual clock, counted
//! faults, the worker's inbox and a recording event sink. The local engine
//! runs on them, and every test rig of the core builds on them (one test
//! kit: each double exists once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use futures::future::{self, BoxFuture};
use futures::FutureExt;

use super::lock;
use crate::events::CoreEvent;
use crate::ids::RegionId;
use crate::ports::{
    Clock, EventSink, FaultPoint, FaultPoints, Job, JobRejected, JobScheduler, MemoryNotifier,
    NotifyError, WorkerNotifier,
};
use crate::request::{BackgroundNotify, WorkerRequest};

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

    /// The oldest held job, to run or to drop (a lost job).
    pub fn pop(&self) -> Option<Job> {
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

/// The worker's inbox for flush results and memory notifications. A test
/// can make it refuse the next `full_next` results as full, close it, or
/// hold results back (`hold_results`) until [`Inbox::release_held`].
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<WorkerRequest>>,
    held: Mutex<VecDeque<BackgroundNotify>>,
    pub full_next: AtomicUsize,
    pub closed: AtomicBool,
    pub hold_results: AtomicBool,
}

impl Inbox {
    fn push(&self, request: WorkerRequest) {
        lock(&self.queue).push_back(request);
    }

    /// The oldest request for the worker.
    pub fn pop(&self) -> Option<WorkerRequest> {
        lock(&self.queue).pop_front()
    }

    /// Stops holding results and queues the held ones, oldest first.
    pub fn release_held(&self) {
        self.hold_results.store(false, Ordering::Relaxed);
        let held: Vec<BackgroundNotify> = lock(&self.held).drain(..).collect();
        for notify in held {
            self.push(WorkerRequest::Background(notify));
        }
    }
}

impl WorkerNotifier for Inbox {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(NotifyError::Closed(notify));
        }
        let full = self
            .full_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if full.is_ok() {
            return Err(NotifyError::Full(notify));
        }
        if self.hold_results.load(Ordering::Relaxed) {
            lock(&self.held).push_back(notify);
        } else {
            self.push(WorkerRequest::Background(notify));
        }
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

/// Every core event, kept in order, for tests to count and inspect.
#[derive(Default)]
pub struct RecordedEvents(Mutex<Vec<CoreEvent>>);

impl RecordedEvents {
    /// How many events carry `mark` (see [`CoreEvent::mark`]).
    pub fn count(&self, mark: &str) -> usize {
        lock(&self.0).iter().filter(|e| e.mark() == mark).count()
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<CoreEvent> {
        lock(&self.0).clone()
    }
}

impl EventSink for RecordedEvents {
    fn record(&self, event: CoreEvent) {
        lock(&self.0).push(event);
    }
}
