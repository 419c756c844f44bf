//! Every planted bug is caught by a default sweep (DESIGN §6).
//!
//! For each entry of [`PlantedBug::ALL`] the sweep's own plans
//! ([`Plan::from_seed`], no fault mix chosen per bug) run from
//! [`START_SEED`] until one fails; that must happen within
//! [`SEEDS_TO_DETECT_MAX`] seeds. The catching seed must then
//! - fail again, with the same check and trace, when its replay line is
//!   parsed by the `flushsim` command line and run alone, and
//! - pass with no bug planted, so the bug and not the seed is to blame.
//!
//! Seeds-to-detect per bug is printed (`cargo test -p flush-tests --test
//! bug_catalogue -- --nocapture`). `FLUSHSIM_CATALOGUE_START=N` searches
//! from another start seed; BENCHMARKS.md has the median over several
//! starts, from `cargo run --release -p flush-sim --example catalogue`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::Parser;
use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::catalogue::{first_detection, Catch, Detection};
use flush_sim::cli::{Cli, Command};
use flush_sim::{run, Plan, Report};

/// The first seed searched, unless `FLUSHSIM_CATALOGUE_START` says otherwise.
const START_SEED: u64 = 0;
/// The bound the catalogue promises: every bug is caught within this many
/// seeds of a default sweep.
const SEEDS_TO_DETECT_MAX: u64 = 100;

fn start_seed() -> u64 {
    std::env::var("FLUSHSIM_CATALOGUE_START")
        .ok()
        .and_then(|seed| seed.trim().parse().ok())
        .unwrap_or(START_SEED)
}

/// Runs the replay line exactly as a user would type it, through the
/// `flushsim` parser.
fn replay(line: &str) -> Report {
    let (_, arguments) = line
        .split_once(" -- ")
        .unwrap_or_else(|| panic!("replay line without ` -- `: {line}"));
    let argv = std::iter::once("flushsim").chain(arguments.split_whitespace());
    let cli = Cli::try_parse_from(argv)
        .unwrap_or_else(|error| panic!("replay line does not parse: {line}: {error}"));
    let Command::Replay(args) = cli.command else {
        panic!("replay line is not a replay command: {line}");
    };
    let seed = args.seed.expect("a sweep's replay line names its seed");
    let bugs = args
        .bug
        .bugs
        .iter()
        .fold(Bugs::NONE, |bugs, bug| bugs.with(*bug));
    run(&args.bug.workload.plan(seed), bugs)
}

/// Checks what a catch claims; returns the problems found.
fn confirm(bug: PlantedBug, catch: &Catch) -> Vec<String> {
    let mut problems = Vec::new();
    let replayed = replay(&catch.replay);
    match replayed.first_failure() {
        None => problems.push(format!(
            "{bug}: seed {} failed in the search but passed when replayed alone ({})",
            catch.seed, catch.replay
        )),
        Some(failed) if failed.name != catch.check => problems.push(format!(
            "{bug}: seed {} failed {} in the search but {} when replayed alone",
            catch.seed, catch.check, failed.name
        )),
        Some(_) => {}
    }
    if replayed.trace_hash != catch.trace_hash {
        problems.push(format!(
            "{bug}: seed {} traced {} in the search but {} when replayed alone",
            catch.seed, catch.trace_hash, replayed.trace_hash
        ));
    }
    let clean = run(&Plan::from_seed(catch.seed), Bugs::NONE);
    if let Some(failed) = clean.first_failure() {
        problems.push(format!(
            "{bug}: seed {} fails without any bug planted, so it proves nothing: {}",
            catch.seed, failed.message
        ));
    }
    problems
}

#[test]
fn every_planted_bug_is_caught_by_a_default_sweep() {
    let start = start_seed();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Detection, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(PlantedBug::ALL.len()) {
            scope.spawn(|| {
                while let Some(bug) = PlantedBug::ALL.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let detection = first_detection(*bug, start, SEEDS_TO_DETECT_MAX);
                    let problems = match &detection.caught {
                        Some(catch) => confirm(*bug, catch),
                        None => vec![format!(
                            "{bug}: no seed of {start}..{} failed; expected a default sweep to \
                             catch it within {SEEDS_TO_DETECT_MAX} seeds",
                            start + SEEDS_TO_DETECT_MAX
                        )],
                    };
                    results
                        .lock()
                        .expect("no search panics while holding the lock")
                        .push((detection, problems));
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .expect("no search panics while holding the lock");
    results.sort_by_key(|(detection, _)| {
        PlantedBug::ALL
            .iter()
            .position(|bug| bug.name() == detection.bug)
    });
    assert_eq!(results.len(), PlantedBug::ALL.len(), "one search per bug");

    println!("seeds to detect, from seed {start} (bound {SEEDS_TO_DETECT_MAX}):");
    for (detection, _) in &results {
        let found = detection
            .caught
            .as_ref()
            .map_or("not caught".to_string(), |catch| {
                format!("seed {:<6} {}", catch.seed, catch.check)
            });
        println!(
            "  {:<32} {:>4}  {found}  ({} ms)",
            detection.bug, detection.seeds_run, detection.wall_ms
        );
    }
    let problems: Vec<String> = results
        .into_iter()
        .flat_map(|(_, problems)| problems)
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
