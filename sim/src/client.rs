//! The workload client: writes with a few other requests mixed in,
//! several in flight at once, and the recovery a real client does (re-open
//! or re-create a region it lost, lead a follower again).
//!
//! One loop for every place a workload runs: the simulator's clients send
//! through the [`Requester`](crate::actors::Requester) (ledger, trace,
//! simulated time), the benchmark's direct run through plain channels
//! with no simulated time. Both implement [`ClientPort`]; what the client
//! draws from its seeded stream is the same in both.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::error::ErrorKind;
use flush_core::ids::RegionId;
use flush_core::memtable::{FieldValue, RowValue};
use flush_core::request::{RegionRole, Request};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::draw;
use crate::ledger::{Origin, Outcome};
use crate::plan::Workload;
use crate::script::{Script, Step};

/// A client's rows `(series, ts)` numbered from `first_value`: each row's
/// value is its number, and it sets each of `fields` to that number plus
/// half the field's position (exact in an f64), so a checker can tell
/// every value of every row apart. Collected straight into the shared
/// slice a write request carries.
pub fn client_rows(
    first_value: u64,
    rows: Vec<(Arc<str>, i64)>,
    fields: &[Arc<str>],
) -> Arc<[RowValue]> {
    rows.into_iter()
        .enumerate()
        .map(|(index, (series, ts))| {
            let value = (first_value + index as u64) as f64;
            let fields = fields
                .iter()
                .enumerate()
                .map(|(position, name)| FieldValue {
                    name: name.clone(),
                    value: value + 0.5 * (position + 1) as f64,
                })
                .collect();
            RowValue {
                series,
                ts,
                value,
                fields,
            }
        })
        .collect()
}

/// How a client reaches the engine, and its sense of time.
pub trait ClientPort: Send + Sync + 'static {
    /// Sends `request`; the future gives what came back.
    fn call(&self, origin: Origin, request: Request) -> BoxFuture<'static, Outcome>;

    /// Writes rows `(series, ts)` that set `fields` (the port gives each
    /// row its values).
    fn write(
        &self,
        origin: Origin,
        region_id: RegionId,
        rows: Vec<(Arc<str>, i64)>,
        fields: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Outcome>;

    /// The client's think time between two writes.
    fn think(&self, ms: u64) -> BoxFuture<'static, ()>;

    /// Now, for the rows' timestamps.
    fn now_ms(&self) -> u64;

    /// A schema version no alter of the run used yet.
    fn next_schema_version(&self) -> u64;
}

/// How many of the fields it knows a client's row sets.
const FIELDS_PER_ROW: usize = 2;

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

/// Requests in flight, each with its region and kind.
type InFlight = FuturesUnordered<BoxFuture<'static, (RegionId, &'static str, Outcome)>>;

/// A workload client: writes with a few other requests mixed in, several in
/// flight at once, and the recovery a real client would do (re-open or
/// re-create a region it lost, reopen a downgraded one).
pub struct Client<P: ClientPort> {
    index: u32,
    port: P,
    rng: ChaCha8Rng,
    workload: Workload,
    regions: Vec<RegionId>,
    stop: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    beliefs: BTreeMap<RegionId, Belief>,
    /// Fields this client's own alters added, per region: its writes set
    /// them. Shared with its in-flight alters, which add to it.
    fields: KnownFields,
    /// A scripted plan's steps for this client, sent in order instead of
    /// the drawn workload.
    script: Option<Vec<Step>>,
    /// The workload's series names, shared by every row written.
    series: draw::SeriesNames,
}

/// Fields a client knows each region to have.
type KnownFields = Arc<Mutex<BTreeMap<RegionId, Vec<Arc<str>>>>>;

impl<P: ClientPort> Client<P> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: u32,
        port: P,
        rng: ChaCha8Rng,
        workload: Workload,
        regions: Vec<RegionId>,
        stop: Arc<AtomicBool>,
        running: Arc<AtomicUsize>,
    ) -> Self {
        running.fetch_add(1, Ordering::Relaxed);
        let series = draw::SeriesNames::new(&workload);
        Client {
            index,
            port,
            rng,
            workload,
            regions,
            stop,
            running,
            beliefs: BTreeMap::new(),
            fields: KnownFields::default(),
            script: None,
            series,
        }
    }

    /// Sends this client's steps of `script` in order instead of drawing
    /// the workload's writes and requests (a scripted plan's client; `None`
    /// keeps the drawn one).
    pub fn with_script(mut self, script: Option<&Script>) -> Self {
        self.script = script.map(|script| script.steps_of(self.index));
        self
    }

    fn origin(&self) -> Origin {
        Origin::Client(self.index)
    }

    pub async fn run(mut self) {
        let mut in_flight = InFlight::new();
        match self.script.take() {
            Some(steps) => {
                for step in steps {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    self.scripted_step(step, &mut in_flight).await;
                }
            }
            None => {
                for _ in 0..self.workload.writes_per_client {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    self.drawn_round(&mut in_flight).await;
                }
            }
        }
        while let Some(done) = in_flight.next().await {
            self.observe(done);
        }
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// One round of the drawn workload: a pause, a write, the requests the
    /// mix adds beside it.
    async fn drawn_round(&mut self, in_flight: &mut InFlight) {
        let think_ms = self.rng.gen_range(0..=self.workload.think_ms_max);
        self.port.think(think_ms).await;
        self.make_room(in_flight).await;
        let region_id = self.pick_region();
        self.recover(region_id).await;
        let series = draw::write_series(&mut self.rng, &self.workload, &self.series);
        in_flight.push(self.write(region_id, series));
        for request in self.mixed_requests() {
            in_flight.push(self.issue(request));
        }
    }

    /// One step of a scripted client: each request waits for room in
    /// flight, a write also for the region's recovery.
    async fn scripted_step(&mut self, step: Step, in_flight: &mut InFlight) {
        match step {
            Step::Think { ms } => self.port.think(ms).await,
            Step::Write { region, rows } => {
                self.make_room(in_flight).await;
                let region_id = RegionId(region);
                self.recover(region_id).await;
                let series = draw::series(&mut self.rng, &self.series, rows);
                in_flight.push(self.write(region_id, series));
            }
            request => {
                let port = &self.port;
                let Some(request) = draw::scripted_request(&request, || port.next_schema_version())
                else {
                    return;
                };
                self.make_room(in_flight).await;
                in_flight.push(self.issue(request));
            }
        }
    }

    /// Takes in what finished, then waits until fewer than the workload's
    /// `max_in_flight` requests are in flight.
    async fn make_room(&mut self, in_flight: &mut InFlight) {
        while let Some(Some(done)) = in_flight.next().now_or_never() {
            self.observe(done);
        }
        while in_flight.len() >= self.workload.max_in_flight.max(1) as usize {
            if let Some(done) = in_flight.next().await {
                self.observe(done);
            }
        }
    }

    fn pick_region(&mut self) -> RegionId {
        draw::region(&mut self.rng, &self.regions)
    }

    /// Writes one row of each of `series` (timestamps from now on).
    fn write(
        &mut self,
        region_id: RegionId,
        series: Vec<Arc<str>>,
    ) -> BoxFuture<'static, (RegionId, &'static str, Outcome)> {
        let ts = self.port.now_ms() as i64;
        let rows: Vec<(Arc<str>, i64)> = series.into_iter().zip(ts..).collect();
        // The newest few: enough to write old and new fields side by side
        // without every row growing with every alter.
        let fields: Vec<Arc<str>> = lock(&self.fields)
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
        let written = self.port.write(self.origin(), region_id, rows, fields);
        async move { (region_id, "write", written.await) }.boxed()
    }

    fn issue(&self, request: Request) -> BoxFuture<'static, (RegionId, &'static str, Outcome)> {
        let region_id = request.region_id();
        let kind = request.kind();
        let added = match &request {
            Request::Alter { add_field, .. } => add_field.as_deref().map(Arc::<str>::from),
            _ => None,
        };
        let fields = self.fields.clone();
        let call = self.port.call(self.origin(), request);
        async move {
            let outcome = call.await;
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
        let port = &self.port;
        draw::mixed_requests(&mut self.rng, &self.workload, &self.regions, || {
            port.next_schema_version()
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
            .port
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
                let opened = self.port.call(origin, Request::Open { region_id }).await;
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
                    let created = self.port.call(origin, create).await;
                    self.observe((region_id, "create", created));
                }
            }
        }
    }
}
