//! Flush jobs on a bounded pool: at most `running` jobs at once and
//! `waiting` more queued for a slot; past that a job is refused, as mito2's
//! background scheduler refuses when its queue is full. The core answers a
//! refused job's waiters itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use crate::ports::{Job, JobRejected, JobScheduler};

pub struct TokioJobs {
    slots: Arc<Semaphore>,
    capacity: usize,
    in_flight: Arc<InFlight>,
    closed: AtomicBool,
}

/// Jobs accepted and not yet ended, and a signal when that reaches zero.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Ends a job's count however the job ends: done, panicked or dropped
/// with its runtime.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl TokioJobs {
    pub fn new(running: usize, waiting: usize) -> TokioJobs {
        let running = running.max(1);
        TokioJobs {
            slots: Arc::new(Semaphore::new(running)),
            capacity: running + waiting,
            in_flight: Arc::new(InFlight::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// Jobs accepted and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count.load(Ordering::Acquire)
    }

    /// Refuses every job from now on (the engine is stopping).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Waits until no accepted job is left.
    pub async fn idle(&self) {
        loop {
            let notified = self.in_flight.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl JobScheduler for TokioJobs {
    fn schedule(&self, job: Job) -> Result<(), JobRejected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(JobRejected {
                reason: "the engine is stopping".to_string(),
            });
        }
        let accepted =
            self.in_flight
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                    (count < self.capacity).then_some(count + 1)
                });
        if accepted.is_err() {
            return Err(JobRejected {
                reason: format!("job pool full ({} jobs in flight)", self.capacity),
            });
        }
        let guard = InFlightGuard(self.in_flight.clone());
        let slots = self.slots.clone();
        tokio::spawn(async move {
            let _guard = guard;
            // The semaphore is never closed: a permit always comes.
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            job.await;
        });
        Ok(())
    }
}
