//! Do forks at a rare state fail more often than fresh seeds? For one
//! planted bug: seeds `start..start+seeds` run plain; every passing run is
//! forked `children` times where it first reached each rare state (the
//! explorer's split), and each state's children count their failures.
//! Exploration can only beat a plain sweep where some state's children
//! fail clearly more often than fresh seeds do; this measures that, state
//! by state, without the explorer's scheduling in the way.
//!
//! ```text
//! cargo run --release -p flush-sim --example fork_lift -- --bug seed-no-stall-flush --seeds 150
//! ```

use std::collections::BTreeMap;

use clap::Parser;
use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::oracle::RareState;
use flush_sim::plan::{stream_rng, FaultMix, Plan, STREAM_PLAN};
use flush_sim::recipe::{child_seed, Split};
use flush_sim::report::WorkloadChoice;
use flush_sim::run::{run_with, RunOptions};

#[derive(Debug, Parser)]
#[command(about = "Failure rate of forks at each rare state against fresh seeds")]
struct Args {
    #[arg(long)]
    bug: PlantedBug,
    #[arg(long, default_value_t = 0)]
    start: u64,
    #[arg(long, default_value_t = 150)]
    seeds: u64,
    /// Forks per passing run and state it reached.
    #[arg(long, default_value_t = 3)]
    children: u64,
    /// Children keep the workload but draw a new fault mix (from the start)
    /// instead of splitting.
    #[arg(long)]
    remix: bool,
}

/// Per state: passing parents that reached it, forks run, forks failed.
#[derive(Default)]
struct Tally {
    parents: u64,
    children: u64,
    failed: u64,
}

fn main() {
    let args = Args::parse();
    let bugs = Bugs::only(args.bug);
    let options = RunOptions::default();
    let failed = |plan: &Plan| run_with(plan, bugs, options).first_failure().is_some();
    let mut plain_failed = 0;
    let mut tallies: BTreeMap<RareState, Tally> = BTreeMap::new();
    for seed in args.start..args.start + args.seeds {
        let plan = WorkloadChoice::Sweep.plan(seed);
        let report = run_with(&plan, bugs, options);
        if report.first_failure().is_some() {
            plain_failed += 1;
            continue;
        }
        for (state, reach) in &report.rare_reached {
            let tally = tallies.entry(*state).or_default();
            tally.parents += 1;
            for child in 0..args.children {
                let mut fork = plan.clone();
                let salt = child_seed(seed, &[], (*state as u64) << 32 | child);
                if args.remix {
                    fork.faults = FaultMix::draw(&mut stream_rng(salt, STREAM_PLAN));
                } else {
                    fork.splits.push(Split {
                        at_draw: reach.first_draw,
                        seed: salt,
                    });
                }
                tally.children += 1;
                tally.failed += u64::from(failed(&fork));
            }
        }
    }
    let rate = |failed: u64, of: u64| failed as f64 / of.max(1) as f64;
    println!(
        "{}: fresh seeds failed {plain_failed}/{} = {:.3}",
        args.bug,
        args.seeds,
        rate(plain_failed, args.seeds)
    );
    for (state, tally) in tallies {
        println!(
            "  {:<36} parents {:>4}  forks {:>5}  failed {:>4} = {:.3}",
            state.as_str(),
            tally.parents,
            tally.children,
            tally.failed,
            rate(tally.failed, tally.children)
        );
    }
}
