//! The core's event sink: every state transition goes into the trace and
//! is counted as a mark, is handed to the run's hooks (its checks), and
//! flush-job starts and ends update the world's record of running jobs
//! (the injector aims its during-flush faults with it).
//!
//! Each engine generation has its own sink; a crashed engine's sink is
//! muted: a dead engine reports nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use flush_core::buffer::WriteBufferManager;
use flush_core::events::CoreEvent;
use flush_core::ports::EventSink;
use flush_core::request::FlushReason;

use super::World;

/// Sim mark: a flush scheduled by the periodic flush.
pub const PERIODIC_FLUSH: &str = "periodic_flush";
/// A region without a WAL flushed because it is being closed.
pub const CLOSING_FLUSH: &str = "closing_flush";

pub struct SimEvents {
    world: Arc<World>,
    /// Set once the engine's buffer manager exists; checked on every event.
    buffer: OnceLock<Arc<WriteBufferManager>>,
    muted: AtomicBool,
}

impl SimEvents {
    pub fn new(world: Arc<World>) -> Self {
        SimEvents {
            world,
            buffer: OnceLock::new(),
            muted: AtomicBool::new(false),
        }
    }

    /// Drops every later event: the engine behind this sink crashed.
    pub fn mute(&self) {
        self.muted.store(true, Ordering::Relaxed);
    }

    pub fn watch_buffer(&self, buffer: Arc<WriteBufferManager>) {
        let _ = self.buffer.set(buffer);
    }

    /// Which flush jobs run, by the job being polled when they start and
    /// end.
    fn track_flush_jobs(&self, event: &CoreEvent) {
        match event {
            CoreEvent::FlushJobStarted { region_id, epoch } => self.world.with(|state| {
                if let Some(job) = state.current_job {
                    state.flush_jobs_running.insert(job, (*region_id, *epoch));
                }
            }),
            CoreEvent::FlushCommitted { .. } | CoreEvent::FlushFailed { .. } => {
                self.world.with(|state| {
                    if let Some(job) = state.current_job {
                        state.flush_jobs_running.remove(&job);
                    }
                });
            }
            _ => {}
        }
    }
}

impl EventSink for SimEvents {
    fn record(&self, event: CoreEvent) {
        self.world.metrics.tally(&event);
        if self.muted.load(Ordering::Relaxed) {
            return;
        }
        let mark = event.mark();
        let now = self.world.now_us();
        let reason_mark = match event {
            CoreEvent::FlushScheduled { reason, .. } => match reason {
                FlushReason::Periodically => Some(PERIODIC_FLUSH),
                FlushReason::Closing => Some(CLOSING_FLUSH),
                _ => None,
            },
            _ => None,
        };
        self.world.with(|state| {
            state.trace.mark(mark);
            if let Some(reason_mark) = reason_mark {
                state.trace.mark(reason_mark);
            }
            state
                .trace
                .record_fields(now, "core", &event, || format!("{event:?}"));
        });
        let buffer = self.buffer.get().map(|buffer| &**buffer);
        self.world
            .hooks()
            .on_core_event(&self.world, &event, buffer);
        self.track_flush_jobs(&event);
    }
}
