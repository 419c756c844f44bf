//! The core's event sink: every state transition goes into the trace and
//! is counted as a mark; flush-job starts and ends are tracked so the
//! `scheduler_state` oracle can see two jobs of one region overlap, and
//! committed flushes until their worker applies them, so the `recovery`
//! check knows when a region's SSTs and memtables may overlap.
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
use crate::check::Check;

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

    fn track_flush_jobs(&self, event: &CoreEvent) {
        match event {
            CoreEvent::FlushJobStarted { region_id, epoch } => {
                let overlapping = self.world.with(|state| {
                    let job = state.current_job?;
                    let overlapping = state
                        .flush_jobs_running
                        .iter()
                        .find(|(_, running)| **running == (*region_id, *epoch))
                        .map(|(other, _)| *other);
                    state.flush_jobs_running.insert(job, (*region_id, *epoch));
                    overlapping.map(|other| (job, other))
                });
                if let Some((job, other)) = overlapping {
                    self.world.violation(
                        Check::SchedulerState,
                        format!(
                            "expected at most one flush job of {region_id} in epoch {epoch} at a time, \
                             saw job {job} start while job {other} runs"
                        ),
                    );
                }
            }
            CoreEvent::FlushCommitted { region_id, .. }
            | CoreEvent::FlushFailed { region_id, .. } => {
                let committed = matches!(event, CoreEvent::FlushCommitted { .. });
                self.world.with(|state| {
                    if let Some(job) = state.current_job {
                        state.flush_jobs_running.remove(&job);
                    }
                    if committed {
                        *state.flushes_unapplied.entry(*region_id).or_default() += 1;
                    }
                    state.commits_in_doubt.remove(region_id);
                });
            }
            CoreEvent::FlushApplied { region_id } | CoreEvent::StaleFlushIgnored { region_id } => {
                self.world.with(|state| {
                    if let Some(count) = state.flushes_unapplied.get_mut(region_id) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            state.flushes_unapplied.remove(region_id);
                        }
                    }
                });
            }
            CoreEvent::EngineFullFlush {
                region_id,
                picked_bytes,
                largest_bytes,
            } if picked_bytes < largest_bytes => {
                self.world.violation(
                    Check::SchedulerState,
                    format!(
                        "expected an engine-full flush to pick the largest mutable memtable \
                         ({largest_bytes} bytes), saw {region_id} picked with {picked_bytes} bytes"
                    ),
                );
            }
            _ => {}
        }
    }

    fn check_buffer(&self) {
        let Some(buffer) = self.buffer.get() else {
            return;
        };
        let (active, used) = (buffer.active_bytes(), buffer.used_bytes());
        if active > used {
            self.world.violation(
                Check::BufferAccounting,
                format!("expected active <= used, saw active {active} > used {used}"),
            );
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
            state.trace.record(now, "core", format!("{event:?}"));
        });
        self.track_flush_jobs(&event);
        self.check_buffer();
    }
}
