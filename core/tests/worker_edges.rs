//! Edges of the region worker that the other suites left open, found by
//! `cargo mutants` (BENCHMARKS.md, "Mutation score"): stall relief, the
//! engine-full candidates, what `retry_stalled` releases, the count of
//! failed waiters, lifecycle fencing (create after close or drop, open after
//! drop, a flush result arriving after a truncate), SST ids across
//! incarnations, the worker's views, and each planted bug doing exactly
//! what its description says.
//!
//! The [`Rig`] is a worker over local ports that records every core event
//! and can hold back flush results, so a test can deliver one late.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{row_bytes, rows, ReplyLedger, Ticket, R1, R2};
use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::flush::FlushStatusView;
use flush_core::ids::{RegionId, RequestId};
use flush_core::local::{
    block_on, CountedFaults, Inbox, LocalObjectStore, ManualClock, MemoryManifestStore, MemoryWal,
    QueuedJobs, RecordedEvents,
};
use flush_core::manifest::{LeaderState, RegionManifest};
use flush_core::memtable::RowValue;
use flush_core::ports::{ObjectStore, Ports};
use flush_core::request::{
    ClientRequest, Output, RegionRole, Reply, Request, Responder, WorkerRequest,
};
use flush_core::worker::{RegionWorker, WorkerConfig};

const SERIES: &str = "cpu";
const BATCH_ROWS: usize = 20;

fn batch_bytes() -> usize {
    BATCH_ROWS * row_bytes(SERIES)
}

fn batch(first_ts: i64) -> Vec<RowValue> {
    rows(SERIES, BATCH_ROWS, first_ts)
}

/// Ten batches: the mutable limit is five, writes stall at ten.
fn ten_batch_buffer() -> usize {
    10 * batch_bytes()
}

/// One worker over local ports, its recorded events, and the ledger of
/// every request sent to it.
struct Rig {
    worker: RegionWorker,
    jobs: Arc<QueuedJobs>,
    mailbox: Arc<Inbox>,
    events: Arc<RecordedEvents>,
    buffer: Arc<WriteBufferManager>,
    manifests: Arc<MemoryManifestStore>,
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    wal: Arc<MemoryWal>,
    objects: Arc<LocalObjectStore>,
    faults: Arc<CountedFaults>,
    ledger: ReplyLedger<Reply>,
    next_request_id: u64,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(buffer_bytes: usize, bugs: Bugs) -> Self {
        Self::with_config(
            buffer_bytes,
            WorkerConfig {
                bugs,
                ..Default::default()
            },
        )
    }

    fn with_config(buffer_bytes: usize, config: WorkerConfig) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let jobs = Arc::new(QueuedJobs::default());
        let mailbox = Arc::new(Inbox::default());
        let events = Arc::new(RecordedEvents::default());
        let manifests = Arc::new(MemoryManifestStore::default());
        let wal = Arc::new(MemoryWal::default());
        let objects = Arc::new(LocalObjectStore::new(dir.path()));
        let faults = Arc::new(CountedFaults::default());
        let buffer = Arc::new(WriteBufferManager::new(buffer_bytes).with_notifier(mailbox.clone()));
        let ports = Ports {
            jobs: jobs.clone(),
            objects: objects.clone(),
            manifests: manifests.clone(),
            wal: wal.clone(),
            clock: Arc::new(ManualClock::default()),
            faults: faults.clone(),
            events: events.clone(),
        };
        let worker = RegionWorker::new(config, ports, buffer.clone(), mailbox.clone());
        Rig {
            worker,
            jobs,
            mailbox,
            events,
            buffer,
            manifests,
            wal,
            objects,
            faults,
            ledger: ReplyLedger::new(),
            next_request_id: 1,
            _dir: dir,
        }
    }

    fn handle(&mut self, request: WorkerRequest) {
        block_on(self.worker.handle(request)).expect("local ports never wait");
        self.drain_mailbox();
    }

    /// Hands the worker everything queued for it.
    fn drain_mailbox(&mut self) {
        while let Some(request) = self.mailbox.pop() {
            block_on(self.worker.handle(request)).expect("local ports never wait");
        }
    }

    fn send(&mut self, label: &str, request: Request) -> Ticket {
        let (responder, receiver) = Responder::new(RequestId(self.next_request_id));
        self.next_request_id += 1;
        let ticket = self.ledger.track(label, receiver);
        self.handle(WorkerRequest::Client(ClientRequest { request, responder }));
        ticket
    }

    fn create(&mut self, region_id: RegionId) {
        let ticket = self.send("create", Request::create(region_id));
        self.expect_ok(ticket);
    }

    fn write(&mut self, label: &str, region_id: RegionId, first_ts: i64) -> Ticket {
        let rows = batch(first_ts);
        self.send(label, Request::Write { region_id, rows })
    }

    /// `count` writes of one batch each, every one acknowledged.
    fn write_batches(&mut self, region_id: RegionId, count: usize) {
        for index in 0..count {
            let ticket = self.write("write", region_id, index as i64 * 100);
            assert!(
                matches!(self.ledger.reply(ticket), Ok(Output::Written { .. })),
                "write {index} of {region_id} acknowledged"
            );
        }
    }

    fn flush(&mut self, label: &str, region_id: RegionId) -> Ticket {
        self.send(label, Request::Flush { region_id })
    }

    fn held_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Runs the oldest held job and delivers what it sent back.
    fn run_one_job(&mut self) {
        let job = self.jobs.pop();
        block_on(job.expect("a held flush job")).expect("local ports never wait");
        self.drain_mailbox();
    }

    fn run_until_idle(&mut self) {
        while self.held_jobs() > 0 {
            self.run_one_job();
        }
    }

    /// Delivers the flush results held back by `hold_results`.
    fn deliver_held_results(&mut self) {
        self.mailbox.release_held();
        self.drain_mailbox();
    }

    fn expect_ok(&mut self, ticket: Ticket) {
        self.ledger.expect_ok(ticket);
    }

    fn expect_err(&mut self, ticket: Ticket, kind: ErrorKind) {
        self.ledger.expect_err(ticket, kind);
    }

    fn events(&self) -> Vec<CoreEvent> {
        self.events.events()
    }

    fn count(&self, mark: &str) -> usize {
        self.events.count(mark)
    }

    fn flush_status(&self, region_id: RegionId) -> Option<FlushStatusView> {
        self.worker
            .inspect()
            .regions
            .get(&region_id)
            .unwrap_or_else(|| panic!("{region_id} is open"))
            .flush
    }

    fn manifest(&self, region_id: RegionId) -> RegionManifest {
        self.manifests
            .get(region_id)
            .unwrap_or_else(|| panic!("{region_id} has a manifest"))
    }

    fn stored_paths(&self, region_id: RegionId) -> Vec<String> {
        let prefix = format!("data/{}/", region_id.0);
        block_on(self.objects.list(&prefix))
            .expect("local ports never wait")
            .expect("listing a local directory")
    }

    /// Runs what is left, then checks exactly-once replies and that the
    /// buffer accounting never went wrong.
    fn finish(mut self) {
        self.run_until_idle();
        assert_eq!(self.buffer.flushes_running(), 0);
        assert_eq!(self.buffer.accounting_violations(), 0);
        self.ledger.assert_exactly_once();
    }
}

fn running(epoch: u64) -> Option<FlushStatusView> {
    Some(FlushStatusView {
        running_epoch: Some(epoch),
        pending_task: false,
        pending_ddls: 0,
        pending_writes: 0,
    })
}

// ---------------------------------------------------------------------------
// Stall relief and stalled-write release.
// ---------------------------------------------------------------------------

/// R1's engine-full flush (six batches) held in flight, then R2 three
/// batches and R1 one more: the buffer is exactly full, nothing stalled.
fn full_buffer_with_a_held_flush() -> Rig {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.create(R2);
    rig.write_batches(R1, 6);
    assert_eq!(rig.held_jobs(), 1, "six batches are over the mutable limit");
    assert_eq!(rig.flush_status(R1), running(0));
    rig.write_batches(R2, 3);
    let ticket = rig.write("r1 seventh", R1, 1_000);
    rig.expect_ok(ticket);
    assert!(rig.buffer.should_stall());
    assert_eq!(rig.held_jobs(), 1);
    rig
}

/// Fails R1's held flush at its manifest commit: its memory stays used.
fn fail_the_held_flush(rig: &mut Rig) {
    rig.manifests.fail_next.store(1, Ordering::Relaxed);
    rig.run_one_job();
    assert_eq!(rig.count("flush_failed"), 1);
    assert!(rig.buffer.should_stall(), "a failed flush frees nothing");
}

#[test]
fn stall_relief_flushes_the_fullest_region_once_no_flush_runs() {
    let mut rig = full_buffer_with_a_held_flush();
    let stalled = rig.write("stalled", R2, 2_000);
    rig.ledger.assert_waiting(stalled);
    assert_eq!(rig.worker.stalled_writes(), 1);
    rig.handle(WorkerRequest::Tick);
    assert_eq!(
        (rig.held_jobs(), rig.count("stall_relief_flush")),
        (1, 0),
        "a flush is running: it will free memory, no relief flush"
    );

    fail_the_held_flush(&mut rig);
    let reliefs: Vec<CoreEvent> = rig
        .events()
        .into_iter()
        .filter(|e| e.mark() == "stall_relief_flush")
        .collect();
    assert_eq!(
        reliefs,
        vec![CoreEvent::StallReliefFlush { region_id: R1 }],
        "R1 holds seven batches, R2 three"
    );
    assert_eq!(rig.held_jobs(), 1);
    assert_eq!(rig.flush_status(R1), running(0));
    assert_eq!(rig.flush_status(R2), None);
    rig.ledger.assert_waiting(stalled);

    rig.run_one_job();
    assert!(matches!(
        rig.ledger.reply(stalled),
        Ok(Output::Written { .. })
    ));
    let released: Vec<CoreEvent> = rig
        .events()
        .into_iter()
        .filter(|e| e.mark() == "stall_released")
        .collect();
    assert_eq!(
        released,
        vec![CoreEvent::StallReleased { count: 1 }],
        "stalled writes are released once, when memory allows, never empty"
    );
    assert_eq!(rig.worker.stalled_writes(), 0);
    rig.finish();
}

#[test]
fn a_full_buffer_with_no_stalled_write_starts_no_relief_flush() {
    let mut rig = full_buffer_with_a_held_flush();
    fail_the_held_flush(&mut rig);
    rig.handle(WorkerRequest::Tick);
    assert_eq!(
        (rig.held_jobs(), rig.count("stall_relief_flush")),
        (0, 0),
        "no write waits: nothing to relieve"
    );
    let flushed = rig.flush("flush r1", R1);
    rig.run_until_idle();
    rig.expect_ok(flushed);
    assert!(!rig.buffer.should_stall());
    assert_eq!(rig.count("stall_released"), 0, "nothing was stalled");
    rig.finish();
}

// ---------------------------------------------------------------------------
// Engine-full candidates.
// ---------------------------------------------------------------------------

#[test]
fn engine_full_skips_a_flushing_region_even_with_the_largest_memtable() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.create(R2);
    rig.write_batches(R1, 1);
    let manual = rig.flush("manual r1", R1);
    rig.write_batches(R1, 3);
    rig.write_batches(R2, 2);
    assert_eq!(
        rig.held_jobs(),
        1,
        "five mutable batches: not over the limit"
    );
    rig.write_batches(R1, 1);
    let picks: Vec<CoreEvent> = rig
        .events()
        .into_iter()
        .filter(|e| e.mark() == "engine_full_flush")
        .collect();
    assert_eq!(
        picks,
        vec![CoreEvent::EngineFullFlush {
            region_id: R2,
            picked_bytes: 2 * batch_bytes(),
            largest_bytes: 2 * batch_bytes(),
        }],
        "R1's four batches wait behind its running flush"
    );
    assert_eq!(rig.flush_status(R2), running(0));
    assert_eq!(rig.held_jobs(), 2);
    rig.run_until_idle();
    rig.expect_ok(manual);
    rig.finish();
}

#[test]
fn engine_full_picks_no_empty_region() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.create(R2);
    rig.write_batches(R1, 1);
    let manual = rig.flush("manual r1", R1);
    rig.write_batches(R1, 6);
    assert_eq!(
        rig.count("engine_full_flush"),
        0,
        "R1 is flushing and R2 holds nothing"
    );
    assert_eq!(rig.flush_status(R2), None);
    rig.run_until_idle();
    rig.expect_ok(manual);
    rig.finish();
}

// ---------------------------------------------------------------------------
// Failed waiters are counted.
// ---------------------------------------------------------------------------

#[test]
fn dropping_a_busy_region_counts_every_waiter_it_fails() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.write_batches(R1, 1);
    let running_flush = rig.flush("running flush", R1);
    rig.write_batches(R1, 1);
    let pending_flush = rig.flush("pending flush", R1);
    let alter = rig.send(
        "alter",
        Request::Alter {
            region_id: R1,
            schema_version: 2,
            add_field: None,
        },
    );
    let behind = [
        rig.write("behind alter 1", R1, 500),
        rig.write("behind alter 2", R1, 600),
    ];
    let drop = rig.send("drop", Request::Drop { region_id: R1 });
    rig.expect_ok(drop);
    for ticket in [running_flush, pending_flush, alter]
        .into_iter()
        .chain(behind)
    {
        rig.expect_err(ticket, ErrorKind::RegionDropped);
    }
    let failed: Vec<CoreEvent> = rig
        .events()
        .into_iter()
        .filter(|e| e.mark() == "pending_failed")
        .collect();
    assert_eq!(
        failed,
        vec![CoreEvent::PendingFailed {
            region_id: R1,
            kind: ErrorKind::RegionDropped,
            count: 5,
        }],
        "one running flush, one pending flush, one DDL, two writes"
    );
    rig.finish();
}

#[test]
fn a_flush_with_no_waiter_fails_without_a_pending_failed_event() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.faults.fail_freezes.store(1, Ordering::Relaxed);
    rig.write_batches(R1, 6);
    assert_eq!(rig.count("freeze_failed"), 1, "the engine-full flush");
    assert_eq!(rig.count("pending_failed"), 0, "nobody waited on it");
    let flushed = rig.flush("flush", R1);
    rig.run_until_idle();
    rig.expect_ok(flushed);
    rig.finish();
}

// ---------------------------------------------------------------------------
// Lifecycle fencing.
// ---------------------------------------------------------------------------

#[test]
fn create_of_a_closed_region_opens_it_and_after_drop_starts_a_later_epoch() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.write_batches(R1, 1);
    let flushed = rig.flush("flush", R1);
    rig.run_until_idle();
    rig.expect_ok(flushed);
    assert_eq!(rig.stored_paths(R1).len(), 1);

    let close = rig.send("close", Request::Close { region_id: R1 });
    rig.expect_ok(close);
    // As mito2's create_or_open: what is on disk is opened, as leader.
    let create = rig.send("create closed", Request::create(R1));
    rig.expect_ok(create);
    let open = rig.send("open", Request::Open { region_id: R1 });
    rig.expect_ok(open);
    let epoch_before_drop = rig.manifest(R1).epoch;
    assert_eq!(epoch_before_drop, 1, "a reopen bumps the epoch");
    assert_eq!(rig.manifest(R1).leader_state, LeaderState::Writable);
    assert_eq!(rig.manifest(R1).files.len(), 1, "the closed region's SST");

    let drop = rig.send("drop", Request::Drop { region_id: R1 });
    rig.expect_ok(drop);
    assert_eq!(
        rig.stored_paths(R1),
        Vec::<String>::new(),
        "drop deletes SSTs"
    );
    let open = rig.send("open dropped", Request::Open { region_id: R1 });
    rig.expect_err(open, ErrorKind::RegionNotFound);

    rig.create(R1);
    assert_eq!(rig.manifest(R1).epoch, epoch_before_drop + 1);
    assert!(!rig.manifest(R1).dropped);
    rig.finish();
}

#[test]
fn truncate_deletes_the_region_files() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.write_batches(R1, 1);
    let flushed = rig.flush("flush", R1);
    rig.run_until_idle();
    rig.expect_ok(flushed);
    assert_eq!(rig.stored_paths(R1).len(), 1);
    let truncate = rig.send("truncate", Request::Truncate { region_id: R1 });
    rig.expect_ok(truncate);
    assert_eq!(rig.stored_paths(R1), Vec::<String>::new());
    rig.finish();
}

#[test]
fn downgrading_an_empty_region_makes_it_a_follower_at_once() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    let downgrade = rig.send("downgrade", Request::Downgrade { region_id: R1 });
    rig.expect_ok(downgrade);
    assert_eq!(rig.held_jobs(), 0, "nothing to flush");
    let view = rig.worker.inspect();
    assert_eq!(view.regions[&R1].leader_state, LeaderState::Follower);
    rig.finish();
}

#[test]
fn a_flush_result_arriving_after_a_truncate_is_ignored() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.write_batches(R1, 1);
    let flushed = rig.flush("flush", R1);
    // The job commits, but its result reaches the worker only after the
    // truncate (a full queue retried, say).
    rig.mailbox.hold_results.store(true, Ordering::Relaxed);
    rig.run_one_job();
    let truncate = rig.send("truncate", Request::Truncate { region_id: R1 });
    rig.expect_ok(truncate);
    rig.expect_err(flushed, ErrorKind::RegionTruncated);
    rig.write_batches(R1, 1);
    let mut before = rig.worker.inspect().regions[&R1].clone();
    assert_eq!(before.flush, running(0), "the fenced job still counts");

    rig.deliver_held_results();
    assert_eq!(rig.count("stale_flush_ignored"), 1);
    assert_eq!(rig.count("flush_applied"), 0);
    let after = rig.worker.inspect().regions[&R1].clone();
    assert_eq!(
        after.files, 0,
        "the truncated incarnation's SST is not added"
    );
    before.flush = None;
    assert_eq!(after, before, "only the fenced job's status is gone");
    rig.finish();
}

#[test]
fn sst_ids_differ_across_incarnations_so_no_flush_overwrites_another() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    for round in 0..2 {
        rig.write_batches(R1, 1);
        let flushed = rig.flush("flush", R1);
        rig.run_until_idle();
        rig.expect_ok(flushed);
        if round == 0 {
            let close = rig.send("close", Request::Close { region_id: R1 });
            rig.expect_ok(close);
            let open = rig.send("open", Request::Open { region_id: R1 });
            rig.expect_ok(open);
            let lead = rig.send(
                "lead",
                Request::SetRole {
                    region_id: R1,
                    role: RegionRole::Leader,
                },
            );
            rig.expect_ok(lead);
        }
    }
    let manifest = rig.manifest(R1);
    assert_eq!(manifest.files.len(), 2, "{:?}", manifest.files.keys());
    let rows: u64 = manifest.files.values().map(|file| file.num_rows).sum();
    assert_eq!(rows, 2 * BATCH_ROWS as u64);
    assert_eq!(rig.stored_paths(R1).len(), 2);
    rig.finish();
}

#[test]
fn reopen_reports_how_many_wal_entries_it_replayed() {
    let mut rig = Rig::new(ten_batch_buffer(), Bugs::NONE);
    rig.create(R1);
    rig.write_batches(R1, 3);
    let close = rig.send("close", Request::Close { region_id: R1 });
    rig.expect_ok(close);
    let open = rig.send("open", Request::Open { region_id: R1 });
    rig.expect_ok(open);
    let replayed: Vec<CoreEvent> = rig
        .events()
        .into_iter()
        .filter(|e| e.mark() == "wal_replayed")
        .collect();
    assert_eq!(
        replayed,
        vec![CoreEvent::WalReplayed {
            region_id: R1,
            entries: 3,
        }]
    );
    rig.finish();
}

// ---------------------------------------------------------------------------
// What the worker shows.
// ---------------------------------------------------------------------------

#[test]
fn the_worker_shows_its_id_regions_and_flush_statuses() {
    let config = WorkerConfig {
        worker_id: 7,
        ..Default::default()
    };
    let mut rig = Rig::with_config(ten_batch_buffer(), config);
    rig.create(R1);
    rig.create(R2);
    rig.write_batches(R1, 1);
    let flushed = rig.flush("flush", R1);
    assert_eq!(rig.worker.worker_id(), 7);
    let view = rig.worker.inspect();
    assert_eq!(view.worker_id, 7);
    assert!(
        view.orphan_statuses.is_empty(),
        "R1 flushes but is open: no orphan"
    );
    assert_eq!(
        rig.worker.regions().keys().copied().collect::<Vec<_>>(),
        vec![R1, R2]
    );
    let statuses: Vec<(RegionId, FlushStatusView)> = rig.worker.scheduler().statuses().collect();
    assert_eq!(statuses.len(), 1);
    assert_eq!((statuses[0].0, Some(statuses[0].1)), (R1, running(0)));
    rig.run_until_idle();
    rig.expect_ok(flushed);
    rig.finish();
}

// ---------------------------------------------------------------------------
// Planted bugs do what they say (and only when on).
// ---------------------------------------------------------------------------

#[cfg(feature = "planted-bugs")]
#[test]
fn flushed_entry_past_last_records_one_entry_too_many() {
    for (bugs, expected) in [
        (Bugs::NONE, 3),
        (Bugs::only(PlantedBug::FlushedEntryPastLast), 4),
    ] {
        let mut rig = Rig::new(ten_batch_buffer(), bugs);
        rig.create(R1);
        rig.write_batches(R1, 3);
        let flushed = rig.flush("flush", R1);
        rig.run_until_idle();
        rig.expect_ok(flushed);
        assert_eq!(rig.manifest(R1).flushed_entry_id, expected, "{bugs:?}");
        rig.finish();
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn wal_truncate_past_flushed_discards_the_next_entry() {
    for (bugs, expected) in [
        (Bugs::NONE, vec![4]),
        (Bugs::only(PlantedBug::WalTruncatePastFlushed), vec![]),
    ] {
        let mut rig = Rig::new(ten_batch_buffer(), bugs);
        rig.create(R1);
        rig.write_batches(R1, 3);
        let flushed = rig.flush("flush", R1);
        rig.write_batches(R1, 1);
        rig.run_until_idle();
        rig.expect_ok(flushed);
        let left: Vec<u64> = rig.wal.entries(R1).iter().map(|e| e.entry_id).collect();
        assert_eq!(left, expected, "{bugs:?}");
        rig.finish();
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn reply_before_commit_answers_a_manual_flush_while_its_job_waits() {
    for (bugs, answered_early) in [
        (Bugs::NONE, false),
        (Bugs::only(PlantedBug::ReplyBeforeCommit), true),
    ] {
        let mut rig = Rig::new(ten_batch_buffer(), bugs);
        rig.create(R1);
        rig.write_batches(R1, 1);
        let flushed = rig.flush("flush", R1);
        assert_eq!(rig.held_jobs(), 1);
        if answered_early {
            rig.expect_ok(flushed);
        } else {
            rig.ledger.assert_waiting(flushed);
        }
        rig.run_until_idle();
        rig.expect_ok(flushed);
        rig.finish();
    }
}
