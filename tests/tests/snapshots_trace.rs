//! insta snapshots of event traces: a few pinned short seeds (the first
//! lines of each trace plus its hash) and the whole trace of a tiny plan.
//! A change in behaviour shows as a snapshot diff.
//!
//! After an intended change, review with `cargo insta review`, or accept
//! every new snapshot at once with
//! `INSTA_UPDATE=always cargo test -p flush-tests --test snapshots_trace`
//! (then run the test again without it: it must pass).

use flush_core::bugs::Bugs;
use flush_sim::plan::{FaultMix, Plan};
use flush_sim::report::{Report, WorkloadChoice};
use flush_sim::run::{run_with, RunOptions};

/// Trace lines kept in a seed's snapshot.
const HEAD_LINES: usize = 40;

fn traced(plan: &Plan) -> Report {
    run_with(
        plan,
        Bugs::NONE,
        RunOptions {
            keep_trace: true,
            workload: WorkloadChoice::Sweep,
            skip_sampling: false,
            silenced_rare_state: None,
        },
    )
}

/// Verdict, hash and size first, then the first `max_lines` trace lines.
fn render(report: &Report, max_lines: usize) -> String {
    let mut out = format!(
        "seed {} passed {} trace {} events {} requests {} flushes {} sim_ms {}\n",
        report.seed,
        report.passed,
        report.trace_hash,
        report.events,
        report.requests.issued,
        report.flushes,
        report.sim_ms
    );
    for check in report.checks.iter().filter(|check| !check.passed) {
        out.push_str(&format!("FAILED {}\n", check.message));
    }
    for line in report.trace.iter().take(max_lines) {
        out.push_str(&line.render());
        out.push('\n');
    }
    if report.trace.len() > max_lines {
        out.push_str(&format!(
            "... {} more lines\n",
            report.trace.len() - max_lines
        ));
    }
    out
}

#[test]
fn pinned_seeds_trace_heads() {
    for seed in [1u64, 2, 3] {
        let report = traced(&Plan::from_seed(seed));
        insta::assert_snapshot!(format!("seed_{seed}_head"), render(&report, HEAD_LINES));
    }
}

/// Seed 7's plan cut down to one client writing six times to two regions,
/// with no fault: small enough to pin every line.
#[test]
fn tiny_plan_whole_trace() {
    let mut plan = Plan::from_seed(7);
    plan.workload.workers = 2;
    plan.workload.regions = 2;
    plan.workload.clients = 1;
    plan.workload.writes_per_client = 6;
    plan.workload.rows_per_write_max = 4;
    plan.faults = FaultMix::none();
    let report = traced(&plan);
    assert!(report.passed, "{}", report.render());
    insta::assert_snapshot!("tiny_plan", render(&report, usize::MAX));
}
