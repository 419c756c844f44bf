//! Exploration: sweeping seeds, and forking the runs that reach something
//! rare into other futures of the same past (moonpool's and Antithesis'
//! "multiverse", done by re-running instead of forking a process).
//!
//! A plain sweep draws each seed's faults blindly; a bug that needs a
//! fault inside a narrow window is found by luck. Here, when a run reaches
//! a rare state for the first time in this exploration, it is re-run as
//! children: the same seed with the fault streams re-seeded from the
//! moment of that state on (a [`Split`]). Every child shares its parent's
//! run up to the split, so it starts inside the window the parent opened,
//! and tries other faults from there. Children that reach a state or a
//! combination of states nobody reached before get children of their own;
//! each state has an energy budget of children, so one common state cannot
//! crowd out the rest. A run is tens of milliseconds, so re-running the
//! prefix costs little and every timeline stays replayable by its recipe.
//!
//! The order is deterministic: runs go in batches, and a batch's results
//! are folded in batch order whatever thread finished first, so an
//! exploration from the same start, bugs and budget in runs makes the same
//! timelines. A time budget only cuts it shorter.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flush_core::bugs::Bugs;
use serde::{Deserialize, Serialize};

use crate::oracle::{RareState, Reach};
use crate::plan::Plan;
use crate::recipe::{child_seed, format_splits, Split, MAX_SPLITS};
use crate::report::{rare_state_counts, Report, WorkloadChoice};
use crate::run::{run_with, RunOptions};
use crate::sweep::Failure;

/// Children a run gets for each rare state it is the first to reach.
const CHILDREN_PER_NEW_STATE: u32 = 6;
/// Children a run gets for reaching a combination of states that no run
/// reached before (split at the state that completed it).
const CHILDREN_PER_NEW_COMBINATION: u32 = 2;
/// Children each rare state may cause in one exploration.
const ENERGY_PER_STATE: u32 = 96;
/// Timelines waiting to run, at most (the global energy budget).
const FRONTIER_MAX: usize = 4_096;
/// Runs per batch: fixed, not the number of threads, so that the same
/// exploration makes the same timelines on any machine.
const BATCH: usize = 8;

#[derive(Clone, Debug)]
pub struct ExploreOptions {
    /// Fresh seeds are drawn from here upwards.
    pub start_seed: u64,
    pub jobs: usize,
    pub bugs: Bugs,
    pub workload: WorkloadChoice,
    /// Stop after this much wall time…
    pub budget_time: Option<Duration>,
    /// …or after this many runs (deterministic; tests and measurements).
    pub budget_runs: Option<u64>,
    /// Stop once this many timelines failed.
    pub until_failures: u64,
    /// Splits off: a plain sweep from `start_seed`, scheduled and counted
    /// the same way (what the measurements compare against).
    pub plain: bool,
}

/// What an exploration did and found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Exploration {
    pub runs: u64,
    pub fresh_seeds: u64,
    pub split_runs: u64,
    /// Sum of the runs' own times: CPU-seconds spent, near enough (each run
    /// is one thread).
    pub cpu_ms: u64,
    pub wall_ms: u64,
    /// Runs that reached each rare state (every state listed).
    pub rare_states: BTreeMap<String, u64>,
    /// Distinct sets of rare states runs reached.
    pub combinations: usize,
    /// Failed timelines, in the order the exploration met them, each with
    /// the line that replays it.
    pub failures: Vec<Failure>,
    /// Runs (and CPU ms) spent until the first failure, if one was found.
    pub runs_to_first_failure: Option<u64>,
    pub cpu_ms_to_first_failure: Option<u64>,
    pub stopped: String,
}

impl Exploration {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The exploration's state between batches.
struct Explorer<'a> {
    options: &'a ExploreOptions,
    next_seed: u64,
    frontier: VecDeque<Plan>,
    seen_states: BTreeSet<RareState>,
    seen_combinations: BTreeSet<Vec<RareState>>,
    energy: BTreeMap<RareState, u32>,
    outcome: Exploration,
}

/// Explores until the budget or `until_failures` stops it.
pub fn explore(options: &ExploreOptions, mut on_report: impl FnMut(&Report)) -> Exploration {
    // Wall time, for the budget and the summary; never read inside a run.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let mut explorer = Explorer::new(options);
    loop {
        if let Some(why) = explorer.should_stop(started.elapsed()) {
            explorer.outcome.stopped = why;
            break;
        }
        let batch = explorer.next_batch(BATCH);
        for (plan, report) in batch.iter().zip(run_batch(&batch, options)) {
            on_report(&report);
            explorer.fold(plan, &report);
        }
    }
    explorer.outcome.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    explorer.outcome
}

impl<'a> Explorer<'a> {
    fn new(options: &'a ExploreOptions) -> Self {
        Explorer {
            options,
            next_seed: options.start_seed,
            frontier: VecDeque::new(),
            seen_states: BTreeSet::new(),
            seen_combinations: BTreeSet::new(),
            energy: RareState::ALL
                .iter()
                .map(|state| (*state, ENERGY_PER_STATE))
                .collect(),
            outcome: Exploration {
                rare_states: rare_state_counts(&BTreeMap::new()),
                ..Exploration::default()
            },
        }
    }

    fn should_stop(&self, elapsed: Duration) -> Option<String> {
        let options = self.options;
        let failures = self.outcome.failures.len() as u64;
        if failures >= options.until_failures.max(1) {
            return Some(format!("{failures} failed timeline(s)"));
        }
        if options
            .budget_runs
            .is_some_and(|runs| self.outcome.runs >= runs)
        {
            return Some(format!("run budget ({} runs) spent", self.outcome.runs));
        }
        if options.budget_time.is_some_and(|budget| elapsed >= budget) {
            return Some(format!(
                "time budget spent after {} runs",
                self.outcome.runs
            ));
        }
        None
    }

    /// Up to three quarters of a batch from the frontier, the rest fresh
    /// seeds: splits go first, but the sweep never stops moving.
    fn next_batch(&mut self, size: usize) -> Vec<Plan> {
        let remaining = self.options.budget_runs.map_or(usize::MAX, |runs| {
            usize::try_from(runs.saturating_sub(self.outcome.runs)).unwrap_or(usize::MAX)
        });
        let size = size.min(remaining).max(1);
        let from_frontier = if self.options.plain {
            0
        } else {
            (size * 3 / 4).min(self.frontier.len())
        };
        let mut batch: Vec<Plan> = self.frontier.drain(..from_frontier).collect();
        while batch.len() < size {
            batch.push(self.options.workload.plan(self.next_seed));
            self.next_seed = self.next_seed.wrapping_add(1);
        }
        batch
    }

    /// Counts one finished run and queues the children it earned.
    fn fold(&mut self, plan: &Plan, report: &Report) {
        let outcome = &mut self.outcome;
        outcome.runs += 1;
        outcome.cpu_ms += report.wall_ms;
        if plan.splits.is_empty() {
            outcome.fresh_seeds += 1;
        } else {
            outcome.split_runs += 1;
        }
        for state in report.rare_reached.keys() {
            *outcome
                .rare_states
                .entry(state.as_str().to_string())
                .or_default() += 1;
        }
        if let Some(failed) = report.first_failure() {
            if outcome.failures.is_empty() {
                outcome.runs_to_first_failure = Some(outcome.runs);
                outcome.cpu_ms_to_first_failure = Some(outcome.cpu_ms);
            }
            outcome.failures.push(Failure {
                seed: report.seed,
                check: failed.name.clone(),
                message: failed.message.clone(),
                replay: report.replay.clone(),
            });
            return;
        }
        if !self.options.plain {
            self.queue_children(plan, &report.rare_reached);
        }
    }

    fn queue_children(&mut self, plan: &Plan, reached: &BTreeMap<RareState, Reach>) {
        let combination: Vec<RareState> = reached.keys().copied().collect();
        let new_combination = self.seen_combinations.insert(combination);
        self.outcome.combinations = self.seen_combinations.len();
        // The state that completed the combination: reached last.
        let last = reached
            .iter()
            .max_by_key(|(_, reach)| reach.first_draw)
            .map(|(state, _)| *state);
        for (state, reach) in reached {
            let new_state = self.seen_states.insert(*state);
            let children = if new_state {
                CHILDREN_PER_NEW_STATE
            } else if new_combination && Some(*state) == last {
                CHILDREN_PER_NEW_COMBINATION
            } else {
                0
            };
            for child in 0..self.spend_energy(*state, children) {
                if let Some(split) = self.split(plan, *state, reach, child) {
                    let mut child_plan = plan.clone();
                    child_plan.splits.push(split);
                    self.frontier.push_back(child_plan);
                }
            }
        }
    }

    /// Takes up to `wanted` children from `state`'s energy and the
    /// frontier's room; returns how many were granted.
    fn spend_energy(&mut self, state: RareState, wanted: u32) -> u32 {
        let room = u32::try_from(FRONTIER_MAX.saturating_sub(self.frontier.len())).unwrap_or(0);
        let energy = self.energy.entry(state).or_default();
        let granted = wanted.min(*energy).min(room);
        *energy -= granted;
        granted
    }

    /// The split that forks `plan` where it first reached `state`, unless
    /// that moment is inside the part it already shares with its parent.
    fn split(&self, plan: &Plan, state: RareState, reach: &Reach, child: u32) -> Option<Split> {
        if plan.splits.len() >= MAX_SPLITS {
            return None;
        }
        if plan
            .splits
            .last()
            .is_some_and(|last| reach.first_draw <= last.at_draw)
        {
            return None;
        }
        let salt = (state as u64) << 32 | u64::from(child);
        Some(Split {
            at_draw: reach.first_draw,
            seed: child_seed(plan.seed, &plan.splits, salt),
        })
    }
}

/// Runs `batch` on `options.jobs` threads; the reports in batch order.
fn run_batch(batch: &[Plan], options: &ExploreOptions) -> Vec<Report> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Report>>> = Mutex::new(vec![None; batch.len()]);
    let run_options = RunOptions {
        workload: options.workload,
        ..RunOptions::default()
    };
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1).min(batch.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(plan) = batch.get(index) else {
                    break;
                };
                let report = run_with(plan, options.bugs, run_options);
                slots.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(report);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// The summary a person reads: what ran, what was reached, what failed
/// and how to replay it.
pub fn render(exploration: &Exploration, options: &ExploreOptions) -> String {
    let mut out = String::new();
    let verdict = if exploration.passed() { "PASS" } else { "FAIL" };
    let mode = if options.plain {
        "plain sweep"
    } else {
        "explored"
    };
    let _ = writeln!(
        out,
        "{verdict}: {mode} {} timelines ({} seeds from {}, {} split runs) in {:.1} s \
         ({:.1} CPU-s); {} failed; stopped: {}",
        exploration.runs,
        exploration.fresh_seeds,
        options.start_seed,
        exploration.split_runs,
        exploration.wall_ms as f64 / 1_000.0,
        exploration.cpu_ms as f64 / 1_000.0,
        exploration.failures.len(),
        exploration.stopped
    );
    if let (Some(runs), Some(cpu_ms)) = (
        exploration.runs_to_first_failure,
        exploration.cpu_ms_to_first_failure,
    ) {
        let _ = writeln!(
            out,
            "  first failure after {runs} runs, {:.1} CPU-s",
            cpu_ms as f64 / 1_000.0
        );
    }
    let _ = writeln!(
        out,
        "  rare states (runs reached), {} combinations:",
        exploration.combinations
    );
    for (state, runs) in &exploration.rare_states {
        let _ = writeln!(out, "    {state:<36} {runs}");
    }
    for failure in &exploration.failures {
        let _ = writeln!(
            out,
            "  seed {} failed {}: {}\n    replay: {}",
            failure.seed, failure.check, failure.message, failure.replay
        );
    }
    out
}

/// A timeline in messages: `seed S`, or `seed S recipe D:S,…` when it forks.
pub fn describe_timeline(plan: &Plan) -> String {
    if plan.splits.is_empty() {
        format!("seed {}", plan.seed)
    } else {
        format!("seed {} recipe {}", plan.seed, format_splits(&plan.splits))
    }
}
