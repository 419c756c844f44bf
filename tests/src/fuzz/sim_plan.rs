//! `sim_plan`: bytes → a small [`Plan`] → [`flush_sim::run`] on madsim →
//! a panic if any check fails.
//!
//! Byte layout of a [`PlanInput`] (missing bytes read as zero, extra bytes
//! are ignored):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..8 | the plan's seed (madsim's and every ChaCha stream's), little-endian |
//! | 8..8+[`KNOBS`] | one byte per workload knob, scaled linearly from 0..=255 onto the knob's range |
//! | then one per [`FaultClass::ALL`] | bit 0: the class is on; bits 1..8: its probability, log-scaled onto the class's own range |
//!
//! The ranges are the sweep's (`Workload::draw`, `FaultClass::probability_range`),
//! with the workload cut down so one execution stays fast: at most
//! [`MAX_WRITES`] writes in all, so about 200 requests with the DDLs mixed
//! in and the injector's.

use std::fmt;

use arbitrary::{Arbitrary, Unstructured};
use flush_core::bugs::Bugs;
use flush_sim::plan::{FaultClass, FaultMix, FaultSetting, OpMix, Plan, Workload};
use flush_sim::shrink::PlanFile;

/// Writes over all clients, at most.
pub const MAX_WRITES: u64 = 160;

/// The workload name of every fuzzed plan.
pub const WORKLOAD_NAME: &str = "fuzz-v1";

/// One workload knob: a byte scaled onto `low..=high`.
#[derive(Clone, Copy, Debug)]
pub struct Knob {
    pub name: &'static str,
    pub low: u64,
    pub high: u64,
}

const fn knob(name: &'static str, low: u64, high: u64) -> Knob {
    Knob { name, low, high }
}

/// The workload knobs, in byte order.
pub const KNOBS: [Knob; 22] = [
    knob("workers", 1, 4),
    knob("regions", 1, 8),
    knob("clients", 1, 6),
    // Split evenly over the clients (at least one each).
    knob("writes", 1, MAX_WRITES),
    knob("rows_per_write_max", 1, 60),
    knob("series", 1, 8),
    knob("max_in_flight", 1, 8),
    knob("think_ms_max", 0, 20),
    knob("global_buffer_bytes", 2_048, 96 * 1024),
    knob("max_stalled_writes", 2, 64),
    knob("mix.flush", 0, 120),
    knob("mix.alter", 0, 40),
    knob("mix.truncate", 0, 25),
    knob("mix.drop", 0, 15),
    knob("mix.close", 0, 25),
    knob("mix.downgrade", 0, 15),
    knob("io_latency_ms_max", 0, 5),
    knob("slow_io_ms_max", 10, 300),
    knob("injector_tick_ms", 5, 60),
    // Not a sweep knob: the worker's notify retries (1..=5 in the sweep's
    // terms is just 5; fewer retries make more notify failures stick).
    knob("notify_retry_limit", 1, 5),
    // As `Plan::from_seed` draws it (`AUTO_FLUSH_INTERVAL_MS`).
    knob("auto_flush_interval_ms", 50, 1_000),
    // Regions 1..=n skip the WAL (`Workload::skip_wal_regions`).
    knob("skip_wal_regions", 0, 3),
];

impl Knob {
    /// The knob's value for `byte`: 0 gives `low`, 255 gives `high`.
    pub fn value(self, byte: u8) -> u64 {
        self.low + (u64::from(byte) * (self.high - self.low) + 127) / 255
    }

    /// The byte whose value is nearest `value` (clamped into the range).
    pub fn byte(self, value: u64) -> u8 {
        let value = value.clamp(self.low, self.high);
        (0..=u8::MAX)
            .min_by_key(|byte| self.value(*byte).abs_diff(value))
            .unwrap_or(0)
    }
}

/// Probability steps per fault class (7 bits).
const PROBABILITY_STEPS: u8 = 127;

/// The probability of `class` at `step` of [`PROBABILITY_STEPS`]: log-scaled
/// from the low end of its range to the high end, rounded to four places as
/// the sweep's are.
pub fn probability(class: FaultClass, step: u8) -> f64 {
    let (low, high) = class.probability_range();
    let t = f64::from(step.min(PROBABILITY_STEPS)) / f64::from(PROBABILITY_STEPS);
    let p = (low.ln() + t * (high.ln() - low.ln())).exp();
    (p * 10_000.0).round() / 10_000.0
}

/// Raw fuzz input of `sim_plan`; [`PlanInput::plan`] is what runs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlanInput {
    pub seed: u64,
    pub knobs: [u8; KNOBS.len()],
    /// One byte per [`FaultClass::ALL`], in that order.
    pub faults: Vec<u8>,
}

impl<'a> Arbitrary<'a> for PlanInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Byte by byte, so the layout is the table above whatever
        // `arbitrary`'s integer encoding is; an exhausted input reads zeros.
        let mut byte = || u.arbitrary::<u8>().unwrap_or(0);
        let seed = u64::from_le_bytes(std::array::from_fn(|_| byte()));
        let knobs = std::array::from_fn(|_| byte());
        let faults = FaultClass::ALL.iter().map(|_| byte()).collect();
        Ok(PlanInput {
            seed,
            knobs,
            faults,
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        // The minimum is 0 (zeros fill in); this is what one plan reads.
        (0, Some(8 + KNOBS.len() + FaultClass::ALL.len()))
    }
}

impl PlanInput {
    /// The bytes that decode to this input.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.seed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.knobs);
        bytes.extend_from_slice(&self.faults);
        bytes
    }

    /// Decodes `bytes` exactly as the `sim_plan` target does.
    pub fn decode(bytes: &[u8]) -> PlanInput {
        PlanInput::arbitrary_take_rest(Unstructured::new(bytes)).expect("every byte string decodes")
    }

    fn knob(&self, name: &str) -> u64 {
        let index = KNOBS
            .iter()
            .position(|knob| knob.name == name)
            .expect("a knob of the table");
        KNOBS[index].value(self.knobs[index])
    }

    /// The plan this input stands for.
    pub fn plan(&self) -> Plan {
        let k = |name| self.knob(name);
        let narrow = |name| u32::try_from(self.knob(name)).expect("knob ranges fit u32");
        let clients = narrow("clients");
        let workload = Workload {
            name: WORKLOAD_NAME.to_string(),
            workers: narrow("workers"),
            regions: narrow("regions"),
            clients,
            writes_per_client: (narrow("writes") / clients).max(1),
            rows_per_write_min: 1,
            rows_per_write_max: narrow("rows_per_write_max"),
            series: narrow("series"),
            max_in_flight: narrow("max_in_flight"),
            think_ms_max: k("think_ms_max"),
            global_buffer_bytes: usize::try_from(k("global_buffer_bytes"))
                .expect("the buffer range fits usize"),
            max_stalled_writes: usize::try_from(k("max_stalled_writes"))
                .expect("the stall range fits usize"),
            mix: OpMix {
                flush: narrow("mix.flush"),
                alter: narrow("mix.alter"),
                truncate: narrow("mix.truncate"),
                drop: narrow("mix.drop"),
                close: narrow("mix.close"),
                downgrade: narrow("mix.downgrade"),
            },
            io_latency_ms_max: k("io_latency_ms_max"),
            slow_io_ms_max: k("slow_io_ms_max"),
            injector_tick_ms: k("injector_tick_ms"),
            // The rest as `Workload::draw` has them.
            monitor_tick_ms: 40,
            notify_retry_limit: narrow("notify_retry_limit"),
            notify_retry_backoff_ms: 1,
            safety_budget_ms: 300_000,
            liveness_budget_ms: 60_000,
            auto_flush_interval_ms: Some(k("auto_flush_interval_ms")),
            // Regions 1..=n skip the WAL, so any n above the regions is
            // every region, as n = regions is (the same run), and only
            // that one validates.
            skip_wal_regions: narrow("skip_wal_regions").min(narrow("regions")),
        };
        let classes = FaultClass::ALL
            .iter()
            .enumerate()
            .map(|(index, class)| {
                let byte = self.faults.get(index).copied().unwrap_or(0);
                let enabled = byte & 1 == 1;
                let setting = FaultSetting {
                    enabled,
                    // As `FaultMix::none` has it for a class that is off.
                    probability: if enabled {
                        probability(*class, byte >> 1)
                    } else {
                        0.0
                    },
                };
                (*class, setting)
            })
            .collect();
        Plan {
            seed: self.seed,
            workload,
            faults: FaultMix { classes },
            splits: Vec::new(),
        }
    }

    /// The input nearest `plan`: every knob clamped into the fuzz ranges,
    /// every probability to its nearest step. Used to write seeds.
    pub fn from_plan(plan: &Plan) -> PlanInput {
        let w = &plan.workload;
        let value = |name: &str| -> u64 {
            match name {
                "workers" => u64::from(w.workers),
                "regions" => u64::from(w.regions),
                "clients" => u64::from(w.clients),
                "writes" => w.total_writes(),
                "rows_per_write_max" => u64::from(w.rows_per_write_max),
                "series" => u64::from(w.series),
                "max_in_flight" => u64::from(w.max_in_flight),
                "think_ms_max" => w.think_ms_max,
                "global_buffer_bytes" => w.global_buffer_bytes as u64,
                "max_stalled_writes" => w.max_stalled_writes as u64,
                "mix.flush" => u64::from(w.mix.flush),
                "mix.alter" => u64::from(w.mix.alter),
                "mix.truncate" => u64::from(w.mix.truncate),
                "mix.drop" => u64::from(w.mix.drop),
                "mix.close" => u64::from(w.mix.close),
                "mix.downgrade" => u64::from(w.mix.downgrade),
                "io_latency_ms_max" => w.io_latency_ms_max,
                "slow_io_ms_max" => w.slow_io_ms_max,
                "injector_tick_ms" => w.injector_tick_ms,
                "notify_retry_limit" => u64::from(w.notify_retry_limit),
                // A plan without periodic flushes gets the longest interval.
                "auto_flush_interval_ms" => w.auto_flush_interval_ms.unwrap_or(u64::MAX),
                "skip_wal_regions" => u64::from(w.skip_wal_regions),
                other => unreachable!("knob {other} has no workload field"),
            }
        };
        let knobs = std::array::from_fn(|index| KNOBS[index].byte(value(KNOBS[index].name)));
        let faults = FaultClass::ALL
            .iter()
            .map(|class| match plan.faults.classes.get(class) {
                Some(setting) if setting.enabled => {
                    let step = (0..=PROBABILITY_STEPS)
                        .min_by(|a, b| {
                            let distance =
                                |step| (probability(*class, step) - setting.probability).abs();
                            distance(*a).total_cmp(&distance(*b))
                        })
                        .unwrap_or(0);
                    1 | step << 1
                }
                _ => 0,
            })
            .collect();
        PlanInput {
            seed: plan.seed,
            knobs,
            faults,
        }
    }
}

/// What `cargo fuzz fmt sim_plan FILE` (and a crash report) prints: the plan
/// file to save and replay with `flushsim replay --plan FILE`.
impl fmt::Debug for PlanInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&PlanFile::new(self.plan(), super::planted_bugs()).to_json())
    }
}

/// How a failing input is replayed: from the plan file `check` prints.
const PLAN_REPLAY: &str = "cargo run -p flush-sim --release -- replay --plan plan.json";

/// Runs the input's plan with `bugs` planted; on any failed check, prints
/// the report, the plan file and the replay command, then panics.
pub fn check(input: &PlanInput, bugs: Bugs) {
    let plan = input.plan();
    let mut report = flush_sim::run(&plan, bugs);
    // A run frees its world before it returns (one run at a time here): a
    // world still alive is a leak of every SST and trace line of the run.
    // Said here, not left to LeakSanitizer: CI's smoke run builds without
    // sanitizers (ci/fuzz-smoke.sh).
    let alive = flush_sim::world::live_worlds();
    assert_eq!(
        alive, 0,
        "sim_plan: expected the run's world freed when it returned, saw {alive} alive (a leak)"
    );
    if report.passed {
        return;
    }
    // The report's own replay line names the plan's seed, which replays the
    // sweep's plan of that seed, not this one: point at the plan file.
    report.replay = PLAN_REPLAY.to_string();
    let failed = report
        .first_failure()
        .map_or_else(|| "a check".to_string(), |check| check.name.clone());
    eprintln!("{}", report.render());
    eprintln!("plan file (save as plan.json):");
    eprintln!("{}", PlanFile::new(plan, bugs).to_json());
    eprintln!("replay: {PLAN_REPLAY}");
    panic!("sim_plan: {failed} failed (plan and replay command above)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_cover_their_ranges_and_invert() {
        for knob in KNOBS {
            assert_eq!(knob.value(0), knob.low, "{}", knob.name);
            assert_eq!(knob.value(255), knob.high, "{}", knob.name);
            for byte in 0..=u8::MAX {
                let value = knob.value(byte);
                assert_eq!(knob.value(knob.byte(value)), value, "{}", knob.name);
            }
        }
    }

    #[test]
    fn probabilities_stay_in_their_ranges() {
        for class in FaultClass::ALL {
            let (low, high) = class.probability_range();
            assert!((probability(*class, 0) - low).abs() < 1e-4);
            assert!((probability(*class, PROBABILITY_STEPS) - high).abs() < 1e-4);
            for step in 0..=u8::MAX {
                let p = probability(*class, step);
                assert!(p > 0.0 && p <= 1.0, "{class} step {step}: {p}");
            }
        }
    }

    #[test]
    fn inputs_round_trip_through_bytes_and_plans() {
        for seed in 0..50 {
            let input = PlanInput::from_plan(&Plan::from_seed(seed));
            assert_eq!(PlanInput::decode(&input.to_bytes()), input);
            let plan = input.plan();
            assert_eq!(PlanInput::from_plan(&plan).plan(), plan);
            assert!(plan.workload.total_writes() <= MAX_WRITES);
        }
        let empty = PlanInput::decode(&[]);
        assert_eq!(empty.seed, 0);
        assert_eq!(empty.plan().faults.enabled().count(), 0);
    }

    /// Random byte strings of every length up to a few plans' worth, from
    /// a fixed splitmix64 stream: each decodes to a plan the simulator
    /// can run (a failure of any other would be the plan's, not the
    /// engine's).
    #[test]
    fn every_decoded_plan_validates() {
        let mut state = 0x5eed_u64;
        let mut next_byte = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        };
        let longest = 2 * (8 + KNOBS.len() + FaultClass::ALL.len());
        for round in 0..5_000 {
            let length = round % (longest + 1);
            let bytes: Vec<u8> = (0..length).map(|_| next_byte()).collect();
            if let Err(problems) = PlanInput::decode(&bytes).plan().validate() {
                panic!("{bytes:?}: {problems}");
            }
        }
        for fill in [0u8, 0xff] {
            let plan = PlanInput::decode(&[fill; 64]).plan();
            assert_eq!(plan.validate(), Ok(()), "bytes all {fill:#x}");
        }
    }

    #[test]
    fn every_byte_string_gives_a_bounded_plan() {
        let mut bytes = Vec::new();
        for length in 0..80u8 {
            bytes.push(length.wrapping_mul(37).wrapping_add(11));
            let plan = PlanInput::decode(&bytes).plan();
            let w = &plan.workload;
            assert!(w.total_writes() <= MAX_WRITES && w.total_writes() >= 1);
            assert!(w.rows_per_write_min <= w.rows_per_write_max);
            assert_eq!(plan.faults.classes.len(), FaultClass::ALL.len());
        }
    }
}
