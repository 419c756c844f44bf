//! Sweeps: many seeds in parallel (std threads, each run on its own fresh
//! thread), summed up, with the `fault_coverage` check across them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::iter::Peekable;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use flush_core::bugs::Bugs;
use serde::{Deserialize, Serialize};

use crate::budget::StopRule;
use crate::check::Check;
use crate::ledger::RequestCounts;
use crate::oracle::{CheckResult, RareState};
use crate::plan::{FaultClass, Workload, PLAN_GENERATOR_VERSION};
use crate::report::{rare_state_counts, Report, WorkloadChoice};
use crate::run::{run_with, RunOptions};
pub use crate::seeds::{parse_seed_range, SeedRange, SeedSource, Seeds, Shard};
use crate::world::events::{CLOSING_FLUSH, PERIODIC_FLUSH};

/// Core marks (rare branches) a healthy sweep must reach at least once.
pub const REQUIRED_MARKS: &[&str] = &[
    "flush_scheduled",
    "flush_merged",
    "flush_job_started",
    "sst_written",
    "flush_committed",
    "flush_failed",
    "flush_applied",
    "stale_flush_ignored",
    "freeze_failed",
    "job_rejected",
    "notify_retried",
    "write_stalled",
    "stall_released",
    "engine_full_flush",
    "stall_relief_flush",
    "ddl_queued",
    "write_queued_behind_ddl",
    "pending_failed",
    "wal_replayed",
    "orphan_purged",
    "failed_flush_file_removed",
    "periodic_flush",
    "closing_flush",
    "region_altered",
    // Crash windows (sim marks): every one hit somewhere in the sweep.
    "crash_any_time",
    "crash_mid_sst_write",
    "crash_between_sst_and_commit",
    "crash_after_commit",
    "crash_mid_wal_append",
    "wal_unsynced_lost",
    "wal_torn_tail",
    "wal_tail_repaired",
];

/// Below this many seeds `fault_coverage` is reported but not enforced.
pub const COVERAGE_MIN_SEEDS: u64 = 200;

#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub seeds: Seeds,
    pub jobs: usize,
    pub bugs: Bugs,
    pub workload: WorkloadChoice,
    pub shard: Option<Shard>,
    /// When to stop before the end of `seeds` (required for an open range).
    pub stop: StopRule,
    /// A rare state whose trigger is off in every run (tests only: a
    /// sweep that never reaches it must fail `fault_coverage`).
    pub silenced_rare_state: Option<RareState>,
}

impl SweepOptions {
    /// Every one of `seeds` on the sweep's own workload, `jobs` at a time,
    /// unsharded: what tests and measurements ask for.
    pub fn new(seeds: Vec<u64>, jobs: usize, bugs: Bugs) -> Self {
        SweepOptions {
            seeds: Seeds::List(seeds),
            jobs,
            bugs,
            workload: WorkloadChoice::Sweep,
            shard: None,
            stop: StopRule::default(),
            silenced_rare_state: None,
        }
    }

    /// What must match for two sweeps' counts to add up as one sweep's.
    pub fn identity(&self) -> SweepIdentity {
        SweepIdentity {
            flushsim_version: FLUSHSIM_VERSION.to_string(),
            plan_generator_version: PLAN_GENERATOR_VERSION,
            workload: self.workload.name().to_string(),
            bugs: self.bugs.iter().map(|bug| bug.name().to_string()).collect(),
        }
    }
}

/// The version of flushsim that ran a sweep, recorded in its report.
pub const FLUSHSIM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What makes a seed's outcome what it is, besides the seed: the code
/// (flushsim's version), the plan generator, the workload and the planted
/// bugs. Shards merge only when theirs are equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepIdentity {
    pub flushsim_version: String,
    pub plan_generator_version: u32,
    pub workload: String,
    pub bugs: Vec<String>,
}

impl std::fmt::Display for SweepIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flushsim {} with plan generator {}, {} workload, ",
            self.flushsim_version, self.plan_generator_version, self.workload
        )?;
        if self.bugs.is_empty() {
            f.write_str("no bugs")
        } else {
            write!(f, "bugs [{}]", self.bugs.join(", "))
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub seed: u64,
    pub check: String,
    pub message: String,
    pub replay: String,
}

/// Seeds that passed and failed one check.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct CheckTally {
    pub passed: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepSummary {
    pub seeds_run: u64,
    pub seeds_failed: u64,
    pub workload: String,
    pub bugs: Vec<String>,
    /// The flushsim that ran the sweep (a merge refuses mixed versions).
    #[serde(default)]
    pub flushsim_version: String,
    /// [`PLAN_GENERATOR_VERSION`] of the sweep's plans.
    #[serde(default)]
    pub plan_generator_version: u32,
    /// The seed range the sweep covers, before sharding: the range asked
    /// for, or, when it stopped early (`stopped_early`), from its start to
    /// past the last seed it ran. `None` for a seed list that is no range.
    #[serde(default)]
    pub seed_range: Option<String>,
    pub shard: Option<String>,
    /// Why the sweep stopped before the end of its range (a time budget,
    /// `--until-failures`), if it did.
    #[serde(default)]
    pub stopped_early: Option<String>,
    pub requests: RequestCounts,
    pub faults: BTreeMap<String, u64>,
    pub marks: BTreeMap<String, u64>,
    /// Seeds that reached each rare state (every state listed).
    #[serde(default)]
    pub rare_states: BTreeMap<String, u64>,
    pub checks: BTreeMap<String, CheckTally>,
    pub fault_coverage: CheckResult,
    pub failures: Vec<Failure>,
    pub flushes: u64,
    /// Engine crashes, and what the restarts found and checked.
    #[serde(default)]
    pub crashes: u64,
    #[serde(default)]
    pub orphans_purged: u64,
    #[serde(default)]
    pub rows_recovered_checked: u64,
    pub events: u64,
    pub wall_ms: u64,
    pub sim_ms: u64,
    /// Peak resident memory of the sweeping process, in MiB, when the
    /// platform tells (Linux). A sweep of any length must stay bounded: a
    /// figure that grows with the seed count is a leak.
    #[serde(default)]
    pub peak_rss_mb: Option<u64>,
    /// Trace hash per seed, for determinism checks.
    #[serde(skip)]
    pub trace_hashes: BTreeMap<u64, String>,
}

impl SweepSummary {
    /// An empty summary of a sweep of `identity`'s kind: counts start at
    /// zero, every fault class listed.
    pub fn empty(identity: SweepIdentity) -> Self {
        SweepSummary {
            seeds_run: 0,
            seeds_failed: 0,
            workload: identity.workload,
            bugs: identity.bugs,
            flushsim_version: identity.flushsim_version,
            plan_generator_version: identity.plan_generator_version,
            seed_range: None,
            shard: None,
            stopped_early: None,
            requests: RequestCounts::default(),
            faults: FaultClass::ALL
                .iter()
                .map(|class| (class.name().to_string(), 0))
                .collect(),
            marks: BTreeMap::new(),
            rare_states: rare_state_counts(&BTreeMap::new()),
            checks: BTreeMap::new(),
            fault_coverage: CheckResult::pass(Check::FaultCoverage, "not computed"),
            failures: Vec::new(),
            flushes: 0,
            crashes: 0,
            orphans_purged: 0,
            rows_recovered_checked: 0,
            events: 0,
            wall_ms: 0,
            sim_ms: 0,
            peak_rss_mb: None,
            trace_hashes: BTreeMap::new(),
        }
    }

    fn new(options: &SweepOptions) -> Self {
        let mut summary = SweepSummary::empty(options.identity());
        summary.shard = options.shard.map(|shard| shard.to_string());
        summary
    }

    /// What must match for this summary to merge with another.
    pub fn identity(&self) -> SweepIdentity {
        SweepIdentity {
            flushsim_version: self.flushsim_version.clone(),
            plan_generator_version: self.plan_generator_version,
            workload: self.workload.clone(),
            bugs: self.bugs.clone(),
        }
    }

    /// Adds one seed's report.
    pub fn add(&mut self, report: &Report) {
        self.seeds_run += 1;
        self.requests.add(&report.requests);
        for (class, count) in &report.faults {
            *self.faults.entry(class.clone()).or_default() += count;
        }
        for (mark, count) in &report.marks {
            *self.marks.entry(mark.clone()).or_default() += count;
        }
        for (state, count) in &report.rare_states {
            *self.rare_states.entry(state.clone()).or_default() += u64::from(*count > 0);
        }
        for check in &report.checks {
            let tally = self.checks.entry(check.name.clone()).or_default();
            if check.passed {
                tally.passed += 1;
            } else {
                tally.failed += 1;
            }
        }
        if let Some(failed) = report.first_failure() {
            self.seeds_failed += 1;
            self.failures.push(Failure {
                seed: report.seed,
                check: failed.name.clone(),
                message: failed.message.clone(),
                replay: report.replay.clone(),
            });
        }
        self.flushes += report.flushes;
        self.crashes += report.crashes;
        self.orphans_purged += report.orphans_purged;
        self.rows_recovered_checked += report.rows_recovered_checked;
        self.events += report.events;
        self.sim_ms += report.sim_ms;
        self.trace_hashes
            .insert(report.seed, report.trace_hash.clone());
    }

    /// Every seed passed and (for big enough sweeps) coverage held.
    pub fn passed(&self) -> bool {
        self.seeds_failed == 0 && self.fault_coverage.passed
    }

    /// Adds another summary of the same kind (another shard): counts and
    /// tallies sum up. Two fields cannot be summed: `wall_ms` becomes the
    /// longer of the two (shards run side by side) and `peak_rss_mb` the
    /// larger (the biggest single process). `fault_coverage` is left to
    /// [`SweepSummary::conclude`], over the sums.
    pub fn absorb(&mut self, other: &SweepSummary) {
        self.seeds_run += other.seeds_run;
        self.seeds_failed += other.seeds_failed;
        self.requests.add(&other.requests);
        for (class, count) in &other.faults {
            *self.faults.entry(class.clone()).or_default() += count;
        }
        for (mark, count) in &other.marks {
            *self.marks.entry(mark.clone()).or_default() += count;
        }
        for (state, seeds) in &other.rare_states {
            *self.rare_states.entry(state.clone()).or_default() += seeds;
        }
        for (name, tally) in &other.checks {
            let mine = self.checks.entry(name.clone()).or_default();
            mine.passed += tally.passed;
            mine.failed += tally.failed;
        }
        self.failures.extend(other.failures.iter().cloned());
        self.flushes += other.flushes;
        self.crashes += other.crashes;
        self.orphans_purged += other.orphans_purged;
        self.rows_recovered_checked += other.rows_recovered_checked;
        self.events += other.events;
        self.sim_ms += other.sim_ms;
        self.wall_ms = self.wall_ms.max(other.wall_ms);
        self.peak_rss_mb = self.peak_rss_mb.max(other.peak_rss_mb);
        self.trace_hashes.extend(
            other
                .trace_hashes
                .iter()
                .map(|(seed, hash)| (*seed, hash.clone())),
        );
    }

    /// Orders the failures by seed and judges `fault_coverage` over the
    /// counts as they stand.
    pub fn conclude(&mut self) {
        self.failures.sort_by_key(|failure| failure.seed);
        self.fault_coverage = fault_coverage(self);
    }

    /// The seed range this summary covers: `seeds` whole when it ran to
    /// their end, else from their start to past the highest seed run.
    fn covered_range(&self, seeds: &Seeds) -> Option<String> {
        let range = seeds.as_range()?;
        if self.stopped_early.is_none() && range.end.is_some() {
            return Some(range.to_string());
        }
        // Nothing run: an open range, which promises no seed.
        let end = self.trace_hashes.keys().next_back().map(|last| last + 1);
        Some(
            SeedRange {
                start: range.start,
                end,
            }
            .to_string(),
        )
    }

    fn finish(&mut self, seeds: &Seeds, wall_ms: u64) {
        self.wall_ms = wall_ms;
        self.peak_rss_mb = crate::memory::peak_rss_mb();
        self.seed_range = self.covered_range(seeds);
        self.conclude();
    }
}

/// Below this many seeds a rare state at zero is reported but not
/// enforced: each is reached by a few percent of seeds, so a sweep this
/// long misses one only by a chance too small to flake on, and CI's fixed
/// range is this long.
pub const RARE_STATE_MIN_SEEDS: u64 = 500;

/// Marks and rare states no plan of `workload` can reach, which
/// `fault_coverage` therefore does not ask for. The standard workload is
/// pinned, and its settings turn off what makes them: with no periodic
/// flush there is no periodic flush to see (nor one meeting a stall), and
/// with every region on a WAL no region is flushed because it closes. Read
/// from the pinned settings, so a workload that turns them on is asked for
/// them again.
pub fn out_of_reach(workload: WorkloadChoice) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut marks, mut rare_states) = (Vec::new(), Vec::new());
    if workload == WorkloadChoice::Standard {
        let pinned = Workload::standard();
        if pinned.auto_flush_interval_ms.is_none() {
            marks.push(PERIODIC_FLUSH);
            rare_states.push(RareState::PeriodicFlushWhileStalled.as_str());
        }
        if pinned.skip_wal_regions == 0 {
            marks.push(CLOSING_FLUSH);
        }
    }
    (marks, rare_states)
}

/// `fault_coverage`: every fault class injected, every required mark and
/// every rare state reached somewhere in the sweep (of those its workload
/// can reach: [`out_of_reach`]).
pub fn fault_coverage(summary: &SweepSummary) -> CheckResult {
    let workload = WorkloadChoice::from_name(&summary.workload).unwrap_or_default();
    let (marks_out_of_reach, rare_out_of_reach) = out_of_reach(workload);
    let missing_faults = zero_counts(&summary.faults);
    let missing_marks: Vec<&str> = REQUIRED_MARKS
        .iter()
        .copied()
        .filter(|mark| !marks_out_of_reach.contains(mark))
        .filter(|mark| summary.marks.get(*mark).copied().unwrap_or(0) == 0)
        .collect();
    let mut missing_rare = zero_counts(&summary.rare_states);
    missing_rare.retain(|state| !rare_out_of_reach.contains(state));
    let unasked = marks_out_of_reach.len() + rare_out_of_reach.len();
    let out_of_reach_note = if unasked == 0 {
        String::new()
    } else {
        format!(
            " ({} out of the {} workload's reach, not asked for)",
            marks_out_of_reach
                .iter()
                .chain(&rare_out_of_reach)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            workload.name()
        )
    };
    let enforced = summary.seeds_run >= COVERAGE_MIN_SEEDS;
    let rare_enforced = summary.seeds_run >= RARE_STATE_MIN_SEEDS;
    if missing_faults.is_empty() && missing_marks.is_empty() && missing_rare.is_empty() {
        return CheckResult::pass(
            Check::FaultCoverage,
            format!(
                "all {} fault classes, {} marks and {} rare states hit{out_of_reach_note}",
                summary.faults.len(),
                REQUIRED_MARKS.len() - marks_out_of_reach.len(),
                summary.rare_states.len() - rare_out_of_reach.len()
            ),
        );
    }
    let message = format!(
        "{}: expected every fault class, mark and rare state hit at least once in {} seeds, \
         saw none of faults [{}] marks [{}] rare states [{}]{out_of_reach_note}",
        Check::FaultCoverage,
        summary.seeds_run,
        missing_faults.join(", "),
        missing_marks.join(", "),
        missing_rare.join(", ")
    );
    let fails =
        enforced && (!missing_faults.is_empty() || !missing_marks.is_empty() || rare_enforced);
    if fails {
        return CheckResult::fail(Check::FaultCoverage, message);
    }
    let threshold = if enforced {
        RARE_STATE_MIN_SEEDS
    } else {
        COVERAGE_MIN_SEEDS
    };
    CheckResult::pass(
        Check::FaultCoverage,
        format!("not enforced below {threshold} seeds; {message}"),
    )
}

/// The names whose count is zero.
fn zero_counts(counts: &BTreeMap<String, u64>) -> Vec<&str> {
    counts
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Runs every seed of `options`, calling `on_report` as each finishes (in
/// completion order), and sums them up.
pub fn sweep(options: &SweepOptions, mut on_report: impl FnMut(&Report)) -> SweepSummary {
    sweep_resumed(options, None, |report| {
        on_report(report);
        ControlFlow::Continue(())
    })
}

/// [`sweep`] continuing an earlier one: the `prior` summary (read back
/// from its stream) is counted in and its seeds (the keys of its
/// `trace_hashes`) skipped. `on_report` may
/// stop the sweep (say, when its stream can no longer be written): no new
/// seed is drawn after it breaks, and the summary says so.
pub fn sweep_resumed(
    options: &SweepOptions,
    prior: Option<SweepSummary>,
    mut on_report: impl FnMut(&Report) -> ControlFlow<String>,
) -> SweepSummary {
    // Wall time of the sweep, reported, and what a time budget is held to.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let mut summary = SweepSummary::new(options);
    let mut done = BTreeSet::new();
    if let Some(prior) = prior {
        summary.absorb(&prior);
        done.extend(prior.trace_hashes.keys().copied());
    }
    let draw = Draw {
        source: Mutex::new(SeedSource::new(&options.seeds, options.shard, done).peekable()),
        stop: options.stop,
        started,
        failed: AtomicU64::new(summary.seeds_failed),
        stopped: Mutex::new(None),
    };
    let jobs = options.jobs.max(1);
    let run_options = RunOptions {
        keep_trace: false,
        workload: options.workload,
        skip_sampling: false,
        silenced_rare_state: options.silenced_rare_state,
    };
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<Report>();
        for _ in 0..jobs {
            let sender = sender.clone();
            let draw = &draw;
            scope.spawn(move || {
                while let Some(seed) = draw.next() {
                    let plan = options.workload.plan(seed);
                    let report = run_with(&plan, options.bugs, run_options);
                    if !report.passed {
                        draw.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if sender.send(report).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for report in receiver {
            summary.add(&report);
            if let ControlFlow::Break(why) = on_report(&report) {
                draw.cancel(why);
            }
        }
    });
    summary.stopped_early = draw.stopped.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.finish(
        &options.seeds,
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    summary
}

/// The seeds handed to a sweep's threads, one at a time, until they run
/// out or the stop rule trips (checked before each draw).
struct Draw {
    source: Mutex<Peekable<SeedSource>>,
    stop: StopRule,
    started: Instant,
    failed: AtomicU64,
    /// Why no more seeds are drawn, once that is so.
    stopped: Mutex<Option<String>>,
}

impl Draw {
    fn next(&self) -> Option<u64> {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if stopped.is_some() {
            return None;
        }
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        // Every seed drawn: the sweep ran to its end, whatever the clock.
        source.peek()?;
        let failed = self.failed.load(Ordering::Relaxed);
        if let Some(why) = self.stop.tripped(self.started.elapsed(), failed) {
            *stopped = Some(why);
            return None;
        }
        source.next()
    }

    /// Stops the drawing (the first reason given is kept).
    fn cancel(&self, why: String) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        stopped.get_or_insert(why);
    }
}

/// The human summary table, with the first `failures_shown` failures'
/// replay lines.
pub fn render_summary(summary: &SweepSummary, failures_shown: usize) -> String {
    let mut out = String::new();
    let verdict = if summary.passed() { "PASS" } else { "FAIL" };
    let bugs = if summary.bugs.is_empty() {
        String::new()
    } else {
        format!(", bugs [{}]", summary.bugs.join(", "))
    };
    let shard = summary
        .shard
        .as_ref()
        .map_or(String::new(), |shard| format!(", shard {shard}"));
    let _ = writeln!(
        out,
        "{verdict}: {} seeds, {} failed ({} workload{bugs}{shard})",
        summary.seeds_run, summary.seeds_failed, summary.workload
    );
    let row = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "  {name:<24} {value}");
    };
    let r = &summary.requests;
    row(&mut out, "requests issued", r.issued.to_string());
    row(&mut out, "  ok / err", format!("{} / {}", r.ok, r.err));
    row(
        &mut out,
        "  lost / duplicated",
        format!("{} / {}", r.lost, r.duplicated),
    );
    row(&mut out, "  pending at end", r.pending.to_string());
    row(
        &mut out,
        "  interrupted by crashes",
        r.interrupted.to_string(),
    );
    row(&mut out, "flushes committed", summary.flushes.to_string());
    let windows: Vec<String> = summary
        .marks
        .iter()
        .filter_map(|(mark, count)| Some(format!("{}={count}", mark.strip_prefix("crash_")?)))
        .collect();
    row(
        &mut out,
        "crashes",
        format!("{} ({})", summary.crashes, windows.join(" ")),
    );
    row(
        &mut out,
        "  orphan SSTs purged",
        summary.orphans_purged.to_string(),
    );
    row(
        &mut out,
        "  rows judged on reopen",
        summary.rows_recovered_checked.to_string(),
    );
    row(&mut out, "trace events", summary.events.to_string());
    row(
        &mut out,
        "time wall / simulated",
        format!(
            "{:.1} s / {:.1} s",
            summary.wall_ms as f64 / 1_000.0,
            summary.sim_ms as f64 / 1_000.0
        ),
    );
    row(
        &mut out,
        "peak memory (RSS)",
        summary
            .peak_rss_mb
            .map_or_else(|| "unknown".to_string(), |mb| format!("{mb} MiB")),
    );
    let _ = writeln!(out, "  faults injected:");
    for (class, count) in &summary.faults {
        let _ = writeln!(out, "    {class:<24} {count}");
    }
    let _ = writeln!(out, "  rare states (seeds reached):");
    let workload = WorkloadChoice::from_name(&summary.workload).unwrap_or_default();
    let (_, rare_out_of_reach) = out_of_reach(workload);
    for (state, seeds) in &summary.rare_states {
        let note = if rare_out_of_reach.contains(&state.as_str()) {
            format!(" (out of the {} workload's reach)", workload.name())
        } else {
            String::new()
        };
        let _ = writeln!(out, "    {state:<36} {seeds}{note}");
    }
    let _ = writeln!(out, "  checks (seeds passed / failed):");
    for (name, tally) in &summary.checks {
        let _ = writeln!(out, "    {name:<24} {} / {}", tally.passed, tally.failed);
    }
    let coverage = &summary.fault_coverage;
    let _ = writeln!(
        out,
        "    {:<24} {}",
        coverage.name,
        if coverage.passed { "ok" } else { "FAIL" }
    );
    if !coverage.passed || coverage.message.contains("not enforced") {
        let _ = writeln!(out, "      {}", coverage.message);
    }
    if let Some(why) = &summary.stopped_early {
        let _ = writeln!(out, "  stopped early: {why}");
    }
    for failure in summary.failures.iter().take(failures_shown) {
        let _ = writeln!(out, "seed {} failed: {}", failure.seed, failure.message);
        let _ = writeln!(out, "  replay: {}", failure.replay);
    }
    if summary.failures.len() > failures_shown {
        let _ = writeln!(
            out,
            "... and {} more failed seeds",
            summary.failures.len() - failures_shown
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_lists_what_is_missing_and_is_lenient_for_small_sweeps() {
        let options = SweepOptions::new(vec![], 1, Bugs::NONE);
        let mut summary = SweepSummary::new(&options);
        summary.seeds_run = 10;
        let small = fault_coverage(&summary);
        assert!(small.passed);
        assert!(small.message.contains("slow_io"), "{}", small.message);
        summary.seeds_run = COVERAGE_MIN_SEEDS;
        let big = fault_coverage(&summary);
        assert!(!big.passed);
        assert!(big.message.contains("flush_merged"), "{}", big.message);
    }

    /// A summary in which everything was hit but what the standard
    /// workload cannot reach.
    fn all_but_out_of_reach(workload: WorkloadChoice) -> SweepSummary {
        let mut options = SweepOptions::new(vec![], 1, Bugs::NONE);
        options.workload = workload;
        let mut summary = SweepSummary::new(&options);
        summary.seeds_run = RARE_STATE_MIN_SEEDS;
        let (marks, rare_states) = out_of_reach(WorkloadChoice::Standard);
        for count in summary.faults.values_mut() {
            *count = 1;
        }
        for mark in REQUIRED_MARKS {
            summary.marks.insert(mark.to_string(), 1);
        }
        for count in summary.rare_states.values_mut() {
            *count = 1;
        }
        for mark in marks {
            summary.marks.insert(mark.to_string(), 0);
        }
        for state in rare_states {
            summary.rare_states.insert(state.to_string(), 0);
        }
        summary
    }

    #[test]
    fn coverage_asks_the_standard_workload_only_for_what_it_can_reach() {
        let (marks, rare_states) = out_of_reach(WorkloadChoice::Standard);
        assert_eq!(marks, [PERIODIC_FLUSH, CLOSING_FLUSH]);
        assert_eq!(rare_states, ["periodic_flush_while_stalled"]);
        assert_eq!(out_of_reach(WorkloadChoice::Sweep), (vec![], vec![]));

        let standard = fault_coverage(&all_but_out_of_reach(WorkloadChoice::Standard));
        assert!(standard.passed, "{}", standard.message);
        assert!(
            standard
                .message
                .contains("out of the standard workload's reach"),
            "{}",
            standard.message
        );
        // The sweep's own workload reaches them: missing there, they fail.
        let sweep = fault_coverage(&all_but_out_of_reach(WorkloadChoice::Sweep));
        assert!(!sweep.passed, "{}", sweep.message);
        assert!(sweep.message.contains("closing_flush"), "{}", sweep.message);
        // And the standard workload is still asked for everything else.
        let mut summary = all_but_out_of_reach(WorkloadChoice::Standard);
        summary.marks.insert("flush_merged".to_string(), 0);
        let missing = fault_coverage(&summary);
        assert!(!missing.passed, "{}", missing.message);
        assert!(
            missing.message.contains("flush_merged"),
            "{}",
            missing.message
        );
    }
}
