//! The report of one run: verdict, checks, trace hash, counts, and the one
//! line that replays it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flush_core::bugs::Bugs;
use serde::{Deserialize, Serialize};

use crate::ledger::RequestCounts;
use crate::oracle::{CheckResult, RareState, Reach};
use crate::plan::{FaultMix, Plan};
use crate::recipe::format_splits;
use crate::world::trace::TraceLine;

/// Which workload a seed's plan uses; part of the replay line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadChoice {
    /// The small workload drawn per seed (`sweep-v1`).
    #[default]
    Sweep,
    /// The pinned benchmark workload (`standard-v1`).
    Standard,
}

impl WorkloadChoice {
    /// The name a sweep's identity (and its JSON report) gives it.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadChoice::Sweep => "sweep",
            WorkloadChoice::Standard => "standard",
        }
    }

    /// The workload named `name` by [`WorkloadChoice::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [WorkloadChoice::Sweep, WorkloadChoice::Standard]
            .into_iter()
            .find(|workload| workload.name() == name)
    }

    pub fn plan(self, seed: u64) -> Plan {
        match self {
            WorkloadChoice::Sweep => Plan::from_seed(seed),
            WorkloadChoice::Standard => Plan::standard(seed),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub bugs: Vec<String>,
    pub workload: String,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
    /// FNV-1a over every trace line, with simulated time: 16 hex digits.
    pub trace_hash: String,
    pub events: u64,
    pub requests: RequestCounts,
    /// Injected faults per class (every class listed, zeros included).
    pub faults: BTreeMap<String, u64>,
    /// Core events per mark.
    pub marks: BTreeMap<String, u64>,
    /// How often the run reached each rare state (every state listed).
    #[serde(default)]
    pub rare_states: BTreeMap<String, u64>,
    /// The rare states reached, with the fault draw of each first reach
    /// (where exploration splits the timeline).
    #[serde(skip)]
    pub rare_reached: BTreeMap<RareState, Reach>,
    pub flushes: u64,
    /// SSTs no manifest lists, left at the end.
    pub orphans: u64,
    /// Orphan SSTs the core purged when it opened a region.
    #[serde(default)]
    pub orphans_purged: u64,
    /// Engine crashes (each also counted under `faults.crash` and, by
    /// window, under the `crash_*` marks).
    #[serde(default)]
    pub crashes: u64,
    /// Written rows judged by the `recovery` checks after restarts.
    #[serde(default)]
    pub rows_recovered_checked: u64,
    pub rows_checked: u64,
    pub sim_ms: u64,
    /// Real time the run took; the only field that differs between runs.
    pub wall_ms: u64,
    pub fault_mix: FaultMix,
    /// A scripted plan's steps and the fault decisions that fire, in brief
    /// ([`crate::script::Script::summary`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub replay: String,
    #[serde(skip)]
    pub trace: Vec<TraceLine>,
}

/// Every rare state with how often `reached` reached it (zeros included,
/// so a report lists them all).
pub fn rare_state_counts(reached: &BTreeMap<RareState, Reach>) -> BTreeMap<String, u64> {
    RareState::ALL
        .iter()
        .map(|state| {
            let count = reached.get(state).map_or(0, |reach| reach.count);
            (state.as_str().to_string(), count)
        })
        .collect()
}

/// The command that replays a plan file (which names its own bugs).
pub fn plan_replay_line(path: impl std::fmt::Display) -> String {
    format!("cargo run -p flush-sim --release -- replay --plan {path}")
}

/// The command that reproduces one run alone: its seed, the splits of
/// its timeline if it has any, its bugs and workload.
pub fn replay_line(plan: &Plan, bugs: Bugs, workload: WorkloadChoice) -> String {
    if plan.script.is_some() {
        // No seed or recipe names a script: it replays only from its plan
        // file (whoever runs one from a file puts the file's path here).
        return plan_replay_line("plan.json");
    }
    let mut line = format!(
        "cargo run -p flush-sim --release -- replay --seed {}",
        plan.seed
    );
    if !plan.splits.is_empty() {
        let _ = write!(line, " --recipe {}", format_splits(&plan.splits));
    }
    for bug in bugs.iter() {
        let _ = write!(line, " --bug {}", bug.name());
    }
    if workload == WorkloadChoice::Standard {
        line.push_str(" --workload standard");
    }
    line
}

impl Report {
    /// `window=count` for every crash window hit.
    pub fn crash_windows(&self) -> Vec<String> {
        self.marks
            .iter()
            .filter_map(|(mark, count)| {
                let window = mark.strip_prefix("crash_")?;
                Some(format!("{window}={count}"))
            })
            .collect()
    }

    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|check| !check.passed)
    }

    /// The human rendering of `replay`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let bugs = if self.bugs.is_empty() {
            String::new()
        } else {
            format!(" bugs [{}]", self.bugs.join(", "))
        };
        let _ = writeln!(
            out,
            "{verdict} seed {} ({}){bugs}: trace {} ({} events), {} ms simulated, {} ms wall",
            self.seed, self.workload, self.trace_hash, self.events, self.sim_ms, self.wall_ms
        );
        let _ = writeln!(out, "faults: {}", self.fault_mix);
        if let Some(script) = &self.script {
            let _ = writeln!(out, "script: {script}");
        }
        let r = &self.requests;
        let _ = writeln!(
            out,
            "requests: {} issued, {} ok, {} err, {} lost, {} duplicated, {} pending, {} interrupted; {} flushes, {} orphans, {} rows checked",
            r.issued, r.ok, r.err, r.lost, r.duplicated, r.pending, r.interrupted, self.flushes, self.orphans, self.rows_checked
        );
        if self.crashes > 0 {
            let _ = writeln!(
                out,
                "crashes: {} ({}); {} orphan SSTs purged on open, {} rows judged after reopening",
                self.crashes,
                self.crash_windows().join(" "),
                self.orphans_purged,
                self.rows_recovered_checked
            );
        }
        let injected: Vec<String> = self
            .faults
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(class, count)| format!("{class}={count}"))
            .collect();
        let _ = writeln!(
            out,
            "injected: {}",
            if injected.is_empty() {
                "none".to_string()
            } else {
                injected.join(" ")
            }
        );
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {:<22} {}", check.name, check.message);
        }
        if !self.passed {
            let _ = writeln!(out, "replay: {}", self.replay);
        }
        out
    }
}
