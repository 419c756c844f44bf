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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
use flush_core::events::CoreEvent;
use flush_core::ids::{RegionId, RequestId};
use flush_core::local::{MemoryManifestStore, MemoryObjectStore, MemoryWal};
use flush_core::memtable::Row;
use flush_core::ports::{
    Clock, EventSink, Job, JobRejected, JobScheduler, MemoryNotifier, NoFaults, NotifyError, Ports,
    WorkerNotifier,
};
use flush_core::request::{
    BackgroundNotify, ClientRequest, Reply, Request, Responder, WorkerRequest,
};
use flush_core::schema::RegionSchema;
use flush_core::worker::RegionWorker;
use futures::channel::{mpsc, oneshot};
use futures::executor::LocalPool;
use futures::future::{self, BoxFuture};
use futures::task::LocalSpawnExt;
use futures::{FutureExt, StreamExt};
use serde::Serialize;

use crate::client::{client_rows, Client, ClientPort};
use crate::ledger::{Origin, Outcome};
use crate::plan::{stream_rng, Plan, Workload, STREAM_CLIENT_BASE};
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
    /// The same two figures from the process's CPU time (Linux
    /// `/proc/self/stat`, 10 ms ticks), which other load on the machine
    /// does not skew; `None` where unavailable.
    pub seeds_per_cpu_sec: Option<f64>,
    pub overhead_ratio_cpu: Option<f64>,
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
    pub cpu_ms_total: Option<f64>,
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
    pub sim_cpu_ms_total: Option<f64>,
    pub direct_cpu_ms_total: Option<f64>,
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
    let seeds_per_cpu_sec = standard
        .cpu_ms_total
        .map(|cpu_ms| standard.seeds as f64 / (cpu_ms / 1_000.0).max(1e-9));
    let overhead_ratio_cpu = overhead
        .sim_cpu_ms_total
        .zip(overhead.direct_cpu_ms_total)
        .map(|(sim, direct)| sim / direct.max(1e-9));
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
    let cpu_ms_total = cpu_before
        .zip(process_cpu_ms())
        .map(|(before, after)| after - before);
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
    let (mut sim_cpu, mut direct_cpu) = (Some(0.0), Some(0.0));
    let add_cpu = |total: &mut Option<f64>, before: Option<f64>| {
        *total = total
            .zip(before)
            .zip(process_cpu_ms())
            .map(|((total, before), after)| total + after - before);
    };
    for seed in 0..pairs {
        let plan = Plan::standard(seed).without_faults();
        let cpu_before = process_cpu_ms();
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let direct = run_direct(&plan);
        direct_walls.push(ms(started.elapsed()));
        add_cpu(&mut direct_cpu, cpu_before);
        passed &= direct.unanswered == 0;
        direct_flushes += direct.flushes;
        direct_requests += direct.requests;

        let cpu_before = process_cpu_ms();
        // Wall time is what a benchmark measures.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let report = run_with(&plan, Bugs::NONE, standard_options());
        sim_walls.push(ms(started.elapsed()));
        add_cpu(&mut sim_cpu, cpu_before);
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
                        series: format!("host-{}", (i * 7 + batch) % 16),
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

/// User + system CPU time of this process so far, in milliseconds (Linux;
/// `None` elsewhere). Resolution: one clock tick, assumed 10 ms.
fn process_cpu_ms() -> Option<f64> {
    const MS_PER_TICK: f64 = 10.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) * MS_PER_TICK)
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

/// Runs `plan`'s workload directly: the core's workers as tasks of a plain
/// single-threaded executor, fault-free in-memory ports, clients drawing the
/// same request mix from the same seeded streams as the simulator's, no
/// simulated time (think times and I/O latency are yields), no trace, no
/// ledger, no oracle. The plan's fault mix is ignored.
pub fn run_direct(plan: &Plan) -> DirectRun {
    let workload = plan.workload.clone();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let (job_sender, mut job_receiver) = mpsc::unbounded::<Job>();
    let router = Arc::new(DirectRouter::default());
    let buffer = Arc::new(
        WriteBufferManager::new(workload.global_buffer_bytes).with_notifier(router.clone()),
    );
    let flushes = Arc::new(FlushCounter::default());
    let ports = Ports {
        jobs: Arc::new(DirectJobs { sender: job_sender }),
        objects: Arc::new(MemoryObjectStore::default()),
        manifests: Arc::new(MemoryManifestStore::default()),
        wal: Arc::new(MemoryWal::default()),
        clock: Arc::new(DirectClock::default()),
        faults: Arc::new(NoFaults),
        events: flushes.clone(),
    };
    let mut inboxes = Vec::new();
    for worker_id in 0..workload.workers.max(1) {
        let config = workload.worker_config(worker_id, Bugs::NONE);
        let mut worker = RegionWorker::new(config, ports.clone(), buffer.clone(), router.clone());
        let (sender, mut receiver) = mpsc::unbounded::<WorkerRequest>();
        inboxes.push(sender);
        spawner
            .spawn_local(async move {
                while let Some(request) = receiver.next().await {
                    worker.handle(request).await;
                }
                worker.shutdown();
            })
            .expect("the pool takes tasks");
    }
    router.set_inboxes(inboxes);
    // The workers hold the ports now; when they stop, the job queue closes.
    drop(ports);
    let job_spawner = spawner.clone();
    spawner
        .spawn_local(async move {
            while let Some(job) = job_receiver.next().await {
                if job_spawner.spawn_local(job).is_err() {
                    break;
                }
            }
        })
        .expect("the pool takes tasks");

    let stop_ticker = Arc::new(AtomicBool::new(false));
    spawner
        .spawn_local(run_direct_ticker(router.clone(), stop_ticker.clone()))
        .expect("the pool takes tasks");
    let regions: Vec<RegionId> = (1..=u64::from(workload.regions.max(1)))
        .map(RegionId)
        .collect();
    let requester = DirectRequester::new(router.clone());
    let main = {
        let requester = requester.clone();
        let regions = regions.clone();
        let seed = plan.seed;
        async move {
            let creates = regions
                .iter()
                .map(|region_id| requester.send(Request::create(*region_id)));
            future::join_all(creates).await;
            // Nothing stops the clients early; the count is theirs to keep.
            let stop = Arc::new(AtomicBool::new(false));
            let running = Arc::new(AtomicUsize::new(0));
            let clients = (0..workload.clients).map(|index| {
                Client::new(
                    index,
                    requester.clone(),
                    stream_rng(seed, STREAM_CLIENT_BASE + u64::from(index)),
                    workload.clone(),
                    regions.clone(),
                    stop.clone(),
                    running.clone(),
                )
                .run()
            });
            future::join_all(clients).await;
        }
    };
    pool.run_until(main);
    stop_ticker.store(true, Ordering::Relaxed);
    router.close_all();
    // The workers drain their queues and stop; whatever still waits on
    // nothing is dropped with the pool.
    pool.run_until_stalled();
    DirectRun {
        requests: requester.next_id.load(Ordering::Relaxed) - 1,
        flushes: flushes.count(),
        unanswered: requester.unanswered.load(Ordering::Relaxed),
    }
}

/// Polls between two ticks of the direct ticker.
const DIRECT_POLLS_PER_TICK: u32 = 64;

/// Sends `Tick` to every worker every few polls until stopped (the
/// simulator sends one every 100 ms of simulated time).
async fn run_direct_ticker(router: Arc<DirectRouter>, stop: Arc<AtomicBool>) {
    let mut polls = 0u32;
    while !stop.load(Ordering::Relaxed) {
        YieldNow(false).await;
        polls += 1;
        if polls.is_multiple_of(DIRECT_POLLS_PER_TICK) {
            router.send_to_all(|| WorkerRequest::Tick);
        }
    }
}

/// Gives the other tasks a turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[derive(Default)]
struct DirectRouter {
    inboxes: Mutex<Vec<mpsc::UnboundedSender<WorkerRequest>>>,
}

impl DirectRouter {
    fn inboxes(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<WorkerRequest>>> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_inboxes(&self, inboxes: Vec<mpsc::UnboundedSender<WorkerRequest>>) {
        *self.inboxes() = inboxes;
    }

    fn close_all(&self) {
        for inbox in self.inboxes().iter() {
            inbox.close_channel();
        }
    }

    fn send_to_all(&self, message: impl Fn() -> WorkerRequest) {
        for inbox in self.inboxes().iter() {
            let _ = inbox.unbounded_send(message());
        }
    }

    fn send(&self, region_id: RegionId, request: WorkerRequest) -> Result<(), WorkerRequest> {
        let inboxes = self.inboxes();
        let Some(inbox) = inboxes.get((region_id.0 % inboxes.len().max(1) as u64) as usize) else {
            return Err(request);
        };
        inbox
            .unbounded_send(request)
            .map_err(|error| error.into_inner())
    }
}

impl WorkerNotifier for DirectRouter {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        let region_id = notify.region_id();
        self.send(region_id, WorkerRequest::Background(notify))
            .map_err(|request| match request {
                WorkerRequest::Background(notify) => NotifyError::Closed(notify),
                _ => unreachable!("a notification comes back as one"),
            })
    }
}

impl MemoryNotifier for DirectRouter {
    fn memory_freed(&self) {
        self.send_to_all(|| WorkerRequest::MemoryFreed);
    }
}

/// Jobs go to a task that spawns them on the pool.
struct DirectJobs {
    sender: mpsc::UnboundedSender<Job>,
}

impl JobScheduler for DirectJobs {
    fn schedule(&self, job: Job) -> Result<(), JobRejected> {
        self.sender.unbounded_send(job).map_err(|_| JobRejected {
            reason: "the executor stopped".to_string(),
        })
    }
}

/// A logical clock: one millisecond per reading; sleeping takes no time.
#[derive(Default)]
struct DirectClock {
    now_ms: AtomicU64,
}

impl Clock for DirectClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.fetch_add(1, Ordering::Relaxed)
    }

    fn sleep(&self, _duration_ms: u64) -> BoxFuture<'static, ()> {
        YieldNow(false).boxed()
    }
}

/// Counts committed flushes; nothing else (the plain runs of both
/// benchmarks read only this).
#[derive(Default)]
pub(crate) struct FlushCounter(AtomicU64);

impl FlushCounter {
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl EventSink for FlushCounter {
    fn record(&self, event: CoreEvent) {
        if matches!(event, CoreEvent::FlushCommitted { .. }) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
struct DirectRequester {
    router: Arc<DirectRouter>,
    next_id: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
    /// Row values, as the simulator's ledger numbers rows.
    next_value: Arc<AtomicU64>,
    next_schema_version: Arc<AtomicU64>,
    clock: Arc<AtomicU64>,
}

impl DirectRequester {
    fn new(router: Arc<DirectRouter>) -> Self {
        DirectRequester {
            router,
            next_id: Arc::new(AtomicU64::new(1)),
            unanswered: Arc::new(AtomicU64::new(0)),
            next_value: Arc::new(AtomicU64::new(1)),
            next_schema_version: Arc::new(AtomicU64::new(1)),
            clock: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `request` and turns its reply into an outcome, as the
    /// simulator's requester does (without a ledger).
    fn send(&self, request: Request) -> BoxFuture<'static, Outcome> {
        let id = RequestId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (responder, receiver) = Responder::new(id);
        let region_id = request.region_id();
        let request = WorkerRequest::Client(ClientRequest { request, responder });
        if self.router.send(region_id, request).is_err() {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
            return future::ready(Outcome::Lost).boxed();
        }
        let unanswered = self.unanswered.clone();
        async move {
            let reply: Result<Reply, oneshot::Canceled> = receiver.await;
            match reply {
                Ok(Ok(output)) => Outcome::Ok(output),
                Ok(Err(error)) => Outcome::Err {
                    kind: error.kind(),
                    message: error.to_string(),
                },
                Err(oneshot::Canceled) => {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    Outcome::Lost
                }
            }
        }
        .boxed()
    }
}

/// The direct run's clients: the simulator's client loop over plain
/// channels; think times are yields, time is a counter.
impl ClientPort for DirectRequester {
    fn call(&self, _origin: Origin, request: Request) -> BoxFuture<'static, Outcome> {
        self.send(request)
    }

    fn write(
        &self,
        _origin: Origin,
        region_id: RegionId,
        rows: Vec<(String, i64)>,
        fields: Vec<String>,
    ) -> BoxFuture<'static, Outcome> {
        let first = self
            .next_value
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        let rows = client_rows(first, rows, &fields);
        self.send(Request::Write { region_id, rows })
    }

    fn think(&self, _ms: u64) -> BoxFuture<'static, ()> {
        YieldNow(false).boxed()
    }

    fn now_ms(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn next_schema_version(&self) -> u64 {
        self.next_schema_version.fetch_add(1, Ordering::Relaxed)
    }
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
