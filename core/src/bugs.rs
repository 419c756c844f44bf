//! The planted-bug switchboard.
//!
//! Each [`PlantedBug`] is a small, realistic mistake in this core, switched on
//! at run time so the simulator can prove it catches it. [`Bugs`] is a `Copy`
//! bit set: checking it is one AND, so the bugs cost nothing when off.
//!
//! Only with the `planted-bugs` feature (which the simulator, the tests and
//! the fuzzer enable) can a bug be switched on. Without it [`Bugs`] holds
//! nothing and [`Bugs::has`] is a constant `false`, so a plain build of the
//! core has no switch and its planted branches compile away.

use std::fmt;
use std::str::FromStr;

macro_rules! planted_bugs {
    ($($variant:ident = $name:literal : $doc:literal,)*) => {
        /// A named mistake that can be planted in the core.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum PlantedBug { $(#[doc = $doc] $variant,)* }

        impl PlantedBug {
            /// Every planted bug, in catalogue order.
            pub const ALL: &'static [PlantedBug] = &[$(PlantedBug::$variant,)*];

            /// The name used on the command line.
            pub fn name(self) -> &'static str {
                match self { $(PlantedBug::$variant => $name,)* }
            }

            /// One line saying what goes wrong.
            pub fn description(self) -> &'static str {
                match self { $(PlantedBug::$variant => $doc,)* }
            }
        }
    };
}

planted_bugs! {
    ForgetFreeMem = "forget-free-mem": "a dropped memtable never calls free_mem, so used memory only grows",
    FreeTwice = "free-twice": "a dropped memtable calls free_mem twice",
    ScheduleFreeWithoutFree = "schedule-free-without-free": "a flushed memtable is scheduled for freeing but its memory is never freed",
    ReplyBeforeCommit = "reply-before-commit": "a manual flush is answered Ok before the manifest commit, even if the commit then fails",
    FlushedEntryPastLast = "flushed-entry-past-last": "the flush edit records a flushed entry id one past the last flushed entry",
    DropPendingWritesOnFailure = "drop-pending-writes-on-failure": "a failed flush drops the pending writes' reply senders instead of failing them",
    ForgetPendingDdls = "forget-pending-ddls": "after a successful flush the pending DDLs are never run",
    KeepStatusAfterFlush = "keep-status-after-flush": "the region's flush status is not removed after its last flush, so later DDLs wait forever",
    StallNotRetried = "stall-not-retried": "stalled writes are not retried when memory is freed",
    EngineFullPicksSmallest = "engine-full-picks-smallest": "an engine-full flush picks the region with the smallest mutable memtable",
    SeedNoStallFlush = "seed-no-stall-flush": "seed behaviour: stalled writes with no flush running anywhere trigger no flush",
    SeedFaithfulStatusRemoved = "seed-faithful-status-removed": "seed behaviour: a failed freeze or job submission removes the flush status and drops its pending requests",
    SeedFaithfulRejectedSenders = "seed-faithful-rejected-senders": "seed behaviour: a rejected flush job drops its reply senders",
    SeedFaithfulScheduleNext = "seed-faithful-schedule-next": "seed behaviour: schedule_next_flush tries only the first region with a pending task, even one still flushing, so another waiting region gets no job",
    WalTruncatePastFlushed = "wal-truncate-past-flushed": "after a flush the WAL is truncated one entry past the flushed entry id",
    AckBeforeWalDurable = "ack-before-wal-durable": "a write is acknowledged before its WAL append is durable",
    FlushedEntryBeforeSstDurable = "flushed-entry-before-sst-durable": "a flush hands its SST put to the background and commits the flushed entry id without waiting for the SST to be durable",
    ReplayIgnoresFlushedMarks = "replay-ignores-flushed-marks": "opening a region replays the whole WAL, also entries already in SSTs or truncated",
    DropResultOnFullQueue = "drop-result-on-full-queue": "a flush job stops delivering its result after notify_retry_limit full-queue retries, though the manifest already committed its edit",
    AbandonFlushOnWalTrimFailure = "abandon-flush-on-wal-trim-failure": "when trimming the WAL after a committed flush fails, the worker gives up on the flush: its status stays, its waiters and the requests behind it are never answered",
    WalAckBeforeSync = "wal-ack-before-sync": "the durable WAL acknowledges an append without syncing its segment, so a crash can take an acknowledged write",
    WalReplayPastTornTail = "wal-replay-past-torn-tail": "opening the durable WAL reads around a torn tail but leaves it on disk, so later appends land after garbage and a second open loses them",
    ManifestRenameBeforeSync = "manifest-rename-before-sync": "the manifest store renames its temp file over the manifest before syncing it, so a crash can leave a cut manifest",
    ManifestSkipDirSync = "manifest-skip-dir-sync": "the manifest store does not sync the directory after its rename, so a crash can bring the old manifest back",
    DeleteSstsOnFailedCommit = "delete-ssts-on-failed-commit": "a flush whose manifest commit fails deletes the SSTs it wrote at once, as if every error meant 'not saved', although a commit can be saved and reported failed",
    StopDropsStalledWrites = "stop-drops-stalled-writes": "a worker that stops drops its stalled writes without an answer instead of failing them with a typed error",
    NoGuardOnLostJob = "no-guard-on-lost-job": "a flush job the scheduler accepted and then dropped reports nothing, so its region stays flushing and its waiters wait forever",
    PanicSkipsReadBack = "panic-skips-read-back": "a flush job that panicked inside its manifest commit takes the commit as not saved without reading the manifest back, and deletes SSTs the manifest may list",
    KeepFilesOfFailedFlush = "keep-files-of-failed-flush": "a flush that fails or is refused leaves the SSTs it wrote in the object store, orphans no manifest lists, until some later open happens to purge them",
    VersionForgetsFlushedFiles = "version-forgets-flushed-files": "applying a committed flush frees its memtables and advances the marks but never adds its SSTs to the region's in-memory file list: reads miss the rows until the region reopens",
    EngineFlushWaitsForFull = "engine-flush-waits-for-full": "the engine-wide flush rule fires only once the whole buffer is full, so a worker keeps mutable memory over the flush threshold while nothing flushes",
    WriteIgnoresLeaderState = "write-ignores-leader-state": "a write does not check that its region is writable, so a downgraded (read-only) region keeps acknowledging writes",
    InflightGaugeKeptOnFailure = "inflight-gauge-kept-on-failure": "a failed flush ends in the buffer but not in the exported in-flight gauge, so dashboards show flushes running when none does",
    PeriodicFlushBypassesScheduler = "periodic-flush-bypasses-scheduler": "the periodic flush submits its job directly instead of through the flush scheduler, so it can run beside a flush already running for the same region",
    CloseDropsUnloggedRows = "close-drops-unlogged-rows": "closing a region that skips the WAL drops its memtables without flushing them, so rows acknowledged before an orderly close are gone",
    SstDropsAddedFields = "sst-drops-added-fields": "a flush writes only the base columns, dropping the fields alters added, so values written after an alter read back null",
    OpenAsLeader = "open-as-leader": "opening a region makes it a writable leader at once instead of a follower, so two openers of one region both accept writes",
    AlterSkipsFlushWait = "alter-skips-flush-wait": "an alter is applied at once while its region's memtables still hold rows, instead of waiting for their flush; only the core's own pre-condition (an alter finds its memtables empty) sees it",
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parse error for an unknown bug name; lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug '{given}'; known bugs: {known}")]
pub struct UnknownBug {
    pub given: String,
    pub known: String,
}

impl FromStr for PlantedBug {
    type Err = UnknownBug;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        PlantedBug::ALL
            .iter()
            .copied()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| UnknownBug {
                given: name.to_string(),
                known: PlantedBug::ALL
                    .iter()
                    .map(|bug| bug.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The set of planted bugs switched on for one run. Empty by default;
/// zero-sized, and always empty, without the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs(#[cfg(feature = "planted-bugs")] u64);

/// The planted bugs whose whole point is a flush status left with no job
/// and no task (found by running each with the post-condition on).
const SCHEDULER_INVARIANT_BREAKERS: &[PlantedBug] = &[
    PlantedBug::KeepStatusAfterFlush,
    PlantedBug::SeedFaithfulScheduleNext,
];

/// The planted bugs that free a memtable's bytes more than once, so the
/// buffer can count less than the worker's own memtables hold.
const BUFFER_POST_CONDITION_BREAKERS: &[PlantedBug] = &[PlantedBug::FreeTwice];

impl Bugs {
    #[cfg(feature = "planted-bugs")]
    pub const NONE: Bugs = Bugs(0);
    #[cfg(not(feature = "planted-bugs"))]
    pub const NONE: Bugs = Bugs();

    #[cfg(feature = "planted-bugs")]
    pub fn only(bug: PlantedBug) -> Bugs {
        Bugs::NONE.with(bug)
    }

    #[cfg(feature = "planted-bugs")]
    pub fn with(self, bug: PlantedBug) -> Bugs {
        Bugs(self.0 | 1 << bug as u32)
    }

    #[cfg(feature = "planted-bugs")]
    #[inline]
    pub fn has(self, bug: PlantedBug) -> bool {
        self.0 & (1 << bug as u32) != 0
    }

    /// Always `false`: this build has no bug switch.
    #[cfg(not(feature = "planted-bugs"))]
    #[inline]
    pub const fn has(self, _bug: PlantedBug) -> bool {
        false
    }

    pub fn is_empty(self) -> bool {
        self.iter().next().is_none()
    }

    /// Whether a bug switched on breaks the scheduler's invariants (each
    /// status flushing or pending) on purpose: only those relax the
    /// worker's post-condition, so every other bug still runs under it.
    pub fn breaks_scheduler_invariants(self) -> bool {
        SCHEDULER_INVARIANT_BREAKERS
            .iter()
            .any(|bug| self.has(*bug))
    }

    /// Whether a bug switched on frees memory it does not own, so the
    /// worker's buffer post-condition (the buffer counts at least what the
    /// worker's own memtables hold) is relaxed for it and for it only.
    pub fn breaks_buffer_post_condition(self) -> bool {
        BUFFER_POST_CONDITION_BREAKERS
            .iter()
            .any(|bug| self.has(*bug))
    }

    /// The bugs switched on, in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = PlantedBug> {
        PlantedBug::ALL
            .iter()
            .copied()
            .filter(move |bug| self.has(*bug))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<_> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
        for bug in PlantedBug::ALL {
            assert_eq!(bug.name().parse::<PlantedBug>(), Ok(*bug));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PlantedBug::ALL.len());
        assert!(PlantedBug::ALL.len() >= 12 && PlantedBug::ALL.len() <= 64);
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = "nope".parse::<PlantedBug>().unwrap_err();
        assert!(err.to_string().contains("forget-free-mem"), "{err}");
    }

    /// Without the feature there is nothing to switch: `Bugs` has no
    /// bits and answers no to every bug.
    #[cfg(not(feature = "planted-bugs"))]
    #[test]
    fn a_build_without_the_feature_has_no_bug_switch() {
        assert_eq!(std::mem::size_of::<Bugs>(), 0);
        assert!(PlantedBug::ALL.iter().all(|bug| !Bugs::NONE.has(*bug)));
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn set_membership() {
        let bugs = Bugs::only(PlantedBug::FreeTwice).with(PlantedBug::ForgetPendingDdls);
        assert!(bugs.has(PlantedBug::FreeTwice));
        assert!(bugs.has(PlantedBug::ForgetPendingDdls));
        assert!(!bugs.has(PlantedBug::ForgetFreeMem));
        assert_eq!(bugs.iter().count(), 2);
        assert!(Bugs::NONE.is_empty());
    }
}
