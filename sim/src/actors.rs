//! The actors that drive the engine: workload clients, the fault injector
//! and the periodic ticker. Every request goes through a [`Requester`],
//! which records it and its reply in the ledger and the trace — or, when the
//! engine crashed with it in flight, records it as interrupted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flush_core::error::{ErrorKind, RequestError};
use flush_core::ids::{RegionId, RequestId};
use flush_core::memtable::{FieldValue, RowValue};
use flush_core::request::{ClientRequest, RegionRole, Reply, Request, Responder};
use futures::channel::{mpsc, oneshot};
use futures::future::{self, BoxFuture, Either};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::draw;
use crate::ledger::{Origin, Outcome};
use crate::oracle::Checks;
use crate::plan::{FaultClass, Workload};
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

    /// Writes rows `(series, ts)`; each row's value is its ledger row id,
    /// and it sets each of `fields` to that id plus half the field's
    /// position (exact in an f64).
    pub async fn write(
        &self,
        origin: Origin,
        region_id: RegionId,
        rows: Vec<(String, i64)>,
        fields: &[String],
    ) -> Outcome {
        let now_us = self.world.now_us();
        let (id, request, generation, crashed) = self.world.with(|state| {
            let (generation, crashed) = state.crash.watch();
            // Locked inside the world's lock, as everywhere: world, then
            // ledger.
            let mut ledger = self.checks.ledger();
            let first_row_id = ledger.peek_next_row_id();
            let rows: Vec<RowValue> = rows
                .into_iter()
                .enumerate()
                .map(|(index, (series, ts))| {
                    let value = (first_row_id + index as u64) as f64;
                    RowValue {
                        series,
                        ts,
                        value,
                        fields: field_values(fields, value),
                    }
                })
                .collect();
            let request = Request::Write { region_id, rows };
            let step = state.trace.next_step();
            let id = ledger.issue(origin, &request, step, now_us, generation);
            state
                .trace
                .record(now_us, "request", describe_request(id, origin, &request));
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
            let id = self
                .checks
                .ledger()
                .issue(origin, &request, step, now_us, generation);
            state
                .trace
                .record(now_us, "request", describe_request(id, origin, &request));
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
                .record(now_us, "reply", format!("{} {}", id.0, outcome.describe()));
            outcome
        })
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
            state
                .trace
                .record(now_us, "reply", format!("{} interrupted by a crash", id.0));
        });
        Outcome::Interrupted
    }
}

fn describe_request(id: RequestId, origin: Origin, request: &Request) -> String {
    let detail = match request {
        Request::Write { rows, .. } => format!(" rows={}", rows.len()),
        Request::Alter { schema_version, .. } => format!(" schema={schema_version}"),
        _ => String::new(),
    };
    format!(
        "{} {origin:?} {} {}{detail}",
        id.0,
        request.kind(),
        request.region_id()
    )
}

/// How many of the fields it knows a client's row sets.
const FIELDS_PER_ROW: usize = 2;

/// Values for `fields` of a row whose base value is `value`.
fn field_values(fields: &[String], value: f64) -> Vec<FieldValue> {
    fields
        .iter()
        .enumerate()
        .map(|(position, name)| FieldValue {
            name: name.clone(),
            value: value + 0.5 * (position + 1) as f64,
        })
        .collect()
}

/// A poisoned lock only means another client task panicked; the run's
/// panic check reports that, and the map is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a client believes about a region, from the replies it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Belief {
    Usable,
    /// Closed, dropped or never created: open it, or create it again.
    Missing,
    /// A follower (opened, or downgraded): make it leader to write again.
    ReadOnly,
}

/// Builds a request for a region, given a fresh schema version.
type InFlight = FuturesUnordered<BoxFuture<'static, (RegionId, &'static str, Outcome)>>;

/// A workload client: writes with a few other requests mixed in, several in
/// flight at once, and the recovery a real client would do (re-open or
/// re-create a region it lost, reopen a downgraded one).
pub struct Client {
    index: u32,
    world: Arc<World>,
    requester: Requester,
    rng: ChaCha8Rng,
    workload: Workload,
    regions: Vec<RegionId>,
    stop: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    beliefs: BTreeMap<RegionId, Belief>,
    /// Fields this client's own alters added, per region: its writes set
    /// them. Shared with its in-flight alters, which add to it.
    fields: KnownFields,
}

/// Fields a client knows each region to have.
type KnownFields = Arc<Mutex<BTreeMap<RegionId, Vec<String>>>>;

impl Client {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: u32,
        world: Arc<World>,
        requester: Requester,
        rng: ChaCha8Rng,
        workload: Workload,
        regions: Vec<RegionId>,
        stop: Arc<AtomicBool>,
        running: Arc<AtomicUsize>,
    ) -> Self {
        running.fetch_add(1, Ordering::Relaxed);
        Client {
            index,
            world,
            requester,
            rng,
            workload,
            regions,
            stop,
            running,
            beliefs: BTreeMap::new(),
            fields: KnownFields::default(),
        }
    }

    fn origin(&self) -> Origin {
        Origin::Client(self.index)
    }

    pub async fn run(mut self) {
        let mut in_flight = InFlight::new();
        for _ in 0..self.workload.writes_per_client {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let think_ms = self.rng.gen_range(0..=self.workload.think_ms_max);
            sleep(Duration::from_millis(think_ms)).await;
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                self.observe(done);
            }
            while in_flight.len() >= self.workload.max_in_flight.max(1) as usize {
                if let Some(done) = in_flight.next().await {
                    self.observe(done);
                }
            }
            let region_id = self.pick_region();
            self.recover(region_id).await;
            in_flight.push(self.write(region_id));
            for request in self.mixed_requests() {
                in_flight.push(self.issue(request));
            }
        }
        while let Some(done) = in_flight.next().await {
            self.observe(done);
        }
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    fn pick_region(&mut self) -> RegionId {
        draw::region(&mut self.rng, &self.regions)
    }

    fn write(
        &mut self,
        region_id: RegionId,
    ) -> BoxFuture<'static, (RegionId, &'static str, Outcome)> {
        let ts = self.world.now_ms() as i64;
        let rows: Vec<(String, i64)> = draw::write_series(&mut self.rng, &self.workload)
            .into_iter()
            .zip(ts..)
            .collect();
        // The newest few: enough to write old and new fields side by side
        // without every row growing with every alter.
        let fields: Vec<String> = lock(&self.fields)
            .get(&region_id)
            .map(|known| {
                known
                    .iter()
                    .rev()
                    .take(FIELDS_PER_ROW)
                    .rev()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let requester = self.requester.clone();
        let origin = self.origin();
        async move {
            (
                region_id,
                "write",
                requester.write(origin, region_id, rows, &fields).await,
            )
        }
        .boxed()
    }

    fn issue(&self, request: Request) -> BoxFuture<'static, (RegionId, &'static str, Outcome)> {
        let requester = self.requester.clone();
        let origin = self.origin();
        let region_id = request.region_id();
        let kind = request.kind();
        let added = match &request {
            Request::Alter { add_field, .. } => add_field.clone(),
            _ => None,
        };
        let fields = self.fields.clone();
        async move {
            let outcome = requester.call(origin, request).await;
            if let (Some(name), true) = (added, outcome.is_ok()) {
                let mut known = lock(&fields);
                let region = known.entry(region_id).or_default();
                if !region.contains(&name) {
                    region.push(name);
                }
            }
            (region_id, kind, outcome)
        }
        .boxed()
    }

    /// The non-write requests that follow this write, per the mix.
    fn mixed_requests(&mut self) -> Vec<Request> {
        draw::mixed_requests(&mut self.rng, &self.workload, &self.regions, || {
            self.world.with(|state| state.next_schema_version())
        })
    }

    fn observe(&mut self, (region_id, kind, outcome): (RegionId, &'static str, Outcome)) {
        // A new incarnation has none of the old one's fields.
        let schema_reset = matches!(
            (&outcome, kind),
            (Outcome::Ok(_), "drop" | "create")
                | (
                    Outcome::Err {
                        kind: ErrorKind::UnknownColumn,
                        ..
                    },
                    _
                )
        );
        if schema_reset {
            lock(&self.fields).remove(&region_id);
        }
        let belief = match (&outcome, kind) {
            (Outcome::Err { kind, .. }, _) => match kind {
                ErrorKind::RegionNotFound | ErrorKind::RegionDropped | ErrorKind::RegionClosed => {
                    Belief::Missing
                }
                ErrorKind::RegionReadOnly => Belief::ReadOnly,
                _ => return,
            },
            (Outcome::Ok(_), "drop" | "close") => Belief::Missing,
            // A region opens as a follower.
            (Outcome::Ok(_), "downgrade" | "open") => Belief::ReadOnly,
            (Outcome::Ok(_), "create" | "set_role") => Belief::Usable,
            _ => return,
        };
        self.beliefs.insert(region_id, belief);
    }

    /// Makes a follower (an opened or downgraded region) leader again, as
    /// the region server does when it holds the region's lease.
    async fn lead(&mut self, region_id: RegionId) {
        let role = RegionRole::Leader;
        let led = self
            .requester
            .call(self.origin(), Request::SetRole { region_id, role })
            .await;
        self.observe((region_id, "set_role", led));
    }

    /// Brings a region the client believes lost back, one request at a time.
    async fn recover(&mut self, region_id: RegionId) {
        let belief = self
            .beliefs
            .get(&region_id)
            .copied()
            .unwrap_or(Belief::Usable);
        let origin = self.origin();
        match belief {
            Belief::Usable => {}
            Belief::ReadOnly => self.lead(region_id).await,
            Belief::Missing => {
                let opened = self
                    .requester
                    .call(origin, Request::Open { region_id })
                    .await;
                let not_found = matches!(
                    opened,
                    Outcome::Err {
                        kind: ErrorKind::RegionNotFound,
                        ..
                    }
                );
                let open_ok = opened.is_ok();
                self.observe((region_id, "open", opened));
                if open_ok {
                    self.lead(region_id).await;
                } else if not_found {
                    let options = self.workload.region_options(region_id);
                    let create = Request::Create { region_id, options };
                    let created = self.requester.call(origin, create).await;
                    self.observe((region_id, "create", created));
                }
            }
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
pub async fn run_ticker(router: Arc<WorkerRouter>, tick_ms: u64, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        sleep(Duration::from_millis(tick_ms.max(1))).await;
        router.send_to_all(|| flush_core::request::WorkerRequest::Tick);
    }
}
