//! Unit tests of the worker's own machinery, on the test kit's ports
//! (`crate::local`): the requeue loop, delivery of flush results to a full
//! or stopped worker, shutdown, and dropping a worker. Behaviour through
//! the engine lives in `core/tests/` (one file per behaviour: memory and
//! stalls, requests behind a flush, region lifecycle, ...).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{RegionWorker, WorkerConfig};
use crate::buffer::WriteBufferManager;
#[cfg(feature = "planted-bugs")]
use crate::bugs::{Bugs, PlantedBug};
use crate::durable::objects::FileObjectStore;
use crate::error::ErrorKind;
use crate::fs::StdFs;
use crate::ids::{RegionId, RequestId};
use crate::local::ledger::{ReplyLedger, Ticket};
use crate::local::{
    block_on, Inbox, ManualClock, MemoryManifestStore, MemoryWal, QueuedJobs, RecordedEvents,
};
use crate::ports::{NoFaults, Ports};
use crate::request::{ClientRequest, Reply, Request, Responder, WorkerRequest};
use crate::row::RowValue;

const R1: RegionId = RegionId(1);

/// One worker over test ports, and the ledger of its requests.
struct Rig {
    worker: RegionWorker,
    jobs: Arc<QueuedJobs>,
    inbox: Arc<Inbox>,
    events: Arc<RecordedEvents>,
    buffer: Arc<WriteBufferManager>,
    ledger: ReplyLedger<Reply>,
    next_request_id: u64,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(buffer_bytes: usize, config: WorkerConfig) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let jobs = Arc::new(QueuedJobs::default());
        let inbox = Arc::new(Inbox::default());
        let events = Arc::new(RecordedEvents::default());
        let buffer = Arc::new(WriteBufferManager::new(buffer_bytes));
        let ports = Ports {
            jobs: jobs.clone(),
            objects: Arc::new(FileObjectStore::new(Arc::new(
                StdFs::open(dir.path()).expect("a file system over a temporary directory"),
            ))),
            manifests: Arc::new(MemoryManifestStore::default()),
            wal: Arc::new(MemoryWal::default()),
            clock: Arc::new(ManualClock::default()),
            faults: Arc::new(NoFaults),
            events: events.clone(),
        };
        let worker = RegionWorker::new(config, ports, buffer.clone(), inbox.clone());
        let mut rig = Rig {
            worker,
            jobs,
            inbox,
            events,
            buffer,
            ledger: ReplyLedger::new(),
            next_request_id: 1,
            _dir: dir,
        };
        let create = rig.send("create", Request::create(R1));
        rig.expect_ok(create);
        rig
    }

    /// Hands one request to the worker and checks what every `handle`
    /// must leave behind: nothing requeued, scheduler invariants intact.
    fn handle(&mut self, request: WorkerRequest) {
        block_on(self.worker.handle(request)).expect("test ports never wait");
        assert!(
            self.worker.requeued.is_empty(),
            "released requests run in the same handle"
        );
        assert_eq!(self.worker.scheduler.check_invariants(), Ok(()));
    }

    fn send(&mut self, label: &str, request: Request) -> Ticket {
        let (responder, receiver) = Responder::new(RequestId(self.next_request_id));
        self.next_request_id += 1;
        let ticket = self.ledger.track(label, receiver);
        self.handle(WorkerRequest::Client(ClientRequest { request, responder }));
        ticket
    }

    fn write(&mut self, label: &str, rows: usize) -> Ticket {
        let rows = (0..rows)
            .map(|index| RowValue {
                series: "cpu".into(),
                ts: index as i64,
                value: 1.0,
                fields: Vec::new(),
            })
            .collect();
        self.send(
            label,
            Request::Write {
                region_id: R1,
                rows,
            },
        )
    }

    /// Runs every held job, then hands the worker what they sent back.
    fn run_jobs(&mut self) {
        let jobs: Vec<_> = std::iter::from_fn(|| self.jobs.pop()).collect();
        for job in jobs {
            block_on(job).expect("test ports never wait");
        }
        while let Some(request) = self.inbox.pop() {
            self.handle(request);
        }
    }

    fn expect_ok(&mut self, ticket: Ticket) {
        self.ledger.expect_ok(ticket);
    }

    fn expect_err(&mut self, ticket: Ticket, kind: ErrorKind) {
        self.ledger.expect_err(ticket, kind);
    }
}

#[test]
fn requests_released_by_a_flush_run_within_the_same_handle() {
    let mut rig = Rig::new(1 << 20, WorkerConfig::default());
    rig.write("w1", 10);
    let flush = rig.send("flush", Request::Flush { region_id: R1 });
    rig.write("w2", 5);
    let alter = rig.send(
        "alter",
        Request::Alter {
            region_id: R1,
            schema_version: 2,
            add_field: None,
        },
    );
    let behind = [rig.write("w3", 1), rig.write("w4", 2)];
    rig.ledger.assert_waiting(alter);

    // Two flushes (w1, then w2 for the alter); the last result releases the
    // alter and both writes, which `handle` runs before returning.
    rig.run_jobs();
    rig.run_jobs();
    rig.expect_ok(flush);
    rig.expect_ok(alter);
    for ticket in behind {
        rig.expect_ok(ticket);
    }
    assert_eq!(rig.worker.regions[&R1].version.schema().version, 2);
    assert_eq!(rig.worker.scheduler.status(R1), None);
    rig.ledger.assert_exactly_once();
}

/// A manual flush of ten rows whose result meets a worker queue that
/// refuses the next `refusals` deliveries; the flush job has run.
fn flush_behind_a_full_queue(config: WorkerConfig, refusals: usize) -> (Rig, Ticket) {
    let mut rig = Rig::new(1 << 20, config);
    rig.write("w1", 10);
    let flush = rig.send("flush", Request::Flush { region_id: R1 });
    rig.inbox.full_next.store(refusals, Ordering::Relaxed);
    rig.run_jobs();
    (rig, flush)
}

#[test]
fn a_flush_result_waits_out_a_full_worker_queue() {
    let (mut rig, flush) = flush_behind_a_full_queue(WorkerConfig::default(), 3);
    assert_eq!(rig.events.count("notify_retried"), 3);
    assert_eq!(rig.events.count("notify_gave_up"), 0);
    rig.expect_ok(flush);
    assert_eq!(rig.buffer.used_bytes(), 0);
    rig.ledger.assert_exactly_once();
}

/// A committed flush result is never dropped for a full queue, however
/// long it stays full: dropping it would leave the flushed rows in the
/// memtable as well as in the SST, and the flush waiter unanswered.
#[test]
fn a_flush_result_outlasts_a_full_queue_past_the_retry_limit() {
    let config = WorkerConfig {
        notify_retry_limit: 2,
        ..Default::default()
    };
    let (mut rig, flush) = flush_behind_a_full_queue(config, 20);
    assert_eq!(rig.events.count("notify_retried"), 20);
    assert_eq!(rig.events.count("notify_gave_up"), 0);
    rig.expect_ok(flush);
    assert_eq!(rig.worker.regions[&R1].version.memtable_rows().count(), 0);
    assert_eq!(rig.worker.regions[&R1].version.files().len(), 1);
    assert_eq!((rig.buffer.used_bytes(), rig.buffer.active_bytes()), (0, 0));
    rig.ledger.assert_exactly_once();
}

#[cfg(feature = "planted-bugs")]
/// The planted bug gives up at the retry limit, as the core once did: the
/// committed result is dropped and the flush waiter is left waiting.
#[test]
fn drop_result_on_full_queue_gives_up_at_the_retry_limit() {
    let config = WorkerConfig {
        notify_retry_limit: 2,
        bugs: Bugs::only(PlantedBug::DropResultOnFullQueue),
        ..Default::default()
    };
    let (mut rig, flush) = flush_behind_a_full_queue(config, 20);
    assert_eq!(rig.events.count("notify_retried"), 2);
    assert_eq!(rig.events.count("notify_gave_up"), 1);
    rig.ledger.assert_waiting(flush);
    assert_eq!(rig.worker.regions[&R1].version.memtable_rows().count(), 10);
}

/// A worker holding a flush waiter, a stalled write and an alter queued
/// behind the flush.
fn worker_with_waiters() -> (Rig, [Ticket; 3]) {
    let row_bytes = crate::memtable::ROW_OVERHEAD_BYTES + "cpu".len();
    let mut rig = Rig::new(10 * row_bytes, WorkerConfig::default());
    rig.write("fills the buffer", 10);
    // The engine-full rule already froze the region for a flush.
    assert!(rig.worker.scheduler.is_flush_requested(R1));
    let stalled = rig.write("stalled", 1);
    let alter = rig.send(
        "alter",
        Request::Alter {
            region_id: R1,
            schema_version: 2,
            add_field: None,
        },
    );
    let flush = rig.send("flush", Request::Flush { region_id: R1 });
    assert_eq!(rig.worker.stalled_writes(), 1);
    assert_eq!(rig.buffer.stalled_writes(), 1);
    for ticket in [stalled, alter, flush] {
        rig.ledger.assert_waiting(ticket);
    }
    (rig, [stalled, alter, flush])
}

#[test]
fn shutdown_answers_every_waiter_and_a_late_result_finds_the_worker_closed() {
    let (mut rig, waiters) = worker_with_waiters();
    rig.worker.shutdown();
    for ticket in waiters {
        rig.expect_err(ticket, ErrorKind::RegionClosed);
    }
    assert_eq!(rig.buffer.stalled_writes(), 0);
    assert!(rig.worker.regions.is_empty());
    // The job still holds the frozen memtable until it ends.
    assert!(rig.buffer.used_bytes() > 0);

    rig.inbox.closed.store(true, Ordering::Relaxed);
    rig.run_jobs();
    assert_eq!(rig.events.count("notify_gave_up"), 1);
    assert_eq!((rig.buffer.used_bytes(), rig.buffer.active_bytes()), (0, 0));
    assert_eq!(rig.buffer.flushes_running(), 0);
    assert_eq!(rig.buffer.accounting_violations(), 0);
    rig.ledger.assert_exactly_once();
}

#[test]
fn dropping_a_worker_answers_every_waiter_region_closed() {
    let (rig, waiters) = worker_with_waiters();
    let Rig {
        worker,
        mut ledger,
        buffer,
        ..
    } = rig;
    drop(worker);
    for ticket in waiters {
        match ledger.reply(ticket) {
            Err(error) => assert_eq!(error.kind(), ErrorKind::RegionClosed, "{error}"),
            Ok(output) => panic!("expected RegionClosed, got {output:?}"),
        }
    }
    assert_eq!(buffer.stalled_writes(), 0);
    ledger.assert_exactly_once();
}
