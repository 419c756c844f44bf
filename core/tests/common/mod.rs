//! Shared by the integration tests: the kit's [`ReplyLedger`] and a [`Scenario`]
//! that drives a [`LocalEngine`] in a temporary directory and tracks every
//! request it sends in the ledger.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;

#[allow(unused_imports)]
pub use flush_core::local::ledger::{ReplyLedger, ReplyState, Ticket};

use std::sync::atomic::Ordering;

use flush_core::bugs::Bugs;
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::flush::FlushStatusView;
use flush_core::ids::RegionId;
use flush_core::local::{block_on, LocalEngine};
use flush_core::manifest::RegionManifest;
use flush_core::memtable::{RowValue, ROW_OVERHEAD_BYTES};
use flush_core::request::{Output, RegionRole, Reply, Request};
use flush_core::worker::{RegionView, WorkerConfig};

pub const R1: RegionId = RegionId(1);
pub const R2: RegionId = RegionId(2);
pub const R3: RegionId = RegionId(3);

/// Series names used by [`rows`] are `"{series}"`; a row costs this many
/// buffer bytes.
pub fn row_bytes(series: &str) -> usize {
    ROW_OVERHEAD_BYTES + series.len()
}

/// `count` rows of one series with consecutive timestamps from `first_ts`.
pub fn rows(series: &str, count: usize, first_ts: i64) -> Vec<RowValue> {
    (0..count)
        .map(|index| RowValue {
            series: series.into(),
            ts: first_ts + index as i64,
            value: (first_ts + index as i64) as f64 * 0.5,
            fields: Vec::new(),
        })
        .collect()
}

/// Rows per write batch in the sized scenarios, all of series [`SERIES`].
pub const BATCH_ROWS: usize = 20;
pub const SERIES: &str = "cpu";

/// Buffer bytes of one write batch.
pub fn batch_bytes() -> usize {
    BATCH_ROWS * row_bytes(SERIES)
}

/// One batch, timestamps from `first_ts`.
pub fn batch(first_ts: i64) -> Vec<RowValue> {
    rows(SERIES, BATCH_ROWS, first_ts)
}

/// A buffer of ten batches: mutable limit five batches, stall at ten.
pub fn ten_batch_buffer() -> usize {
    10 * batch_bytes()
}

/// The flush status of a region whose flush of `epoch` runs alone.
pub fn running(epoch: u64) -> Option<FlushStatusView> {
    Some(FlushStatusView {
        running_epoch: Some(epoch),
        pending_task: false,
        pending_ddls: 0,
        pending_writes: 0,
    })
}

/// The error kind of a reply, or the output.
pub fn outcome(reply: &Reply) -> Result<Output, ErrorKind> {
    match reply {
        Ok(output) => Ok(output.clone()),
        Err(error) => Err(error.kind()),
    }
}

/// One engine, its temporary directory, and the ledger of every request
/// sent through it.
pub struct Scenario {
    pub engine: LocalEngine,
    pub ledger: ReplyLedger<Reply>,
    dir: tempfile::TempDir,
}

impl Scenario {
    pub fn new(buffer_bytes: usize) -> Self {
        Self::with_config(buffer_bytes, WorkerConfig::default())
    }

    pub fn with_bugs(buffer_bytes: usize, bugs: Bugs) -> Self {
        let config = WorkerConfig {
            bugs,
            ..Default::default()
        };
        Self::with_config(buffer_bytes, config)
    }

    pub fn with_config(buffer_bytes: usize, config: WorkerConfig) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Scenario {
            engine: LocalEngine::new(dir.path(), buffer_bytes, config)
                .expect("a local engine over a temporary directory"),
            ledger: ReplyLedger::new(),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Hands `request` to the worker without running flush jobs.
    pub fn submit(&mut self, label: impl Into<String>, request: Request) -> Ticket {
        let receiver = self
            .engine
            .submit(request)
            .expect("local ports complete without waiting");
        self.ledger.track(label, receiver)
    }

    /// Creates `region_id` and checks it was created.
    pub fn create(&mut self, region_id: RegionId) {
        let ticket = self.submit(format!("create {region_id}"), Request::create(region_id));
        self.expect_ok(ticket);
    }

    /// Reopens `region_id` and makes it leader again (it opens a follower).
    pub fn reopen_as_leader(&mut self, region_id: RegionId) {
        let open = self.submit(format!("open {region_id}"), Request::Open { region_id });
        self.expect_ok(open);
        let role = RegionRole::Leader;
        let lead = self.submit(
            format!("lead {region_id}"),
            Request::SetRole { region_id, role },
        );
        self.expect_ok(lead);
    }

    pub fn write(
        &mut self,
        label: impl Into<String>,
        region_id: RegionId,
        rows: Vec<RowValue>,
    ) -> Ticket {
        self.submit(
            label,
            Request::Write {
                region_id,
                rows: rows.into(),
            },
        )
    }

    pub fn flush(&mut self, label: impl Into<String>, region_id: RegionId) -> Ticket {
        self.submit(label, Request::Flush { region_id })
    }

    pub fn alter(
        &mut self,
        label: impl Into<String>,
        region_id: RegionId,
        schema_version: u64,
    ) -> Ticket {
        self.submit(
            label,
            Request::Alter {
                region_id,
                schema_version,
                add_field: None,
            },
        )
    }

    /// Runs the oldest queued flush job; false if none was queued.
    pub fn run_one_job(&mut self) -> bool {
        self.engine
            .run_one_job()
            .expect("local ports complete without waiting")
    }

    pub fn run_until_idle(&mut self) {
        self.engine
            .run_until_idle()
            .expect("local ports complete without waiting");
    }

    pub fn queued_jobs(&self) -> usize {
        self.engine.ports().jobs.len()
    }

    /// `count` writes of one batch each to `region_id`, every one
    /// acknowledged.
    pub fn write_batches(&mut self, region_id: RegionId, count: usize) {
        for index in 0..count {
            let ticket = self.write("write", region_id, batch(index as i64 * 100));
            self.expect_written(ticket);
        }
    }

    /// A periodic tick: stalled-write retry and timeout, periodic flushes,
    /// stall relief.
    pub fn tick(&mut self) {
        self.engine
            .tick()
            .expect("local ports complete without waiting");
    }

    /// From now on flush results wait until [`Self::deliver_held_results`].
    pub fn hold_results(&self) {
        let inbox = &self.engine.ports().inbox;
        inbox.hold_results.store(true, Ordering::Relaxed);
    }

    /// Delivers the flush results held back by [`Self::hold_results`].
    pub fn deliver_held_results(&mut self) {
        self.engine.ports().inbox.release_held();
        self.engine
            .drain_inbox()
            .expect("local ports complete without waiting");
    }

    /// Every core event so far.
    pub fn events(&self) -> Vec<CoreEvent> {
        self.engine.ports().events.events()
    }

    /// How many core events carry `mark`.
    pub fn count(&self, mark: &str) -> usize {
        self.engine.ports().events.count(mark)
    }

    pub fn flush_status(&self, region_id: RegionId) -> Option<FlushStatusView> {
        self.view(region_id).flush
    }

    pub fn manifest(&self, region_id: RegionId) -> RegionManifest {
        self.engine
            .ports()
            .manifests
            .get(region_id)
            .unwrap_or_else(|| panic!("{region_id} has a manifest"))
    }

    /// Rows in the SSTs the manifest of `region_id` lists.
    pub fn manifest_rows(&self, region_id: RegionId) -> u64 {
        let manifest = self.manifest(region_id);
        manifest.files.values().map(|f| f.num_rows).sum()
    }

    /// Paths of every object under `data/<region>/`.
    pub fn stored_paths(&self, region_id: RegionId) -> Vec<String> {
        let prefix = format!("data/{}/", region_id.0);
        block_on(self.engine.ports().objects.list(&prefix))
            .expect("local ports never wait")
            .expect("listing a local directory")
    }

    /// The reply of `ticket` as output or error kind; panics if it has none.
    pub fn outcome(&mut self, ticket: Ticket) -> Result<Output, ErrorKind> {
        outcome(self.ledger.reply(ticket))
    }

    pub fn expect_ok(&mut self, ticket: Ticket) -> Output {
        self.ledger.expect_ok(ticket)
    }

    /// Entry id and first sequence of an acknowledged write.
    pub fn expect_written(&mut self, ticket: Ticket) -> (u64, u64) {
        let label = self.ledger.label(ticket).to_string();
        match self.expect_ok(ticket) {
            Output::Written {
                entry_id,
                first_sequence,
                ..
            } => (entry_id, first_sequence),
            Output::Done => panic!("{label}: expected a write ack"),
        }
    }

    pub fn expect_err(&mut self, ticket: Ticket, kind: ErrorKind) {
        self.ledger.expect_err(ticket, kind);
    }

    pub fn expect_waiting(&mut self, ticket: Ticket) {
        self.ledger.assert_waiting(ticket);
    }

    pub fn view(&self, region_id: RegionId) -> RegionView {
        self.engine
            .worker()
            .inspect()
            .regions
            .get(&region_id)
            .cloned()
            .unwrap_or_else(|| panic!("{region_id} is not open"))
    }

    /// `(used, active)` bytes of the write buffer.
    pub fn buffer_bytes(&self) -> (usize, usize) {
        let buffer = self.engine.buffer();
        (buffer.used_bytes(), buffer.active_bytes())
    }

    /// The buffer counts exactly what the worker's memtables hold: used is
    /// every memtable byte, active every mutable byte. Holds whenever no
    /// flush job keeps a memtable of a region that went away.
    pub fn assert_accounting_balanced(&self) {
        let view = self.engine.worker().inspect();
        let mutable: usize = view.regions.values().map(|r| r.mutable_bytes).sum();
        let immutable: usize = view.regions.values().map(|r| r.immutable_bytes).sum();
        assert_eq!(
            self.buffer_bytes(),
            (mutable + immutable, mutable),
            "buffer (used, active) must equal (all memtable bytes, mutable bytes)"
        );
        assert_eq!(self.engine.buffer().accounting_violations(), 0);
    }

    /// Runs every job left, then checks exactly-once replies and balanced
    /// accounting.
    pub fn finish(self) {
        self.finish_expecting_lost(&[]);
    }

    /// Like [`Self::finish`], but the requests in `lost` must have lost
    /// their reply (a planted bug).
    pub fn finish_expecting_lost(mut self, lost: &[Ticket]) {
        self.run_until_idle();
        assert_eq!(self.engine.buffer().flushes_running(), 0);
        self.assert_accounting_balanced();
        self.ledger.assert_exactly_once_except(lost);
    }
}
