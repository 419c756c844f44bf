//! A flush job's end, reported even when the job never gets there.
//!
//! A job scheduler may accept a job and then drop it without running it to
//! the end (a runtime shutting down, a pool that loses its queue). The
//! worker would then wait forever: the region's flush status stays
//! "running", its waiters are never answered, and the buffer counts a
//! flush that no longer exists. So every accepted job carries a
//! [`JobEnd`]: dropped before the job finished, it ends the flush in the
//! buffer and reports a `FlushFailed` (`FlushError::JobLost`) to the
//! worker. Its drop cannot wait for a full queue, so a report the queue
//! refuses goes to the worker's [`LostReports`], which the worker reads
//! before every request it handles (a full queue means such a request is
//! coming).
//!
//! A job counts as accepted only once the scheduler said so: a rejected
//! job is dropped inside `schedule`, and its failure is answered there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::task::{end_flush, failure_report, FlushEnv};
use crate::bugs::PlantedBug;
use crate::error::FlushError;
use crate::ids::RegionId;
use crate::ports::NotifyError;
use crate::request::BackgroundNotify;

/// Reports of lost jobs a full queue refused, waiting for the worker.
#[derive(Debug, Default)]
pub struct LostReports(Mutex<Vec<BackgroundNotify>>);

impl LostReports {
    fn push(&self, notify: BackgroundNotify) {
        self.lock().push(notify);
    }

    /// Every waiting report, oldest first.
    pub fn take(&self) -> Vec<BackgroundNotify> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BackgroundNotify>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Held by the scheduler side: says the job was accepted.
pub struct Acceptance(Arc<AtomicBool>);

impl Acceptance {
    /// From now on, dropping the job unfinished reports it lost.
    pub fn accepted(self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Travels inside the job; see the module docs.
pub struct JobEnd {
    env: FlushEnv,
    region_id: RegionId,
    epoch: u64,
    accepted: Arc<AtomicBool>,
    finished: bool,
}

impl JobEnd {
    pub fn new(env: &FlushEnv, region_id: RegionId, epoch: u64) -> (JobEnd, Acceptance) {
        let accepted = Arc::new(AtomicBool::new(false));
        let end = JobEnd {
            env: env.clone(),
            region_id,
            epoch,
            accepted: accepted.clone(),
            finished: false,
        };
        (end, Acceptance(accepted))
    }

    /// The job reported its own end.
    pub fn finished(mut self) {
        self.finished = true;
    }
}

impl Drop for JobEnd {
    fn drop(&mut self) {
        let lost = !self.finished
            && self.accepted.load(Ordering::Acquire)
            && !self.env.bugs.has(PlantedBug::NoGuardOnLostJob);
        if !lost {
            return;
        }
        let region_id = self.region_id;
        let error = FlushError::JobLost { region_id };
        let report = failure_report(&self.env, region_id, self.epoch, error);
        end_flush(&self.env);
        match self.env.notifier.notify(report) {
            Ok(()) | Err(NotifyError::Closed(_)) => {}
            Err(NotifyError::Full(report)) => self.env.lost_reports.push(report),
        }
    }
}
