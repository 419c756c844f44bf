//! The run's checks as one value: the client ledger, the violations seen
//! while the run goes on, and the bookkeeping the end-of-run checks need.
//!
//! The run owns a [`Checks`] and installs it in the world as its
//! [`Hooks`]: the world's ports call it when something happens, the
//! clients record every request and reply in its ledger, the sampler and
//! the crash judge report what they find through [`Checks::violation`].
//! [`check_run`](super::check_run) judges with it at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use flush_core::buffer::WriteBufferManager;
use flush_core::events::CoreEvent;
use flush_core::ids::RegionId;
use flush_core::manifest::{LeaderState, RegionManifest};
use flush_core::request::Request;

use super::manifest_consistency::SstCache;
use super::rare_states::{Moment, RareStates, Waiting, WatchSettings};
use crate::check::Check;
use crate::ledger::Ledger;
use crate::world::crash::CrashWindow;
use crate::world::hooks::Hooks;
use crate::world::World;

/// Violations seen during the run, by check. Only the first few messages
/// are kept; all are counted.
#[derive(Debug, Default)]
pub struct Violations {
    by_check: BTreeMap<Check, (u64, Vec<String>)>,
}

/// Messages kept per check.
const VIOLATION_MESSAGES_KEPT: usize = 5;

impl Violations {
    pub fn add(&mut self, check: Check, message: String) {
        let (count, messages) = self.by_check.entry(check).or_default();
        *count += 1;
        if messages.len() < VIOLATION_MESSAGES_KEPT {
            messages.push(message);
        }
    }

    /// Count and first messages for `check`.
    pub fn of(&self, check: Check) -> (u64, &[String]) {
        self.by_check
            .get(&check)
            .map_or((0, &[][..]), |(count, messages)| {
                (*count, messages.as_slice())
            })
    }
}

/// Flushes whose rows may be in an SST and in a memtable at once.
#[derive(Debug, Default)]
pub struct FlushBook {
    /// Flushes committed to the manifest whose worker has not applied them
    /// yet, per region.
    pub unapplied: BTreeMap<RegionId, u32>,
    /// Regions whose flush edit the manifest saved while the store
    /// reported a failure (or the job panicked), until the flush job learns
    /// whether it committed.
    pub in_doubt: BTreeSet<RegionId>,
}

impl FlushBook {
    /// True while rows of `region_id` may be both flushed and in memory.
    pub fn overlaps(&self, region_id: RegionId) -> bool {
        self.unapplied.contains_key(&region_id) || self.in_doubt.contains(&region_id)
    }
}

#[derive(Default)]
pub struct Checks {
    ledger: Mutex<Ledger>,
    violations: Mutex<Violations>,
    flushes: Mutex<FlushBook>,
    rare: Mutex<RareStates>,
    /// SSTs read back so far, shared by the recovery checks and the end.
    ssts: Mutex<SstCache>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Checks {
    /// Checks of a run whose rare states are watched with `settings`.
    pub fn new(settings: WatchSettings) -> Self {
        Checks {
            rare: Mutex::new(RareStates::new(settings)),
            ..Checks::default()
        }
    }

    /// The rare states the run reached so far.
    pub fn rare_states(&self) -> MutexGuard<'_, RareStates> {
        lock(&self.rare)
    }

    /// The run's decoded SSTs.
    pub fn ssts(&self) -> MutexGuard<'_, SstCache> {
        lock(&self.ssts)
    }

    /// A client or the injector sends `request`, `draw` fault draws into
    /// the run. Called under the world's lock (hence the draw passed in).
    pub fn on_request(&self, request: &Request, draw: u64) {
        let moment = Moment {
            draw,
            ..Moment::default()
        };
        self.rare_states().on_request(request, &moment);
    }

    /// Rare states the event may complete, judged at this moment.
    fn watch_rare_states(
        &self,
        world: &World,
        event: &CoreEvent,
        buffer: Option<&WriteBufferManager>,
    ) {
        let moment = Moment {
            draw: world.with(|state| state.fault_draws()),
            stalled_writes: buffer.map_or(0, WriteBufferManager::stalled_writes),
            flushes_running: buffer.map_or(0, WriteBufferManager::flushes_running),
        };
        let waiting = RareStates::needs_waiting(event)
            .map(|region_id| self.waiting(region_id))
            .unwrap_or_default();
        self.rare_states().on_core_event(event, &moment, waiting);
    }

    /// Which requests of `region_id` still wait for an answer.
    fn waiting(&self, region_id: RegionId) -> Waiting {
        let alter = self
            .ledger()
            .pending()
            .any(|entry| entry.region_id == region_id && entry.kind == "alter");
        Waiting { alter }
    }

    /// Every request the clients sent and what each got.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    pub fn violations(&self) -> MutexGuard<'_, Violations> {
        lock(&self.violations)
    }

    pub fn flushes(&self) -> MutexGuard<'_, FlushBook> {
        lock(&self.flushes)
    }

    /// Records a violation of `check`, and traces it where it happened.
    pub fn violation(&self, world: &World, check: Check, message: String) {
        world.trace("VIOLATE", format_args!("{check}: {message}"));
        self.violations().add(check, message);
    }

    /// `scheduler_state`: one flush job per region and epoch at a time.
    fn check_job_start(&self, world: &World, region_id: RegionId, epoch: u64) {
        let overlapping = world.with(|state| {
            let job = state.current_job?;
            let other = state
                .flush_jobs_running
                .iter()
                .find(|(_, running)| **running == (region_id, epoch))
                .map(|(other, _)| *other)?;
            Some((job, other))
        });
        if let Some((job, other)) = overlapping {
            self.violation(
                world,
                Check::SchedulerState,
                format!(
                    "expected at most one flush job of {region_id} in epoch {epoch} at a time, \
                     saw job {job} start while job {other} runs"
                ),
            );
        }
    }

    fn track_flush(&self, event: &CoreEvent) {
        let mut flushes = self.flushes();
        match event {
            CoreEvent::FlushCommitted { region_id, .. } => {
                *flushes.unapplied.entry(*region_id).or_default() += 1;
                flushes.in_doubt.remove(region_id);
            }
            CoreEvent::FlushFailed { region_id, .. } => {
                flushes.in_doubt.remove(region_id);
            }
            CoreEvent::FlushApplied { region_id } | CoreEvent::StaleFlushIgnored { region_id } => {
                if let Some(count) = flushes.unapplied.get_mut(region_id) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        flushes.unapplied.remove(region_id);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Hooks for Checks {
    fn on_core_event(&self, world: &World, event: &CoreEvent, buffer: Option<&WriteBufferManager>) {
        self.watch_rare_states(world, event, buffer);
        match event {
            CoreEvent::FlushJobStarted { region_id, epoch } => {
                self.check_job_start(world, *region_id, *epoch);
            }
            CoreEvent::EngineFullFlush {
                region_id,
                picked_bytes,
                largest_bytes,
            } if picked_bytes < largest_bytes => {
                self.violation(
                    world,
                    Check::SchedulerState,
                    format!(
                        "expected an engine-full flush to pick the largest mutable memtable \
                         ({largest_bytes} bytes), saw {region_id} picked with {picked_bytes} bytes"
                    ),
                );
            }
            _ => self.track_flush(event),
        }
        if let Some(buffer) = buffer {
            let (active, used) = (buffer.active_bytes(), buffer.used_bytes());
            if active > used {
                self.violation(
                    world,
                    Check::BufferAccounting,
                    format!("expected active <= used, saw active {active} > used {used}"),
                );
            }
        }
    }

    /// `monotonic_flush_marks`, as each change lands.
    fn on_manifest_change(
        &self,
        world: &World,
        before: &RegionManifest,
        after: &RegionManifest,
        last_entry_id: u64,
    ) {
        let region_id = after.region_id;
        self.rare_states()
            .on_leader_state(region_id, after.leader_state == LeaderState::Downgrading);
        if after.dropped {
            return;
        }
        if after.flushed_entry_id < before.flushed_entry_id
            || after.flushed_sequence < before.flushed_sequence
        {
            self.violation(
                world,
                Check::MonotonicFlushMarks,
                format!(
                    "manifest of {region_id}: expected flush marks to stay at or above \
                     entry {} / sequence {}, saw entry {} / sequence {}",
                    before.flushed_entry_id,
                    before.flushed_sequence,
                    after.flushed_entry_id,
                    after.flushed_sequence
                ),
            );
        }
        // A region that skips the WAL has no entries to be bounded by.
        if !after.skip_wal
            && after.flushed_entry_id > last_entry_id
            && after.flushed_entry_id > before.flushed_entry_id
        {
            self.violation(
                world,
                Check::MonotonicFlushMarks,
                format!(
                    "manifest of {region_id}: expected flushed entry id <= last WAL entry {last_entry_id}, \
                     saw {}",
                    after.flushed_entry_id
                ),
            );
        }
    }

    fn on_commit_in_doubt(&self, region_id: RegionId) {
        self.flushes().in_doubt.insert(region_id);
        self.rare_states().on_commit_in_doubt(region_id);
    }

    fn on_engine_gone(&self, world: &World, window: CrashWindow, jobs_running: usize) {
        let moment = Moment {
            draw: world.with(|state| state.fault_draws()),
            stalled_writes: 0,
            flushes_running: jobs_running,
        };
        self.rare_states().on_engine_gone(window, &moment);
        let mut flushes = self.flushes();
        flushes.unapplied.clear();
        flushes.in_doubt.clear();
    }
}
