//! Crash and restart: the fault DST exists for.
//!
//! The [`CrashActor`] decides when the engine dies and where: at a random
//! moment, or aimed at a window inside an operation (mid-SST write, between
//! the SST put and the manifest commit, after a commit before its reply,
//! mid-WAL append — see [`CrashWindow`]). It arms the window and waits for a
//! port to reach it; a window not reached in time becomes a crash at that
//! moment. Each crash is counted under its window as a mark.
//!
//! [`crash_and_restart`] then does what a machine losing power does, in one
//! step: the engine's node is killed (workers and flush jobs stop where
//! they are), the WAL loses its unsynced tail, every request in flight is
//! interrupted. A fresh engine (new buffer manager, new workers, new node)
//! reopens every region the manifest store lists as not dropped, through
//! its workers, while client requests are held; the `recovery` check then
//! compares what the regions hold with the ledger; then the held requests
//! go through and the workload continues.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flush_core::bugs::Bugs;
use flush_core::durable::wal::WAL_DIR;
use flush_core::error::ErrorKind;
use flush_core::ids::{sst_path, RegionId};
use flush_core::request::{RegionRole, Request};
use futures::future::{self, Either};
use futures::StreamExt;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::actors::Requester;
use crate::check::Check;
use crate::engine::{EngineGeneration, Engines, Stores};
use crate::ledger::{LedgerEntry, Origin, Outcome};
use crate::oracle::{self, Checks, RecoveredRegion};
use crate::plan::{stream_rng, FaultClass, Plan, Workload, STREAM_CRASH};
use crate::world::crash::{CrashWindow, RecoveryRecord};
use crate::world::fs::CrashLoss;
use crate::world::notifier::WorkerRouter;
use crate::world::wait_until;
use crate::world::{sleep, World};

/// Crashes one run may have.
pub const MAX_CRASHES_PER_RUN: u32 = 4;
/// How long an armed window may wait to be reached before the crash comes
/// anyway, at that moment.
const ARM_PATIENCE_MS: u64 = 1_000;
/// Attempts to reopen one region after a restart (manifest faults stay on).
const REOPEN_ATTEMPTS: u32 = 8;
const REOPEN_BACKOFF_MS: u64 = 5;
/// How long the restart waits for the old engine's requests to resolve and
/// for a worker to be free for inspection; a graceful stop waits at least
/// this long for the engine to drain (a heavy workload longer:
/// [`Workload::patience_ms`]).
const RESTART_PATIENCE_MS: u64 = 5_000;

/// What a crash and its restart work with: the durable stores, the router
/// the clients send through, and the engines.
#[derive(Clone)]
pub struct CrashContext {
    pub world: Arc<World>,
    /// The run's checks: the ledger the recovery judge reads, where it
    /// reports.
    pub checks: Arc<Checks>,
    pub engines: Arc<Engines>,
    pub router: Arc<WorkerRouter>,
    pub stores: Stores,
    pub requester: Requester,
    pub workload: Workload,
    pub bugs: Bugs,
    pub regions: Vec<RegionId>,
}

/// Decides when and where the engine crashes, from its own ChaCha stream.
pub struct CrashActor {
    context: CrashContext,
    rng: ChaCha8Rng,
    /// Chance of one more crash after each restart.
    again_probability: f64,
    /// Chance that an any-time restart is a graceful stop (`None`: the
    /// class is off and nothing is drawn for it).
    graceful_probability: Option<f64>,
    stop: Arc<AtomicBool>,
}

impl CrashActor {
    /// `None` when the plan's fault mix has crashes off.
    pub fn new(plan: &Plan, context: CrashContext, stop: Arc<AtomicBool>) -> Option<CrashActor> {
        let again_probability = plan.faults.probability(FaultClass::Crash)?;
        Some(CrashActor {
            context,
            rng: stream_rng(plan.seed, STREAM_CRASH),
            again_probability,
            graceful_probability: plan.faults.probability(FaultClass::GracefulStop),
            stop,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || !self.context.world.faults_on()
    }

    pub async fn run(mut self) {
        let world = self.context.world.clone();
        let Some(mut hits) = world.take_crash_hits() else {
            return;
        };
        let horizon_ms = safety_horizon_ms(&self.context.workload);
        for crash in 0..MAX_CRASHES_PER_RUN {
            if crash > 0 && !self.rng.gen_bool(self.again_probability) {
                break;
            }
            // The first crash anywhere in the safety phase, later ones
            // sooner: a restart's aftermath is where the next one hurts.
            let span_ms = if crash == 0 {
                horizon_ms
            } else {
                horizon_ms / 2
            };
            let delay_ms = self.rng.gen_range(1..=span_ms.max(1));
            let window = CrashWindow::ALL[self.rng.gen_range(0..CrashWindow::ALL.len())];
            sleep(Duration::from_millis(delay_ms)).await;
            if self.stopped() {
                break;
            }
            let graceful = self
                .graceful_probability
                .is_some_and(|probability| self.rng.gen_bool(probability));
            let struck = if graceful {
                // A stop is not aimed at a window: it comes whenever it comes.
                world.decide_crash().then_some(CrashWindow::GracefulStop)
            } else if window == CrashWindow::AnyTime {
                world.decide_crash().then_some(CrashWindow::AnyTime)
            } else {
                world.arm_crash(window);
                let patience = sleep(Duration::from_millis(ARM_PATIENCE_MS));
                match future::select(hits.next(), Box::pin(patience)).await {
                    Either::Left((hit, _)) => hit,
                    Either::Right(_) if world.disarm_crash() => {
                        // Not reached in time: crash here and now instead.
                        (!self.stopped() && world.decide_crash()).then_some(CrashWindow::AnyTime)
                    }
                    // Reached just as the patience ran out.
                    Either::Right(_) => hits.next().await,
                }
            };
            let Some(window) = struck else {
                break;
            };
            crash_and_restart(&self.context, window).await;
        }
        world.disarm_crash();
    }
}

/// Roughly how long the clients' workload runs, to spread crashes over it.
fn safety_horizon_ms(workload: &Workload) -> u64 {
    let per_write_ms = workload.think_ms_max / 2 + workload.io_latency_ms_max + 1;
    (u64::from(workload.writes_per_client) * per_write_ms).max(20)
}

/// Kills the engine at once and restarts it; returns when the workload may
/// go on.
pub async fn crash_and_restart(context: &CrashContext, window: CrashWindow) {
    let world = &context.world;
    let dead = context.engines.current();
    let graceful = window == CrashWindow::GracefulStop;
    if graceful {
        stop_gracefully(context, &dead).await;
    }
    // One synchronous step: nothing of the old engine runs after it.
    let generation = world.begin_crash(window);
    dead.kill();
    let loss = if graceful {
        context.stores.reopen();
        CrashLoss::default()
    } else {
        context.stores.crash()
    };
    let (unsynced_lost, torn) = count_wal_losses(world, &loss);
    context.router.hold_clients();
    let next = EngineGeneration::start(
        generation,
        &context.workload,
        context.bugs,
        world,
        &context.router,
        &context.stores,
    );
    context.engines.replace(next);
    world.trace(
        "crash",
        format_args!(
            "engine {} killed ({}), {unsynced_lost} WAL segments lost unsynced bytes, {torn} torn; \
             {} bytes lost, {} names reverted, {} directories lost; engine {generation} reopens",
            generation - 1,
            window.name(),
            loss.bytes_lost,
            loss.names_reverted,
            loss.dirs_lost
        ),
    );

    let live = live_regions(context);
    let reopened = reopen(context, &live).await;
    let settled = wait_until(world, RESTART_PATIENCE_MS, || {
        context.checks.ledger().pending_before(generation) == 0
    })
    .await;
    let mut record = RecoveryRecord {
        regions_not_reopened: (live.len() - reopened.len()) as u64,
        ..RecoveryRecord::default()
    };
    if settled {
        check_recovery(context, &reopened, window, &mut record).await;
    } else {
        world.trace(
            "crash",
            format_args!("recovery not checked: the old engine's requests did not resolve"),
        );
    }
    let released = context.router.release_clients();
    world.trace(
        "crash",
        format_args!(
            "restart done: {} regions reopened, {} not; {released} held requests released",
            record.regions_reopened, record.regions_not_reopened
        ),
    );
    world.end_crash(record);
}

/// A graceful stop: the engine's queues close (new requests are refused
/// with a typed error), its workers drain them and answer everything they
/// hold, and flush jobs still running keep running until the node is
/// killed. Post-condition, checked: no request to the stopped engine is
/// left without its answer.
async fn stop_gracefully(context: &CrashContext, dead: &EngineGeneration) {
    let world = &context.world;
    let began = world.trace("crash", format_args!("engine stopping gracefully"));
    // A stop drains what the clients hold: with 256 clients on I/O slowed
    // by up to 471 ms, 251 requests were still unanswered after 5 s, a
    // verdict on the plan's load and not on the engine.
    let patience_ms = context.workload.patience_ms(RESTART_PATIENCE_MS);
    let stopped = dead.engine.stop(Duration::from_millis(patience_ms)).await;
    // Answers travel back to the clients with a delay: wait for them.
    let generation = world.with(|state| state.crash.generation());
    wait_until(world, patience_ms, || {
        context.checks.ledger().pending_before(generation + 1) == 0
    })
    .await;
    let unanswered: Vec<String> = context
        .checks
        .ledger()
        .pending()
        .filter(|entry| entry.generation <= generation)
        .map(LedgerEntry::describe)
        .collect();
    let ended = world.trace(
        "crash",
        format_args!(
            "engine stopped: workers stopped {stopped}, {} unanswered",
            unanswered.len()
        ),
    );
    world.with(|state| state.crash.stop_windows.push((began, ended)));
    if !stopped || !unanswered.is_empty() {
        context.checks.violation(
            world,
            Check::ExactlyOnceReply,
            format!(
                "graceful stop: expected the workers to stop and every request to the engine \
                 answered, saw workers stopped: {stopped}, {} unanswered: {}",
                unanswered.len(),
                unanswered.join("; ")
            ),
        );
    }
}

/// Marks what the crash took from the WAL: segments that lost unsynced
/// bytes, and those left ending mid-frame (the next open cuts the tail).
fn count_wal_losses(world: &World, loss: &CrashLoss) -> (u64, u64) {
    let wal_prefix = format!("{WAL_DIR}/");
    let wal_files = loss
        .files
        .iter()
        .filter(|file| file.path.starts_with(&wal_prefix));
    let (mut lost, mut torn) = (0, 0);
    for file in wal_files {
        lost += u64::from(file.bytes_lost > 0);
        torn += u64::from(file.torn);
    }
    world.with(|state| {
        for _ in 0..lost {
            state.trace.mark("wal_unsynced_lost");
        }
        for _ in 0..torn {
            state.trace.mark("wal_torn_tail");
        }
    });
    (lost, torn)
}

/// Regions the manifest store lists as not dropped.
fn live_regions(context: &CrashContext) -> Vec<RegionId> {
    let manifests = context.stores.manifests.snapshot();
    context
        .regions
        .iter()
        .copied()
        .filter(|region_id| {
            manifests
                .get(region_id)
                .is_some_and(|slot| !slot.manifest.dropped)
        })
        .collect()
}

/// Opens every region in `live` through the new workers, retrying what
/// faults fail; returns the regions that opened.
async fn reopen(context: &CrashContext, live: &[RegionId]) -> Vec<RegionId> {
    let opens = live.iter().map(|region_id| async move {
        for _ in 0..REOPEN_ATTEMPTS {
            let outcome = context
                .requester
                .call(
                    Origin::Restart,
                    Request::Open {
                        region_id: *region_id,
                    },
                )
                .await;
            match outcome {
                // Opened as a follower; the restarted node holds the lease.
                Outcome::Ok(_) => {
                    let role = RegionRole::Leader;
                    let lead = Request::SetRole {
                        region_id: *region_id,
                        role,
                    };
                    let _ = context.requester.call(Origin::Restart, lead).await;
                    return Some(*region_id);
                }
                Outcome::Err {
                    kind: ErrorKind::RegionNotFound,
                    ..
                } => return None,
                _ => sleep(Duration::from_millis(REOPEN_BACKOFF_MS)).await,
            }
        }
        None
    });
    future::join_all(opens)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Looks at every reopened region between two requests of its worker (its
/// manifest, its SSTs, its memtables, all at one moment) and judges them
/// against the ledger. Problems become `recovery` violations.
async fn check_recovery(
    context: &CrashContext,
    reopened: &[RegionId],
    window: CrashWindow,
    record: &mut RecoveryRecord,
) {
    let world = &context.world;
    let current = context.engines.current();
    let mut recovered = Vec::new();
    let mut skipped = 0;
    let patience = Duration::from_millis(RESTART_PATIENCE_MS);
    current
        .engine
        .visit(patience, |visit| {
            for region_id in visit.worker.regions().keys() {
                if !reopened.contains(region_id) {
                    continue;
                }
                let flush_unsettled = context.checks.flushes().overlaps(*region_id);
                if flush_unsettled {
                    skipped += 1;
                    continue;
                }
                let Some(slot) = context.stores.manifests.peek(*region_id) else {
                    continue;
                };
                let ssts = slot
                    .manifest
                    .files
                    .keys()
                    .map(|file_id| {
                        let path = sst_path(*region_id, *file_id);
                        let bytes = context.stores.objects.peek(&path);
                        (path, bytes)
                    })
                    .collect();
                recovered.push(RecoveredRegion {
                    region_id: *region_id,
                    ssts,
                    memtable_rows: visit.worker.memtable_rows(*region_id),
                });
            }
        })
        .await;
    let decoded = oracle::decode_recovered(&recovered, &mut context.checks.ssts());
    let unlogged = context.workload.unlogged_regions(&context.regions);
    let (problems, stats) = {
        let ledger = context.checks.ledger();
        let entries: Vec<&LedgerEntry> = ledger.entries().collect();
        oracle::recovery_problems(&recovered, &decoded, &entries, &unlogged)
    };
    *record = RecoveryRecord {
        regions_reopened: reopened.len() as u64,
        regions_skipped: skipped,
        rows_checked: stats.rows_checked,
        rows_found: stats.rows_found,
        ..*record
    };
    if !problems.is_empty() {
        let crash = world.with(|state| state.crash.records.len());
        context.checks.violation(
            world,
            Check::Recovery,
            format!(
                "after crash {crash} ({}): {}",
                window.name(),
                oracle::summarize_problems(&problems)
            ),
        );
    }
}
