//! `flushsim bench-engine`: the pinned standard workload on the tokio
//! engine over real files, beside the same workload in the simulator.
//!
//! The clients draw exactly what the simulated clients of a standard seed
//! draw ([`crate::draw`]): the same regions, write sizes and request mix,
//! with the same bound on requests in flight, but no think time and no
//! faults. The files go through a [`FileSystem`] that counts syncs, so the
//! report says what durability costs: syncs per acknowledged write (each
//! append syncs its segment; flushes sync SSTs, manifests and directories).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flush_core::bugs::Bugs;
use flush_core::durable::DurableStores;
use flush_core::fs::{FileSystem, FsError, StdFs};
use flush_core::ports::TracingEvents;
use flush_core::tokio_engine::{Stores, TokioEngine, TokioEngineConfig};
use serde::Serialize;

use crate::plain;
use crate::plan::Plan;
use crate::run::run;

#[derive(Clone, Debug, Serialize)]
pub struct EngineBenchReport {
    pub dir: String,
    pub seed: u64,
    pub wall_s: f64,
    pub writes_acknowledged: u64,
    pub rows_acknowledged: u64,
    pub rows_per_s: f64,
    pub flushes_committed: u64,
    pub flushes_per_s: f64,
    pub syncs: u64,
    pub syncs_per_acknowledged_write: f64,
    /// The same seed's fault-free standard run in the simulator, and the
    /// written rows its oracles judged per wall second.
    pub sim_wall_s: f64,
    pub sim_rows_per_s: f64,
}

/// Counts syncs (of files and of directories) on the way to the disk.
struct CountingFs {
    inner: StdFs,
    syncs: AtomicU64,
}

impl FileSystem for CountingFs {
    fn create(&self, path: &str) -> Result<(), FsError> {
        self.inner.create(path)
    }
    fn append(&self, path: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.append(path, bytes)
    }
    fn write_at(&self, path: &str, offset: u64, bytes: &[u8]) -> Result<(), FsError> {
        self.inner.write_at(path, offset, bytes)
    }
    fn set_len(&self, path: &str, len: u64) -> Result<(), FsError> {
        self.inner.set_len(path, len)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.inner.read(path)
    }
    fn sync(&self, path: &str) -> Result<(), FsError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.inner.rename(from, to)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        self.inner.list(dir)
    }
    fn remove(&self, path: &str) -> Result<(), FsError> {
        self.inner.remove(path)
    }
    fn create_dir_all(&self, dir: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(dir)
    }
    fn remove_dir(&self, dir: &str) -> Result<(), FsError> {
        self.inner.remove_dir(dir)
    }
    fn sync_dir(&self, dir: &str) -> Result<(), FsError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_dir(dir)
    }
}

/// Runs standard seed `seed` on the tokio engine under `dir` (which must
/// be new or empty; it is left as it ends).
pub fn bench_engine(dir: &Path, seed: u64) -> Result<EngineBenchReport, String> {
    let plan = Plan::standard(seed).without_faults();
    let fs = Arc::new(CountingFs {
        inner: StdFs::open(dir).map_err(|error| error.to_string())?,
        syncs: AtomicU64::new(0),
    });
    let events = Arc::new(TracingEvents::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let (wall, writes, rows) = runtime.block_on(drive(&plan, fs.clone(), events.clone()))?;
    // Wall time is what a benchmark measures.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let simulated = run(&plan, Bugs::NONE);
    let sim_wall = started.elapsed();
    let wall_s = wall.as_secs_f64().max(1e-9);
    let flushes_committed = events.flushes_committed();
    let syncs = fs.syncs.load(Ordering::Relaxed);
    Ok(EngineBenchReport {
        dir: dir.display().to_string(),
        seed,
        wall_s,
        writes_acknowledged: writes,
        rows_acknowledged: rows,
        rows_per_s: rows as f64 / wall_s,
        flushes_committed,
        flushes_per_s: flushes_committed as f64 / wall_s,
        syncs,
        syncs_per_acknowledged_write: syncs as f64 / writes.max(1) as f64,
        sim_wall_s: sim_wall.as_secs_f64(),
        sim_rows_per_s: simulated.rows_checked as f64 / sim_wall.as_secs_f64().max(1e-9),
    })
}

async fn drive(
    plan: &Plan,
    fs: Arc<CountingFs>,
    events: Arc<TracingEvents>,
) -> Result<(Duration, u64, u64), String> {
    let config = TokioEngineConfig {
        // The engine's own job queue, as a real process sizes it.
        jobs_waiting: TokioEngineConfig::default().jobs_waiting,
        ..plain::engine_config(&plan.workload)
    };
    let stores = DurableStores::new(fs);
    let engine = Arc::new(TokioEngine::start_with_events(
        &config,
        Stores::from(&stores),
        events,
    ));
    // Wall time is what a benchmark measures.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let run = plain::run_clients(plan, engine.clone()).await;
    let wall = started.elapsed();
    engine.stop(Duration::from_secs(60)).await;
    Ok((wall, run.writes_acknowledged, run.rows_acknowledged))
}
