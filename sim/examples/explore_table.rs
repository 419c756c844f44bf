//! Plain sweeps against exploration, for BENCHMARKS.md: for each planted
//! bug, from several starting seeds, the runs and CPU-seconds each spends
//! before its first failing timeline.
//!
//! ```text
//! cargo run --release -p flush-sim --example explore_table -- --starts 5 --run-limit 400
//! ```
//!
//! Both modes go through [`explore`] with one thread and a run budget, so
//! they schedule and count alike: `plain` draws fresh seeds only, the
//! explorer also runs the splits it earns. CPU-seconds are the runs' own
//! times (each run is one thread); runs are exact.

use clap::Parser;
use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::explore::{explore, ExploreOptions};
use flush_sim::report::WorkloadChoice;

#[derive(Debug, Parser)]
#[command(about = "Runs and CPU-seconds to each planted bug: plain sweep vs exploration")]
struct Args {
    /// Searches per bug and mode, each from its own starting seed.
    #[arg(long, default_value_t = 5)]
    starts: u64,
    /// Starting seeds are 0, SPACING, 2*SPACING, …
    #[arg(long, default_value_t = 1_000)]
    start_spacing: u64,
    /// Runs one search spends at most.
    #[arg(long, default_value_t = 400)]
    run_limit: u64,
    /// Only these bugs (repeatable); default: every bug.
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<PlantedBug>,
    /// Parallel searches (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
}

/// Runs and CPU ms to the first failure of one search, if it failed.
type Found = Option<(u64, u64)>;

fn search(bug: PlantedBug, start_seed: u64, run_limit: u64, plain: bool) -> Found {
    let options = ExploreOptions {
        start_seed,
        jobs: 1,
        bugs: Bugs::only(bug),
        workload: WorkloadChoice::Sweep,
        budget_time: None,
        budget_runs: Some(run_limit),
        until_failures: 1,
        plain,
    };
    let exploration = explore(&options, |_| {});
    exploration
        .runs_to_first_failure
        .zip(exploration.cpu_ms_to_first_failure)
}

/// Median with misses (`None`) above everything.
fn median(mut values: Vec<Option<u64>>) -> Option<u64> {
    values.sort_by_key(|value| value.unwrap_or(u64::MAX));
    values.get(values.len() / 2).copied().flatten()
}

fn cell(value: Option<u64>, scale: f64, limit: &str) -> String {
    value.map_or(format!("> {limit}"), |value| {
        if scale == 1.0 {
            value.to_string()
        } else {
            format!("{:.2}", value as f64 / scale)
        }
    })
}

fn main() {
    let args = Args::parse();
    let bugs = if args.bugs.is_empty() {
        PlantedBug::ALL.to_vec()
    } else {
        args.bugs.clone()
    };
    let starts: Vec<u64> = (0..args.starts).map(|i| i * args.start_spacing).collect();
    let searches: Vec<(PlantedBug, u64, bool)> = bugs
        .iter()
        .flat_map(|bug| {
            starts
                .iter()
                .flat_map(move |start| [(*bug, *start, true), (*bug, *start, false)])
        })
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(bug, start, plain)) = searches.get(index) else {
                    break;
                };
                let result = search(bug, start, args.run_limit, plain);
                eprintln!(
                    "{:<34} from {start:>6} {}: {result:?}",
                    bug.name(),
                    if plain { "plain  " } else { "explore" }
                );
                found
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(index, result);
            });
        }
    });
    let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    let limit = args.run_limit.to_string();
    println!("| bug | plain runs (median) | explore runs | plain CPU-s | explore CPU-s | CPU ratio (plain / explore) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for bug in &bugs {
        let pick = |plain: bool, what: fn((u64, u64)) -> u64| {
            let values = searches
                .iter()
                .enumerate()
                .filter(|(_, search)| search.0 == *bug && search.2 == plain)
                .map(|(index, _)| found.get(&index).copied().flatten().map(what))
                .collect();
            median(values)
        };
        let (plain_runs, explore_runs) = (pick(true, |f| f.0), pick(false, |f| f.0));
        let (plain_cpu, explore_cpu) = (pick(true, |f| f.1), pick(false, |f| f.1));
        let ratio = match (plain_cpu, explore_cpu) {
            (Some(plain), Some(explore)) if explore > 0 => {
                format!("{:.2}", plain as f64 / explore as f64)
            }
            _ => "—".to_string(),
        };
        println!(
            "| `{}` | {} | {} | {} | {} | {ratio} |",
            bug.name(),
            cell(plain_runs, 1.0, &limit),
            cell(explore_runs, 1.0, &limit),
            cell(plain_cpu, 1_000.0, "limit"),
            cell(explore_cpu, 1_000.0, "limit"),
        );
    }
    println!(
        "\n{} bugs × {} starts (seeds {starts:?}), at most {} runs each, {jobs} searches at a time",
        bugs.len(),
        starts.len(),
        args.run_limit
    );
}
