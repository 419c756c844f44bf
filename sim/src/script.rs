//! Operations and faults written out as data: a plan's *script*.
//!
//! A seed's plan draws what its clients send and when faults fire from
//! ChaCha streams: a small change to the plan (one more write, one fault
//! probability nudged) moves every later draw, so a fuzzer mutating a plan's
//! knobs sees runs that have little to do with each other. A script says it
//! outright instead: each client's requests in order, and for each fault
//! class *which of its decisions fire* (the third job submission is
//! rejected, the first freeze fails). One mutated byte then changes one
//! request or moves one fault, which is what lets `sim_plan`'s fuzzer
//! climb towards a narrow window step by step.
//!
//! What stays drawn from the seed: the series of each written row, I/O
//! latencies, the task schedule (madsim) and the crash actor, whose crashes
//! and graceful stops keep following the plan's fault mix (`Crash`,
//! `GracefulStop`): every other class fires exactly at its scripted
//! decisions and nowhere else, whatever the mix says.

use serde::{Deserialize, Serialize};

use crate::fault_class::FaultClass;

/// Most steps one client may have (plan validation enforces it): a script
/// is for short, pointed runs; the fuzzer's decoder stays well below.
pub const MAX_STEPS_PER_CLIENT: usize = 1_000;

/// Most scripted faults in one plan.
pub const MAX_SCRIPTED_FAULTS: usize = 256;

/// Most rows of one scripted write (the sweep's largest write is 60 rows).
pub const MAX_ROWS_PER_STEP: u32 = 1_000;

/// A plan's requests and faults, written out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// What each client sends, in order: one list per client of the
    /// workload (`workload.clients` lists).
    pub clients: Vec<Vec<Step>>,
    /// The decisions that fire; a class's other decisions stay silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<ScriptedFault>,
}

/// One step of a client. Regions are numbered from 1, as the run creates
/// them (`region-1` … `region-N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Writes `rows` rows to the region (their series drawn from the
    /// client's stream), after the recovery a client does for a region it
    /// believes lost or read-only.
    Write {
        region: u64,
        rows: u32,
    },
    Flush {
        region: u64,
    },
    /// Adds a new field (a fresh schema version).
    Alter {
        region: u64,
    },
    Truncate {
        region: u64,
    },
    Drop {
        region: u64,
    },
    Close {
        region: u64,
    },
    Downgrade {
        region: u64,
    },
    /// Waits `ms` simulated milliseconds before the next step.
    Think {
        ms: u64,
    },
}

impl Step {
    /// The step's region, if it has one.
    pub fn region(&self) -> Option<u64> {
        match *self {
            Step::Write { region, .. }
            | Step::Flush { region }
            | Step::Alter { region }
            | Step::Truncate { region }
            | Step::Drop { region }
            | Step::Close { region }
            | Step::Downgrade { region } => Some(region),
            Step::Think { .. } => None,
        }
    }
}

/// The `nth` decision (from 0) of `class` fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    pub class: FaultClass,
    pub nth: u32,
}

impl Script {
    /// Client `index`'s steps (none for a client the script has no list for).
    pub fn steps_of(&self, index: u32) -> Vec<Step> {
        self.clients
            .get(index as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// The most writes any one client makes: the workload's
    /// `writes_per_client` for a scripted plan (the run's time budgets
    /// are scaled by it).
    pub fn most_writes_per_client(&self) -> u32 {
        self.clients
            .iter()
            .map(|steps| {
                steps
                    .iter()
                    .filter(|step| matches!(step, Step::Write { .. }))
                    .count()
            })
            .max()
            .map_or(0, |most| u32::try_from(most).unwrap_or(u32::MAX))
    }

    /// The rows all of the script's writes carry.
    pub fn rows_written(&self) -> u64 {
        self.clients
            .iter()
            .flatten()
            .map(|step| match step {
                Step::Write { rows, .. } => u64::from(*rows),
                _ => 0,
            })
            .sum()
    }

    /// One line: how many steps of each client, and the decisions that
    /// fire (`job_rejection#1` is the second job submission's).
    pub fn summary(&self) -> String {
        let steps: Vec<String> = self.clients.iter().map(|s| s.len().to_string()).collect();
        let mut faults = self.faults.clone();
        faults.sort_unstable();
        faults.dedup();
        let fires: Vec<String> = faults
            .iter()
            .map(|fault| format!("{}#{}", fault.class, fault.nth))
            .collect();
        let fires = if fires.is_empty() {
            "no scripted fault".to_string()
        } else {
            format!("fires {}", fires.join(" "))
        };
        format!("steps per client [{}]; {fires}", steps.join(", "))
    }

    /// The decisions of each class that fire, in [`FaultClass::ALL`] order,
    /// each list sorted.
    pub fn firing(&self) -> Vec<Vec<u32>> {
        let mut firing = vec![Vec::new(); FaultClass::ALL.len()];
        for fault in &self.faults {
            firing[fault.class.index()].push(fault.nth);
        }
        for decisions in &mut firing {
            decisions.sort_unstable();
            decisions.dedup();
        }
        firing
    }
}

/// What the world consults instead of a class's probability in a scripted
/// plan: per class, how many decisions were made and which of them fire.
#[derive(Clone, Debug)]
pub struct ScriptedDecisions {
    firing: Vec<Vec<u32>>,
    made: Vec<u32>,
}

impl ScriptedDecisions {
    pub fn new(script: &Script) -> ScriptedDecisions {
        ScriptedDecisions {
            firing: script.firing(),
            made: vec![0; FaultClass::ALL.len()],
        }
    }

    /// Makes the next decision of `class`: whether it fires.
    pub fn decide(&mut self, class: FaultClass) -> bool {
        let index = class.index();
        let nth = self.made[index];
        self.made[index] = nth.saturating_add(1);
        self.firing[index].binary_search(&nth).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scripted_decisions_fire() {
        let script = Script {
            clients: Vec::new(),
            faults: vec![
                ScriptedFault {
                    class: FaultClass::JobRejection,
                    nth: 2,
                },
                ScriptedFault {
                    class: FaultClass::JobRejection,
                    nth: 0,
                },
                ScriptedFault {
                    class: FaultClass::FreezeFailure,
                    nth: 1,
                },
            ],
        };
        let mut decisions = ScriptedDecisions::new(&script);
        let rejections: Vec<bool> = (0..4)
            .map(|_| decisions.decide(FaultClass::JobRejection))
            .collect();
        assert_eq!(rejections, [true, false, true, false]);
        let freezes: Vec<bool> = (0..3)
            .map(|_| decisions.decide(FaultClass::FreezeFailure))
            .collect();
        assert_eq!(freezes, [false, true, false]);
        assert!(!decisions.decide(FaultClass::SlowIo));
    }

    /// A small scripted plan: two clients writing to two regions, one
    /// flushing and altering, with `faults` scripted.
    fn scripted_plan(faults: Vec<ScriptedFault>) -> crate::plan::Plan {
        let mut plan = crate::plan::Plan::from_seed(3).without_faults();
        let w = &mut plan.workload;
        (w.workers, w.regions, w.clients, w.skip_wal_regions) = (1, 2, 2, 0);
        let writes = |region| vec![Step::Write { region, rows: 20 }; 10];
        let mut first = writes(1);
        first.extend([Step::Flush { region: 2 }, Step::Alter { region: 1 }]);
        let script = Script {
            clients: vec![first, writes(2)],
            faults,
        };
        plan.workload.writes_per_client = script.most_writes_per_client();
        plan.script = Some(script);
        plan
    }

    #[test]
    fn a_scripted_run_sends_its_steps_and_fires_only_its_faults() {
        let rejected = |nth| ScriptedFault {
            class: FaultClass::JobRejection,
            nth,
        };
        let plan = scripted_plan(vec![rejected(0), rejected(1)]);
        assert_eq!(plan.validate(), Ok(()));
        let report = crate::run::run(&plan, flush_core::bugs::Bugs::NONE);
        assert!(report.passed, "{}", report.render());
        // 20 writes and 2 requests, plus a create per region before and a
        // reopen per region after (the run's own).
        assert_eq!(report.requests.issued, 22 + 2 + 2, "{}", report.render());
        let injected: Vec<(&str, u64)> = report
            .faults
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(class, count)| (class.as_str(), *count))
            .collect();
        assert_eq!(injected, [("job_rejection", 2)]);
        // Moving one fault changes the run; the same plan replays exactly.
        let moved = crate::run::run(
            &scripted_plan(vec![rejected(0), rejected(2)]),
            flush_core::bugs::Bugs::NONE,
        );
        assert_ne!(moved.trace_hash, report.trace_hash);
        let again = crate::run::run(&plan, flush_core::bugs::Bugs::NONE);
        assert_eq!(again.trace_hash, report.trace_hash);
    }

    #[test]
    fn steps_read_and_write_as_tagged_json() {
        let steps = vec![
            Step::Write { region: 2, rows: 5 },
            Step::Think { ms: 3 },
            Step::Downgrade { region: 1 },
        ];
        let json = serde_json::to_string(&steps).expect("steps serialise");
        assert_eq!(
            json,
            r#"[{"op":"write","region":2,"rows":5},{"op":"think","ms":3},{"op":"downgrade","region":1}]"#
        );
        let back: Vec<Step> = serde_json::from_str(&json).expect("steps parse");
        assert_eq!(back, steps);
    }
}
