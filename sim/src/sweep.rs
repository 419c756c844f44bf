//! Sweeps: many seeds in parallel (std threads, each run on its own fresh
//! thread), summed up, with the `fault_coverage` check across them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use flush_core::bugs::Bugs;
use serde::{Deserialize, Serialize};

use crate::check::Check;
use crate::ledger::RequestCounts;
use crate::oracle::CheckResult;
use crate::plan::FaultClass;
use crate::report::{Report, WorkloadChoice};
use crate::run::{run_with, RunOptions};

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

/// `K/N`: the K-th of N interleaved slices of the seed list (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("shard '{text}' must look like K/N, e.g. 1/4"))?;
        let index: u64 = index
            .trim()
            .parse()
            .map_err(|_| format!("shard '{text}': K must be a number"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| format!("shard '{text}': N must be a number"))?;
        if count == 0 {
            return Err(format!("shard '{text}': N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(format!("shard '{text}': K must be between 1 and N={count}"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The seeds of this shard: every N-th, starting at the K-th.
    pub fn select(self, seeds: &[u64]) -> Vec<u64> {
        seeds
            .iter()
            .enumerate()
            .filter(|(position, _)| *position as u64 % self.count == self.index - 1)
            .map(|(_, seed)| *seed)
            .collect()
    }
}

/// `A..B`: seeds A (inclusive) to B (exclusive).
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("seed range '{text}' must look like A..B, e.g. 100..200"))?;
    let start: u64 = start
        .trim()
        .parse()
        .map_err(|_| format!("seed range '{text}': A must be a number"))?;
    let end: u64 = end
        .trim()
        .parse()
        .map_err(|_| format!("seed range '{text}': B must be a number"))?;
    if start >= end {
        return Err(format!("seed range '{text}' is empty: A must be below B"));
    }
    Ok(start..end)
}

#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub seeds: Vec<u64>,
    pub jobs: usize,
    pub bugs: Bugs,
    pub workload: WorkloadChoice,
    pub shard: Option<Shard>,
}

impl SweepOptions {
    /// Every one of `seeds` on the sweep's own workload, `jobs` at a time,
    /// unsharded: what tests and measurements ask for.
    pub fn new(seeds: Vec<u64>, jobs: usize, bugs: Bugs) -> Self {
        SweepOptions {
            seeds,
            jobs,
            bugs,
            workload: WorkloadChoice::Sweep,
            shard: None,
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
    pub shard: Option<String>,
    pub requests: RequestCounts,
    pub faults: BTreeMap<String, u64>,
    pub marks: BTreeMap<String, u64>,
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
    fn new(options: &SweepOptions) -> Self {
        SweepSummary {
            seeds_run: 0,
            seeds_failed: 0,
            workload: format!("{:?}", options.workload).to_lowercase(),
            bugs: options
                .bugs
                .iter()
                .map(|bug| bug.name().to_string())
                .collect(),
            shard: options.shard.map(|shard| shard.to_string()),
            requests: RequestCounts::default(),
            faults: FaultClass::ALL
                .iter()
                .map(|class| (class.name().to_string(), 0))
                .collect(),
            marks: BTreeMap::new(),
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

    fn add(&mut self, report: &Report) {
        self.seeds_run += 1;
        self.requests.add(&report.requests);
        for (class, count) in &report.faults {
            *self.faults.entry(class.clone()).or_default() += count;
        }
        for (mark, count) in &report.marks {
            *self.marks.entry(mark.clone()).or_default() += count;
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

    fn finish(&mut self, wall_ms: u64) {
        self.wall_ms = wall_ms;
        self.peak_rss_mb = crate::memory::peak_rss_mb();
        self.failures.sort_by_key(|failure| failure.seed);
        self.fault_coverage = fault_coverage(self);
    }
}

/// `fault_coverage`: every fault class injected and every required mark
/// reached somewhere in the sweep.
pub fn fault_coverage(summary: &SweepSummary) -> CheckResult {
    let missing_faults: Vec<&str> = summary
        .faults
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(class, _)| class.as_str())
        .collect();
    let missing_marks: Vec<&str> = REQUIRED_MARKS
        .iter()
        .copied()
        .filter(|mark| summary.marks.get(*mark).copied().unwrap_or(0) == 0)
        .collect();
    if missing_faults.is_empty() && missing_marks.is_empty() {
        return CheckResult::pass(
            Check::FaultCoverage,
            format!(
                "all {} fault classes and {} marks hit",
                summary.faults.len(),
                REQUIRED_MARKS.len()
            ),
        );
    }
    let message = format!(
        "{}: expected every fault class and mark hit at least once in {} seeds, saw none of \
         faults [{}] marks [{}]",
        Check::FaultCoverage,
        summary.seeds_run,
        missing_faults.join(", "),
        missing_marks.join(", ")
    );
    if summary.seeds_run < COVERAGE_MIN_SEEDS {
        return CheckResult::pass(
            Check::FaultCoverage,
            format!("not enforced below {COVERAGE_MIN_SEEDS} seeds; {message}"),
        );
    }
    CheckResult::fail(Check::FaultCoverage, message)
}

/// Runs every seed of `options`, calling `on_report` as each finishes (in
/// completion order), and sums them up.
pub fn sweep(options: &SweepOptions, mut on_report: impl FnMut(&Report)) -> SweepSummary {
    // Wall time of the sweep, reported.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let seeds = match options.shard {
        Some(shard) => shard.select(&options.seeds),
        None => options.seeds.clone(),
    };
    let mut summary = SweepSummary::new(options);
    let next = AtomicUsize::new(0);
    let jobs = options.jobs.clamp(1, seeds.len().max(1));
    let run_options = RunOptions {
        keep_trace: false,
        workload: options.workload,
        skip_sampling: false,
    };
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<Report>();
        for _ in 0..jobs {
            let sender = sender.clone();
            let seeds = &seeds;
            let next = &next;
            scope.spawn(move || loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some(seed) = seeds.get(position) else {
                    break;
                };
                let plan = options.workload.plan(*seed);
                let report = run_with(&plan, options.bugs, run_options);
                if sender.send(report).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        for report in receiver {
            summary.add(&report);
            on_report(&report);
        }
    });
    summary.finish(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    summary
}

/// The human summary table.
pub fn render_summary(summary: &SweepSummary) -> String {
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
    for failure in summary.failures.iter().take(10) {
        let _ = writeln!(out, "seed {} failed: {}", failure.seed, failure.message);
        let _ = writeln!(out, "  replay: {}", failure.replay);
    }
    if summary.failures.len() > 10 {
        let _ = writeln!(
            out,
            "... and {} more failed seeds",
            summary.failures.len() - 10
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/2", "0/2", "1/0", "a/2", "1", "1/b", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} should not parse");
        }
        let seeds: Vec<u64> = (10..20).collect();
        let mut all: Vec<u64> = (1..=3)
            .flat_map(|index| Shard { index, count: 3 }.select(&seeds))
            .collect();
        all.sort_unstable();
        assert_eq!(all, seeds);
        assert_eq!(
            Shard { index: 1, count: 3 }.select(&seeds),
            vec![10, 13, 16, 19]
        );
    }

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seed_range("5..8"), Ok(5..8));
        assert_eq!(parse_seed_range(" 0 .. 1 "), Ok(0..1));
        for bad in ["8..5", "5..5", "a..3", "3..", "..3", "3-5", ""] {
            assert!(parse_seed_range(bad).is_err(), "{bad} should not parse");
        }
    }

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
}
