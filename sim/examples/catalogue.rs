//! Measures the planted-bug catalogue for BENCHMARKS.md: for each bug, from
//! several starting seeds, the seeds a default sweep runs until one fails.
//!
//! ```text
//! cargo run --release -p flush-sim --example catalogue -- --starts 5 --seed-limit 200
//! ```
//!
//! Prints the Markdown table (or JSON with `--json`); exits 1 if a bug's
//! median seeds-to-detect is above `--median-max`.

use std::process::ExitCode;

use clap::Parser;
use flush_core::bugs::PlantedBug;
use flush_sim::catalogue::{measure, render_markdown};

#[derive(Debug, Parser)]
#[command(about = "Seeds a default sweep runs until it catches each planted bug")]
struct Args {
    /// Searches per bug, each from its own starting seed.
    #[arg(long, default_value_t = 5)]
    starts: u64,
    /// Starting seeds are 0, SPACING, 2*SPACING, …
    #[arg(long, default_value_t = 1_000)]
    start_spacing: u64,
    /// Seeds one search runs at most.
    #[arg(long, default_value_t = 200)]
    seed_limit: u64,
    /// Only these bugs (repeatable); default: every bug.
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<PlantedBug>,
    /// Parallel searches (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// The acceptance bound on each bug's median seeds-to-detect.
    #[arg(long, default_value_t = 100.0)]
    median_max: f64,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bugs = if args.bugs.is_empty() {
        PlantedBug::ALL.to_vec()
    } else {
        args.bugs.clone()
    };
    let start_seeds: Vec<u64> = (0..args.starts)
        .map(|start| start * args.start_spacing)
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Wall time of the searches, for the table.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let measurements = measure(&bugs, &start_seeds, args.seed_limit, jobs, |detection| {
        let found = detection.caught.as_ref().map_or(
            format!("not caught in {} seeds", detection.seeds_run),
            |catch| format!("caught by seed {} ({})", catch.seed, catch.check),
        );
        eprintln!(
            "{:<32} from seed {:>6}: {found}, {} ms",
            detection.bug, detection.start_seed, detection.wall_ms
        );
    });
    let total_s = started.elapsed().as_secs_f64();
    if args.json {
        match serde_json::to_string_pretty(&measurements) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("error: cannot render JSON: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", render_markdown(&measurements, args.seed_limit));
        println!(
            "\n{} bugs × {} starts (seeds {:?}), at most {} seeds each, {jobs} jobs: {total_s:.1} s wall",
            bugs.len(),
            start_seeds.len(),
            start_seeds,
            args.seed_limit
        );
    }
    let over: Vec<&str> = measurements
        .iter()
        .filter(|m| {
            m.median_seeds_to_detect
                .is_none_or(|median| median > args.median_max)
        })
        .map(|m| m.bug.as_str())
        .collect();
    if over.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "median seeds-to-detect above {} for: {}",
            args.median_max,
            over.join(", ")
        );
        ExitCode::FAILURE
    }
}
