//! The `flushsim` command line (DESIGN §7): a thin layer over
//! [`crate::run`] and [`crate::sweep`].
//!
//! Exit codes: 0 when every check holds, 1 when one fails, 2 on bad usage
//! (clap's own code for parse errors, used for ours too).

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flush_core::bugs::{Bugs, PlantedBug};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::bench::{bench, BenchOptions, BenchReport};
use crate::budget::{StopRule, TimeBudget};
use crate::explore::describe_timeline;
use crate::merge::{check as check_merge, expand_paths, merge, read_inputs};
use crate::plan::Plan;
use crate::recipe::{Recipe, Split};
use crate::report::{plan_replay_line, Report, WorkloadChoice};
use crate::run::{run_with, RunOptions};
use crate::shard_env::{detect_from_process, ShardArg, ShardEnvError};
use crate::shrink::{shrink, PlanFile, PlanSize, ShrinkOptions};
use crate::stream::{read_stream_file, reopen_for_append, StreamHeader, StreamLine, StreamWriter};
use crate::sweep::{
    render_summary, sweep, sweep_resumed, SeedRange, SeedSource, Seeds, Shard, SweepOptions,
    SweepSummary,
};

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
    /// Combine the reports of many shards (`sweep --json` files, `--jsonl`
    /// streams, directories of them, or `-` for JSON Lines on stdin) into
    /// one; exit 2 if they do not cover their seeds exactly once, 1 if any
    /// seed failed.
    Merge(MergeArgs),
    /// Sweep seeds and fork the runs that reach a rare state into other
    /// futures (splits); exit 1 with a replay line per failed timeline.
    Explore(ExploreArgs),
    /// Run one seed (or a plan file) alone and print its report.
    Replay(ReplayArgs),
    /// Shrink a failing seed's plan while it fails the same check; print and
    /// save the minimal plan for `replay --plan FILE`.
    Shrink(ShrinkArgs),
    /// Run seeds alone, in reverse order and in parallel; compare trace hashes.
    CheckDeterminism(DeterminismArgs),
    /// List the planted bugs.
    Bugs(BugsArgs),
    /// Time the pinned standard workload: seeds/s, simulated-to-wall time,
    /// sim overhead over a plain executor, Parquet encoding vs raw arrow-rs.
    Bench(BenchArgs),
    /// Run the standard workload on the tokio engine over real files: rows/s,
    /// flushes/s, syncs per acknowledged write, beside the simulator's run.
    BenchEngine(BenchEngineArgs),
    /// Run the tokio engine on real files as a child process, SIGKILL it at
    /// seeded moments, restart it, and check what it recovered.
    CrashTest(CrashTestArgs),
    /// The crash test's child (started by `crash-test`, not by hand).
    #[command(hide = true)]
    CrashChild(CrashChildArgs),
}

#[derive(Debug, Args)]
pub struct CrashTestArgs {
    /// Seed of the rounds' plans (workload, kill points, torn tails).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rounds, each ended by a SIGKILL (a final graceful round follows).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rounds: u32,
    /// Directory for the engine's files (default: a fresh temporary one,
    /// removed when the test passes). Must be new or empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Plant a bug: the child leaves torn WAL tails on disk instead of
    /// cutting them (the test must fail).
    #[arg(long)]
    pub skip_torn_tail_repair: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchEngineArgs {
    /// Where the engine's files go: a fresh directory is made under it
    /// (default: the system's temp dir; /dev/shm for tmpfs).
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// The standard seed whose client draws the workload replays.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CrashChildArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long)]
    pub skip_torn_tail_repair: bool,
}

#[derive(Debug, Args)]
pub struct SeedSelection {
    /// Run seeds 0..N [default: 100; with --time-budget or
    /// --until-failures: every seed from 0 on].
    #[arg(long, conflicts_with = "seed_range", value_parser = parse_seed_count)]
    pub seeds: Option<u64>,
    /// Run seeds A..B (B exclusive), or A.. (every seed from A on, in
    /// order, until --time-budget or --until-failures stops the sweep).
    #[arg(long, value_name = "A..B|A..")]
    pub seed_range: Option<SeedRange>,
}

/// A count that must be at least 1, as `what` names it: 0 of them would
/// run nothing and pass (or, for `--jobs`, be read as 1 by one command and
/// refused by another).
fn at_least_one<T: std::str::FromStr + From<u8> + PartialOrd>(
    text: &str,
    what: &str,
) -> Result<T, String> {
    match text.trim().parse::<T>() {
        Ok(count) if count >= T::from(1) => Ok(count),
        _ => Err(format!(
            "expected a number of {what}, at least 1, saw '{text}'"
        )),
    }
}

/// `--seeds N`.
fn parse_seed_count(text: &str) -> Result<u64, String> {
    at_least_one(text, "seeds")
}

/// `--jobs N`.
fn parse_jobs(text: &str) -> Result<usize, String> {
    at_least_one(text, "parallel runs")
}

/// `--until-failures K`.
fn parse_until_failures(text: &str) -> Result<u64, String> {
    at_least_one(text, "failed seeds")
}

/// Seeds a sweep runs when not told.
const DEFAULT_SEEDS: u64 = 100;

impl SeedSelection {
    /// The range asked for: open from 0 when only a stop rule bounds it.
    fn range(&self, stop: &StopRule) -> SeedRange {
        match (self.seed_range, self.seeds) {
            (Some(range), _) => range,
            (None, Some(count)) => SeedRange::closed(0..count),
            (None, None) if stop.is_set() => SeedRange {
                start: 0,
                end: None,
            },
            (None, None) => SeedRange::closed(0..DEFAULT_SEEDS),
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
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Run only the K-th of N interleaved slices of the seeds (1-based),
    /// or `auto`: K and N from a CI or batch engine's environment
    /// (Kubernetes, GitLab, Buildkite, Slurm, FLUSHSIM_SHARD_INDEX/COUNT).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<ShardArg>,
    /// Stop drawing seeds once this much wall time is spent (90s, 30m, 8h,
    /// 1h30m); seeds already running finish and count.
    #[arg(long, value_name = "DURATION")]
    pub time_budget: Option<TimeBudget>,
    /// Stop drawing seeds once K seeds have failed.
    #[arg(long, value_name = "K", value_parser = parse_until_failures)]
    pub until_failures: Option<u64>,
    /// Stream a header line, then one JSON line per finished seed, to FILE
    /// (`-`: stdout), each flushed as its seed finishes. FILE must be new.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub jsonl: Option<PathBuf>,
    /// Continue the stream in FILE (same command, same seeds): count its
    /// seeds, run the ones it lacks in order, append to it. A last line cut
    /// by a kill is dropped with a note.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard reports: `sweep --json` files, `sweep --jsonl` streams,
    /// directories (their *.json and *.jsonl), or `-` for JSON Lines on
    /// stdin (streams one after another, or one-line summaries).
    #[arg(required = true, value_name = "REPORT")]
    pub inputs: Vec<PathBuf>,
    /// Print the merged report as one JSON object (the schema of `sweep
    /// --json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// Fresh seeds are drawn from this one upwards.
    #[arg(long, default_value_t = 0)]
    pub start_seed: u64,
    /// Stop after this many seconds of wall time.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=31_622_400))]
    pub budget_seconds: Option<u64>,
    /// Stop after this many runs (the same runs every time).
    #[arg(long, value_name = "RUNS", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_runs: Option<u64>,
    /// Stop once K timelines have failed.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = parse_until_failures)]
    pub until_failures: u64,
    /// Parallel runs (default: available cores).
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// No splits: a plain sweep from --start-seed, counted the same way.
    #[arg(long)]
    pub plain: bool,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, required_unless_present = "plan")]
    pub seed: Option<u64>,
    /// Run the plan in this JSON file instead of the seed's (a plan as
    /// `--print-plan` prints it, or as `shrink` saves it, with its bugs).
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub plan: Option<PathBuf>,
    /// Follow this timeline of the seed (as `explore` prints it):
    /// `DRAW:SEED` splits, comma-separated, where the fault streams fork.
    #[arg(long, value_name = "SPLITS", requires = "seed", value_parser = Recipe::parse)]
    pub recipe: Option<Recipe>,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Print the full event trace.
    #[arg(long)]
    pub trace: bool,
    /// Write the run's timeline to FILE: Chrome trace event JSON, one track
    /// per worker and per region, in simulated time (open in Perfetto).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Print the plan as JSON, with the bugs asked for (to save it for
    /// `--plan`), and exit.
    #[arg(long)]
    pub print_plan: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    #[arg(long, required_unless_present = "plan")]
    pub seed: Option<u64>,
    /// Shrink the plan in this JSON file instead of the seed's.
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub plan: Option<PathBuf>,
    /// Follow this timeline of the seed (as `explore` prints it):
    /// `DRAW:SEED` splits, comma-separated, where the fault streams fork.
    #[arg(long, value_name = "SPLITS", requires = "seed", value_parser = Recipe::parse)]
    pub recipe: Option<Recipe>,
    #[command(flatten)]
    pub bug: BugArgs,
    /// Where to save the minimal plan (default: shrunk-seed-S.json).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Runs the shrinker may spend.
    #[arg(long, default_value_t = crate::shrink::DEFAULT_MAX_RUNS)]
    pub max_runs: usize,
    /// Print one JSON object (sizes, changes kept, the minimal plan).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeterminismArgs {
    /// Seeds 0..N to check.
    #[arg(long, default_value_t = 20, value_parser = parse_seed_count)]
    pub seeds: u64,
    #[arg(long, value_parser = parse_jobs)]
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
    /// Standard seeds timed for seeds/s and simulated-to-wall time.
    #[arg(long, default_value_t = crate::bench::BenchOptions::default().seeds)]
    pub seeds: u64,
    /// Direct/simulated run pairs for the overhead ratio.
    #[arg(long, default_value_t = crate::bench::BenchOptions::default().pairs)]
    pub pairs: u64,
    /// Rounds of the Parquet comparison.
    #[arg(long, default_value_t = crate::bench::BenchOptions::default().parquet_rounds)]
    pub parquet_rounds: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Parses the arguments (exiting 2 on bad usage) and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sweep(args) => cmd_sweep(&args),
        Command::Merge(args) => cmd_merge(&args),
        Command::Explore(args) => cmd_explore(&args),
        Command::Replay(args) => cmd_replay(&args),
        Command::Shrink(args) => cmd_shrink(&args),
        Command::CheckDeterminism(args) => cmd_check_determinism(&args),
        Command::Bugs(args) => cmd_bugs(&args),
        Command::Bench(args) => cmd_bench(&args),
        Command::BenchEngine(args) => cmd_bench_engine(&args),
        Command::CrashTest(args) => cmd_crash_test(&args),
        Command::CrashChild(args) => {
            crate::crash_test::child::run(&args.dir, !args.skip_torn_tail_repair)
        }
    };
    ExitCode::from(code)
}

fn cmd_explore(args: &ExploreArgs) -> u8 {
    use crate::explore::{explore, render, ExploreOptions};
    if args.budget_seconds.is_none() && args.budget_runs.is_none() {
        return usage_error("explore needs a budget: --budget-seconds N or --budget-runs N");
    }
    let options = ExploreOptions {
        start_seed: args.start_seed,
        jobs: args.jobs.unwrap_or_else(default_jobs).max(1),
        bugs: args.bug.bugs(),
        workload: args.bug.workload,
        budget_time: args.budget_seconds.map(std::time::Duration::from_secs),
        budget_runs: args.budget_runs,
        until_failures: args.until_failures,
        plain: args.plain,
    };
    let exploration = explore(&options, |_| {});
    if args.json {
        if !print_json(&exploration) {
            return EXIT_FAIL;
        }
    } else {
        print!("{}", render(&exploration, &options));
    }
    verdict(exploration.passed())
}

fn cmd_bench_engine(args: &BenchEngineArgs) -> u8 {
    use crate::bench_engine::bench_engine;
    use crate::crash_test::fresh_dir;
    let base = args.under.clone().unwrap_or_else(std::env::temp_dir);
    let dir = match fresh_dir(&base, "flushsim-bench-engine") {
        Ok(dir) => dir,
        Err(error) => return usage_error(&error),
    };
    let result = bench_engine(&dir, args.seed);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_FAIL
        }
        Ok(report) if args.json => verdict(print_json(&report)),
        Ok(report) => {
            println!(
                "tokio engine over {}: {} writes ({} rows) acknowledged in {:.2} s: {:.0} rows/s, \
                 {} flushes ({:.1}/s), {} syncs ({:.2} per acknowledged write); the simulator ran \
                 the same seed in {:.2} s ({:.0} rows/s)",
                base.display(),
                report.writes_acknowledged,
                report.rows_acknowledged,
                report.wall_s,
                report.rows_per_s,
                report.flushes_committed,
                report.flushes_per_s,
                report.syncs,
                report.syncs_per_acknowledged_write,
                report.sim_wall_s,
                report.sim_rows_per_s
            );
            EXIT_PASS
        }
    }
}

fn cmd_crash_test(args: &CrashTestArgs) -> u8 {
    use crate::crash_test::{child_binary, crash_test, render, CrashTestOptions};
    if let Some(dir) = &args.dir {
        let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            return usage_error(&format!(
                "--dir {}: must be new or empty (the test judges everything in it)",
                dir.display()
            ));
        }
        // Made here, so that a directory that cannot be is bad input and
        // not a child that died in the first round.
        if let Err(error) = std::fs::create_dir_all(dir) {
            return usage_error(&format!(
                "--dir {}: cannot create it: {error}",
                dir.display()
            ));
        }
    }
    let child = match child_binary() {
        Ok(child) => child,
        Err(error) => return usage_error(&error),
    };
    let options = CrashTestOptions {
        seed: args.seed,
        rounds: args.rounds,
        dir: args.dir.clone(),
        child,
        skip_torn_tail_repair: args.skip_torn_tail_repair,
    };
    match crash_test(&options) {
        Err(error) => usage_error(&error),
        Ok(report) => {
            if args.json {
                if !print_json(&report) {
                    return EXIT_FAIL;
                }
            } else {
                print!("{}", render(&report));
            }
            verdict(report.passed())
        }
    }
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

/// A bar over `length` seeds, or a counter when the seeds are open-ended.
fn progress_bar(length: Option<u64>, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let (bar, template) = match length {
        Some(length) => (
            ProgressBar::new(length),
            "{bar:40.cyan/blue} {pos}/{len} seeds {msg} [{elapsed_precise} < {eta_precise}]",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} {pos} seeds {msg} [{elapsed_precise}]",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn cmd_sweep(args: &SweepArgs) -> u8 {
    match prepare_sweep(args) {
        Ok((options, stream)) => run_sweep(args, &options, stream),
        Err(message) => usage_error(&message),
    }
}

/// The sweep's options and its stream (the earlier run's seeds when
/// resuming), or what is wrong with the arguments.
fn prepare_sweep(args: &SweepArgs) -> Result<(SweepOptions, Option<OpenStream>), String> {
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    let stop = StopRule {
        time_budget: args.time_budget,
        until_failures: args.until_failures,
    };
    let range = args.selection.range(&stop);
    if range.end.is_none() && !stop.is_set() {
        return Err(format!(
            "--seed-range {range} is open: expected --time-budget or --until-failures to end it"
        ));
    }
    if args.json && args.jsonl.as_deref() == Some(Path::new("-")) {
        return Err("--json and --jsonl - both want stdout; give --jsonl a FILE".to_string());
    }
    let options = SweepOptions {
        seeds: Seeds::Range(range),
        jobs,
        bugs: args.bug.bugs(),
        workload: args.bug.workload,
        shard: resolve_shard(args.shard).map_err(|error| error.to_string())?,
        stop,
        silenced_rare_state: None,
    };
    let stream = open_stream(args, &options)?;
    Ok((options, stream))
}

/// `--shard`: as given, or from the environment for `auto`. Without
/// `--shard` the environment is only mentioned: see [`crate::shard_env`]
/// for why engines' variables never shard a sweep unasked.
fn resolve_shard(shard: Option<ShardArg>) -> Result<Option<Shard>, ShardEnvError> {
    match shard {
        Some(ShardArg::Fixed(shard)) => Ok(Some(shard)),
        Some(ShardArg::Auto) => {
            let detected = detect_from_process()?.ok_or(ShardEnvError::NoneFound)?;
            eprintln!("flushsim: {detected}");
            Ok(Some(detected.shard))
        }
        None => {
            if let Ok(Some(detected)) = detect_from_process() {
                eprintln!(
                    "note: the environment names {detected}, but without --shard this sweep \
                     runs all its seeds; pass --shard auto to run only that shard"
                );
            }
            Ok(None)
        }
    }
}

/// A stream being written, and the seeds it already holds.
struct OpenStream {
    writer: StreamWriter,
    prior: Option<SweepSummary>,
    /// `-`: the table goes to stderr, stdout is the stream's.
    on_stdout: bool,
}

fn stream_header(options: &SweepOptions) -> StreamHeader {
    let range = match &options.seeds {
        Seeds::Range(range) => range.to_string(),
        Seeds::List(_) => String::new(),
    };
    StreamHeader {
        identity: options.identity(),
        seed_range: range,
        shard: options.shard.map(|shard| shard.to_string()),
        stops_early: options.stop.is_set(),
    }
}

fn open_stream(args: &SweepArgs, options: &SweepOptions) -> Result<Option<OpenStream>, String> {
    let header = stream_header(options);
    if let Some(path) = &args.resume {
        let (stream, reader) = read_stream_file(path).map_err(|error| error.to_string())?;
        if !stream.header.continued_by(&header) {
            return Err(format!(
                "--resume {}: the stream is of {}, this sweep of {}; expected the same seed \
                 range, shard, versions, workload and bugs",
                path.display(),
                describe_header(&stream.header),
                describe_header(&header)
            ));
        }
        if let Some(note) = &reader.cut_tail {
            eprintln!("note: {note}");
        }
        eprintln!(
            "flushsim: resuming {} with its {} seeds",
            path.display(),
            stream.summary.seeds_run
        );
        let writer = reopen_for_append(path, &reader).map_err(|error| error.to_string())?;
        return Ok(Some(OpenStream {
            writer,
            prior: Some(stream.summary),
            on_stdout: false,
        }));
    }
    let Some(path) = &args.jsonl else {
        return Ok(None);
    };
    let on_stdout = path.as_path() == Path::new("-");
    let mut writer = if on_stdout {
        StreamWriter::stdout()
    } else {
        StreamWriter::create(path).map_err(|error| error.to_string())?
    };
    writer
        .write(&StreamLine::Header(header))
        .map_err(|error| error.to_string())?;
    Ok(Some(OpenStream {
        writer,
        prior: None,
        on_stdout,
    }))
}

fn describe_header(header: &StreamHeader) -> String {
    let shard = header
        .shard
        .as_ref()
        .map_or(String::new(), |shard| format!(" shard {shard}"));
    format!("seeds {}{shard} ({})", header.seed_range, header.identity)
}

fn run_sweep(args: &SweepArgs, options: &SweepOptions, stream: Option<OpenStream>) -> u8 {
    let (mut writer, prior, on_stdout) = match stream {
        Some(stream) => (Some(stream.writer), stream.prior, stream.on_stdout),
        None => (None, None, false),
    };
    let done = prior
        .as_ref()
        .map(|prior| prior.trace_hashes.keys().copied().collect())
        .unwrap_or_default();
    let remaining = SeedSource::new(&options.seeds, options.shard, done).remaining();
    let bar = progress_bar(remaining, args.json || on_stdout);
    let mut failed = 0u64;
    let mut stream_error = None;
    let summary = sweep_resumed(options, prior, |report| {
        if !report.passed {
            failed += 1;
            bar.set_message(format!("{failed} failed"));
        }
        bar.inc(1);
        let Some(writer) = writer.as_mut() else {
            return ControlFlow::Continue(());
        };
        match writer.write(&StreamLine::Seed(Box::new(report.clone()))) {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                let why = format!("the stream could not be written: {error}");
                stream_error = Some(why.clone());
                ControlFlow::Break(why)
            }
        }
    });
    bar.finish_and_clear();
    if args.json {
        if !print_json(&summary) {
            return EXIT_FAIL;
        }
    } else if on_stdout {
        eprint!("{}", render_summary(&summary, FAILURES_SHOWN));
    } else {
        print!("{}", render_summary(&summary, FAILURES_SHOWN));
    }
    if let Some(error) = stream_error {
        eprintln!("error: {error}");
        return EXIT_FAIL;
    }
    verdict(summary.passed())
}

/// Failures a sweep's table lists with their replay lines (`merge` lists
/// them all; `--json` has them all).
const FAILURES_SHOWN: usize = 10;

fn cmd_merge(args: &MergeArgs) -> u8 {
    let mut notes = Vec::new();
    let inputs = expand_paths(&args.inputs).and_then(|paths| read_inputs(&paths, &mut notes));
    for note in &notes {
        eprintln!("note: {note}");
    }
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(problem) => return usage_error(&problem.to_string()),
    };
    let problems = check_merge(&inputs);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        eprintln!(
            "error: {} problem(s) in {} report(s): not merged",
            problems.len(),
            inputs.len()
        );
        return EXIT_USAGE;
    }
    let Some(merged) = merge(&inputs) else {
        return usage_error("no reports to merge");
    };
    eprintln!(
        "flushsim: merged {} reports: {} seeds",
        inputs.len(),
        merged.seeds_run
    );
    if args.json {
        if !print_json(&merged) {
            return EXIT_FAIL;
        }
    } else {
        print!("{}", render_summary(&merged, usize::MAX));
    }
    verdict(merged.passed())
}

/// The plan of `--plan FILE` or `--seed S`, and the bugs to plant: the
/// file's and `--bug`'s together.
pub fn load_plan(
    plan_file: Option<&Path>,
    seed: Option<u64>,
    recipe: Option<&[Split]>,
    bug: &BugArgs,
) -> Result<(Plan, Bugs), String> {
    match (plan_file, seed) {
        (Some(path), _) => {
            let file = PlanFile::read(path)?;
            let bugs = file.bugs()?;
            let bugs = bug.bugs().iter().fold(bugs, |bugs, bug| bugs.with(bug));
            Ok((file.plan, bugs))
        }
        (None, Some(seed)) => {
            let mut plan = bug.workload.plan(seed);
            plan.splits = recipe.unwrap_or_default().to_vec();
            Ok((plan, bug.bugs()))
        }
        (None, None) => Err("give --seed S or --plan FILE".to_string()),
    }
}

fn cmd_replay(args: &ReplayArgs) -> u8 {
    let (plan, bugs) = match load_plan(
        args.plan.as_deref(),
        args.seed,
        args.recipe.as_ref().map(|recipe| recipe.0.as_slice()),
        &args.bug,
    ) {
        Ok(loaded) => loaded,
        Err(message) => return usage_error(&message),
    };
    if args.print_plan {
        return if print_json(&PlanFile::new(plan, bugs)) {
            EXIT_PASS
        } else {
            EXIT_FAIL
        };
    }
    if let Some(path) = &args.timeline {
        if let Err(message) = ready_to_write(path) {
            return usage_error(&message);
        }
    }
    init_tracing();
    let keep_trace = args.trace || args.timeline.is_some();
    if !args.json {
        eprintln!(
            "replaying {} ({}), faults: {}",
            describe_timeline(&plan),
            plan.workload.name,
            plan.faults
        );
        if let Some(script) = &plan.script {
            eprintln!("script: {}", script.summary());
        }
    }
    let options = RunOptions {
        keep_trace,
        workload: args.bug.workload,
        skip_sampling: false,
        silenced_rare_state: None,
    };
    let mut report = run_with(&plan, bugs, options);
    if let Some(path) = &args.plan {
        // The plan may have been edited: the seed alone would not replay it.
        report.replay = plan_replay_line(path.display());
    }
    if let Some(path) = &args.timeline {
        if let Err(message) = write_timeline(path, &plan, &report) {
            eprintln!("error: {message}");
            return EXIT_USAGE;
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

#[derive(Serialize)]
struct ShrinkReport {
    seed: u64,
    bugs: Vec<String>,
    check: String,
    original_size: PlanSize,
    minimal_size: PlanSize,
    original_total: u64,
    minimal_total: u64,
    factor: f64,
    runs: usize,
    budget_exhausted: bool,
    kept: Vec<String>,
    saved: String,
    replay: String,
    minimal_plan: PlanFile,
}

fn cmd_shrink(args: &ShrinkArgs) -> u8 {
    let (plan, bugs) = match load_plan(
        args.plan.as_deref(),
        args.seed,
        args.recipe.as_ref().map(|recipe| recipe.0.as_slice()),
        &args.bug,
    ) {
        Ok(loaded) => loaded,
        Err(message) => return usage_error(&message),
    };
    if args.max_runs == 0 {
        return usage_error("--max-runs must be at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("shrunk-seed-{}.json", plan.seed)));
    if let Err(message) = ready_to_write(&out) {
        return usage_error(&message);
    }
    let options = ShrinkOptions {
        bugs,
        max_runs: args.max_runs,
        run: RunOptions {
            keep_trace: false,
            workload: args.bug.workload,
            skip_sampling: false,
            silenced_rare_state: None,
        },
    };
    if !args.json {
        eprintln!(
            "shrinking {} ({}), faults: {}",
            describe_timeline(&plan),
            plan.workload.name,
            plan.faults
        );
    }
    let quiet = args.json;
    let shrunk = shrink(&plan, &options, |step| {
        if quiet || !step.kept {
            return;
        }
        if let Some(size) = step.size {
            eprintln!(
                "  run {:>3}: kept {:<40} size {size}",
                step.run, step.change
            );
        }
    });
    let shrunk = match shrunk {
        Ok(shrunk) => shrunk,
        Err(report) => {
            if args.json {
                let _ = print_json(&report);
            } else {
                print!("{}", report.render());
                println!("nothing to shrink: the plan passes");
            }
            return EXIT_PASS;
        }
    };
    let file = PlanFile::new(shrunk.minimal.clone(), bugs);
    if let Err(message) = file.write(&out) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    let replay = plan_replay_line(out.display());
    if args.json {
        let report = ShrinkReport {
            seed: plan.seed,
            bugs: file.bugs.clone(),
            check: shrunk.check.clone(),
            original_size: shrunk.original_size,
            minimal_size: shrunk.minimal_size,
            original_total: shrunk.original_size.total(),
            minimal_total: shrunk.minimal_size.total(),
            factor: shrunk.factor(),
            runs: shrunk.runs,
            budget_exhausted: shrunk.budget_exhausted,
            kept: shrunk.kept.clone(),
            saved: out.display().to_string(),
            replay,
            minimal_plan: file,
        };
        return if print_json(&report) {
            EXIT_FAIL
        } else {
            EXIT_USAGE
        };
    }
    println!("{}", file.to_json());
    let failed = shrunk
        .report
        .first_failure()
        .map_or(String::new(), |check| check.message.clone());
    println!(
        "shrunk seed {} failing {}: plan size {} -> {} ({:.1}x smaller) in {} runs{}",
        plan.seed,
        shrunk.check,
        shrunk.original_size,
        shrunk.minimal_size,
        shrunk.factor(),
        shrunk.runs,
        if shrunk.budget_exhausted {
            " (run budget spent; --max-runs raises it)"
        } else {
            ""
        }
    );
    println!("minimal failure: {failed}");
    println!("saved: {}", out.display());
    println!("replay: {replay}");
    EXIT_FAIL
}

/// Makes sure `path` can be written before a run that may be long, so a
/// bad output path is bad input (exit 2) and not a result lost at the end:
/// its directory is created and the file opened for writing (a file that
/// exists is left as it is until the result replaces it).
fn ready_to_write(path: &Path) -> Result<(), String> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn write_timeline(path: &PathBuf, plan: &Plan, report: &Report) -> Result<(), String> {
    let text = serde_json::to_string(&crate::timeline::chrome_trace(plan, report))
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
                seeds: Seeds::List(seeds),
                jobs,
                bugs,
                workload,
                shard: None,
                stop: StopRule::default(),
                silenced_rare_state: None,
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

fn cmd_bench(args: &BenchArgs) -> u8 {
    if args.seeds == 0 || args.pairs == 0 || args.parquet_rounds == 0 {
        return usage_error("--seeds, --pairs and --parquet-rounds must be at least 1");
    }
    let options = BenchOptions {
        seeds: args.seeds,
        pairs: args.pairs,
        parquet_rounds: args.parquet_rounds,
    };
    let quiet = args.json;
    let report = bench(&options, |stage| {
        if !quiet {
            eprintln!("timing {stage} ...");
        }
    });
    if args.json {
        if !print_json(&report) {
            return EXIT_FAIL;
        }
    } else {
        print!("{}", render_bench(&report));
    }
    verdict(report.all_passed)
}

fn render_bench(report: &BenchReport) -> String {
    use std::fmt::Write as _;
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let t = &report.targets;
    let s = &report.standard;
    let o = &report.overhead;
    let p = &report.parquet;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} cores{}",
        report.workload,
        report.cores,
        if report.all_passed {
            ""
        } else {
            " (SOME RUNS FAILED)"
        }
    );
    let _ = writeln!(
        out,
        "  seeds/s/core    {:>8.1}  (target >= {}: {}) {} seeds, median {:.1} ms, {:.0} requests, {:.0} faults, {:.0} flushes each",
        report.seeds_per_sec, t.seeds_per_sec_min, met(t.seeds_per_sec_met),
        s.seeds, s.wall_ms_median, s.requests_mean, s.faults_mean, s.flushes_mean
    );
    let _ = writeln!(out, "  sim/wall time   {:>8.1}x", report.sim_to_wall);
    let _ = writeln!(
        out,
        "  by CPU time     {:>8.1} seeds/s, overhead {:.2}x (unskewed by other load)",
        report.seeds_per_cpu_sec, report.overhead_ratio_cpu
    );
    let _ = writeln!(
        out,
        "  sim overhead    {:>8.2}x (target <= {}: {}) median {:.1} ms simulated vs {:.1} ms direct; flushes {:.0} vs {:.0}, requests {:.0} vs {:.0}",
        report.overhead_ratio, t.overhead_ratio_max, met(t.overhead_ratio_met),
        o.sim_ms_median, o.direct_ms_median, o.sim_flushes_mean, o.direct_flushes_mean,
        o.sim_requests_mean, o.direct_requests_mean
    );
    let _ = writeln!(
        out,
        "  parquet ratio   {:>8.2}x (target >= {}: {}) {} x {} rows: ours {:.1} ms, bare ArrowWriter {:.1} ms",
        report.parquet_ratio, t.parquet_ratio_min, met(t.parquet_ratio_met),
        p.batches, p.rows_per_batch, p.ours_ms_median, p.raw_ms_median
    );
    out
}
