//! Crash bookkeeping shared by the ports and the crash actor
//! ([`crate::crash`]): which engine generation runs, which window the next
//! crash is armed for, and the signal that tells every client waiting on a
//! reply that its engine died.
//!
//! A crash is aimed at a *window*: a moment inside an operation where dying
//! hurts most (mid-SST write, between the SST put and the manifest commit,
//! after a commit before its reply, mid-WAL append). The crash actor arms a
//! window; the port that reaches it first calls [`World::crash_point`], which
//! reports the hit and makes that port wait forever: the operation never
//! finishes, the engine node is killed around it.

use futures::channel::{mpsc, oneshot};
use futures::future::{FutureExt, Shared};
use serde::{Deserialize, Serialize};

use super::World;

/// Where in an operation a crash struck.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashWindow {
    /// At a random moment, whatever was running.
    AnyTime,
    /// While an SST put is in progress (it may leave a partial object).
    MidSstWrite,
    /// After a flush's SSTs are written, before its manifest edit commits.
    BetweenSstAndCommit,
    /// After a manifest change committed, before the engine acted on it.
    AfterCommit,
    /// After a WAL entry is buffered, before it is synced.
    MidWalAppend,
    /// Not a kill: the engine was stopped gracefully (fault class
    /// `graceful_stop`), then restarted. Not in [`CrashWindow::ALL`]: the
    /// crash actor draws it before it aims a kill.
    GracefulStop,
}

impl CrashWindow {
    pub const ALL: &'static [CrashWindow] = &[
        CrashWindow::AnyTime,
        CrashWindow::MidSstWrite,
        CrashWindow::BetweenSstAndCommit,
        CrashWindow::AfterCommit,
        CrashWindow::MidWalAppend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashWindow::AnyTime => "any_time",
            CrashWindow::MidSstWrite => "mid_sst_write",
            CrashWindow::BetweenSstAndCommit => "between_sst_and_commit",
            CrashWindow::AfterCommit => "after_commit",
            CrashWindow::MidWalAppend => "mid_wal_append",
            CrashWindow::GracefulStop => "graceful_stop",
        }
    }

    /// The mark a crash in this window counts under.
    pub fn mark(self) -> &'static str {
        match self {
            CrashWindow::AnyTime => "crash_any_time",
            CrashWindow::MidSstWrite => "crash_mid_sst_write",
            CrashWindow::BetweenSstAndCommit => "crash_between_sst_and_commit",
            CrashWindow::AfterCommit => "crash_after_commit",
            CrashWindow::MidWalAppend => "crash_mid_wal_append",
            CrashWindow::GracefulStop => "crash_graceful_stop",
        }
    }
}

/// One crash as it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashRecord {
    /// Trace step of the crash: requests answered before it were answered
    /// by the engine that died.
    pub step: u64,
    pub t_us: u64,
    pub window: CrashWindow,
    /// The engine generation that started after it.
    pub generation: u64,
}

/// What one restart's `recovery` check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryRecord {
    pub regions_reopened: u64,
    /// Regions the restart could not reopen (faults on every attempt).
    pub regions_not_reopened: u64,
    /// Regions left out because a flush had committed and its worker had
    /// not applied it yet when they were looked at.
    pub regions_skipped: u64,
    pub rows_checked: u64,
    pub rows_found: u64,
}

/// Fires when the engine generation it was taken in crashes.
pub type CrashSignal = Shared<oneshot::Receiver<()>>;

pub struct CrashState {
    generation: u64,
    armed: Option<CrashWindow>,
    /// From the moment a crash is decided until its restart is complete.
    in_progress: bool,
    signal: oneshot::Sender<()>,
    watch: CrashSignal,
    hits: mpsc::UnboundedSender<CrashWindow>,
    hits_receiver: Option<mpsc::UnboundedReceiver<CrashWindow>>,
    pub records: Vec<CrashRecord>,
    pub recoveries: Vec<RecoveryRecord>,
    /// Trace steps from the start of each graceful stop to the moment
    /// every request to the stopped engine was answered: replies saying
    /// the worker stopped or the region closed are explained inside.
    pub stop_windows: Vec<(u64, u64)>,
}

impl CrashState {
    pub fn new() -> Self {
        let (signal, watch) = oneshot::channel();
        let (hits, hits_receiver) = mpsc::unbounded();
        CrashState {
            generation: 0,
            armed: None,
            in_progress: false,
            signal,
            watch: watch.shared(),
            hits,
            hits_receiver: Some(hits_receiver),
            records: Vec::new(),
            stop_windows: Vec::new(),
            recoveries: Vec::new(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation running now and the signal that fires when it dies.
    pub fn watch(&self) -> (u64, CrashSignal) {
        (self.generation, self.watch.clone())
    }

    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// Step of every crash, in order.
    pub fn steps(&self) -> Vec<u64> {
        self.records.iter().map(|record| record.step).collect()
    }
}

impl Default for CrashState {
    fn default() -> Self {
        CrashState::new()
    }
}

impl World {
    /// The engine generation running now (0 until the first crash).
    pub fn generation(&self) -> u64 {
        self.with(|state| state.crash.generation)
    }

    /// Whether a crash is decided or its restart still runs.
    pub fn crash_in_progress(&self) -> bool {
        self.with(|state| state.crash.in_progress)
    }

    /// The receiving end of window hits; the crash actor takes it once.
    pub fn take_crash_hits(&self) -> Option<mpsc::UnboundedReceiver<CrashWindow>> {
        self.with(|state| state.crash.hits_receiver.take())
    }

    /// Arms the next crash for `window`.
    pub fn arm_crash(&self, window: CrashWindow) {
        let now = self.now_us();
        self.with(|state| {
            state.crash.armed = Some(window);
            state
                .trace
                .record(now, "crash", format_args!("armed for {}", window.name()));
        });
    }

    /// Disarms; returns whether the crash was still armed (not hit).
    pub fn disarm_crash(&self) -> bool {
        self.with(|state| state.crash.armed.take().is_some())
    }

    /// Called by a port at `window`. Returns true when the armed crash
    /// strikes here: the port must then never finish the operation (await
    /// `std::future::pending`) and the engine dies around it.
    pub fn crash_point(&self, window: CrashWindow) -> bool {
        if !self.faults_on() {
            return false;
        }
        let hit = self.with(|state| {
            let crash = &mut state.crash;
            if crash.armed != Some(window) || crash.in_progress {
                return false;
            }
            crash.armed = None;
            crash.in_progress = true;
            // The actor is alive while a crash is armed; a send cannot fail.
            let _ = crash.hits.unbounded_send(window);
            true
        });
        if hit {
            self.trace("crash", format_args!("window {} reached", window.name()));
        }
        hit
    }

    /// Marks a crash decided by the actor itself (not by a window hit).
    /// Returns false if one is already in progress.
    pub fn decide_crash(&self) -> bool {
        self.with(|state| !std::mem::replace(&mut state.crash.in_progress, true))
    }

    /// The crash itself, in the world's books: a new generation, the
    /// signal fired for every request of the old one, the fault counted.
    /// Returns the new generation.
    pub fn begin_crash(&self, window: CrashWindow) -> u64 {
        let (class, detail) = if window == CrashWindow::GracefulStop {
            (
                crate::plan::FaultClass::GracefulStop,
                "engine stopped gracefully".to_string(),
            )
        } else {
            (
                crate::plan::FaultClass::Crash,
                format!("engine killed ({})", window.name()),
            )
        };
        let step = self.record_fault(class, None, &detail);
        let now = self.now_us();
        let (generation, jobs_running) = self.with(|state| {
            let crash = &mut state.crash;
            crash.generation += 1;
            let (signal, watch) = oneshot::channel();
            let old = std::mem::replace(&mut crash.signal, signal);
            crash.watch = watch.shared();
            let _ = old.send(());
            crash.records.push(CrashRecord {
                step,
                t_us: now,
                window,
                generation: crash.generation,
            });
            state.trace.mark(window.mark());
            // Flush jobs died with the engine.
            let jobs_running = std::mem::take(&mut state.flush_jobs_running).len();
            state.current_job = None;
            (state.crash.generation, jobs_running)
        });
        self.hooks().on_engine_gone(self, window, jobs_running);
        generation
    }

    /// The restart is complete: the next crash may come.
    pub fn end_crash(&self, recovery: RecoveryRecord) {
        self.with(|state| {
            state.crash.recoveries.push(recovery);
            state.crash.in_progress = false;
        });
    }
}
