//! `flushsim bench`: how fast the simulator runs the pinned standard
//! workload (DESIGN §8), and what the simulation costs over running the same
//! workload plainly.
//!
//! - **seeds per second per core**: standard seeds (the standard workload
//!   with each seed's fault mix, as `sweep --workload standard` runs them),
//!   one after another on one thread, oracles included.
//! - **simulated-to-wall time**: simulated time of those runs over their
//!   wall time.
//! - **sim overhead ratio**: the fault-free standard workload in the
//!   simulator (madsim, trace, ledger, oracles) over the same workload run
//!   directly ([`run_direct`]): the same core, the same number of workers,
//!   regions and clients, the same request mix drawn from the same seeded
//!   streams, on a plain single-threaded executor (`futures`' `LocalPool`)
//!   over fault-free in-memory ports, with no trace, ledger or oracle.
//!   Direct and simulated runs alternate in one process; medians compare.
//! - **Parquet ratio**: our SST encoding (`flush_core::sst::encode_rows`,
//!   rows to arrow batch to Parquet) against a bare arrow-rs `ArrowWriter`
//!   with default properties on the same batches, as throughput ours ÷ raw.
//!
//! Targets (recorded in BENCHMARKS.md, not enforced): ≥ 100 seeds/s/core,
//! overhead ≤ 1.5×, Parquet ≥ 0.9×.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flush_core::bugs::Bugs;
use flush_core::local::{MemoryManifestStore, MemoryObjectStore, MemoryWal};
use flush_core::memtable::Row;
use flush_core::ports::TracingEvents;
use flush_core::schema::RegionSchema;
use flush_core::tokio_engine::{Stores, TokioEngine};
use serde::Serialize;

use crate::plain;
use crate::plan::{Plan, Workload};
use crate::report::WorkloadChoice;
use crate::run::{run_with, RunOptions};

pub const TARGET_SEEDS_PER_SEC: f64 = 100.0;
pub const TARGET_OVERHEAD_RATIO: f64 = 1.5;
pub const TARGET_PARQUET_RATIO: f64 = 0.9;

#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Standard seeds timed for seeds/s and sim-to-wall.
    pub seeds: u64,
    /// Direct/simulated pairs for the overhead ratio.
    pub pairs: u64,
    /// Rounds of the Parquet comparison.
    pub parquet_rounds: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            seeds: 20,
            pairs: 9,
            parquet_rounds: 9,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub cores: usize,
    /// Standard seeds per wall-clock second on one thread.
    pub seeds_per_sec: f64,
    pub sim_to_wall: f64,
    /// Simulated ÷ direct, medians of wall time.
    pub overhead_ratio: f64,
    /// Ours ÷ bare `ArrowWriter`, as throughput.
    pub parquet_ratio: f64,
    /// The same two figures from the process's CPU clock (every thread,
    /// to the nanosecond), which other load on the machine skews far less
    /// than wall time.
    pub seeds_per_cpu_sec: f64,
    pub overhead_ratio_cpu: f64,
    pub standard: StandardTiming,
    pub overhead: OverheadTiming,
    pub parquet: ParquetTiming,
    pub targets: Targets,
    /// Every simulated run passed its checks and every direct run answered
    /// every request.
    pub all_passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StandardTiming {
    pub seeds: u64,
    pub wall_ms_total: f64,
    pub cpu_ms_total: f64,
    pub sim_ms_total: u64,
    pub wall_ms_median: f64,
    pub requests_mean: f64,
    pub faults_mean: f64,
    pub flushes_mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OverheadTiming {
    pub pairs: u64,
    pub sim_ms_median: f64,
    pub direct_ms_median: f64,
    pub sim_cpu_ms_total: f64,
    pub direct_cpu_ms_total: f64,
    pub sim_flushes_mean: f64,
    pub direct_flushes_mean: f64,
    pub sim_requests_mean: f64,
    pub direct_requests_mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParquetTiming {
    pub rounds: u64,
    pub batches: usize,
    pub rows_per_batch: usize,
    pub ours_ms_median: f64,
    pub raw_ms_median: f64,
    pub ours_bytes: usize,
    pub raw_bytes: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub seeds_per_sec_min: f64,
    pub overhead_ratio_max: f64,
    pub parquet_ratio_min: f64,
    pub seeds_per_sec_met: bool,
    pub overhead_ratio_met: bool,
    pub parquet_ratio_met: bool,
}

/// Runs every measurement; `progress` hears what is being timed.
pub fn bench(options: &BenchOptions, mut progress: impl FnMut(&str)) -> BenchReport {
    progress("standard seeds");
    let standard = time_standard_seeds(options.seeds.max(1));
    progress("sim overhead: direct and simulated runs, interleaved");
    let (overhead, overhead_passed) = time_overhead(options.pairs.max(1));
    progress("Parquet: ours vs bare ArrowWriter");
    let parquet = time_parquet(options.parquet_rounds.max(1));
    let seeds_per_sec = standard.seeds as f64 / (standard.wall_ms_total / 1_000.0).max(1e-9);
    let seeds_per_cpu_sec = standard.seeds as f64 / (standard.cpu_ms_total / 1_000.0).max(1e-9);
    let overhead_ratio_cpu = overhead.sim_cpu_ms_total / overhead.direct_cpu_ms_total.max(1e-9);
    let sim_to_wall = standard.sim_ms_total as f64 / standard.wall_ms_total.max(1e-9);
    let overhead_ratio = overhead.sim_ms_median / overhead.direct_ms_median.max(1e-9);
    let parquet_ratio = parquet.raw_ms_median / parquet.ours_ms_median.max(1e-9);
    BenchReport {
        workload: Workload::standard().name,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seeds_per_sec,
        sim_to_wall,
        overhead_ratio,
        parquet_ratio,
        seeds_per_cpu_sec,
        overhead_ratio_cpu,
        targets: Targets {
            seeds_per_sec_min: TARGET_SEEDS_PER_SEC,
            overhead_ratio_max: TARGET_OVERHEAD_RATIO,
            parquet_ratio_min: TARGET_PARQUET_RATIO,
            seeds_per_sec_met: seeds_per_sec >= TARGET_SEEDS_PER_SEC,
            overhead_ratio_met: overhead_ratio <= TARGET_OVERHEAD_RATIO,
            parquet_ratio_met: parquet_ratio >= TARGET_PARQUET_RATIO,
        },
        all_passed: overhead_passed && standard.all_passed(),
        standard: standard.timing,
        overhead,
        parquet,
    }
}

struct Standard {
    timing: StandardTiming,
    failed: u64,
}

impl Standard {
    fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

impl std::ops::Deref for Standard {
    type Target = StandardTiming;
    fn deref(&self) -> &StandardTiming {
        &self.timing
    }
}

fn standard_options() -> RunOptions {
    RunOptions {
        keep_trace: false,
        workload: WorkloadChoice::Standard,
        skip_sampling: false,
        silenced_rare_state: None,
    }
}

fn time_standard_seeds(seeds: u64) -> Standard {
    let mut walls = Vec::new();
    let (mut sim_ms, mut requests, mut faults, mut flushes, mut failed) = (0, 0, 0, 0, 0);
    let cpu_before = process_cpu_ms();
    for seed in 0..seeds {
        let plan = Plan::standard(seed);
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let report = run_with(&plan, Bugs::NONE, standard_options());
        walls.push(ms(started.elapsed()));
        sim_ms += report.sim_ms;
        requests += report.requests.issued;
        faults += report.faults.values().sum::<u64>();
        flushes += report.flushes;
        failed += u64::from(!report.passed);
    }
    let cpu_ms_total = process_cpu_ms() - cpu_before;
    let n = seeds as f64;
    Standard {
        timing: StandardTiming {
            seeds,
            wall_ms_total: walls.iter().sum(),
            cpu_ms_total,
            sim_ms_total: sim_ms,
            wall_ms_median: median(&mut walls),
            requests_mean: requests as f64 / n,
            faults_mean: faults as f64 / n,
            flushes_mean: flushes as f64 / n,
        },
        failed,
    }
}

fn time_overhead(pairs: u64) -> (OverheadTiming, bool) {
    let mut sim_walls = Vec::new();
    let mut direct_walls = Vec::new();
    let (mut sim_flushes, mut direct_flushes, mut sim_requests, mut direct_requests) = (0, 0, 0, 0);
    let mut passed = true;
    let (mut sim_cpu, mut direct_cpu) = (0.0, 0.0);
    for seed in 0..pairs {
        let plan = Plan::standard(seed).without_faults();
        let cpu_before = process_cpu_ms();
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let direct = run_direct(&plan);
        direct_walls.push(ms(started.elapsed()));
        direct_cpu += process_cpu_ms() - cpu_before;
        passed &= direct.unanswered == 0;
        direct_flushes += direct.flushes;
        direct_requests += direct.requests;

        let cpu_before = process_cpu_ms();
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let report = run_with(&plan, Bugs::NONE, standard_options());
        sim_walls.push(ms(started.elapsed()));
        sim_cpu += process_cpu_ms() - cpu_before;
        passed &= report.passed;
        sim_flushes += report.flushes;
        sim_requests += report.requests.issued;
    }
    let n = pairs as f64;
    let timing = OverheadTiming {
        pairs,
        sim_ms_median: median(&mut sim_walls),
        direct_ms_median: median(&mut direct_walls),
        sim_cpu_ms_total: sim_cpu,
        direct_cpu_ms_total: direct_cpu,
        sim_flushes_mean: sim_flushes as f64 / n,
        direct_flushes_mean: direct_flushes as f64 / n,
        sim_requests_mean: sim_requests as f64 / n,
        direct_requests_mean: direct_requests as f64 / n,
    };
    (timing, passed)
}

/// Batches like a standard run's flushes: ~1,000 rows over 16 series.
const PARQUET_BATCHES: usize = 100;
const PARQUET_ROWS_PER_BATCH: usize = 1_000;

fn parquet_batches() -> Vec<Vec<Row>> {
    let mut sequence = 0u64;
    (0..PARQUET_BATCHES)
        .map(|batch| {
            (0..PARQUET_ROWS_PER_BATCH)
                .map(|i| {
                    sequence += 1;
                    Row {
                        series: format!("host-{}", (i * 7 + batch) % 16).into(),
                        ts: (batch * PARQUET_ROWS_PER_BATCH + i) as i64,
                        value: sequence as f64,
                        sequence,
                        fields: Vec::new(),
                    }
                })
                .collect()
        })
        .collect()
}

fn time_parquet(rounds: u64) -> ParquetTiming {
    let batches = parquet_batches();
    let arrow_batches: Vec<_> = batches
        .iter()
        .map(|rows| {
            flush_core::sst::rows_to_batch(&RegionSchema::default(), rows)
                .expect("bench rows make a batch")
        })
        .collect();
    let mut ours_walls = Vec::new();
    let mut raw_walls = Vec::new();
    let (mut ours_bytes, mut raw_bytes) = (0, 0);
    for _ in 0..rounds {
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        ours_bytes = batches
            .iter()
            .map(|rows| {
                flush_core::sst::encode_rows(
                    "bench.parquet",
                    &RegionSchema::default(),
                    std::hint::black_box(rows),
                )
                .expect("bench rows encode")
                .len()
            })
            .sum();
        ours_walls.push(ms(started.elapsed()));

        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        raw_bytes = arrow_batches
            .iter()
            .map(|batch| {
                let mut out = Vec::new();
                let mut writer =
                    parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)
                        .expect("a bare writer opens");
                writer
                    .write(std::hint::black_box(batch))
                    .expect("a bare writer writes");
                writer.close().expect("a bare writer closes");
                out.len()
            })
            .sum();
        raw_walls.push(ms(started.elapsed()));
    }
    ParquetTiming {
        rounds,
        batches: PARQUET_BATCHES,
        rows_per_batch: PARQUET_ROWS_PER_BATCH,
        ours_ms_median: median(&mut ours_walls),
        raw_ms_median: median(&mut raw_walls),
        ours_bytes,
        raw_bytes,
    }
}

/// User + system CPU time of the whole process so far (every thread,
/// finished ones too), in milliseconds to the nanosecond; read outside any
/// simulated run.
fn process_cpu_ms() -> f64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    now.tv_sec as f64 * 1_000.0 + now.tv_nsec as f64 / 1_000_000.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// What a direct run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectRun {
    pub requests: u64,
    pub flushes: u64,
    /// Requests whose reply never came (or whose sender was dropped).
    pub unanswered: u64,
}

/// Runs `plan`'s workload plainly: the tokio engine on one thread over
/// fault-free in-memory stores, the simulator's clients drawing the same
/// request mix from the same seeded streams, no simulated time, no trace,
/// no ledger, no oracle. The plan's fault mix is ignored.
pub fn run_direct(plan: &Plan) -> DirectRun {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime builds");
    runtime.block_on(async {
        let events = Arc::new(TracingEvents::default());
        let stores = Stores {
            objects: Arc::new(MemoryObjectStore::default()),
            manifests: Arc::new(MemoryManifestStore::default()),
            wal: Arc::new(MemoryWal::default()),
        };
        let config = plain::engine_config(&plan.workload);
        let engine = Arc::new(TokioEngine::start_with_events(
            &config,
            stores,
            events.clone(),
        ));
        let run = plain::run_clients(plan, engine.clone()).await;
        let stopped = engine.stop(Duration::from_secs(60)).await;
        DirectRun {
            requests: run.requests,
            flushes: events.flushes_committed(),
            unanswered: run.unanswered + u64::from(!stopped),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_run_answers_everything_and_flushes() {
        let plan = Plan::standard(0).without_faults();
        let direct = run_direct(&plan);
        assert_eq!(direct.unanswered, 0, "{direct:?}");
        assert!(
            direct.requests >= plan.workload.total_writes(),
            "{direct:?}"
        );
        assert!(direct.flushes >= 30, "{direct:?}");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
