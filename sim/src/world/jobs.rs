//! The job scheduler: flush jobs run as madsim tasks on the engine's node;
//! sometimes a job is refused (`job_rejection`), starts late (`slow_io`),
//! is accepted and then dropped without running (`job_lost`), or panics
//! inside (`job_panic`, through [`panic_point`] in the stores it calls).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use flush_core::ids::RegionId;
use flush_core::ports::{Job, JobRejected, JobScheduler};

use super::World;
use crate::plan::FaultClass;

pub struct SimJobScheduler {
    world: Arc<World>,
}

impl SimJobScheduler {
    pub fn new(world: Arc<World>) -> Self {
        SimJobScheduler { world }
    }
}

impl JobScheduler for SimJobScheduler {
    fn schedule(&self, job: Job) -> Result<(), JobRejected> {
        if self
            .world
            .inject(FaultClass::JobRejection, None, "schedule")
        {
            return Err(JobRejected {
                reason: "injected: job queue full".to_string(),
            });
        }
        let lost = self
            .world
            .inject(FaultClass::JobLost, None, "accepted, then dropped");
        let start_delay = self.world.io_delay(None, "job start");
        let id = self.world.with(|state| state.next_job_id());
        self.world.trace(
            "jobs",
            format_args!("spawn job {id}, starts in {start_delay:?}"),
        );
        let world = self.world.clone();
        let job = TaggedJob {
            world: self.world.clone(),
            id,
            job,
        };
        // Spawned on the current node: workers call this, so jobs run on the
        // engine's node and die with it when the engine crashes.
        drop(madsim::task::spawn(async move {
            super::sleep(start_delay).await;
            if lost {
                world.trace("jobs", format_args!("job {id} dropped without running"));
                drop(job);
                return;
            }
            job.await;
        }));
        Ok(())
    }
}

/// A job that names itself while it is polled, so the event sink can tell
/// which job an event comes from (the core's events do not say).
struct TaggedJob {
    world: Arc<World>,
    id: u64,
    job: Job,
}

impl Future for TaggedJob {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let id = self.id;
        let previous = self.world.with(|state| state.current_job.replace(id));
        let poll = self.job.as_mut().poll(cx);
        self.world.with(|state| state.current_job = previous);
        poll
    }
}

/// Where a flush job may panic (`job_panic`): called by the stores on a
/// flush's path. The panic unwinds with `resume_unwind`, which skips the
/// panic hook: an injected panic is expected and prints nothing. The core
/// must catch it inside the job; one that escapes fails the run.
/// `saved` says the region's flush edit is already in the manifest: until
/// the job reads it back, the commit is in doubt.
pub fn panic_point(world: &World, region_id: RegionId, what: &str, saved: bool) {
    if world.inject(FaultClass::JobPanic, Some(region_id), what) {
        world.trace("jobs", format_args!("{region_id}: flush job panics {what}"));
        if saved {
            world.hooks().on_commit_in_doubt(region_id);
        }
        std::panic::resume_unwind(Box::new(format!("injected: panic {what}")));
    }
}
