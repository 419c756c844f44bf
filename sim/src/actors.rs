//! The actors that drive the engine beside the workload clients
//! (`client.rs`): the fault injector and the periodic ticker. Every request
//! goes through a [`Requester`],
//! which records it and its reply in the ledger and the trace — or, when the
//! engine crashed with it in flight, records it as interrupted.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flush_core::error::RequestError;
use flush_core::ids::{RegionId, RequestId};
use flush_core::request::{ClientRequest, Reply, Request, Responder};
use futures::channel::{mpsc, oneshot};
use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt, StreamExt};
use rand::Rng;

use crate::client::{client_rows, ClientPort};
use crate::ledger::{Origin, Outcome};
use crate::oracle::Checks;
use crate::plan::FaultClass;
use crate::world::crash::CrashSignal;
use crate::world::notifier::WorkerRouter;
use crate::world::{sleep, DuringFlush, World};

/// Issues requests to the workers and records what comes back.
#[derive(Clone)]
pub struct Requester {
    world: Arc<World>,
    router: Arc<WorkerRouter>,
    /// Every request and reply goes into the checks' ledger.
    checks: Arc<Checks>,
}

impl Requester {
    pub fn new(world: Arc<World>, router: Arc<WorkerRouter>, checks: Arc<Checks>) -> Self {
        Requester {
            world,
            router,
            checks,
        }
    }

    /// Sends `request` and waits for its reply.
    pub async fn call(&self, origin: Origin, request: Request) -> Outcome {
        let (id, sent) = self.send(origin, request);
        self.await_reply(id, sent).await
    }

    /// Writes rows `(series, ts)` numbered by their ledger row ids (see
    /// [`client_rows`]).
    pub async fn write(
        &self,
        origin: Origin,
        region_id: RegionId,
        rows: Vec<(Arc<str>, i64)>,
        fields: &[Arc<str>],
    ) -> Outcome {
        let now_us = self.world.now_us();
        let (id, request, generation, crashed) = self.world.with(|state| {
            let (generation, crashed) = state.crash.watch();
            // Locked inside the world's lock, as everywhere: world, then
            // ledger.
            let mut ledger = self.checks.ledger();
            let rows = client_rows(ledger.peek_next_row_id(), rows, fields);
            let request = Request::Write { region_id, rows };
            let step = state.trace.next_step();
            let id = ledger.issue(origin, &request, step, now_us, generation);
            let line = RequestLine(id, origin, &request);
            state
                .trace
                .record_fields(now_us, "request", &line, || line.to_string());
            (id, request, generation, crashed)
        });
        let receiver = self.deliver(origin, id, request);
        let sent = Sent {
            receiver,
            generation,
            crashed,
        };
        self.await_reply(id, sent).await
    }

    fn send(&self, origin: Origin, request: Request) -> (RequestId, Sent) {
        let now_us = self.world.now_us();
        let (id, generation, crashed) = self.world.with(|state| {
            let (generation, crashed) = state.crash.watch();
            let step = state.trace.next_step();
            self.checks.on_request(&request, state.fault_draws());
            let id = self
                .checks
                .ledger()
                .issue(origin, &request, step, now_us, generation);
            let line = RequestLine(id, origin, &request);
            state
                .trace
                .record_fields(now_us, "request", &line, || line.to_string());
            (id, generation, crashed)
        });
        let receiver = self.deliver(origin, id, request);
        let sent = Sent {
            receiver,
            generation,
            crashed,
        };
        (id, sent)
    }

    fn deliver(&self, origin: Origin, id: RequestId, request: Request) -> oneshot::Receiver<Reply> {
        let (responder, receiver) = Responder::new(id);
        let request = ClientRequest { request, responder };
        let sent = if origin == Origin::Restart {
            self.router.send_client_now(request)
        } else {
            self.router.send_client(request)
        };
        if let Err(refused) = sent {
            // The engine is gone; the simulation answers for it.
            let region_id = refused.request.region_id();
            refused
                .responder
                .send(Err(RequestError::WorkerStopped { region_id }));
        }
        receiver
    }

    /// Waits for the reply, or for the engine the request went to to crash.
    /// A reply already sent when it crashed still counts: the engine
    /// answered before it died (nothing on a killed node runs afterwards,
    /// and the crashed workers are kept, so nothing answers for them).
    async fn await_reply(&self, id: RequestId, sent: Sent) -> Outcome {
        let Sent {
            receiver,
            generation,
            crashed,
        } = sent;
        let reply = match future::select(receiver, crashed).await {
            Either::Left((Ok(reply), _)) => Some(reply),
            Either::Left((Err(_), _)) if self.world.generation() > generation => {
                return self.interrupted(id, generation);
            }
            Either::Left((Err(_), _)) => None,
            Either::Right((_, mut receiver)) => match receiver.try_recv() {
                Ok(Some(reply)) => Some(reply),
                _ => return self.interrupted(id, generation),
            },
        };
        let now_us = self.world.now_us();
        self.world.with(|state| {
            let step = state.trace.next_step();
            let mut ledger = self.checks.ledger();
            ledger.reply(id, reply.as_ref(), step, now_us);
            let outcome = ledger
                .get(id)
                .map_or(Outcome::Pending, |entry| entry.outcome.clone());
            drop(ledger);
            state
                .trace
                .record_fields(now_us, "reply", &(id.0, &outcome), || {
                    format!("{} {outcome}", id.0)
                });
            outcome
        })
    }
}

/// The simulator's clients reach the engine through the requester, and
/// think in simulated time.
impl ClientPort for Requester {
    fn call(&self, origin: Origin, request: Request) -> BoxFuture<'static, Outcome> {
        let requester = self.clone();
        async move { requester.call(origin, request).await }.boxed()
    }

    fn write(
        &self,
        origin: Origin,
        region_id: RegionId,
        rows: Vec<(Arc<str>, i64)>,
        fields: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Outcome> {
        let requester = self.clone();
        async move { requester.write(origin, region_id, rows, &fields).await }.boxed()
    }

    fn think(&self, ms: u64) -> BoxFuture<'static, ()> {
        sleep(Duration::from_millis(ms)).boxed()
    }

    fn now_ms(&self) -> u64 {
        self.world.now_ms()
    }

    fn next_schema_version(&self) -> u64 {
        self.world.with(|state| state.next_schema_version())
    }
}

/// A request on its way: where its reply will come, and the engine
/// generation it went to with the signal of that generation's crash.
struct Sent {
    receiver: oneshot::Receiver<Reply>,
    generation: u64,
    crashed: CrashSignal,
}

impl Requester {
    /// Records `id`, sent to engine `generation`, as interrupted by the
    /// crash that ended that engine.
    fn interrupted(&self, id: RequestId, generation: u64) -> Outcome {
        let now_us = self.world.now_us();
        self.world.with(|state| {
            let crash = state.crash.records.get(generation as usize).copied();
            debug_assert!(crash.is_some(), "interrupted without a crash");
            let (crash_step, crash_us) = crash.map_or((state.trace.next_step(), now_us), |crash| {
                (crash.step, crash.t_us)
            });
            self.checks.ledger().interrupt(id, crash_step, crash_us);
            state.trace.record(
                now_us,
                "reply",
                format_args!("{} interrupted by a crash", id.0),
            );
        });
        Outcome::Interrupted
    }
}

/// A request's trace line: id, origin, kind, region and what sets it apart.
struct RequestLine<'a>(RequestId, Origin, &'a Request);

impl RequestLine<'_> {
    /// What sets the request apart: a write's row count, an alter's schema.
    fn detail(&self) -> Option<(&'static str, u64)> {
        match self.2 {
            Request::Write { rows, .. } => Some(("rows", rows.len() as u64)),
            Request::Alter { schema_version, .. } => Some(("schema", *schema_version)),
            _ => None,
        }
    }
}

/// The trace hashes what the line shows, field by field.
impl Hash for RequestLine<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let RequestLine(id, origin, request) = self;
        (
            id.0,
            origin,
            request.kind(),
            request.region_id(),
            self.detail(),
        )
            .hash(state);
    }
}

impl fmt::Display for RequestLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RequestLine(id, origin, request) = self;
        write!(
            f,
            "{} {origin:?} {} {}",
            id.0,
            request.kind(),
            request.region_id()
        )?;
        match self.detail() {
            Some((name, value)) => write!(f, " {name}={value}"),
            None => Ok(()),
        }
    }
}

/// Region faults: drops, closes and truncates at random moments (half the
/// time aimed at a region whose flush is running), and the DDLs the object
/// store asks for while a flush writes.
pub struct Injector {
    world: Arc<World>,
    requester: Requester,
    regions: Vec<RegionId>,
    stop: Arc<AtomicBool>,
    tick_ms: u64,
}

impl Injector {
    pub fn new(
        world: Arc<World>,
        requester: Requester,
        regions: Vec<RegionId>,
        stop: Arc<AtomicBool>,
        tick_ms: u64,
    ) -> Self {
        Injector {
            world,
            requester,
            regions,
            stop,
            tick_ms,
        }
    }

    pub async fn run_region_faults(self) {
        const CLASSES: [FaultClass; 3] = [
            FaultClass::RegionDrop,
            FaultClass::RegionClose,
            FaultClass::RegionTruncate,
        ];
        while !self.stop.load(Ordering::Relaxed) {
            sleep(Duration::from_millis(self.tick_ms.max(1))).await;
            for class in CLASSES {
                // The region is drawn only once the fault fires: a class
                // that stays silent draws nothing from the world's stream.
                if !self.world.decide(class) {
                    continue;
                }
                let region_id = self.pick_region();
                self.world.record_fault(class, Some(region_id), "injector");
                let request = match class {
                    FaultClass::RegionDrop => Request::Drop { region_id },
                    FaultClass::RegionClose => Request::Close { region_id },
                    _ => Request::Truncate { region_id },
                };
                self.spawn_request(request);
            }
        }
    }

    /// Sends the DDLs asked for during flushes until the queue closes.
    pub async fn run_during_flush(self, mut asks: mpsc::UnboundedReceiver<DuringFlush>) {
        while let Some(DuringFlush { class, region_id }) = asks.next().await {
            if self.stop.load(Ordering::Relaxed) {
                continue;
            }
            let request = match class {
                FaultClass::DowngradeDuringFlush => Request::Downgrade { region_id },
                _ => Request::Alter {
                    region_id,
                    schema_version: self.world.with(|state| state.next_schema_version()),
                    add_field: None,
                },
            };
            self.spawn_request(request);
        }
    }

    fn spawn_request(&self, request: Request) {
        let requester = self.requester.clone();
        drop(madsim::task::spawn(async move {
            requester.call(Origin::Injector, request).await;
        }));
    }

    fn pick_region(&self) -> RegionId {
        self.world.with(|state| {
            let flushing = state.flushing_regions();
            let aim_at_flush = !flushing.is_empty() && state.rng().gen_bool(0.5);
            let pool = if aim_at_flush {
                &flushing
            } else {
                &self.regions
            };
            let index = state.rng().gen_range(0..pool.len().max(1));
            pool.get(index).copied().unwrap_or(RegionId(1))
        })
    }
}

/// Sends `Tick` to every worker every `tick_ms` until `stop` (mito2's
/// periodic flush check).
///
/// `stop` is read again after each sleep: the final phase stops the ticker
/// and then waits for the engine to settle before it reads the end state,
/// and a tick sent by a ticker that was asleep when it was stopped could
/// start a periodic flush after the engine was judged settled (the views
/// read before that flush's commit, the manifests after it). The
/// `sim_plan` fuzzer found that race.
pub async fn run_ticker(router: Arc<WorkerRouter>, tick_ms: u64, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        sleep(Duration::from_millis(tick_ms.max(1))).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        router.send_to_all(|| flush_core::request::WorkerRequest::Tick);
    }
}
