//! The core outside the simulator, driven by the simulator's own clients:
//! a [`ClientPort`] over a [`TokioEngine`], the engine a real process runs.
//!
//! Both benchmarks' plain runs use it: `flushsim bench` (in-memory stores,
//! one thread) measures the simulator's overhead against it, and
//! `flushsim bench-engine` (the durable stores over files) the engine for
//! real. The clients draw what the simulated ones draw from the same
//! seeded streams; there is no simulated time (a think time is a yield), no
//! trace, no ledger and no oracle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flush_core::bugs::Bugs;
use flush_core::ids::RegionId;
use flush_core::request::{Output, Request};
use flush_core::tokio_engine::{TokioEngine, TokioEngineConfig};
use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::client::{client_rows, Client, ClientPort};
use crate::ledger::{Origin, Outcome};
use crate::plan::{stream_rng, Plan, Workload, STREAM_CLIENT_BASE};

/// The engine the plain runs start for `workload`: its workers and buffer,
/// and a job queue deep enough that, as in the simulator without faults,
/// no flush job is refused.
pub fn engine_config(workload: &Workload) -> TokioEngineConfig {
    TokioEngineConfig {
        workers: workload.workers,
        buffer_bytes: workload.global_buffer_bytes,
        jobs_waiting: 1 << 16,
        tick: Duration::from_millis(10),
        worker: workload.worker_config(0, Bugs::NONE),
        ..TokioEngineConfig::default()
    }
}

/// What the clients of a plain run sent and got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlainRun {
    pub requests: u64,
    pub writes_acknowledged: u64,
    pub rows_acknowledged: u64,
    /// Requests whose reply sender was dropped without an answer.
    pub unanswered: u64,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    writes_acknowledged: AtomicU64,
    rows_acknowledged: AtomicU64,
    unanswered: AtomicU64,
    /// Row values, numbered as the simulator's ledger numbers rows.
    next_value: AtomicU64,
    next_schema_version: AtomicU64,
    clock_ms: AtomicU64,
}

/// The clients' way into a [`TokioEngine`].
#[derive(Clone)]
struct EnginePort {
    engine: Arc<TokioEngine>,
    tally: Arc<Tally>,
}

impl EnginePort {
    fn send(&self, request: Request) -> BoxFuture<'static, Outcome> {
        let port = self.clone();
        async move {
            port.tally.requests.fetch_add(1, Ordering::Relaxed);
            let receiver = port.engine.submit(request).await;
            match receiver.await {
                Ok(Ok(output)) => Outcome::Ok(output),
                Ok(Err(error)) => Outcome::Err {
                    kind: error.kind(),
                    message: error.to_string(),
                },
                Err(oneshot::Canceled) => {
                    port.tally.unanswered.fetch_add(1, Ordering::Relaxed);
                    Outcome::Lost
                }
            }
        }
        .boxed()
    }
}

impl ClientPort for EnginePort {
    fn call(&self, _origin: Origin, request: Request) -> BoxFuture<'static, Outcome> {
        self.send(request)
    }

    fn write(
        &self,
        _origin: Origin,
        region_id: RegionId,
        rows: Vec<(Arc<str>, i64)>,
        fields: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Outcome> {
        let count = rows.len() as u64;
        let first = self.tally.next_value.fetch_add(count, Ordering::Relaxed) + 1;
        let rows = client_rows(first, rows, &fields);
        let sent = self.send(Request::Write { region_id, rows });
        let tally = self.tally.clone();
        async move {
            let outcome = sent.await;
            if let Outcome::Ok(Output::Written { .. }) = outcome {
                tally.writes_acknowledged.fetch_add(1, Ordering::Relaxed);
                tally.rows_acknowledged.fetch_add(count, Ordering::Relaxed);
            }
            outcome
        }
        .boxed()
    }

    fn think(&self, _ms: u64) -> BoxFuture<'static, ()> {
        tokio::task::yield_now().boxed()
    }

    fn now_ms(&self) -> u64 {
        self.tally.clock_ms.fetch_add(1, Ordering::Relaxed)
    }

    fn next_schema_version(&self) -> u64 {
        self.tally
            .next_schema_version
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }
}

/// Creates `plan`'s regions on `engine`, then runs its clients to the end.
/// The engine is left running.
pub async fn run_clients(plan: &Plan, engine: Arc<TokioEngine>) -> PlainRun {
    let workload = &plan.workload;
    let port = EnginePort {
        engine,
        tally: Arc::default(),
    };
    let regions: Vec<RegionId> = (1..=u64::from(workload.regions.max(1)))
        .map(RegionId)
        .collect();
    let creates = regions.iter().map(|region_id| {
        let create = Request::Create {
            region_id: *region_id,
            options: workload.region_options(*region_id),
        };
        port.send(create)
    });
    futures::future::join_all(creates).await;
    // Nothing stops these clients early.
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicUsize::new(0));
    let clients = (0..workload.clients).map(|index| {
        Client::new(
            index,
            port.clone(),
            stream_rng(plan.seed, STREAM_CLIENT_BASE + u64::from(index)),
            workload.clone(),
            regions.clone(),
            stop.clone(),
            running.clone(),
        )
        .with_script(plan.script.as_ref())
        .run()
    });
    futures::future::join_all(clients).await;
    let tally = &port.tally;
    PlainRun {
        requests: tally.requests.load(Ordering::Relaxed),
        writes_acknowledged: tally.writes_acknowledged.load(Ordering::Relaxed),
        rows_acknowledged: tally.rows_acknowledged.load(Ordering::Relaxed),
        unanswered: tally.unanswered.load(Ordering::Relaxed),
    }
}
