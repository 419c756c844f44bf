//! The `flushsim` command line (DESIGN §7): a thin layer over
//! [`crate::run`] and [`crate::sweep`].
//!
//! Exit codes: 0 when every check holds, 1 when one fails, 2 on bad usage
//! (clap's own code for parse errors, used for ours too).

use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flush_core::bugs::{Bugs, PlantedBug};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::plan::Plan;
use crate::report::{Report, WorkloadChoice};
use crate::run::{run_with, RunOptions};
use crate::sweep::{parse_seed_range, render_summary, sweep, Shard, SweepOptions};

pub const EXIT_PASS: u8 = 0;
pub const EXIT_FAIL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "flushsim",
    version,
    about = "Deterministic simulation of the flush core: sweep seeds, replay one, check determinism"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run many seeds in parallel; exit 1 if any check fails.
    Sweep(SweepArgs),
    /// Run one seed alone and print its report.
    Replay(ReplayArgs),
    /// Run seeds alone, in reverse order and in parallel; compare trace hashes.
    CheckDeterminism(DeterminismArgs),
    /// List the planted bugs.
    Bugs(BugsArgs),
    /// Time the pinned standard workload (faults off).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct SeedSelection {
    /// Run seeds 0..N.
    #[arg(long, default_value_t = 100, conflicts_with = "seed_range")]
    pub seeds: u64,
    /// Run seeds A..B (B exclusive).
    #[arg(long, value_name = "A..B", value_parser = parse_seed_range)]
    pub seed_range: Option<Range<u64>>,
}

impl SeedSelection {
    fn seeds(&self) -> Vec<u64> {
        match &self.seed_range {
            Some(range) => range.clone().collect(),
            None => (0..self.seeds).collect(),
        }
    }
}

#[derive(Debug, Args)]
pub struct BugArgs {
    /// Plant a bug in the core (repeatable); see `flushsim bugs`.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<PlantedBug>,
    /// Which workload plans use.
    #[arg(long, value_enum, default_value_t)]
    pub workload: WorkloadChoice,
}

impl BugArgs {
    fn bugs(&self) -> Bugs {
        self.bugs
            .iter()
            .fold(Bugs::NONE, |bugs, bug| bugs.with(*bug))
    }
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub selection: SeedSelection,
    /// Parallel runs (default: available cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run only the K-th of N interleaved slices of the seeds (1-based).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, required_unless_present = "plan")]
    pub seed: Option<u64>,
    /// Run the plan in this JSON file instead of the seed's.
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Print the full event trace.
    #[arg(long)]
    pub trace: bool,
    /// Write the event trace as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Print the plan as JSON (to save it for `--plan`) and exit.
    #[arg(long)]
    pub print_plan: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeterminismArgs {
    /// Seeds 0..N to check.
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    #[arg(long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub bug: BugArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BugsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Runs of the standard workload.
    #[arg(long, default_value_t = 3)]
    pub runs: u64,
    #[arg(long)]
    pub json: bool,
}

/// Parses the arguments (exiting 2 on bad usage) and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sweep(args) => cmd_sweep(&args),
        Command::Replay(args) => cmd_replay(&args),
        Command::CheckDeterminism(args) => cmd_check_determinism(&args),
        Command::Bugs(args) => cmd_bugs(&args),
        Command::Bench(args) => cmd_bench(&args),
    };
    ExitCode::from(code)
}

fn usage_error(message: &str) -> u8 {
    eprintln!("error: {message}");
    EXIT_USAGE
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_json(value: &impl Serialize) -> bool {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            true
        }
        Err(error) => {
            eprintln!("error: cannot render JSON: {error}");
            false
        }
    }
}

fn verdict(passed: bool) -> u8 {
    if passed {
        EXIT_PASS
    } else {
        EXIT_FAIL
    }
}

fn progress_bar(length: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {pos}/{len} seeds {msg} [{elapsed_precise} < {eta_precise}]",
    ) {
        bar.set_style(style);
    }
    bar
}

fn cmd_sweep(args: &SweepArgs) -> u8 {
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    if jobs == 0 {
        return usage_error("--jobs must be at least 1");
    }
    let options = SweepOptions {
        seeds: args.selection.seeds(),
        jobs,
        bugs: args.bug.bugs(),
        workload: args.bug.workload,
        shard: args.shard,
    };
    let length = match options.shard {
        Some(shard) => shard.select(&options.seeds).len(),
        None => options.seeds.len(),
    };
    let bar = progress_bar(length as u64, args.json);
    let mut failed = 0u64;
    let summary = sweep(&options, |report| {
        if !report.passed {
            failed += 1;
            bar.set_message(format!("{failed} failed"));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    if args.json {
        if !print_json(&summary) {
            return EXIT_FAIL;
        }
    } else {
        print!("{}", render_summary(&summary));
    }
    verdict(summary.passed())
}

fn load_plan(args: &ReplayArgs) -> Result<Plan, String> {
    match (&args.plan, args.seed) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read plan {}: {error}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|error| format!("plan {} is not a valid plan: {error}", path.display()))
        }
        (None, Some(seed)) => Ok(args.bug.workload.plan(seed)),
        (None, None) => Err("give --seed S or --plan FILE".to_string()),
    }
}

fn cmd_replay(args: &ReplayArgs) -> u8 {
    let plan = match load_plan(args) {
        Ok(plan) => plan,
        Err(message) => return usage_error(&message),
    };
    if args.print_plan {
        return if print_json(&plan) {
            EXIT_PASS
        } else {
            EXIT_FAIL
        };
    }
    init_tracing();
    let keep_trace = args.trace || args.timeline.is_some();
    if !args.json {
        eprintln!(
            "replaying seed {} ({}), faults: {}",
            plan.seed, plan.workload.name, plan.faults
        );
    }
    let options = RunOptions {
        keep_trace,
        workload: args.bug.workload,
    };
    let mut report = run_with(&plan, args.bug.bugs(), options);
    if let Some(path) = &args.plan {
        // The plan may have been edited: the seed alone would not replay it.
        let seed_part = format!("--seed {}", plan.seed);
        let plan_part = format!("--plan {}", path.display());
        report.replay = report.replay.replacen(&seed_part, &plan_part, 1);
    }
    if let Some(path) = &args.timeline {
        if let Err(message) = write_timeline(path, &report) {
            eprintln!("error: {message}");
            return EXIT_FAIL;
        }
    }
    if args.trace {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in &report.trace {
            let _ = writeln!(out, "{}", line.render());
        }
    }
    if args.json {
        if !print_json(&report) {
            return EXIT_FAIL;
        }
    } else {
        print!("{}", report.render());
    }
    verdict(report.passed)
}

fn write_timeline(path: &PathBuf, report: &Report) -> Result<(), String> {
    let text = serde_json::to_string(&report.trace)
        .map_err(|error| format!("cannot render the timeline: {error}"))?;
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Logs from the core and the sim to stderr, stamped with simulated time,
/// filtered by `RUST_LOG` (off when unset).
fn init_tracing() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Formats log timestamps as simulated time when inside a run.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match madsim::time::TimeHandle::try_current() {
            Some(time) => {
                let elapsed = time.elapsed();
                write!(
                    w,
                    "sim {:>6}.{:06}s",
                    elapsed.as_secs(),
                    elapsed.subsec_micros()
                )
            }
            None => write!(w, "sim -"),
        }
    }
}

#[derive(Serialize)]
struct Mismatch {
    seed: u64,
    alone: String,
    reversed: String,
    parallel: String,
}

#[derive(Serialize)]
struct DeterminismReport {
    seeds: u64,
    passed: bool,
    mismatches: Vec<Mismatch>,
}

fn cmd_check_determinism(args: &DeterminismArgs) -> u8 {
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let bugs = args.bug.bugs();
    let workload = args.bug.workload;
    let pass = |seeds: Vec<u64>, jobs: usize| {
        sweep(
            &SweepOptions {
                seeds,
                jobs,
                bugs,
                workload,
                shard: None,
            },
            |_| {},
        )
        .trace_hashes
    };
    let alone = pass(seeds.clone(), 1);
    let reversed = pass(seeds.iter().rev().copied().collect(), 1);
    let parallel = pass(seeds.clone(), args.jobs.unwrap_or_else(default_jobs).max(1));
    let missing = String::from("missing");
    let mismatches: Vec<Mismatch> = seeds
        .iter()
        .filter_map(|seed| {
            let a = alone.get(seed).unwrap_or(&missing);
            let b = reversed.get(seed).unwrap_or(&missing);
            let c = parallel.get(seed).unwrap_or(&missing);
            (a != b || a != c || a == &missing).then(|| Mismatch {
                seed: *seed,
                alone: a.clone(),
                reversed: b.clone(),
                parallel: c.clone(),
            })
        })
        .collect();
    let report = DeterminismReport {
        seeds: args.seeds,
        passed: mismatches.is_empty(),
        mismatches,
    };
    if args.json {
        if !print_json(&report) {
            return EXIT_FAIL;
        }
    } else if report.passed {
        println!(
            "PASS: {} seeds gave the same trace hash alone, in reverse order and in parallel",
            report.seeds
        );
    } else {
        println!(
            "FAIL: {} of {} seeds drifted",
            report.mismatches.len(),
            report.seeds
        );
        for mismatch in &report.mismatches {
            println!(
                "  seed {}: alone {} reversed {} parallel {}",
                mismatch.seed, mismatch.alone, mismatch.reversed, mismatch.parallel
            );
        }
    }
    verdict(report.passed)
}

#[derive(Serialize)]
struct BugEntry {
    name: &'static str,
    description: &'static str,
}

fn cmd_bugs(args: &BugsArgs) -> u8 {
    let bugs: Vec<BugEntry> = PlantedBug::ALL
        .iter()
        .map(|bug| BugEntry {
            name: bug.name(),
            description: bug.description(),
        })
        .collect();
    if args.json {
        return if print_json(&bugs) {
            EXIT_PASS
        } else {
            EXIT_FAIL
        };
    }
    let width = bugs.iter().map(|bug| bug.name.len()).max().unwrap_or(0);
    for bug in &bugs {
        println!("{:<width$}  {}", bug.name, bug.description);
    }
    EXIT_PASS
}

#[derive(Serialize)]
struct BenchReport {
    workload: String,
    runs: u64,
    wall_ms_mean: f64,
    sim_ms_mean: f64,
    flushes_mean: f64,
    requests_mean: f64,
    rows_per_wall_s: f64,
    all_passed: bool,
}

fn cmd_bench(args: &BenchArgs) -> u8 {
    if args.runs == 0 {
        return usage_error("--runs must be at least 1");
    }
    let mut wall_ms = 0u64;
    let mut sim_ms = 0u64;
    let mut flushes = 0u64;
    let mut requests = 0u64;
    let mut rows = 0u64;
    let mut all_passed = true;
    let mut workload = String::new();
    for seed in 0..args.runs {
        let plan = Plan::standard(seed).without_faults();
        workload = plan.workload.name.clone();
        let report = run_with(
            &plan,
            Bugs::NONE,
            RunOptions {
                keep_trace: false,
                workload: WorkloadChoice::Standard,
            },
        );
        all_passed &= report.passed;
        wall_ms += report.wall_ms;
        sim_ms += report.sim_ms;
        flushes += report.flushes;
        requests += report.requests.issued;
        rows += report.rows_checked;
    }
    let runs = args.runs as f64;
    let bench = BenchReport {
        workload,
        runs: args.runs,
        wall_ms_mean: wall_ms as f64 / runs,
        sim_ms_mean: sim_ms as f64 / runs,
        flushes_mean: flushes as f64 / runs,
        requests_mean: requests as f64 / runs,
        rows_per_wall_s: rows as f64 / (wall_ms.max(1) as f64 / 1_000.0),
        all_passed,
    };
    if args.json {
        if !print_json(&bench) {
            return EXIT_FAIL;
        }
    } else {
        println!(
            "{}: {} runs, {:.0} ms wall and {:.0} ms simulated per run, {:.1} flushes, {:.0} requests, {:.0} rows/s{}",
            bench.workload,
            bench.runs,
            bench.wall_ms_mean,
            bench.sim_ms_mean,
            bench.flushes_mean,
            bench.requests_mean,
            bench.rows_per_wall_s,
            if bench.all_passed { "" } else { " (SOME RUNS FAILED)" }
        );
    }
    verdict(bench.all_passed)
}
