//! One run: a fresh madsim runtime on a fresh thread, the world and the
//! engine built from the plan, then the phases.
//!
//! 1. setup: every region is created;
//! 2. safety: clients run the workload, the injector and the world inject
//!    faults, the crash actor kills and restarts the engine (with a
//!    `recovery` check after each restart), the monitor samples invariants
//!    between requests;
//! 3. liveness: faults off, clients stop issuing; every pending request must
//!    complete within the liveness budget of simulated time;
//! 4. final: every region is reopened, the engine settles, its state, the
//!    manifests, the object store and the WAL are gathered, the engine is
//!    stopped; then the oracles judge;
//! 5. teardown: every node of the run is killed, so madsim drops every task
//!    still parked, and the run checks that nothing else holds its world
//!    (a sweep of any length runs in bounded memory).
//!
//! Every wait is bounded in simulated time, so a hang becomes a failed
//! check, never a hung process. A panic anywhere becomes a failed
//! `no_panic` check with the same replay line.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flush_core::bugs::Bugs;
use flush_core::error::panic_message;
use flush_core::ids::RegionId;
use flush_core::request::Request;
use futures::channel::mpsc;
use madsim::runtime::{NodeHandle, Runtime};

use crate::actors::{run_ticker, Injector, Requester};
use crate::check::Check;
use crate::client::Client;
use crate::crash::{CrashActor, CrashContext};
use crate::engine::{EngineGeneration, Engines, Stores};
use crate::ledger::Origin;
use crate::oracle::{
    self, BufferReading, CheckResult, Checks, LivenessObservation, Observations, RareState,
    Sampler, WatchSettings,
};
use crate::plan::{stream_rng, FaultClass, Plan, Workload, STREAM_CLIENT_BASE};
use crate::report::{rare_state_counts, replay_line, Report, WorkloadChoice};
use crate::script::Script;
use crate::world::notifier::WorkerRouter;
use crate::world::trace::format_hash;
use crate::world::wait_until;
use crate::world::{sleep, DuringFlush, World};

/// Interval of the workers' periodic `Tick`.
pub const WORKER_TICK_MS: u64 = 100;
/// A safety phase in which requests wait and no reply comes for this long
/// ends early: the liveness phase then decides whether they were stuck.
const SAFETY_STAGNATION_MS: u64 = 2_000;
/// How often the liveness and settle phases look at the ledger.
const POLL_MS: u64 = 5;
/// Simulated time the final phase may spend reopening and settling.
const FINAL_PATIENCE_MS: u64 = 30_000;
/// How long an inspection waits for a worker to finish its request.
const INSPECT_PATIENCE_MS: u64 = 5_000;

/// Options that do not change what a run does, only what it keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace line in the report (`replay --trace`).
    pub keep_trace: bool,
    /// How the plan was chosen, for the replay line.
    pub workload: WorkloadChoice,
    /// Turn the in-run sampling off. It only looks (a test holds it to
    /// that: the trace stays the same), so this only loses its checks.
    pub skip_sampling: bool,
    /// A rare state whose trigger is switched off: never reported reached
    /// (how a test shows `fault_coverage` failing on a state at zero).
    pub silenced_rare_state: Option<RareState>,
}

/// Runs `plan` with `bugs` planted and judges it.
pub fn run(plan: &Plan, bugs: Bugs) -> Report {
    run_with(plan, bugs, RunOptions::default())
}

/// The seed to use in a `#[test]`: `MADSIM_TEST_SEED` when set (so the line
/// a failure prints reproduces it), else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("MADSIM_TEST_SEED")
        .ok()
        .and_then(|seed| seed.trim().parse().ok())
        .unwrap_or(default)
}

pub fn run_with(plan: &Plan, bugs: Bugs, options: RunOptions) -> Report {
    // Plan files are checked when they are read; every other plan comes
    // from code (the generator, the fuzz decoders, the shrinker, tests),
    // which must draw only plans the simulator can run. An assertion that
    // fails like a panic would, as a failed seed with its replay line, so a
    // sweep over a generator that draws a bad plan names the seed.
    if cfg!(debug_assertions) || flush_core::STRICT {
        if let Err(problems) = plan.validate() {
            let message = format!("assertion failed: the plan validates: {problems}");
            return failed_to_run(plan, bugs, options, Check::NoPanic, message);
        }
    }
    warm_up_process_globals();
    // Wall time of the run, reported; never read inside it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let thread_plan = plan.clone();
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    // A fresh thread per run: thread-locals (hasher keys, madsim's context)
    // start the same way every time, whatever ran before in this process.
    let spawned = std::thread::Builder::new()
        .name(format!("flushsim-seed-{}", plan.seed))
        .spawn(move || {
            let report = run_on_this_thread(&thread_plan, bugs, options);
            let _ = sender.send(report);
        });
    let mut report = match spawned {
        Err(error) => failed_to_run(
            plan,
            bugs,
            options,
            Check::NoPanic,
            format!("could not spawn the run thread: {error}"),
        ),
        Ok(handle) => match receiver.recv_timeout(WALL_LIMIT) {
            Ok(report) => {
                let _ = handle.join();
                report
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let message = match handle.join() {
                    Err(panic) => format!(
                        "expected the run to finish, saw a panic: {}",
                        panic_message(panic.as_ref())
                    ),
                    Ok(()) => "expected a report, saw the run end without one".to_string(),
                };
                failed_to_run(plan, bugs, options, Check::NoPanic, message)
            }
            // Simulated time stopped advancing (tasks waking each other
            // forever): the thread is left behind, the run fails.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => failed_to_run(
                plan,
                bugs,
                options,
                Check::Liveness,
                format!(
                    "expected the run to end, saw it still running after {} s of wall time \
                     (a livelock: simulated time no longer advances)",
                    WALL_LIMIT.as_secs()
                ),
            ),
        },
    };
    report.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// Real time one run may take. Runs take milliseconds; only a livelock
/// inside the simulation gets anywhere near this.
const WALL_LIMIT: Duration = Duration::from_secs(120);

/// Lazy process globals that draw randomness on first use (hashers seeded
/// once per process inside the Parquet/arrow stack) would otherwise draw it
/// from the first run's madsim RNG, through madsim's `getrandom` hook, and
/// make the first run of a process differ from every later one. Touching
/// them once outside any runtime takes the draw from the OS instead.
fn warm_up_process_globals() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let rows = [flush_core::memtable::Row {
            series: "warm-up".into(),
            ts: 0,
            value: 0.0,
            sequence: 1,
            fields: Vec::new(),
        }];
        if let Ok(bytes) = flush_core::sst::encode_rows(
            "warm-up",
            &flush_core::schema::RegionSchema::default(),
            &rows,
        ) {
            let _ = flush_core::sst::decode_rows("warm-up", bytes);
        }
    });
}

fn failed_to_run(
    plan: &Plan,
    bugs: Bugs,
    options: RunOptions,
    check: Check,
    message: String,
) -> Report {
    Report {
        seed: plan.seed,
        bugs: bugs.iter().map(|bug| bug.name().to_string()).collect(),
        workload: plan.workload.name.clone(),
        passed: false,
        checks: vec![CheckResult::fail(check, format!("{check}: {message}"))],
        trace_hash: format_hash(0),
        events: 0,
        requests: Default::default(),
        faults: BTreeMap::new(),
        marks: BTreeMap::new(),
        rare_states: BTreeMap::new(),
        rare_reached: BTreeMap::new(),
        flushes: 0,
        orphans: 0,
        orphans_purged: 0,
        crashes: 0,
        rows_recovered_checked: 0,
        rows_checked: 0,
        sim_ms: 0,
        wall_ms: 0,
        fault_mix: plan.faults.clone(),
        script: plan.script.as_ref().map(Script::summary),
        replay: replay_line(plan, bugs, options.workload),
        trace: Vec::new(),
    }
}

fn run_on_this_thread(plan: &Plan, bugs: Bugs, options: RunOptions) -> Report {
    let runtime = Runtime::with_seed_and_config(plan.seed, madsim::Config::default());
    let (during_flush_tx, during_flush_rx) = mpsc::unbounded();
    // The run owns its checks; the world only calls their hooks.
    let checks = Arc::new(Checks::new(WatchSettings {
        workers: plan.workload.workers,
        notify_retry_limit: plan.workload.notify_retry_limit,
        silenced: options.silenced_rare_state,
    }));
    let hooks = checks.clone();
    let world = Arc::new(
        runtime.block_on(async { World::new(plan, options.keep_trace, during_flush_tx, hooks) }),
    );
    // The core's metrics go to this run's recorder: thread-local, so runs
    // on other threads never mix with it.
    let recorder = world.metrics.recorder();
    let simulated = std::panic::catch_unwind(AssertUnwindSafe(|| {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(simulate(
                plan.clone(),
                bugs,
                world.clone(),
                checks.clone(),
                during_flush_rx,
                Sampler::new(!options.skip_sampling, checks.clone()),
            ))
        })
    }));
    let (observed, panic) = match simulated {
        Ok(observed) => (Some(observed), None),
        Err(panic) => (None, Some(panic_message(panic.as_ref()))),
    };
    let mut report = build_report(plan, bugs, options, &world, &checks, observed, panic);
    if let Err(problem) = tear_down(runtime, world) {
        report.passed = false;
        report.checks.push(CheckResult::fail(
            Check::NoPanic,
            format!("{}: {problem}", Check::NoPanic),
        ));
    }
    report
}

/// Yields the teardown gives the executor to drop the killed tasks (each
/// dropped task may wake others; a handful of rounds is plenty).
const TEARDOWN_YIELDS: u32 = 1_000;

/// Ends every task of the run, drops its runtime, and checks the run's
/// post-condition: no task is left and nothing but the caller holds the
/// world, so the world, its ports and the ledger are freed with the run.
/// Runs after the report is built, so it cannot change what was judged.
fn tear_down(runtime: Runtime, world: Arc<World>) -> Result<(), String> {
    let leftover = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async {
            world.end_every_task();
            let mut yields = 0;
            loop {
                let alive = madsim::runtime::Handle::current().metrics().num_tasks();
                if alive == 0 || yields == TEARDOWN_YIELDS {
                    return alive;
                }
                yields += 1;
                madsim::task::yield_now().await;
            }
        })
    }));
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(runtime)));
    match leftover {
        Ok(0) => {}
        Ok(alive) => {
            return Err(format!(
                "expected every task of the run to end with it, saw {alive} still alive after \
                 its nodes were killed"
            ))
        }
        Err(panic) => {
            return Err(format!(
                "expected the teardown to end every task, saw a panic: {}",
                panic_message(panic.as_ref())
            ))
        }
    }
    match Arc::strong_count(&world) {
        1 => Ok(()),
        holders => Err(format!(
            "expected the world to be freed with the run, saw {} other holders of it \
             after the runtime was dropped",
            holders - 1
        )),
    }
}

fn build_report(
    plan: &Plan,
    bugs: Bugs,
    options: RunOptions,
    world: &World,
    run_checks: &Checks,
    observed: Option<(Observations, u64)>,
    panic: Option<String>,
) -> Report {
    world.with(|state| {
        let (mut checks, stats, sim_ms) = match &observed {
            Some((observed, sim_ms)) => {
                let (checks, stats) = oracle::check_run(observed, run_checks, state);
                (checks, stats, *sim_ms)
            }
            None => (Vec::new(), oracle::OracleStats::default(), 0),
        };
        if let Some(message) = panic {
            checks.insert(
                0,
                CheckResult::fail(
                    Check::NoPanic,
                    format!(
                        "{}: expected the run to finish, saw a panic: {message}",
                        Check::NoPanic
                    ),
                ),
            );
        }
        let marks: BTreeMap<String, u64> = state
            .trace
            .marks()
            .iter()
            .map(|(mark, count)| (mark.to_string(), *count))
            .collect();
        let faults = FaultClass::ALL
            .iter()
            .map(|class| {
                let count = state.faults.counts.get(class).copied().unwrap_or(0);
                (class.name().to_string(), count)
            })
            .collect();
        let orphans_purged = marks.get("orphan_purged").copied().unwrap_or(0);
        let rare_reached = run_checks.rare_states().reached().clone();
        Report {
            seed: plan.seed,
            bugs: bugs.iter().map(|bug| bug.name().to_string()).collect(),
            workload: plan.workload.name.clone(),
            passed: checks.iter().all(|check| check.passed),
            checks,
            trace_hash: format_hash(state.trace.hash()),
            events: state.trace.events(),
            requests: run_checks.ledger().counts(),
            faults,
            flushes: marks.get("flush_committed").copied().unwrap_or(0),
            marks,
            rare_states: rare_state_counts(&rare_reached),
            rare_reached,
            orphans: stats.orphans,
            orphans_purged,
            crashes: state.crash.records.len() as u64,
            rows_recovered_checked: state.crash.recoveries.iter().map(|r| r.rows_checked).sum(),
            rows_checked: stats.rows_checked,
            sim_ms,
            wall_ms: 0,
            fault_mix: plan.faults.clone(),
            script: plan.script.as_ref().map(Script::summary),
            replay: replay_line(plan, bugs, options.workload),
            trace: state.trace.take_lines(),
        }
    })
}

/// The engines (the running one and the crashed ones), the router clients
/// send through, and the durable stores the oracles read at the end.
struct Rig {
    engines: Arc<Engines>,
    router: Arc<WorkerRouter>,
    stores: Stores,
    /// The run's checks (also the world's hooks).
    checks: Arc<Checks>,
}

impl Rig {
    fn current(&self) -> Arc<EngineGeneration> {
        self.engines.current()
    }
}

fn build_rig(plan: &Plan, bugs: Bugs, world: &Arc<World>, checks: Arc<Checks>) -> Rig {
    let workload = &plan.workload;
    let stores = Stores::new(world, bugs);
    let router = Arc::new(WorkerRouter::new(
        world.clone(),
        workload.notify_retry_limit,
    ));
    let first = EngineGeneration::start(0, workload, bugs, world, &router, &stores);
    Rig {
        engines: Arc::new(Engines::new(first)),
        router,
        stores,
        checks,
    }
}

async fn simulate(
    plan: Plan,
    bugs: Bugs,
    world: Arc<World>,
    checks: Arc<Checks>,
    during_flush: mpsc::UnboundedReceiver<DuringFlush>,
    mut sampler: Sampler,
) -> (Observations, u64) {
    let workload = plan.workload.clone();
    let regions: Vec<RegionId> = (1..=u64::from(workload.regions.max(1)))
        .map(RegionId)
        .collect();
    trace_plan(&plan, bugs, &world);
    let rig = build_rig(&plan, bugs, &world, checks);
    // Every task below (and every task those spawn) lives on this node, so
    // the teardown can end them all.
    let actors = world.create_node("actors");
    let requester = Requester::new(world.clone(), rig.router.clone(), rig.checks.clone());
    let stop_ticker = Arc::new(AtomicBool::new(false));
    drop(actors.spawn(run_ticker(
        rig.router.clone(),
        WORKER_TICK_MS,
        stop_ticker.clone(),
    )));
    create_regions(&world, &requester, &workload, &regions).await;

    world.trace("phase", format_args!("safety"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients_running = Arc::new(AtomicUsize::new(0));
    let cast = Cast {
        plan: &plan,
        bugs,
        world: &world,
        rig: &rig,
        requester: &requester,
        regions: &regions,
        stop: &stop,
        clients_running: &clients_running,
    };
    cast.spawn_on(&actors, during_flush);
    run_safety_phase(&world, &rig, &mut sampler, &clients_running, &workload).await;

    stop.store(true, Ordering::Relaxed);
    world.set_faults(false);
    world.trace("phase", format_args!("liveness"));
    let liveness = wait_for_liveness(
        &world,
        &rig,
        &mut sampler,
        &clients_running,
        workload.liveness_budget_ms,
    )
    .await;
    // A restart begun in the safety phase finishes before the final checks.
    wait_until(&world, FINAL_PATIENCE_MS, || !world.crash_in_progress()).await;
    reopen_every_region(
        &world,
        &rig,
        &requester,
        &regions,
        &clients_running,
        &stop_ticker,
    )
    .await;
    let quiescent = settle(&world, &rig).await;
    let observed = observe_end_state(&world, &rig, &workload, regions, liveness, quiescent).await;
    let sim_ms = world.now_ms();
    world.trace("phase", format_args!("done at {sim_ms} ms"));
    (observed, sim_ms)
}

/// The run's first trace line: everything that decides it.
fn trace_plan(plan: &Plan, bugs: Bugs, world: &World) {
    let bugs: Vec<&str> = bugs.iter().map(|bug| bug.name()).collect();
    world.trace(
        "plan",
        format_args!(
            "seed {} workload {} bugs [{}] faults: {}",
            plan.seed,
            plan.workload.name,
            bugs.join(","),
            plan.faults
        ),
    );
}

/// The setup phase: every region created, concurrently.
async fn create_regions(
    world: &World,
    requester: &Requester,
    workload: &Workload,
    regions: &[RegionId],
) {
    world.trace("phase", format_args!("setup"));
    let creates = regions.iter().map(|region_id| {
        let options = workload.region_options(*region_id);
        let create = Request::Create {
            region_id: *region_id,
            options,
        };
        requester.call(Origin::Setup, create)
    });
    futures::future::join_all(creates).await;
}

/// Who acts in the safety phase, and what they share.
struct Cast<'a> {
    plan: &'a Plan,
    bugs: Bugs,
    world: &'a Arc<World>,
    rig: &'a Rig,
    requester: &'a Requester,
    regions: &'a [RegionId],
    stop: &'a Arc<AtomicBool>,
    clients_running: &'a Arc<AtomicUsize>,
}

impl Cast<'_> {
    /// Spawns the clients, the two fault injectors and (if the plan
    /// crashes) the crash actor, in this order: the order is part of the
    /// run's schedule.
    fn spawn_on(&self, actors: &NodeHandle, during_flush: mpsc::UnboundedReceiver<DuringFlush>) {
        let workload = &self.plan.workload;
        let regions = self.regions.to_vec();
        for index in 0..workload.clients {
            let client = Client::new(
                index,
                self.requester.clone(),
                stream_rng(self.plan.seed, STREAM_CLIENT_BASE + u64::from(index)),
                workload.clone(),
                regions.clone(),
                self.stop.clone(),
                self.clients_running.clone(),
            )
            .with_script(self.plan.script.as_ref());
            drop(actors.spawn(client.run()));
        }
        let injector = || {
            Injector::new(
                self.world.clone(),
                self.requester.clone(),
                regions.clone(),
                self.stop.clone(),
                workload.injector_tick_ms,
            )
        };
        drop(actors.spawn(injector().run_region_faults()));
        drop(actors.spawn(injector().run_during_flush(during_flush)));
        let crash_context = CrashContext {
            world: self.world.clone(),
            checks: self.rig.checks.clone(),
            engines: self.rig.engines.clone(),
            router: self.rig.router.clone(),
            stores: self.rig.stores.clone(),
            requester: self.requester.clone(),
            workload: workload.clone(),
            bugs: self.bugs,
            regions: regions.clone(),
        };
        if let Some(crasher) = CrashActor::new(self.plan, crash_context, self.stop.clone()) {
            drop(actors.spawn(crasher.run()));
        }
    }
}

/// Lets the clients run, under faults, until they finish, the safety
/// budget is spent, or requests wait with no reply for
/// [`SAFETY_STAGNATION_MS`]; samples the engine every monitor tick.
async fn run_safety_phase(
    world: &World,
    rig: &Rig,
    sampler: &mut Sampler,
    clients_running: &AtomicUsize,
    workload: &Workload,
) {
    let safety_deadline_ms = world.now_ms() + workload.safety_budget_ms;
    while clients_running.load(Ordering::Relaxed) > 0 && world.now_ms() < safety_deadline_ms {
        sleep(Duration::from_millis(workload.monitor_tick_ms.max(1))).await;
        sample(sampler, world, rig);
        let quiet_ms = world
            .now_ms()
            .saturating_sub(rig.checks.ledger().last_reply_us() / 1_000);
        let pending = rig.checks.ledger().pending_count();
        if pending > 0 && quiet_ms >= SAFETY_STAGNATION_MS {
            // Something waits that faults may be masking (an injected drop
            // would fail a stuck write): judge it with faults off.
            world.trace(
                "phase",
                format_args!("safety stagnated: no reply for {quiet_ms} ms"),
            );
            break;
        }
    }
}

/// The final phase's start: ticks stop, every region is opened again (a
/// closed or crashed one replays its WAL), and every worker gets one last
/// tick.
async fn reopen_every_region(
    world: &World,
    rig: &Rig,
    requester: &Requester,
    regions: &[RegionId],
    clients_running: &AtomicUsize,
    stop_ticker: &AtomicBool,
) {
    let pending = rig.checks.ledger().pending_count();
    world.trace(
        "phase",
        format_args!(
            "final ({pending} pending, {} clients running)",
            clients_running.load(Ordering::Relaxed)
        ),
    );
    // No more ticks: nothing but the reopens may start a flush from here on.
    stop_ticker.store(true, Ordering::Relaxed);
    let reopens = regions.iter().map(|region_id| {
        requester.call(
            Origin::Final,
            Request::Open {
                region_id: *region_id,
            },
        )
    });
    let _ = madsim::time::timeout(
        Duration::from_millis(FINAL_PATIENCE_MS),
        futures::future::join_all(reopens),
    )
    .await;
    // One last tick, as a running engine would give: a reopened follower
    // may have filled the buffer that only another worker's regions can
    // flush, and that worker hears of it on its next request or tick.
    rig.router
        .send_to_all(|| flush_core::request::WorkerRequest::Tick);
}

/// Reads everything the end-state checks judge (views, buffers, metrics,
/// stores), then stops the engine and reads the buffer once more.
async fn observe_end_state(
    world: &World,
    rig: &Rig,
    workload: &Workload,
    regions: Vec<RegionId>,
    liveness: LivenessObservation,
    quiescent: bool,
) -> Observations {
    let current = rig.current();
    let inspected = current
        .engine
        .inspect_with_rows(Duration::from_millis(INSPECT_PATIENCE_MS))
        .await;
    let buffer_at_views = BufferReading::of(&current.buffer);
    let metrics_at_views = world.metrics.reading();
    let alive_buffers = rig
        .engines
        .alive()
        .iter()
        .map(|generation| BufferReading::of(&generation.buffer))
        .collect();
    let quiescent = quiescent
        && buffer_at_views.flushes_running == 0
        && rig.checks.ledger().pending_count() == 0;
    let stalled_writes = inspected
        .as_ref()
        .map(|(views, _)| views.iter().map(|view| view.stalled_writes).sum());
    let (views, memtable_rows) = match inspected {
        Some((views, rows)) => (Some(views), rows),
        None => (None, BTreeMap::new()),
    };
    let manifests = rig.stores.manifests.snapshot();
    let manifest_history = rig.stores.manifests.history();
    let objects = rig.stores.objects.snapshot();
    let wal = rig.stores.wal.durable_logs(&regions);
    let (shutdown_step, buffer_after_teardown) = shut_down(world, rig, &current).await;
    Observations {
        unlogged: workload.unlogged_regions(&regions),
        regions,
        liveness: LivenessObservation {
            stalled_writes,
            ..liveness
        },
        views,
        memtable_rows,
        manifests,
        manifest_history,
        objects,
        wal,
        quiescent,
        buffer_at_views,
        metrics_at_views,
        alive_buffers,
        buffer_after_teardown,
        shutdown_step,
    }
}

/// Stops the current engine and waits for its jobs; the buffer as the
/// teardown leaves it (`None` if the stop or the jobs did not end), and
/// the trace step where the shutdown began.
async fn shut_down(
    world: &World,
    rig: &Rig,
    current: &EngineGeneration,
) -> (u64, Option<BufferReading>) {
    let shutdown_step = world.trace("phase", format_args!("shutdown"));
    let stopped = current
        .engine
        .stop(Duration::from_millis(INSPECT_PATIENCE_MS))
        .await;
    let buffer = current.buffer.clone();
    let jobs_done = wait_until(world, FINAL_PATIENCE_MS, || buffer.flushes_running() == 0).await;
    let buffer_after_teardown = (stopped && jobs_done).then(|| BufferReading::of(&buffer));
    rig.engines.bury();
    (shutdown_step, buffer_after_teardown)
}

/// Samples the running engine's invariants: the workers that are between
/// two requests right now, the others next time. Synchronous and without
/// waiting on anything, so sampling never steers the run (a test turns it
/// off and compares trace hashes). A dead engine owes nothing.
fn sample(sampler: &mut Sampler, world: &World, rig: &Rig) {
    if !sampler.enabled() {
        return;
    }
    // An engine being stopped or crashed is no longer bound by what a
    // running one promises (a stopping worker's queue is closed, so a
    // release of memory cannot reach its stalled writes): sample the next
    // engine, not this one.
    if world.crash_in_progress() {
        return;
    }
    let current = rig.current();
    if world.generation() != current.number {
        return;
    }
    current.engine.visit_idle(|visit| {
        let view = visit.worker.inspect();
        sampler.check_view(world, &view, |region_id| {
            rig.stores.manifests.incarnation(region_id)
        });
        sampler.check_stalls(world, &view, visit.memory_freed_queued, &current.buffer);
    });
    sampler.check_buffer(world, &current.buffer);
}

async fn wait_for_liveness(
    world: &World,
    rig: &Rig,
    sampler: &mut Sampler,
    clients_running: &AtomicUsize,
    budget_ms: u64,
) -> LivenessObservation {
    let deadline_ms = world.now_ms() + budget_ms;
    let pending_when_faults_stopped = rig.checks.ledger().pending_count();
    loop {
        let pending = rig.checks.ledger().pending_count();
        let running = clients_running.load(Ordering::Relaxed);
        if (pending == 0 && running == 0) || world.now_ms() >= deadline_ms {
            break;
        }
        sleep(Duration::from_millis(POLL_MS)).await;
        sample(sampler, world, rig);
    }
    let last_reply_us = rig.checks.ledger().last_reply_us();
    let last_reply_before_end_ms =
        (last_reply_us > 0).then(|| world.now_us().saturating_sub(last_reply_us) / 1_000);
    let pending = rig
        .checks
        .ledger()
        .pending()
        .map(|entry| {
            format!(
                "{} issued at {} ms",
                entry.describe(),
                entry.issued_us / 1_000
            )
        })
        .collect();
    LivenessObservation {
        budget_ms,
        pending,
        pending_when_faults_stopped,
        last_reply_before_end_ms,
        clients_running: clients_running.load(Ordering::Relaxed),
        stalled_writes: None,
    }
}

/// Waits until no request is pending and no flush job runs, twice in a row
/// a poll apart (a finished job's notification must reach its worker too).
async fn settle(world: &World, rig: &Rig) -> bool {
    let idle =
        || rig.checks.ledger().pending_count() == 0 && rig.current().buffer.flushes_running() == 0;
    let deadline_ms = world.now_ms() + FINAL_PATIENCE_MS;
    let mut idle_polls = 0;
    while world.now_ms() < deadline_ms {
        if idle() {
            idle_polls += 1;
            if idle_polls >= 2 {
                return true;
            }
        } else {
            idle_polls = 0;
        }
        sleep(Duration::from_millis(POLL_MS)).await;
    }
    false
}
