//! Rare states: named situations a sweep must reach (Antithesis'
//! "sometimes" assertions, TigerBeetle's marks over compound conditions).
//!
//! A core event says that one thing happened; a rare state is one thing
//! happening *while* another holds — a flush failing while writes wait, a
//! job rejected while another region of the same worker waits for its
//! flush, a truncate arriving between a flush's SST put and its commit.
//! Those are the windows the planted bugs live in, and a sweep that never
//! opens one cannot find what hides there. So each is marked where it
//! happens (from the world's hooks and the requests the clients send,
//! never by parsing text), every run reports how often it reached each,
//! a sweep counts the seeds that reached each, and `fault_coverage` fails a
//! big enough sweep that left one at zero.
//!
//! Each reach also records the fault-draw index at that moment: where
//! `flushsim explore` splits a timeline to try other futures from there.
//!
//! Watching never steers the run: nothing here draws randomness, sleeps or
//! answers anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::ids::RegionId;
use flush_core::request::{FlushReason, Request};

use crate::world::crash::CrashWindow;

macro_rules! rare_states {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        /// One named rare state.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RareState { $(#[doc = $doc] $variant,)* }

        impl RareState {
            /// Every rare state, in report order.
            pub const ALL: &'static [RareState] = &[$(RareState::$variant,)*];

            /// The name reports, JSON and replay lines use.
            pub const fn as_str(self) -> &'static str {
                match self { $(RareState::$variant => $name,)* }
            }

            /// What the state is, in one line (the summary's table).
            pub const fn describe(self) -> &'static str {
                match self { $(RareState::$variant => $doc,)* }
            }
        }
    };
}

rare_states! {
    FlushFailedWithStalledWrites = "flush_failed_with_stalled_writes":
        "a flush fails while writes are stalled on memory",
    FlushFailedWithQueuedWrites = "flush_failed_with_queued_writes":
        "a flush fails while writes of its region wait behind a DDL",
    AlterBehindFailedFlush = "alter_behind_failed_flush":
        "an alter waits behind a flush that then fails",
    DowngradeFlushFailedAfterMerge = "downgrade_flush_failed_after_merge":
        "a flush serving a downgrade fails after being merged with another flush request",
    FlushFailedTwice = "flush_failed_twice":
        "a region's flush fails again before any of its flushes commits",
    RejectedWhileOtherRegionWaits = "rejected_while_other_region_waits":
        "a flush job is rejected while another region of the worker waits for its flush",
    WaitersFailedByRejection = "waiters_failed_by_rejection":
        "requests waiting on a flush are answered with the job's rejection",
    StallWithNoFlushRunning = "stall_with_no_flush_running":
        "a write stalls while no flush job runs anywhere",
    PeriodicFlushWhileStalled = "periodic_flush_while_stalled":
        "a periodic flush is scheduled while writes are stalled",
    NotifyFullAtRetryLimit = "notify_full_at_retry_limit":
        "a flush result meets a full worker queue at its retry limit",
    TruncateInCommitWindow = "truncate_in_commit_window":
        "a truncate is sent between a flush's SST put and its commit",
    DropInCommitWindow = "drop_in_commit_window":
        "a drop is sent between a flush's SST put and its commit",
    CommitInDoubtThenCommitted = "commit_in_doubt_then_committed":
        "a manifest commit reported failed was saved, and its flush learns it committed",
    CommitInDoubtThenFailed = "commit_in_doubt_then_failed":
        "a manifest commit reported failed was saved, and its flush ends failed",
    CrashWithDdlWaiting = "crash_with_ddl_waiting":
        "the engine crashes while a DDL waits behind a flush",
    CrashWithWritesStalled = "crash_with_writes_stalled":
        "the engine crashes while writes are stalled",
    StopWithFlushRunning = "stop_with_flush_running":
        "the engine stops gracefully while a flush job runs",
}

impl fmt::Display for RareState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RareState {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        RareState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| format!("no rare state named {name:?}"))
    }
}

/// How often a run reached a rare state, and the fault-draw index of its
/// first reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub count: u64,
    pub first_draw: u64,
}

/// A flush of one region, from its scheduling to its end.
#[derive(Clone, Debug, Default)]
struct FlushWatch {
    /// Why it was scheduled, when this watch saw it scheduled.
    reason: Option<FlushReason>,
    /// Another flush request joined it.
    merged: bool,
    /// It serves a downgrade and was merged with another request (the
    /// downgrade's into a running flush, or another into the downgrade's).
    merged_downgrade: bool,
    /// Its SSTs are written and its commit has not ended.
    in_commit_window: bool,
    /// A DDL of the region waits for it.
    ddl_waiting: bool,
    /// Writes of the region wait behind such a DDL.
    writes_waiting: bool,
}

/// What the watcher needs from the world at the moment of an event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moment {
    /// Fault draws made so far in the run.
    pub draw: u64,
    /// Writes stalled in the engine's buffer.
    pub stalled_writes: usize,
    /// Flush jobs the engine counts as running.
    pub flushes_running: usize,
}

/// The settings a watcher needs from the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchSettings {
    pub workers: u32,
    pub notify_retry_limit: u32,
    /// A trigger switched off: how a test shows that a sweep which never
    /// reaches a state fails `fault_coverage`.
    pub silenced: Option<RareState>,
}

/// Watches one run for rare states.
#[derive(Debug, Default)]
pub struct RareStates {
    settings: WatchSettings,
    flushes: BTreeMap<RegionId, FlushWatch>,
    /// Regions whose last flush failed, with how many failed in a row.
    failures_in_a_row: BTreeMap<RegionId, u32>,
    /// Regions with a saved commit their flush job thinks failed.
    in_doubt: BTreeSet<RegionId>,
    /// Stalled writes at the last event that said.
    last_stalled: usize,
    /// Regions whose manifest says they are downgrading.
    downgrading: BTreeSet<RegionId>,
    reached: BTreeMap<RareState, Reach>,
}

/// What the ledger says about one region's waiting requests, looked up
/// only for the events that need it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Waiting {
    pub alter: bool,
}

impl RareStates {
    pub fn new(settings: WatchSettings) -> Self {
        RareStates {
            settings,
            ..RareStates::default()
        }
    }

    /// Every state reached, with its count and first draw.
    pub fn reached(&self) -> &BTreeMap<RareState, Reach> {
        &self.reached
    }

    fn reach(&mut self, state: RareState, moment: &Moment) {
        if self.settings.silenced == Some(state) {
            return;
        }
        self.reached
            .entry(state)
            .and_modify(|reach| reach.count += 1)
            .or_insert(Reach {
                count: 1,
                first_draw: moment.draw,
            });
    }

    fn worker_of(&self, region_id: RegionId) -> u64 {
        region_id.0 % u64::from(self.settings.workers.max(1))
    }

    /// Does the event's region fail need the ledger? (Then the caller
    /// looks up [`Waiting`] before calling [`RareStates::on_core_event`].)
    pub fn needs_waiting(event: &CoreEvent) -> Option<RegionId> {
        match event {
            CoreEvent::FlushFailed { region_id, .. } => Some(*region_id),
            _ => None,
        }
    }

    /// An event of the core, at `moment`.
    pub fn on_core_event(&mut self, event: &CoreEvent, moment: &Moment, waiting: Waiting) {
        self.last_stalled = moment.stalled_writes;
        match event {
            CoreEvent::FlushScheduled { region_id, reason } => {
                if *reason == FlushReason::Periodically && moment.stalled_writes > 0 {
                    self.reach(RareState::PeriodicFlushWhileStalled, moment);
                }
                self.flushes.insert(
                    *region_id,
                    FlushWatch {
                        reason: Some(*reason),
                        ..FlushWatch::default()
                    },
                );
            }
            CoreEvent::FlushMerged { region_id } => {
                let downgrading = self.downgrading.contains(region_id);
                let watch = self.watch(*region_id);
                watch.merged = true;
                watch.merged_downgrade |=
                    downgrading || watch.reason == Some(FlushReason::Downgrading);
            }
            CoreEvent::FlushJobStarted { region_id, .. } => {
                self.watch(*region_id).in_commit_window = false;
            }
            CoreEvent::SstWritten { region_id, .. } => {
                self.watch(*region_id).in_commit_window = true;
            }
            CoreEvent::DdlQueued { region_id } => self.watch(*region_id).ddl_waiting = true,
            CoreEvent::WriteQueuedBehindDdl { region_id } => {
                self.watch(*region_id).writes_waiting = true;
            }
            CoreEvent::FlushCommitted { region_id, .. } => self.on_committed(*region_id, moment),
            CoreEvent::FlushFailed { region_id, .. } => {
                self.on_failed(*region_id, moment, waiting);
            }
            CoreEvent::FlushApplied { region_id }
            | CoreEvent::StaleFlushIgnored { region_id }
            | CoreEvent::FreezeFailed { region_id } => {
                self.flushes.remove(region_id);
            }
            CoreEvent::JobRejected { region_id } => self.on_rejected(*region_id, moment),
            CoreEvent::PendingFailed { kind, .. } if *kind == ErrorKind::JobRejected => {
                self.reach(RareState::WaitersFailedByRejection, moment);
            }
            CoreEvent::WriteStalled { .. } if moment.flushes_running == 0 => {
                self.reach(RareState::StallWithNoFlushRunning, moment);
            }
            CoreEvent::NotifyRetried { attempt, .. }
                if *attempt >= self.settings.notify_retry_limit.max(1) =>
            {
                self.reach(RareState::NotifyFullAtRetryLimit, moment);
            }
            _ => {}
        }
    }

    fn watch(&mut self, region_id: RegionId) -> &mut FlushWatch {
        self.flushes.entry(region_id).or_default()
    }

    fn on_committed(&mut self, region_id: RegionId, moment: &Moment) {
        if self.in_doubt.remove(&region_id) {
            self.reach(RareState::CommitInDoubtThenCommitted, moment);
        }
        self.failures_in_a_row.remove(&region_id);
        self.watch(region_id).in_commit_window = false;
    }

    fn on_failed(&mut self, region_id: RegionId, moment: &Moment, waiting: Waiting) {
        if self.in_doubt.remove(&region_id) {
            self.reach(RareState::CommitInDoubtThenFailed, moment);
        }
        if moment.stalled_writes > 0 {
            self.reach(RareState::FlushFailedWithStalledWrites, moment);
        }
        let failures = self.failures_in_a_row.entry(region_id).or_default();
        *failures += 1;
        if *failures >= 2 {
            self.reach(RareState::FlushFailedTwice, moment);
        }
        let flush = self.flushes.remove(&region_id).unwrap_or_default();
        if flush.writes_waiting {
            self.reach(RareState::FlushFailedWithQueuedWrites, moment);
        }
        if flush.ddl_waiting && waiting.alter {
            self.reach(RareState::AlterBehindFailedFlush, moment);
        }
        if flush.merged_downgrade {
            self.reach(RareState::DowngradeFlushFailedAfterMerge, moment);
        }
    }

    fn on_rejected(&mut self, region_id: RegionId, moment: &Moment) {
        self.flushes.remove(&region_id);
        let worker = self.worker_of(region_id);
        let other_waits = self
            .flushes
            .keys()
            .any(|other| *other != region_id && self.worker_of(*other) == worker);
        if other_waits {
            self.reach(RareState::RejectedWhileOtherRegionWaits, moment);
        }
    }

    /// A client or the injector sends `request`.
    pub fn on_request(&mut self, request: &Request, moment: &Moment) {
        let state = match request {
            Request::Truncate { .. } => RareState::TruncateInCommitWindow,
            Request::Drop { .. } => RareState::DropInCommitWindow,
            _ => return,
        };
        let in_window = self
            .flushes
            .get(&request.region_id())
            .is_some_and(|flush| flush.in_commit_window);
        if in_window {
            self.reach(state, moment);
        }
    }

    /// The manifest of `region_id` now says `downgrading` or not.
    pub fn on_leader_state(&mut self, region_id: RegionId, downgrading: bool) {
        if downgrading {
            self.downgrading.insert(region_id);
        } else {
            self.downgrading.remove(&region_id);
        }
    }

    /// A saved flush edit of `region_id` was reported failed.
    pub fn on_commit_in_doubt(&mut self, region_id: RegionId) {
        self.in_doubt.insert(region_id);
    }

    /// The engine crashed or stopped in `window`; `flushes_running` jobs
    /// died with it.
    pub fn on_engine_gone(&mut self, window: CrashWindow, moment: &Moment) {
        if window == CrashWindow::GracefulStop {
            if moment.flushes_running > 0 {
                self.reach(RareState::StopWithFlushRunning, moment);
            }
        } else {
            if self.flushes.values().any(|flush| flush.ddl_waiting) {
                self.reach(RareState::CrashWithDdlWaiting, moment);
            }
            if self.last_stalled > 0 {
                self.reach(RareState::CrashWithWritesStalled, moment);
            }
        }
        self.flushes.clear();
        self.in_doubt.clear();
        self.failures_in_a_row.clear();
        self.downgrading.clear();
        self.last_stalled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_parse_back() {
        let names: BTreeSet<&str> = RareState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), RareState::ALL.len());
        for state in RareState::ALL {
            assert!(state
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(state.as_str().parse::<RareState>(), Ok(*state));
        }
        assert!(RareState::ALL.len() >= 15, "issue 15 asks for at least 15");
    }

    fn moment(draw: u64) -> Moment {
        Moment {
            draw,
            ..Moment::default()
        }
    }

    #[test]
    fn a_truncate_between_sst_and_commit_is_reached_once_with_its_first_draw() {
        let mut watch = RareStates::new(WatchSettings {
            workers: 1,
            notify_retry_limit: 5,
            silenced: None,
        });
        let region_id = RegionId(3);
        let truncate = Request::Truncate { region_id };
        watch.on_request(&truncate, &moment(1));
        let sst = CoreEvent::SstWritten {
            region_id,
            file_id: flush_core::ids::FileId(1),
            rows: 1,
        };
        watch.on_core_event(&sst, &moment(2), Waiting::default());
        watch.on_request(&truncate, &moment(7));
        watch.on_request(&truncate, &moment(9));
        assert_eq!(
            watch.reached().get(&RareState::TruncateInCommitWindow),
            Some(&Reach {
                count: 2,
                first_draw: 7
            })
        );
    }

    #[test]
    fn a_silenced_state_is_never_reached() {
        let mut watch = RareStates::new(WatchSettings {
            workers: 2,
            notify_retry_limit: 5,
            silenced: Some(RareState::RejectedWhileOtherRegionWaits),
        });
        let scheduled = |id| CoreEvent::FlushScheduled {
            region_id: RegionId(id),
            reason: FlushReason::Manual,
        };
        watch.on_core_event(&scheduled(2), &moment(0), Waiting::default());
        let rejected = CoreEvent::JobRejected {
            region_id: RegionId(4),
        };
        watch.on_core_event(&rejected, &moment(0), Waiting::default());
        assert!(watch.reached().is_empty());
    }
}
