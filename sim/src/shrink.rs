//! Shrinking a failing plan (`flushsim shrink`): make the plan smaller
//! while it still fails the same check, so the failure is small enough to
//! read.
//!
//! A plan is data, and every knob that makes a run bigger can be turned
//! down: fewer clients, writes, regions, workers, requests in flight, rows
//! per write and series; lower rates of the non-write requests; fault
//! classes switched off; lower fault probabilities; a shorter safety phase;
//! in a scripted plan ([`crate::script`]), runs of steps cut out and
//! scripted faults dropped.
//! The shrinker takes one dimension at a time and turns it down as far as it
//! goes (greedy, big steps first: the floor, half way, three quarters, one
//! less), keeping a change when the run still fails the same check and got
//! no bigger; it repeats passes over all dimensions until one keeps nothing,
//! or `max_runs` runs are spent. Every change only turns a knob down, so it
//! ends.
//!
//! The **size** of a plan is what its run does: requests issued plus faults
//! injected ([`PlanSize`]), read from the run's report.
//!
//! A shrunk plan is saved as a [`PlanFile`]: the plan's JSON plus the names
//! of the planted bugs it needs, which `flushsim replay --plan FILE` runs.

use std::fmt;
use std::path::Path;

use flush_core::bugs::{Bugs, PlantedBug};
use serde::{Deserialize, Serialize};

use crate::plan::{FaultClass, Plan, Workload};
use crate::report::Report;
use crate::run::{run_with, RunOptions};

/// How big a run of a plan is: requests issued plus faults injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlanSize {
    pub requests: u64,
    pub faults: u64,
}

impl PlanSize {
    pub fn of(report: &Report) -> PlanSize {
        PlanSize {
            requests: report.requests.issued,
            faults: report.faults.values().sum(),
        }
    }

    pub fn total(self) -> u64 {
        self.requests + self.faults
    }
}

impl fmt::Display for PlanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} requests + {} faults)",
            self.total(),
            self.requests,
            self.faults
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ShrinkOptions {
    pub bugs: Bugs,
    /// Runs the shrinker may spend, the first one included.
    pub max_runs: usize,
    pub run: RunOptions,
}

impl Default for ShrinkOptions {
    fn default() -> Self {
        ShrinkOptions {
            bugs: Bugs::NONE,
            max_runs: DEFAULT_MAX_RUNS,
            run: RunOptions::default(),
        }
    }
}

pub const DEFAULT_MAX_RUNS: usize = 400;

/// One tried change, for progress output.
#[derive(Clone, Debug)]
pub struct ShrinkStep {
    pub run: usize,
    pub change: String,
    /// Size of the run with the change; `None` when it passed.
    pub size: Option<PlanSize>,
    pub kept: bool,
}

#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The check the original plan failed first, and every kept plan too.
    pub check: String,
    pub original: Plan,
    pub original_size: PlanSize,
    pub minimal: Plan,
    pub minimal_size: PlanSize,
    /// The minimal plan's run.
    pub report: Report,
    /// Changes kept, in order.
    pub kept: Vec<String>,
    pub runs: usize,
    /// Stopped by `max_runs`, not by running out of changes.
    pub budget_exhausted: bool,
}

impl Shrunk {
    /// original size ÷ minimal size.
    pub fn factor(&self) -> f64 {
        self.original_size.total() as f64 / self.minimal_size.total().max(1) as f64
    }
}

/// Shrinks `plan`, which must fail; returns the passing report otherwise.
pub fn shrink(
    plan: &Plan,
    options: &ShrinkOptions,
    mut on_step: impl FnMut(&ShrinkStep),
) -> Result<Shrunk, Box<Report>> {
    let report = run_with(plan, options.bugs, options.run);
    let Some(check) = report.first_failure().map(|check| check.name.clone()) else {
        return Err(Box::new(report));
    };
    let mut state = Shrinking {
        options,
        check,
        original_size: PlanSize::of(&report),
        size: PlanSize::of(&report),
        plan: plan.clone(),
        report,
        kept: Vec::new(),
        runs: 1,
    };
    state.clamp_safety_budget(&mut on_step);
    let budget_exhausted = !state.run_passes(&mut on_step);
    Ok(Shrunk {
        check: state.check,
        original: plan.clone(),
        original_size: state.original_size,
        minimal: state.plan,
        minimal_size: state.size,
        report: state.report,
        kept: state.kept,
        runs: state.runs,
        budget_exhausted,
    })
}

struct Shrinking<'a> {
    options: &'a ShrinkOptions,
    check: String,
    original_size: PlanSize,
    /// The smallest failing plan so far, its size and its report.
    plan: Plan,
    size: PlanSize,
    report: Report,
    kept: Vec<String>,
    runs: usize,
}

impl Shrinking<'_> {
    /// A safety budget longer than the whole run never ends the safety
    /// phase: clamped to the run's simulated time it is the same run (same
    /// trace hash, checked), and halving it from there cuts the run short.
    fn clamp_safety_budget(&mut self, on_step: &mut impl FnMut(&ShrinkStep)) {
        let budget_ms = self.plan.workload.safety_budget_ms;
        let run_ms = self.report.sim_ms.max(1);
        if run_ms >= budget_ms || self.runs >= self.options.max_runs {
            return;
        }
        let mut candidate = self.plan.clone();
        candidate.workload.safety_budget_ms = run_ms;
        self.runs += 1;
        let report = run_with(&candidate, self.options.bugs, self.options.run);
        let change = format!("safety_budget_ms {budget_ms} -> {run_ms} (the run's length)");
        let same_run = report.trace_hash == self.report.trace_hash;
        on_step(&ShrinkStep {
            run: self.runs,
            change: change.clone(),
            size: same_run.then(|| PlanSize::of(&report)),
            kept: same_run,
        });
        if same_run {
            self.plan = candidate;
            self.report = report;
            self.kept.push(change);
        }
    }

    /// Passes over every dimension until one keeps nothing. Returns false
    /// when the run budget ran out first.
    fn run_passes(&mut self, on_step: &mut impl FnMut(&ShrinkStep)) -> bool {
        loop {
            let mut kept_in_pass = false;
            for dimension in dimensions() {
                // Turn this dimension down as far as it goes before the next.
                loop {
                    match self.try_dimension(&dimension, on_step) {
                        Some(true) => kept_in_pass = true,
                        Some(false) => break,
                        None => return false,
                    }
                }
            }
            if !kept_in_pass {
                return true;
            }
        }
    }

    /// Tries the dimension's smaller values, biggest step first; keeps the
    /// first that still fails the same check. `None`: out of runs.
    fn try_dimension(
        &mut self,
        dimension: &Dimension,
        on_step: &mut impl FnMut(&ShrinkStep),
    ) -> Option<bool> {
        for Candidate {
            change,
            plan: candidate,
            simplest,
        } in dimension.candidates(&self.plan)
        {
            if self.runs >= self.options.max_runs {
                return None;
            }
            self.runs += 1;
            let report = run_with(&candidate, self.options.bugs, self.options.run);
            let fails_the_same = report.first_failure().map(|failed| failed.name.as_str())
                == Some(self.check.as_str());
            let size = PlanSize::of(&report);
            // A change that leaves the size as it was is kept only when it
            // takes the knob all the way down (or a fault class off): that
            // simplifies the plan, and there are few such changes.
            let keep = fails_the_same
                && (size.total() < self.size.total()
                    || (size.total() == self.size.total() && simplest));
            on_step(&ShrinkStep {
                run: self.runs,
                change: change.clone(),
                size: fails_the_same.then_some(size),
                kept: keep,
            });
            if keep {
                self.plan = candidate;
                self.size = size;
                self.report = report;
                self.kept.push(change);
                return Some(true);
            }
        }
        Some(false)
    }
}

/// A workload knob the shrinker turns down, with its floor.
struct Knob {
    name: &'static str,
    floor: u64,
    get: fn(&Workload) -> u64,
    set: fn(&mut Workload, u64),
}

macro_rules! knob {
    ($name:literal, $($field:ident).+, $floor:expr, $ty:ty) => {
        Knob {
            name: $name,
            floor: $floor,
            get: |workload| u64::from(workload.$($field).+),
            set: |workload, value| {
                workload.$($field).+ = <$ty>::try_from(value).unwrap_or(<$ty>::MAX)
            },
        }
    };
}

/// Biggest effect on the run's size first. Cutting the safety phase short
/// comes first: the run up to the cut is the same run, so the failure
/// usually survives it.
const KNOBS: &[Knob] = &[
    knob!("safety_budget_ms", safety_budget_ms, 1, u64),
    knob!("clients", clients, 1, u32),
    knob!("writes_per_client", writes_per_client, 1, u32),
    knob!("regions", regions, 1, u32),
    knob!("workers", workers, 1, u32),
    knob!("max_in_flight", max_in_flight, 1, u32),
    knob!("mix.flush", mix.flush, 0, u32),
    knob!("mix.alter", mix.alter, 0, u32),
    knob!("mix.truncate", mix.truncate, 0, u32),
    knob!("mix.drop", mix.drop, 0, u32),
    knob!("mix.close", mix.close, 0, u32),
    knob!("mix.downgrade", mix.downgrade, 0, u32),
    knob!("rows_per_write_max", rows_per_write_max, 1, u32),
    knob!("series", series, 1, u32),
];

/// Probabilities are not halved below this.
const PROBABILITY_FLOOR: f64 = 0.001;

/// One direction a plan can shrink in.
enum Dimension {
    /// A scripted plan without a run of its steps (see [`crate::script`]).
    ScriptSteps,
    /// A scripted plan without one of its scripted faults.
    ScriptFault,
    Knob(&'static Knob),
    FaultOff(FaultClass),
    FaultHalved(FaultClass),
}

/// Every dimension, in the order a pass tries them.
fn dimensions() -> Vec<Dimension> {
    let script = [Dimension::ScriptSteps, Dimension::ScriptFault].into_iter();
    let knobs = KNOBS.iter().map(Dimension::Knob);
    let off = FaultClass::ALL
        .iter()
        .map(|class| Dimension::FaultOff(*class));
    let halved = FaultClass::ALL
        .iter()
        .map(|class| Dimension::FaultHalved(*class));
    script.chain(knobs).chain(off).chain(halved).collect()
}

/// A plan one step down a dimension.
pub struct Candidate {
    pub change: String,
    pub plan: Plan,
    /// The step goes all the way: the knob's floor, or a fault class off.
    pub simplest: bool,
}

impl Dimension {
    /// The plans one step down this dimension, biggest step first, each one
    /// the simulator can run: a knob turned down under a script may leave
    /// it naming a region or a client the plan no longer has.
    fn candidates(&self, plan: &Plan) -> Vec<Candidate> {
        let mut candidates = self.steps_down(plan);
        candidates.retain(|candidate| candidate.plan.validate().is_ok());
        candidates
    }

    fn steps_down(&self, plan: &Plan) -> Vec<Candidate> {
        match self {
            Dimension::ScriptSteps => script_without_steps(plan),
            Dimension::ScriptFault => script_without_a_fault(plan),
            Dimension::Knob(knob) => {
                let value = (knob.get)(&plan.workload);
                smaller_values(value, knob.floor)
                    .into_iter()
                    .map(|smaller| {
                        let mut candidate = plan.clone();
                        let workload = &mut candidate.workload;
                        (knob.set)(workload, smaller);
                        // Knobs that must stay within another keep the
                        // plan valid: regions 1..=skip_wal_regions skip
                        // the WAL, so every region skips it as before.
                        workload.rows_per_write_min =
                            workload.rows_per_write_min.min(workload.rows_per_write_max);
                        workload.skip_wal_regions = workload.skip_wal_regions.min(workload.regions);
                        Candidate {
                            change: format!("{} {value} -> {smaller}", knob.name),
                            plan: candidate,
                            simplest: smaller == knob.floor,
                        }
                    })
                    .collect()
            }
            Dimension::FaultOff(class) => {
                if !plan.faults.enabled().any(|enabled| enabled == *class) {
                    return Vec::new();
                }
                let mut candidate = plan.clone();
                if let Some(setting) = candidate.faults.classes.get_mut(class) {
                    setting.enabled = false;
                }
                vec![Candidate {
                    change: format!("fault {class} off"),
                    plan: candidate,
                    simplest: true,
                }]
            }
            Dimension::FaultHalved(class) => {
                let mut candidate = plan.clone();
                let Some(setting) = candidate.faults.classes.get_mut(class) else {
                    return Vec::new();
                };
                if !setting.enabled || setting.probability / 2.0 < PROBABILITY_FLOOR {
                    return Vec::new();
                }
                let before = setting.probability;
                setting.probability = (before / 2.0 * 10_000.0).round() / 10_000.0;
                let change = format!(
                    "fault {class} probability {before} -> {}",
                    setting.probability
                );
                vec![Candidate {
                    change,
                    plan: candidate,
                    simplest: false,
                }]
            }
        }
    }
}

/// A scripted plan with a run of one client's steps cut out: half of
/// them, then quarters, down to single steps (delta debugging's order).
fn script_without_steps(plan: &Plan) -> Vec<Candidate> {
    let Some(script) = &plan.script else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    for (client, steps) in script.clients.iter().enumerate() {
        let mut chunk = steps.len().div_ceil(2);
        while chunk >= 1 {
            for start in (0..steps.len()).step_by(chunk) {
                let end = (start + chunk).min(steps.len());
                let mut candidate = plan.clone();
                if let Some(script) = &mut candidate.script {
                    script.clients[client].drain(start..end);
                    candidate.workload.writes_per_client = script.most_writes_per_client().max(1);
                }
                candidates.push(Candidate {
                    change: format!("client {client} steps {start}..{end} cut"),
                    plan: candidate,
                    simplest: end - start == steps.len(),
                });
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    candidates
}

/// A scripted plan with one of its scripted faults gone.
fn script_without_a_fault(plan: &Plan) -> Vec<Candidate> {
    let Some(script) = &plan.script else {
        return Vec::new();
    };
    (0..script.faults.len())
        .map(|index| {
            let mut candidate = plan.clone();
            let fault = script.faults[index];
            if let Some(script) = &mut candidate.script {
                script.faults.remove(index);
            }
            Candidate {
                change: format!("scripted fault {}#{} gone", fault.class, fault.nth),
                plan: candidate,
                simplest: true,
            }
        })
        .collect()
}

/// Values below `value` worth trying, biggest step first: the floor, half
/// way, three quarters of the way, one less.
fn smaller_values(value: u64, floor: u64) -> Vec<u64> {
    if value <= floor {
        return Vec::new();
    }
    let span = value - floor;
    let mut values = vec![floor, floor + span / 2, value - span / 4, value - 1];
    values.retain(|candidate| *candidate < value);
    values.sort_unstable();
    values.dedup();
    values
}

/// Every one-step change of `plan` that makes it smaller, in the order a
/// pass tries them.
pub fn candidates(plan: &Plan) -> Vec<Candidate> {
    dimensions()
        .iter()
        .flat_map(|dimension| dimension.candidates(plan))
        .collect()
}

/// A plan as saved to a file: the plan's fields, plus the planted bugs a
/// replay needs (absent in a plain plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    #[serde(flatten)]
    pub plan: Plan,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bugs: Vec<String>,
}

impl PlanFile {
    pub fn new(plan: Plan, bugs: Bugs) -> PlanFile {
        PlanFile {
            plan,
            bugs: bugs.iter().map(|bug| bug.name().to_string()).collect(),
        }
    }

    /// The planted bugs, parsed.
    pub fn bugs(&self) -> Result<Bugs, String> {
        self.bugs.iter().try_fold(Bugs::NONE, |bugs, name| {
            name.parse::<PlantedBug>()
                .map(|bug| bugs.with(bug))
                .map_err(|error| error.to_string())
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans are plain data and always serialise")
    }

    /// Parses a plan file and checks it: its bugs must exist and its plan
    /// must be one the simulator can run ([`Plan::validate`]), so a bad
    /// file is refused before anything runs.
    pub fn from_json(text: &str) -> Result<PlanFile, String> {
        let file: PlanFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        file.bugs()?;
        file.plan
            .validate()
            .map_err(|problems| problems.to_string())?;
        Ok(file)
    }

    /// Reads a plan file (or a plain plan, as `replay --print-plan` prints).
    pub fn read(path: &Path) -> Result<PlanFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read plan {}: {error}", path.display()))?;
        PlanFile::from_json(&text)
            .map_err(|error| format!("plan {} is not a valid plan: {error}", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<(), String> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        std::fs::write(path, self.to_json() + "\n")
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_values_go_from_the_floor_up() {
        assert_eq!(smaller_values(101, 1), vec![1, 51, 76, 100]);
        assert_eq!(smaller_values(3, 1), vec![1, 2]);
        assert_eq!(smaller_values(2, 1), vec![1]);
        assert!(smaller_values(1, 1).is_empty());
        assert!(smaller_values(0, 0).is_empty());
    }

    #[test]
    fn every_candidate_turns_one_knob_down_and_validates() {
        for seed in 0..20 {
            let plan = Plan::from_seed(seed);
            let candidates = candidates(&plan);
            assert!(!candidates.is_empty());
            for Candidate {
                change,
                plan: candidate,
                ..
            } in &candidates
            {
                assert_ne!(&plan, candidate, "{change} changed nothing");
                assert_eq!(plan.seed, candidate.seed);
                if let Err(problems) = candidate.validate() {
                    panic!("seed {seed}, {change}: {problems}");
                }
            }
        }
    }

    #[test]
    fn a_scripted_plan_shrinks_by_its_steps_and_faults_and_stays_runnable() {
        use crate::script::{Script, ScriptedFault, Step};
        let mut plan = Plan::from_seed(5).without_faults();
        let w = &mut plan.workload;
        (w.clients, w.regions, w.skip_wal_regions) = (2, 3, 0);
        plan.script = Some(Script {
            clients: vec![
                vec![Step::Write { region: 3, rows: 5 }; 4],
                vec![Step::Flush { region: 2 }],
            ],
            faults: vec![ScriptedFault {
                class: FaultClass::JobRejection,
                nth: 1,
            }],
        });
        assert_eq!(plan.validate(), Ok(()));
        let candidates = candidates(&plan);
        let changes: Vec<&str> = candidates.iter().map(|c| c.change.as_str()).collect();
        for expected in [
            "client 0 steps 0..2 cut",
            "client 0 steps 3..4 cut",
            "client 1 steps 0..1 cut",
            "scripted fault job_rejection#1 gone",
        ] {
            assert!(changes.contains(&expected), "{expected} not in {changes:?}");
        }
        // Fewer regions or clients would leave steps naming what the plan
        // no longer has: no such candidate is offered.
        for candidate in &candidates {
            let w = &candidate.plan.workload;
            assert!(w.regions >= 3 && w.clients == 2, "{}", candidate.change);
            assert_eq!(candidate.plan.validate(), Ok(()), "{}", candidate.change);
        }
    }

    #[test]
    fn plan_files_round_trip_and_read_plain_plans() {
        let file = PlanFile::new(Plan::from_seed(3), Bugs::only(PlantedBug::FreeTwice));
        let back = PlanFile::from_json(&file.to_json()).expect("a plan file parses");
        assert_eq!(back, file);
        assert_eq!(back.bugs(), Ok(Bugs::only(PlantedBug::FreeTwice)));
        let plain = serde_json::to_string(&Plan::from_seed(3)).expect("plans serialise");
        let read = PlanFile::from_json(&plain).expect("a plain plan parses");
        assert_eq!(read.plan, Plan::from_seed(3));
        assert!(read.bugs.is_empty());
        let bad = file.to_json().replace("free-twice", "no-such-bug");
        assert!(PlanFile::from_json(&bad).is_err());
        let mut unrunnable = Plan::from_seed(3);
        unrunnable.workload.workers = 0;
        let unrunnable = PlanFile::new(unrunnable, Bugs::NONE).to_json();
        assert_eq!(
            PlanFile::from_json(&unrunnable),
            Err("workload.workers = 0: expected at least 1".to_string())
        );
    }
}
