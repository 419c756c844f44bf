//! What a plan must hold for the simulator to run it: [`Plan::validate`].
//!
//! A plan is input: `replay --plan FILE` and `shrink --plan FILE` read it
//! from a file anyone can edit. Values the simulator cannot run (no
//! workers, an empty buffer, a tick of 0 ms, the fewest rows of a write
//! above the most) would otherwise panic inside the run or stall it until
//! `liveness` gives up, and be reported as findings about the engine. They
//! are refused before anything runs instead, every bad field at once, each
//! named by its JSON path with what was expected and what was seen.
//!
//! The plans the generator draws ([`Plan::from_seed`], [`Plan::standard`])
//! and those the fuzz targets decode always pass, and [`crate::run::run_with`]
//! holds them to it: a generator change that draws a bad plan fails the
//! first sweep that draws one.
//!
//! # Caps
//!
//! Sizes and durations have caps as well as floors. Each cap is well above
//! anything the generator draws (its range is beside each constant), so
//! every drawn plan passes and a hand-edited plan may grow a long way.
//!
//! - Sizes are capped to refuse values that cannot be meant (`workers:
//!   4294967295`), which exhaust memory or run for hours of wall time
//!   before the run's wall-clock limit reports a livelock. Measured with a
//!   release build on two cores: 1,024 regions or 256 clients run in a few
//!   seconds, 10,000 regions took 92 s and 1,000 clients 37 s; a million
//!   writes in all took 45 s. The caps bound each knob, not their product
//!   (except the writes and the rows), so a plan at several caps at once
//!   may be slow. The rows are capped in all because a run keeps every row
//!   it wrote for its checks: at the caps of writes and rows per write a
//!   plan could ask for 10^10 rows, a terabyte and more.
//! - Latencies and pauses are capped lower: the run's own waits are fixed
//!   (5 s for a restart, a graceful stop or an inspection), and a plan
//!   whose I/Os or pauses come near them fails those waits, which sweeps
//!   never do. The generator's plans with one knob raised failed
//!   `exactly_once_reply` (a graceful stop that outwaited its 5 s) or
//!   `liveness` at an I/O latency of 500 ms (2 of seeds 0..60), a slow I/O
//!   of 2,000 ms (1 of 60) and a pause of 10,000 ms (2 of 40), and never at
//!   the caps below (100 seeds at the slow-I/O cap); at an hour's I/O
//!   latency even `no_lost_rows` failed, its inspection given up. Whether
//!   any of these is the engine's fault is not known: they are outside
//!   what the checks' waits are sized for. For the same reason the
//!   liveness phase has a floor: at 1,000 ms 3 of 60 plans failed
//!   `liveness`, at 10,000 ms none.

use std::fmt;

use crate::plan::{Plan, Workload};
use crate::recipe::{check_splits, format_splits};
use crate::script::{Script, Step, MAX_ROWS_PER_STEP, MAX_SCRIPTED_FAULTS, MAX_STEPS_PER_CLIENT};

/// Workers of one engine (the generator draws 1..=4, the standard has 2).
pub const MAX_WORKERS: u64 = 64;
/// Regions (the generator draws 1..=8, the standard has 8).
pub const MAX_REGIONS: u64 = 1_024;
/// Workload clients (the generator draws 1..=6, the standard has 4).
pub const MAX_CLIENTS: u64 = 256;
/// Writes of one client (the generator draws 20..=500, the standard 250).
pub const MAX_WRITES_PER_CLIENT: u64 = 100_000;
/// Writes of all clients together (the generator's most is 3,000).
pub const MAX_TOTAL_WRITES: u64 = 1_000_000;
/// Rows of one write (the generator draws at most 60, the standard 100).
pub const MAX_ROWS_PER_WRITE: u64 = 10_000;
/// Rows of all writes together, at the most rows per write (the
/// generator's most is 180,000, the standard's 100,000; a script counts
/// its own). A run keeps every row for its checks: 10 million rows of the
/// standard workload peaked at 1.7 GB and took 13 s.
pub const MAX_TOTAL_ROWS: u64 = 10_000_000;
/// Distinct series (the generator draws 1..=8, the standard has 16).
pub const MAX_SERIES: u64 = 100_000;
/// Requests one client keeps in flight (the generator draws 1..=8).
pub const MAX_IN_FLIGHT: u64 = 256;
/// Retries of a flush result that finds its worker's queue full (the
/// generator has 5, the core's default is 64).
pub const MAX_NOTIFY_RETRIES: u64 = 1_000;
/// A client's pause between two requests (the generator draws 0..=20).
pub const MAX_THINK_MS: u64 = 1_000;
/// The normal latency of one I/O (the generator draws 0..=5).
pub const MAX_IO_LATENCY_MS: u64 = 100;
/// The extra latency of a slow I/O (the generator draws 10..=300).
pub const MAX_SLOW_IO_MS: u64 = 1_000;
/// The first backoff of a flush result's retry, doubled on each of the
/// first six retries (the generator has 1).
pub const MAX_NOTIFY_BACKOFF_MS: u64 = 1_000;
/// Tick and auto-flush intervals: a simulated hour (the generator's
/// longest is the 1,000 ms auto-flush interval). A long interval only
/// makes its actor quieter.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// The safety and liveness phases: a simulated day (the generator's
/// longest is the standard's 600,000 ms safety phase).
pub const MAX_BUDGET_MS: u64 = 86_400_000;
/// The shortest liveness phase: requests pending when faults stop may
/// wait out a restart first (the generator has 60,000).
pub const MIN_LIVENESS_BUDGET_MS: u64 = 10_000;
/// Rates of the non-write requests are per mille of writes.
pub const PER_MILLE: u64 = 1_000;

/// One field of a plan the simulator cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanProblem {
    /// The field's JSON path, as in a plan file: `workload.workers`.
    pub field: String,
    /// What the plan has there.
    pub value: String,
    /// What a run needs there, and why where it is not plain.
    pub expected: String,
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.field, self.value, self.expected
        )
    }
}

/// Every problem of one plan: the workload's fields in their order, then
/// the fields that must agree, then the fault classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanProblems(pub Vec<PlanProblem>);

impl fmt::Display for PlanProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [only] => write!(f, "{only}"),
            problems => {
                write!(f, "{} problems:", problems.len())?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PlanProblems {}

/// A workload field with the range a run can take.
struct Bound {
    field: &'static str,
    get: fn(&Workload) -> u64,
    min: u64,
    max: u64,
    /// Why the floor, when a value below it is refused for a reason that
    /// is not plain.
    why_min: &'static str,
}

const fn bound(field: &'static str, get: fn(&Workload) -> u64, min: u64, max: u64) -> Bound {
    Bound {
        field,
        get,
        min,
        max,
        why_min: "",
    }
}

/// Every workload field with a range, in the plan's field order.
const BOUNDS: &[Bound] = &[
    bound("workers", |w| u64::from(w.workers), 1, MAX_WORKERS),
    bound("regions", |w| u64::from(w.regions), 1, MAX_REGIONS),
    bound("clients", |w| u64::from(w.clients), 1, MAX_CLIENTS),
    bound(
        "writes_per_client",
        |w| u64::from(w.writes_per_client),
        0,
        MAX_WRITES_PER_CLIENT,
    ),
    bound(
        "rows_per_write_min",
        |w| u64::from(w.rows_per_write_min),
        1,
        MAX_ROWS_PER_WRITE,
    ),
    bound(
        "rows_per_write_max",
        |w| u64::from(w.rows_per_write_max),
        1,
        MAX_ROWS_PER_WRITE,
    ),
    bound("series", |w| u64::from(w.series), 1, MAX_SERIES),
    bound(
        "max_in_flight",
        |w| u64::from(w.max_in_flight),
        1,
        MAX_IN_FLIGHT,
    ),
    bound("think_ms_max", |w| w.think_ms_max, 0, MAX_THINK_MS),
    Bound {
        why_min: " (writes stall while the buffer holds as many bytes as its size, \
                   so an empty buffer stalls every write)",
        ..bound(
            "global_buffer_bytes",
            |w| w.global_buffer_bytes as u64,
            1,
            u64::MAX,
        )
    },
    bound("mix.flush", |w| u64::from(w.mix.flush), 0, PER_MILLE),
    bound("mix.alter", |w| u64::from(w.mix.alter), 0, PER_MILLE),
    bound("mix.truncate", |w| u64::from(w.mix.truncate), 0, PER_MILLE),
    bound("mix.drop", |w| u64::from(w.mix.drop), 0, PER_MILLE),
    bound("mix.close", |w| u64::from(w.mix.close), 0, PER_MILLE),
    bound(
        "mix.downgrade",
        |w| u64::from(w.mix.downgrade),
        0,
        PER_MILLE,
    ),
    bound(
        "io_latency_ms_max",
        |w| w.io_latency_ms_max,
        0,
        MAX_IO_LATENCY_MS,
    ),
    bound("slow_io_ms_max", |w| w.slow_io_ms_max, 0, MAX_SLOW_IO_MS),
    bound(
        "injector_tick_ms",
        |w| w.injector_tick_ms,
        1,
        MAX_INTERVAL_MS,
    ),
    bound("monitor_tick_ms", |w| w.monitor_tick_ms, 1, MAX_INTERVAL_MS),
    bound(
        "notify_retry_limit",
        |w| u64::from(w.notify_retry_limit),
        0,
        MAX_NOTIFY_RETRIES,
    ),
    Bound {
        why_min: " (without a backoff a flush result retries on a full queue at the same \
                   simulated instant: while the queue is drawn full, time never moves on)",
        ..bound(
            "notify_retry_backoff_ms",
            |w| w.notify_retry_backoff_ms,
            1,
            MAX_NOTIFY_BACKOFF_MS,
        )
    },
    bound("safety_budget_ms", |w| w.safety_budget_ms, 1, MAX_BUDGET_MS),
    Bound {
        why_min: " (requests pending when faults stop may wait out a restart first)",
        ..bound(
            "liveness_budget_ms",
            |w| w.liveness_budget_ms,
            MIN_LIVENESS_BUDGET_MS,
            MAX_BUDGET_MS,
        )
    },
];

impl Plan {
    /// Whether the simulator can run this plan: `Err` lists every field it
    /// cannot run, by JSON path, with what was expected and what was seen.
    pub fn validate(&self) -> Result<(), PlanProblems> {
        let mut problems = Vec::new();
        check_workload(&self.workload, &mut problems);
        check_total_rows(self, &mut problems);
        check_faults(self, &mut problems);
        check_splits_of(self, &mut problems);
        check_script(self, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanProblems(problems))
        }
    }
}

fn check_workload(workload: &Workload, problems: &mut Vec<PlanProblem>) {
    for bound in BOUNDS {
        let value = (bound.get)(workload);
        let expected = if value < bound.min {
            format!("at least {}{}", bound.min, bound.why_min)
        } else if value > bound.max {
            format!("at most {}", bound.max)
        } else {
            continue;
        };
        problems.push(problem(bound.field, value, expected));
    }
    if let Some(interval_ms) = workload.auto_flush_interval_ms {
        if interval_ms > MAX_INTERVAL_MS {
            let expected = format!("at most {MAX_INTERVAL_MS}, or absent (no periodic flush)");
            problems.push(problem("auto_flush_interval_ms", interval_ms, expected));
        }
    }
    check_relations(workload, problems);
}

/// The fields that must agree with each other, each relation only when
/// the field it compares with is in its own range (one bad field, one
/// problem).
fn check_relations(workload: &Workload, problems: &mut Vec<PlanProblem>) {
    if workload.rows_per_write_max >= 1 && workload.rows_per_write_min > workload.rows_per_write_max
    {
        let expected = format!(
            "at most workload.rows_per_write_max ({})",
            workload.rows_per_write_max
        );
        problems.push(problem(
            "rows_per_write_min",
            workload.rows_per_write_min,
            expected,
        ));
    }
    if workload.regions >= 1 && workload.skip_wal_regions > workload.regions {
        let expected = format!(
            "at most workload.regions ({}), as regions 1..=skip_wal_regions skip the WAL",
            workload.regions
        );
        problems.push(problem(
            "skip_wal_regions",
            workload.skip_wal_regions,
            expected,
        ));
    }
    let factors_in_range = u64::from(workload.clients) <= MAX_CLIENTS
        && u64::from(workload.writes_per_client) <= MAX_WRITES_PER_CLIENT;
    if factors_in_range && workload.total_writes() > MAX_TOTAL_WRITES {
        let expected = format!(
            "at most {MAX_TOTAL_WRITES} writes in all, saw workload.clients ({}) × \
             workload.writes_per_client = {}",
            workload.clients,
            workload.total_writes()
        );
        problems.push(problem(
            "writes_per_client",
            workload.writes_per_client,
            expected,
        ));
    }
}

/// The rows a run may write in all: a script's own, or the workload's
/// writes at its most rows per write (only when those are in range: one
/// bad field, one problem).
fn check_total_rows(plan: &Plan, problems: &mut Vec<PlanProblem>) {
    let keeps = "a run keeps every row it wrote for its checks";
    if let Some(script) = &plan.script {
        let rows = script.rows_written();
        if rows > MAX_TOTAL_ROWS {
            problems.push(PlanProblem {
                field: "script.clients".to_string(),
                value: format!("{rows} rows written in all"),
                expected: format!("at most {MAX_TOTAL_ROWS} rows in all ({keeps})"),
            });
        }
        return;
    }
    let workload = &plan.workload;
    let factors_in_range = u64::from(workload.clients) <= MAX_CLIENTS
        && u64::from(workload.writes_per_client) <= MAX_WRITES_PER_CLIENT
        && workload.total_writes() <= MAX_TOTAL_WRITES
        && u64::from(workload.rows_per_write_max) <= MAX_ROWS_PER_WRITE;
    let rows = workload
        .total_writes()
        .saturating_mul(u64::from(workload.rows_per_write_max));
    if factors_in_range && rows > MAX_TOTAL_ROWS {
        let expected = format!(
            "at most {MAX_TOTAL_ROWS} rows in all ({keeps}), saw workload.clients ({}) × \
             workload.writes_per_client ({}) × workload.rows_per_write_max = {rows}",
            workload.clients, workload.writes_per_client
        );
        problems.push(problem(
            "rows_per_write_max",
            workload.rows_per_write_max,
            expected,
        ));
    }
}

fn check_faults(plan: &Plan, problems: &mut Vec<PlanProblem>) {
    for (class, setting) in &plan.faults.classes {
        // Also for a class that is off: switching it on must not make the
        // plan unrunnable. NaN is outside the range too.
        if !(0.0..=1.0).contains(&setting.probability) {
            problems.push(PlanProblem {
                field: format!("faults.classes.{class}.probability"),
                value: setting.probability.to_string(),
                expected: "a probability in 0..=1".to_string(),
            });
        }
    }
}

/// A timeline's splits: few enough, at strictly increasing draws.
fn check_splits_of(plan: &Plan, problems: &mut Vec<PlanProblem>) {
    if let Err(expected) = check_splits(&plan.splits) {
        problems.push(PlanProblem {
            field: "splits".to_string(),
            value: format!("[{}]", format_splits(&plan.splits)),
            expected,
        });
    }
}

/// Most problems listed for one script's steps: a script with a thousand
/// bad steps is one mistake repeated.
const MAX_STEP_PROBLEMS: usize = 10;

/// A scripted plan: a list per client, steps on regions that exist, the
/// script's caps, and every scripted class left to the script.
fn check_script(plan: &Plan, problems: &mut Vec<PlanProblem>) {
    let Some(script) = &plan.script else {
        return;
    };
    let workload = &plan.workload;
    let mut add = |field: String, value: String, expected: String| {
        problems.push(PlanProblem {
            field,
            value,
            expected,
        })
    };
    if script.clients.len() != workload.clients as usize {
        add(
            "script.clients".to_string(),
            match script.clients.len() {
                1 => "1 list".to_string(),
                lists => format!("{lists} lists"),
            },
            format!(
                "one list per client (workload.clients = {})",
                workload.clients
            ),
        );
    }
    let mut step_problems = Vec::new();
    for (client, steps) in script.clients.iter().enumerate() {
        if steps.len() > MAX_STEPS_PER_CLIENT {
            add(
                format!("script.clients[{client}]"),
                format!("{} steps", steps.len()),
                format!("at most {MAX_STEPS_PER_CLIENT} steps"),
            );
        }
        for (index, step) in steps.iter().enumerate() {
            let field = |name: &str| format!("script.clients[{client}][{index}].{name}");
            step_problems.extend(step_problem(step, workload.regions, field));
        }
    }
    let more = step_problems.len().saturating_sub(MAX_STEP_PROBLEMS);
    for (field, value, expected) in step_problems.into_iter().take(MAX_STEP_PROBLEMS) {
        add(field, value, expected);
    }
    if more > 0 {
        add(
            "script.clients".to_string(),
            format!("{more} more steps with problems"),
            "steps as above".to_string(),
        );
    }
    check_scripted_faults(plan, script, &mut add);
    if !plan.splits.is_empty() {
        add(
            "splits".to_string(),
            format!("[{}]", format_splits(&plan.splits)),
            "none in a scripted plan (its faults are the script's, not drawn)".to_string(),
        );
    }
}

/// What is wrong with one step, if anything: (field, value, expected).
fn step_problem(
    step: &Step,
    regions: u32,
    field: impl Fn(&str) -> String,
) -> Option<(String, String, String)> {
    if let Some(region) = step.region() {
        if region == 0 || region > u64::from(regions) {
            let expected = format!("a region of 1..={regions} (workload.regions)");
            return Some((field("region"), region.to_string(), expected));
        }
    }
    match *step {
        Step::Write { rows, .. } if rows == 0 || rows > MAX_ROWS_PER_STEP => Some((
            field("rows"),
            rows.to_string(),
            format!("1..={MAX_ROWS_PER_STEP} rows"),
        )),
        Step::Think { ms } if ms > MAX_THINK_MS => Some((
            field("ms"),
            ms.to_string(),
            format!("at most {MAX_THINK_MS}"),
        )),
        _ => None,
    }
}

/// The script's faults: few enough, each of a class the script decides,
/// and that class off in the mix (the mix would say a probability the run
/// does not use).
fn check_scripted_faults(
    plan: &Plan,
    script: &Script,
    add: &mut impl FnMut(String, String, String),
) {
    if script.faults.len() > MAX_SCRIPTED_FAULTS {
        add(
            "script.faults".to_string(),
            format!("{} faults", script.faults.len()),
            format!("at most {MAX_SCRIPTED_FAULTS}"),
        );
    }
    for (index, fault) in script.faults.iter().enumerate() {
        if !fault.class.scripted() {
            add(
                format!("script.faults[{index}].class"),
                fault.class.to_string(),
                "a class decided at a fault point (crash and graceful_stop follow the \
                 fault mix: the crash actor draws when they land)"
                    .to_string(),
            );
        }
    }
    for (class, setting) in &plan.faults.classes {
        if class.scripted() && setting.enabled {
            add(
                format!("faults.classes.{class}.enabled"),
                "true".to_string(),
                format!("false in a scripted plan (its script decides when {class} fires)"),
            );
        }
    }
}

fn problem(field: &str, value: impl fmt::Display, expected: String) -> PlanProblem {
    PlanProblem {
        field: format!("workload.{field}"),
        value: value.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FaultClass;

    fn messages(plan: &Plan) -> Vec<String> {
        match plan.validate() {
            Ok(()) => Vec::new(),
            Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_plan_the_generator_draws_validates() {
        for seed in 0..2_000 {
            for plan in [Plan::from_seed(seed), Plan::standard(seed)] {
                assert_eq!(messages(&plan), Vec::<String>::new(), "seed {seed}");
            }
        }
        assert_eq!(
            messages(&Plan::from_seed(0).without_faults()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_bad_field_is_named_with_what_was_expected() {
        let mut plan = Plan::from_seed(1);
        plan.workload.rows_per_write_max = 60;
        plan.workload.rows_per_write_min = 70;
        assert_eq!(
            messages(&plan),
            ["workload.rows_per_write_min = 70: expected at most workload.rows_per_write_max (60)"]
        );
        let mut plan = Plan::from_seed(1);
        plan.workload.injector_tick_ms = 0;
        assert_eq!(
            messages(&plan),
            ["workload.injector_tick_ms = 0: expected at least 1"]
        );
        let mut plan = Plan::from_seed(1);
        plan.workload.clients = 200;
        plan.workload.writes_per_client = 10_000;
        assert_eq!(
            messages(&plan),
            [
                "workload.writes_per_client = 10000: expected at most 1000000 writes in all, \
              saw workload.clients (200) × workload.writes_per_client = 2000000"
            ]
        );
    }

    #[test]
    fn the_rows_of_a_run_are_capped_in_all() {
        let mut plan = Plan::standard(1);
        plan.workload.clients = 100;
        plan.workload.writes_per_client = 10_000;
        plan.workload.rows_per_write_max = 10;
        assert_eq!(messages(&plan), Vec::<String>::new(), "10 million rows");
        plan.workload.rows_per_write_max = 11;
        assert_eq!(
            messages(&plan),
            [
                "workload.rows_per_write_max = 11: expected at most 10000000 rows in all \
              (a run keeps every row it wrote for its checks), saw workload.clients (100) × \
              workload.writes_per_client (10000) × workload.rows_per_write_max = 11000000"
            ]
        );
        // A script counts its own rows, not the workload's.
        let step = Step::Write {
            region: 1,
            rows: MAX_ROWS_PER_STEP,
        };
        let mut plan = Plan::from_seed(1).without_faults();
        plan.workload.clients = 20;
        plan.workload.rows_per_write_max = 1;
        plan.script = Some(Script {
            clients: vec![vec![step; MAX_STEPS_PER_CLIENT]; 20],
            faults: Vec::new(),
        });
        plan.workload.writes_per_client = MAX_STEPS_PER_CLIENT as u32;
        assert_eq!(
            messages(&plan),
            [
                "script.clients = 20000000 rows written in all: expected at most 10000000 rows \
              in all (a run keeps every row it wrote for its checks)"
            ]
        );
    }

    #[test]
    fn a_run_refuses_a_plan_that_does_not_validate() {
        let mut plan = Plan::from_seed(1);
        plan.workload.monitor_tick_ms = 0;
        let report = crate::run(&plan, flush_core::bugs::Bugs::NONE);
        assert!(!report.passed);
        assert_eq!(report.events, 0, "nothing ran");
        assert_eq!(
            report.first_failure().map(|check| check.message.as_str()),
            Some(
                "no_panic: assertion failed: the plan validates: \
                 workload.monitor_tick_ms = 0: expected at least 1"
            )
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut plan = Plan::from_seed(1);
        plan.workload.workers = 0;
        plan.workload.regions = u32::MAX;
        plan.workload.skip_wal_regions = u32::MAX;
        plan.workload.mix.drop = 1_001;
        if let Some(setting) = plan.faults.classes.get_mut(&FaultClass::SlowIo) {
            setting.probability = f64::NAN;
        }
        let problems = plan.validate().expect_err("four bad fields");
        assert_eq!(
            problems.to_string(),
            "4 problems:\n  \
             workload.workers = 0: expected at least 1\n  \
             workload.regions = 4294967295: expected at most 1024\n  \
             workload.mix.drop = 1001: expected at most 1000\n  \
             faults.classes.slow_io.probability = NaN: expected a probability in 0..=1"
        );
    }
}
