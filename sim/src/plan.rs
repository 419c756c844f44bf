//! The plan of one run: the workload and the swarm fault mix, both drawn from
//! the seed with ChaCha8, so a run depends on its seed alone.
//!
//! A plan is data (serde): it is printed at the start of a replay, kept in
//! the report, and can be written to a file and run again as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use flush_core::bugs::Bugs;
use flush_core::ids::RegionId;
use flush_core::request::RegionOptions;
use flush_core::worker::WorkerConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::fault_class::FaultClass;
use crate::recipe::Split;
use crate::script::Script;

/// Version of the plan generator: what [`Plan::from_seed`] and
/// [`Plan::standard`] draw for a given seed. Every sweep report and JSONL
/// stream records it, and `flushsim merge` refuses shards whose versions
/// differ: the same seed under two generators is two different runs, so
/// their counts cannot be added up as one sweep. Bump it (here, nowhere
/// else) with any change that moves a draw.
pub const PLAN_GENERATOR_VERSION: u32 = 1;

/// Everything one run does, fixed before it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Seeds the madsim runtime (task order, its clock) and every ChaCha
    /// stream of the run.
    pub seed: u64,
    pub workload: Workload,
    pub faults: FaultMix,
    /// Where this run's timeline forks from the seed's (see
    /// [`crate::recipe`]); none for a seed's own run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
    /// The clients' requests and the fault decisions that fire, written
    /// out instead of drawn (see [`crate::script`]): the fuzzer's plans.
    /// None for a seed's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
}

impl Plan {
    /// The sweep's plan for `seed`: a workload and a fault mix drawn from it.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = plan_rng(seed);
        let mut workload = Workload::draw(&mut rng);
        let faults = FaultMix::draw(&mut rng);
        // Drawn last, so every older draw stays where it was: short enough
        // that periodic flushes fire within a run.
        workload.auto_flush_interval_ms = Some(rng.gen_range(AUTO_FLUSH_INTERVAL_MS));
        // Then the regions that skip the WAL: none in half the seeds, so
        // the WAL's own faults keep their reach.
        if rng.gen_bool(0.5) {
            workload.skip_wal_regions = rng.gen_range(1..=workload.regions.max(1).div_ceil(3));
        }
        Plan {
            seed,
            workload,
            faults,
            splits: Vec::new(),
            script: None,
        }
    }

    /// The pinned benchmark workload with the fault mix drawn from `seed`.
    pub fn standard(seed: u64) -> Plan {
        let mut rng = plan_rng(seed);
        let _ = Workload::draw(&mut rng);
        Plan {
            seed,
            workload: Workload::standard(),
            faults: FaultMix::draw(&mut rng),
            splits: Vec::new(),
            script: None,
        }
    }

    /// The same plan with every fault class off.
    pub fn without_faults(mut self) -> Plan {
        self.faults = FaultMix::none();
        self
    }
}

/// The ChaCha stream that draws plans; the run itself uses other streams.
fn plan_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(STREAM_PLAN);
    rng
}

/// The auto-flush intervals sweep plans draw from (simulated ms).
pub const AUTO_FLUSH_INTERVAL_MS: std::ops::RangeInclusive<u64> = 50..=1_000;

/// ChaCha stream numbers: one per independent consumer of randomness.
pub const STREAM_PLAN: u64 = 1;
pub const STREAM_WORLD: u64 = 2;
/// When and where the engine crashes.
pub const STREAM_CRASH: u64 = 3;
/// Client `i` uses stream `STREAM_CLIENT_BASE + i`.
pub const STREAM_CLIENT_BASE: u64 = 100;
/// Fault class `c` decides its injections on stream
/// `STREAM_FAULT_BASE + c.index()`: switching one class off, or changing
/// its probability, leaves every other class's decisions where they were
/// (what the shrinker relies on when it turns classes off).
pub const STREAM_FAULT_BASE: u64 = 1_000;

/// A ChaCha8 generator for `stream` of `seed`.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// What the clients do and how big the engine is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Versioned name; a pinned workload changes only under a new name.
    pub name: String,
    pub workers: u32,
    pub regions: u32,
    pub clients: u32,
    /// Write requests per client; other requests are mixed in between.
    pub writes_per_client: u32,
    pub rows_per_write_min: u32,
    pub rows_per_write_max: u32,
    /// Distinct series names rows are spread over.
    pub series: u32,
    /// Requests one client keeps in flight at once.
    pub max_in_flight: u32,
    /// Pause between two requests of a client, drawn in `0..=think_ms_max`.
    pub think_ms_max: u64,
    pub global_buffer_bytes: usize,
    pub max_stalled_writes: usize,
    /// Per mille of writes followed by each other request kind.
    pub mix: OpMix,
    /// Normal latency of one I/O, drawn in `0..=io_latency_ms_max`.
    pub io_latency_ms_max: u64,
    /// Extra latency of a slow I/O (the `slow_io` fault).
    pub slow_io_ms_max: u64,
    /// Interval between two decisions of the fault injector.
    pub injector_tick_ms: u64,
    /// Interval between two invariant samples of the monitor.
    pub monitor_tick_ms: u64,
    pub notify_retry_limit: u32,
    pub notify_retry_backoff_ms: u64,
    /// Simulated time the safety phase may take before clients are stopped.
    pub safety_budget_ms: u64,
    /// Simulated time, faults off, in which every request must complete.
    pub liveness_budget_ms: u64,
    /// The workers' auto-flush interval (periodic flush); absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_flush_interval_ms: Option<u64>,
    /// Regions `1..=skip_wal_regions` skip the WAL (mito2's `skip_wal`):
    /// their unflushed rows are lost on a crash or a stop by design.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip_wal_regions: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Rates of the non-write requests, per mille of writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpMix {
    pub flush: u32,
    pub alter: u32,
    pub truncate: u32,
    pub drop: u32,
    pub close: u32,
    pub downgrade: u32,
}

impl Workload {
    /// The settings of worker `worker_id` under this workload.
    pub fn worker_config(&self, worker_id: u32, bugs: Bugs) -> WorkerConfig {
        WorkerConfig {
            worker_id,
            max_stalled_writes: self.max_stalled_writes,
            notify_retry_limit: self.notify_retry_limit,
            notify_retry_backoff_ms: self.notify_retry_backoff_ms,
            auto_flush_interval_ms: self.auto_flush_interval_ms,
            // Stalls here always end: clients lead the followers they
            // open, and every flush fault is transient.
            stall_timeout_ms: None,
            bugs,
        }
    }

    /// The benchmark workload of DESIGN §8, pinned as `standard-v1`: 2
    /// workers, 8 regions, 4 clients, 1,000 writes of 10–100 rows, a buffer
    /// small enough for dozens of flushes.
    pub fn standard() -> Workload {
        Workload {
            name: "standard-v1".to_string(),
            workers: 2,
            regions: 8,
            clients: 4,
            writes_per_client: 250,
            rows_per_write_min: 10,
            rows_per_write_max: 100,
            series: 16,
            max_in_flight: 4,
            think_ms_max: 5,
            global_buffer_bytes: 256 * 1024,
            max_stalled_writes: 64,
            mix: OpMix {
                flush: 20,
                alter: 5,
                truncate: 3,
                drop: 2,
                close: 3,
                downgrade: 2,
            },
            io_latency_ms_max: 3,
            slow_io_ms_max: 100,
            injector_tick_ms: 25,
            monitor_tick_ms: 50,
            notify_retry_limit: 5,
            notify_retry_backoff_ms: 1,
            safety_budget_ms: 600_000,
            liveness_budget_ms: 60_000,
            // Pinned: the benchmark workload never had periodic flushes
            // nor regions without a WAL.
            auto_flush_interval_ms: None,
            skip_wal_regions: 0,
        }
    }

    /// A small workload drawn per seed (`sweep-v1`), sized so 1,000 seeds
    /// run in about a minute on two cores.
    pub fn draw(rng: &mut ChaCha8Rng) -> Workload {
        let rows_per_write_max = rng.gen_range(1..=60);
        Workload {
            name: "sweep-v1".to_string(),
            workers: rng.gen_range(1..=4),
            regions: rng.gen_range(1..=8),
            clients: rng.gen_range(1..=6),
            writes_per_client: rng.gen_range(20..=500),
            rows_per_write_min: 1,
            rows_per_write_max,
            series: rng.gen_range(1..=8),
            max_in_flight: rng.gen_range(1..=8),
            think_ms_max: rng.gen_range(0..=20),
            global_buffer_bytes: rng.gen_range(2_048..=96 * 1024),
            max_stalled_writes: rng.gen_range(2..=64),
            mix: OpMix {
                flush: rng.gen_range(0..=120),
                alter: rng.gen_range(0..=40),
                truncate: rng.gen_range(0..=25),
                drop: rng.gen_range(0..=15),
                close: rng.gen_range(0..=25),
                downgrade: rng.gen_range(0..=15),
            },
            io_latency_ms_max: rng.gen_range(0..=5),
            slow_io_ms_max: rng.gen_range(10..=300),
            injector_tick_ms: rng.gen_range(5..=60),
            monitor_tick_ms: 40,
            notify_retry_limit: 5,
            notify_retry_backoff_ms: 1,
            safety_budget_ms: 300_000,
            liveness_budget_ms: 60_000,
            auto_flush_interval_ms: None,
            skip_wal_regions: 0,
        }
    }

    /// The options `region_id` is created with.
    pub fn region_options(&self, region_id: RegionId) -> RegionOptions {
        RegionOptions {
            skip_wal: region_id.0 <= u64::from(self.skip_wal_regions),
        }
    }

    /// The regions of `regions` that skip the WAL.
    pub fn unlogged_regions(&self, regions: &[RegionId]) -> BTreeSet<RegionId> {
        regions
            .iter()
            .copied()
            .filter(|region_id| self.region_options(*region_id).skip_wal)
            .collect()
    }

    pub fn total_writes(&self) -> u64 {
        u64::from(self.clients) * u64::from(self.writes_per_client)
    }

    /// How long the engine may need to answer everything the clients can
    /// hold in flight, if it all queues on one worker and each request
    /// waits for two of the slowest I/Os (a write's WAL append and its
    /// sync). A pessimistic bound (writes are handled in batches), which
    /// only a wait uses: a graceful stop waits at least this long for the
    /// engine to drain before it calls what is left unanswered a
    /// violation.
    pub fn drain_bound_ms(&self) -> u64 {
        let held = u64::from(self.clients) * u64::from(self.max_in_flight);
        let slowest_io = self.io_latency_ms_max.saturating_add(self.slow_io_ms_max);
        held.saturating_mul(2).saturating_mul(slowest_io)
    }

    /// A wait of at least `floor_ms`, long enough for this workload to
    /// drain ([`Workload::drain_bound_ms`]), and at most ten simulated
    /// minutes: the bound of a plan at the caps is tens of simulated hours,
    /// which a wait that polls every few milliseconds would spend in real
    /// minutes if the engine never drained.
    pub fn patience_ms(&self, floor_ms: u64) -> u64 {
        const MOST_MS: u64 = 600_000;
        floor_ms.max(self.drain_bound_ms().min(MOST_MS))
    }
}

/// One class's switch and probability for a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSetting {
    pub enabled: bool,
    pub probability: f64,
}

/// The swarm fault mix: every class switched on or off per seed, each with
/// its own probability (Groce et al.'s swarm testing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultMix {
    pub classes: BTreeMap<FaultClass, FaultSetting>,
}

/// Chance that a class is switched on in a seed's mix.
pub const CLASS_ENABLED_PROBABILITY: f64 = 0.6;

impl FaultMix {
    pub fn draw(rng: &mut ChaCha8Rng) -> FaultMix {
        let classes = FaultClass::ALL
            .iter()
            .map(|class| {
                let enabled = rng.gen_bool(CLASS_ENABLED_PROBABILITY);
                let (low, high) = class.probability_range();
                let probability = log_uniform(rng, low, high);
                (
                    *class,
                    FaultSetting {
                        enabled,
                        probability,
                    },
                )
            })
            .collect();
        FaultMix { classes }
    }

    /// Every class off.
    pub fn none() -> FaultMix {
        FaultMix {
            classes: FaultClass::ALL
                .iter()
                .map(|class| {
                    (
                        *class,
                        FaultSetting {
                            enabled: false,
                            probability: 0.0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The class's probability if it is on.
    pub fn probability(&self, class: FaultClass) -> Option<f64> {
        self.classes
            .get(&class)
            .filter(|setting| setting.enabled && setting.probability > 0.0)
            .map(|setting| setting.probability.min(1.0))
    }

    pub fn enabled(&self) -> impl Iterator<Item = FaultClass> + '_ {
        self.classes
            .iter()
            .filter(|(_, setting)| setting.enabled)
            .map(|(class, _)| *class)
    }
}

impl fmt::Display for FaultMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (class, setting) in &self.classes {
            if !setting.enabled {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{class}={:.3}", setting.probability)?;
        }
        if first {
            f.write_str("no faults")?;
        }
        Ok(())
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    let exponent = rng.gen_range(low.ln()..=high.ln());
    // Rounded so plans print and serialise compactly.
    (exponent.exp() * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_a_function_of_the_seed() {
        assert_eq!(Plan::from_seed(7), Plan::from_seed(7));
        assert_ne!(Plan::from_seed(7), Plan::from_seed(8));
    }

    #[test]
    fn plans_round_trip_through_json() {
        let plan = Plan::from_seed(42);
        let json = serde_json::to_string(&plan).expect("plans serialise");
        let back: Plan = serde_json::from_str(&json).expect("plans deserialise");
        assert_eq!(plan, back);
    }

    #[test]
    fn every_class_is_sometimes_on_and_sometimes_off() {
        let mixes: Vec<FaultMix> = (0..200).map(|seed| Plan::from_seed(seed).faults).collect();
        for class in FaultClass::ALL {
            let on = mixes
                .iter()
                .filter(|mix| mix.probability(*class).is_some())
                .count();
            assert!(on > 50 && on < 180, "{class} on in {on} of 200 mixes");
        }
    }

    #[test]
    fn standard_workload_is_pinned() {
        let standard = Workload::standard();
        assert_eq!(standard.name, "standard-v1");
        assert_eq!(standard.total_writes(), 1_000);
        assert_eq!(
            (standard.workers, standard.regions, standard.clients),
            (2, 8, 4)
        );
        assert_eq!(
            (standard.rows_per_write_min, standard.rows_per_write_max),
            (10, 100)
        );
    }

    #[test]
    fn fault_mix_display_lists_enabled_classes() {
        assert_eq!(FaultMix::none().to_string(), "no faults");
        let mix = Plan::from_seed(3).faults;
        for class in mix.enabled() {
            assert!(mix.to_string().contains(class.name()));
        }
    }
}
