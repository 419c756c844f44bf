//! The simulated world: one module per core port, each with its faults.
//!
//! [`World`] is the state they share: the ChaCha streams for fault
//! decisions (one per fault class), the fault switch (on in the safety
//! phase, off in the liveness phase), the trace, the faults and crashes
//! that happened, and the flush jobs running. What is checked is not the
//! world's business: its ports tell the run's [`hooks::Hooks`] what
//! happens, and the run's checks keep the ledger and the violations.
//! Everything runs on madsim's single thread; the mutex only satisfies the
//! ports' `Send + Sync` bounds and is never held across an await.

pub mod clock;
pub mod crash;
pub mod events;
pub mod fault_points;
pub mod fs;
pub mod hooks;
pub mod jobs;
pub mod manifests;
pub mod metrics;
pub mod notifier;
pub mod objects;
pub mod trace;
pub mod wal;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flush_core::ids::RegionId;
use futures::channel::mpsc;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::plan::{
    stream_rng, FaultClass, FaultMix, Plan, Workload, STREAM_FAULT_BASE, STREAM_WORLD,
};
use crate::recipe::Split;
use crate::script::ScriptedDecisions;
use crash::CrashState;
use hooks::Hooks;
use trace::Trace;

/// A fault the world injected, for the `reply_kind` oracle.
#[derive(Clone, Debug)]
pub struct InjectedFault {
    pub step: u64,
    pub class: FaultClass,
    pub region_id: Option<RegionId>,
}

#[derive(Debug, Default)]
pub struct FaultLog {
    pub counts: BTreeMap<FaultClass, u64>,
    pub injected: Vec<InjectedFault>,
}

/// A DDL the object store asks the injector to send while a flush writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuringFlush {
    pub class: FaultClass,
    pub region_id: RegionId,
}

pub struct WorldState {
    rng: ChaCha8Rng,
    /// One stream per fault class, in [`FaultClass::ALL`] order.
    fault_rngs: Vec<ChaCha8Rng>,
    pub trace: Trace,
    pub faults: FaultLog,
    /// Flush jobs between their start and end events: job id -> (region,
    /// epoch). Ids come from the job scheduler, which tags each job.
    pub flush_jobs_running: BTreeMap<u64, (RegionId, u64)>,
    /// The job being polled right now, if any: events are attributed to it.
    pub current_job: Option<u64>,
    pub crash: CrashState,
    next_job_id: u64,
    next_schema_version: u64,
    /// Fault decisions drawn so far, over every class: the clock a
    /// timeline's splits are set by.
    fault_draws: u64,
    /// Splits of the plan not reached yet, the next one last.
    splits: Vec<Split>,
    /// A scripted plan's fault decisions (which of each class's decisions
    /// fire); `None` draws them from the fault streams.
    scripted: Option<ScriptedDecisions>,
}

impl WorldState {
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    pub fn next_job_id(&mut self) -> u64 {
        self.next_job_id += 1;
        self.next_job_id
    }

    /// Regions with a flush job running.
    pub fn flushing_regions(&self) -> Vec<RegionId> {
        let mut regions: Vec<RegionId> = self
            .flush_jobs_running
            .values()
            .map(|(region_id, _)| *region_id)
            .collect();
        regions.sort_unstable();
        regions.dedup();
        regions
    }

    /// Forks the timeline if the next split is at this draw: every fault
    /// stream and the world's own stream start over from the split's seed,
    /// each on its usual stream number.
    fn split_if_due(&mut self, now_us: u64) {
        let due = self
            .splits
            .last()
            .is_some_and(|split| split.at_draw == self.fault_draws);
        if !due {
            return;
        }
        let Some(split) = self.splits.pop() else {
            return;
        };
        self.rng = stream_rng(split.seed, STREAM_WORLD);
        for (class, rng) in FaultClass::ALL.iter().zip(&mut self.fault_rngs) {
            *rng = stream_rng(split.seed, STREAM_FAULT_BASE + class.index() as u64);
        }
        self.trace.record(
            now_us,
            "split",
            format_args!("draw {}: streams from seed {}", split.at_draw, split.seed),
        );
    }

    /// Fault decisions drawn so far in the run.
    pub fn fault_draws(&self) -> u64 {
        self.fault_draws
    }

    pub fn next_schema_version(&mut self) -> u64 {
        self.next_schema_version += 1;
        self.next_schema_version
    }
}

/// Worlds alive in this process. A run's world must be freed with the run:
/// anything that keeps it (a task left parked in a dropped runtime, a cycle
/// of `Arc`s through a waker) keeps every SST, memtable and trace line of
/// that run alive too, and a long sweep grows without bound.
static LIVE_WORLDS: AtomicUsize = AtomicUsize::new(0);

/// How many [`World`]s exist in this process right now (between runs of a
/// sweep it must be 0).
pub fn live_worlds() -> usize {
    LIVE_WORLDS.load(Ordering::SeqCst)
}

pub struct World {
    mix: FaultMix,
    io_latency_ms_max: u64,
    slow_io_ms_max: u64,
    faults_on: AtomicBool,
    start: Instant,
    state: Mutex<WorldState>,
    during_flush: mpsc::UnboundedSender<DuringFlush>,
    /// Every madsim node the run spawns tasks on (the actors' node and one
    /// per engine generation), so [`World::end_every_task`] can reach them.
    nodes: Mutex<Vec<NodeHandle>>,
    /// What the core's metrics recorded, beside what its events said.
    pub metrics: metrics::SimMetrics,
    hooks: Arc<dyn Hooks>,
}

impl World {
    /// Must be called inside the run's madsim runtime (it reads the clock:
    /// madsim's `Instant`, simulated time, which clippy sees as std's).
    #[allow(clippy::disallowed_methods)]
    pub fn new(
        plan: &Plan,
        keep_trace: bool,
        during_flush: mpsc::UnboundedSender<DuringFlush>,
        hooks: Arc<dyn Hooks>,
    ) -> World {
        let Workload {
            io_latency_ms_max,
            slow_io_ms_max,
            ..
        } = plan.workload;
        LIVE_WORLDS.fetch_add(1, Ordering::SeqCst);
        World {
            mix: plan.faults.clone(),
            io_latency_ms_max,
            slow_io_ms_max,
            faults_on: AtomicBool::new(true),
            start: Instant::now(),
            state: Mutex::new(WorldState {
                rng: stream_rng(plan.seed, STREAM_WORLD),
                fault_rngs: FaultClass::ALL
                    .iter()
                    .map(|class| stream_rng(plan.seed, STREAM_FAULT_BASE + class.index() as u64))
                    .collect(),
                trace: Trace::new(keep_trace),
                faults: FaultLog::default(),
                flush_jobs_running: BTreeMap::new(),
                current_job: None,
                crash: CrashState::new(),
                next_job_id: 0,
                next_schema_version: 0,
                fault_draws: 0,
                splits: plan.splits.iter().rev().copied().collect(),
                scripted: plan.script.as_ref().map(ScriptedDecisions::new),
            }),
            during_flush,
            nodes: Mutex::new(Vec::new()),
            metrics: metrics::SimMetrics::default(),
            hooks,
        }
    }

    /// Creates a madsim node for the run's tasks. Every task of a run lives
    /// on a node made here, never on the supervisor's node 0, which madsim
    /// can neither kill nor count. Must be called inside the runtime.
    pub fn create_node(&self, name: &str) -> NodeHandle {
        let node = Handle::current().create_node().name(name).build();
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(node.clone());
        node
    }

    /// Kills every node of the run, so madsim drops every task still parked
    /// (a worker loop, a flush job retrying a notification, a client waiting
    /// for a reply). madsim frees a task only when it ends, is cancelled or
    /// its node is killed: a task parked when the runtime is dropped holds
    /// its own waker and is never freed, and it keeps this world (every SST,
    /// memtable and trace line of the run) alive with it. Must be called
    /// inside the runtime, after the run is judged: nothing it kills is
    /// polled again, but their destructors run.
    pub fn end_every_task(&self) {
        let nodes = std::mem::take(
            &mut *self
                .nodes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let handle = Handle::current();
        for node in nodes {
            handle.kill(node.id());
        }
    }

    /// Simulated microseconds since the run started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn now_ms(&self) -> u64 {
        self.now_us() / 1_000
    }

    /// Runs `f` on the shared state. Never call it across an await.
    pub fn with<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, WorldState> {
        // A panic while holding the lock already fails the run; the state
        // is still good enough to report from.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a trace line; returns its step.
    pub fn trace(&self, source: &'static str, text: std::fmt::Arguments<'_>) -> u64 {
        let now = self.now_us();
        self.lock().trace.record(now, source, text)
    }

    /// Whoever watches the run (its checks).
    pub fn hooks(&self) -> &dyn Hooks {
        &*self.hooks
    }

    pub fn faults_on(&self) -> bool {
        self.faults_on.load(Ordering::Relaxed)
    }

    /// Switches every fault class on or off (the phase change).
    pub fn set_faults(&self, on: bool) {
        self.faults_on.store(on, Ordering::Relaxed);
        self.trace(
            "phase",
            format_args!("faults {}", if on { "on" } else { "off" }),
        );
    }

    /// Decides whether `class` fires now; if so counts it and traces it.
    pub fn inject(&self, class: FaultClass, region_id: Option<RegionId>, detail: &str) -> bool {
        if !self.decide(class) {
            return false;
        }
        self.record_fault(class, region_id, detail);
        true
    }

    /// Draws whether `class` fires now, on the class's own stream, without
    /// recording it: for a caller that draws its target (from another
    /// stream) only once the fault fires, then calls [`World::record_fault`].
    ///
    /// In a scripted plan the script decides instead: the class fires at
    /// the decisions it lists, whatever the fault mix says.
    pub fn decide(&self, class: FaultClass) -> bool {
        if !self.faults_on() {
            return false;
        }
        let now = self.now_us();
        let probability = self.mix.probability(class);
        self.with(|state| {
            if let Some(script) = &mut state.scripted {
                state.fault_draws += 1;
                return script.decide(class);
            }
            let Some(probability) = probability else {
                return false;
            };
            state.split_if_due(now);
            state.fault_draws += 1;
            state.fault_rngs[class.index()].gen_bool(probability)
        })
    }

    /// Counts and traces a fault of `class` decided elsewhere; returns its
    /// trace step.
    pub fn record_fault(
        &self,
        class: FaultClass,
        region_id: Option<RegionId>,
        detail: &str,
    ) -> u64 {
        let now = self.now_us();
        let mut state = self.lock();
        let region = region_id.map_or_else(|| "-".to_string(), |r| r.to_string());
        let step = state
            .trace
            .record(now, "FAULT", format_args!("{class} {region} {detail}"));
        *state.faults.counts.entry(class).or_default() += 1;
        state.faults.injected.push(InjectedFault {
            step,
            class,
            region_id,
        });
        step
    }

    /// Latency of one I/O: a normal draw, plus a slow-I/O fault sometimes.
    pub fn io_delay(&self, region_id: Option<RegionId>, what: &str) -> Duration {
        let normal_ms = self.with(|state| state.rng.gen_range(0..=self.io_latency_ms_max));
        let mut delay_ms = normal_ms;
        if self.inject(FaultClass::SlowIo, region_id, what) {
            delay_ms += self.with(|state| state.rng.gen_range(1..=self.slow_io_ms_max.max(1)));
        }
        Duration::from_millis(delay_ms)
    }

    /// Asks the injector to send a DDL of `class` to a region whose flush is
    /// writing right now.
    pub fn request_during_flush(&self, class: FaultClass, region_id: RegionId) {
        // The injector may have stopped; then the DDL is simply not sent.
        let _ = self
            .during_flush
            .unbounded_send(DuringFlush { class, region_id });
    }
}

impl Drop for World {
    fn drop(&mut self) {
        LIVE_WORLDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sleeps in simulated time.
pub async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        madsim::time::sleep(duration).await;
    }
}

/// How often [`wait_until`] looks again, in simulated ms.
const WAIT_POLL_MS: u64 = 5;

/// Polls `done` until it holds or `patience_ms` of simulated time passed;
/// returns whether it held.
pub async fn wait_until(world: &World, patience_ms: u64, done: impl Fn() -> bool) -> bool {
    let deadline_ms = world.now_ms() + patience_ms;
    while !done() {
        if world.now_ms() >= deadline_ms {
            return false;
        }
        sleep(Duration::from_millis(WAIT_POLL_MS)).await;
    }
    true
}
