//! Every transition of the flush scheduler, driven through the real
//! worker.
//!
//! A [`Harness`] is a [`LocalEngine`] (one real `RegionWorker` over the test
//! kit's ports) with a vocabulary for the scheduler's states: a region with
//! a flush running, tasks merged behind it, DDLs and writes pending behind
//! those; flush jobs wait until the test runs them, and what running one
//! did (committed, failed, which pending requests it released) is read
//! from the replies and the core's events. The scheduler's own state is
//! read through the worker (`status`, `check_invariants`), never set by
//! hand: every transition is the worker's. Every request's receiver goes
//! into a [`ReplyLedger`]; each test ends by checking that every request
//! got exactly one reply.
//!
//! For each place where the seed loses a request there are two tests: ours
//! answers it, and the matching planted bug (the seed's behaviour) loses it.

mod common;

use std::sync::atomic::Ordering;

use common::{ReplyLedger, ReplyState, Ticket, R1, R2};
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::ErrorKind;
use flush_core::events::CoreEvent;
use flush_core::flush::FlushStatusView;
use flush_core::ids::RegionId;
use flush_core::local::{LocalEngine, MemoryObjectStore};
use flush_core::memtable::RowValue;
use flush_core::request::{Output, Reply, Request};
use flush_core::worker::{RegionView, WorkerConfig};

/// What running one flush job did.
#[derive(Debug, PartialEq, Eq)]
enum Delivered {
    /// The flush committed; the labels of the pending DDLs and writes it
    /// released, in the order the worker ran them (DDLs first, then writes
    /// in arrival order). Empty when it released nothing (the region
    /// flushes again first, or nothing waited).
    Committed(Vec<String>),
    Failed,
}

/// A request queued behind a flush, for [`Delivered::Committed`].
struct Pending {
    label: String,
    ticket: Ticket,
    /// DDLs run before writes.
    is_ddl: bool,
}

/// One real worker with a big enough buffer that nothing stalls, and
/// neither periodic flushes nor engine-full flushes of its own.
struct Harness {
    engine: LocalEngine,
    ledger: ReplyLedger<Reply>,
    pending: Vec<Pending>,
    next_schema_version: u64,
    next_ts: i64,
    bugs: Bugs,
}

const BUFFER_BYTES: usize = 1 << 20;

fn running(epoch: u64) -> FlushStatusView {
    FlushStatusView {
        running_epoch: Some(epoch),
        pending_task: false,
        pending_ddls: 0,
        pending_writes: 0,
    }
}

impl Harness {
    fn new(bugs: Bugs) -> Self {
        let config = WorkerConfig {
            bugs,
            notify_retry_limit: 1,
            notify_retry_backoff_ms: 0,
            auto_flush_interval_ms: None,
            ..WorkerConfig::default()
        };
        let objects = std::sync::Arc::new(MemoryObjectStore::default());
        Harness {
            engine: LocalEngine::with_object_store(objects, BUFFER_BYTES, config),
            ledger: ReplyLedger::new(),
            pending: Vec::new(),
            next_schema_version: 1,
            next_ts: 0,
            bugs,
        }
    }

    fn submit(&mut self, label: &str, request: Request) -> Ticket {
        let receiver = self.engine.submit(request).expect("local ports never wait");
        self.ledger.track(label, receiver)
    }

    fn add_region(&mut self, region_id: RegionId) {
        let create = self.submit("create", Request::create(region_id));
        self.expect_ok(create);
    }

    fn rows(&mut self, count: usize) -> Vec<RowValue> {
        let rows = common::rows("host-1", count, self.next_ts);
        self.next_ts += count as i64;
        rows
    }

    /// A write of `count` rows the worker applies at once.
    fn write(&mut self, region_id: RegionId, count: usize) {
        let rows = self.rows(count);
        let write = self.submit(
            "write",
            Request::Write {
                region_id,
                rows: rows.into(),
            },
        );
        assert!(
            matches!(self.ledger.reply(write), Ok(Output::Written { .. })),
            "a write with no DDL pending is applied at once"
        );
    }

    /// A manual flush of `region_id`: its ticket, and `Ok` unless the
    /// worker answered it with an error at once.
    fn flush(&mut self, region_id: RegionId, label: &str) -> (Ticket, Result<(), ErrorKind>) {
        let ticket = self.submit(label, Request::Flush { region_id });
        let started = match self.ledger.state(ticket) {
            ReplyState::Answered(Err(error)) => Err(error.kind()),
            _ => Ok(()),
        };
        (ticket, started)
    }

    /// An alter that must wait behind the region's flush; it adds a field.
    fn pend_ddl(&mut self, region_id: RegionId, label: &str) -> Ticket {
        let schema_version = self.next_schema_version;
        self.next_schema_version += 1;
        let field = format!("f_{label}");
        let request = Request::Alter {
            region_id,
            schema_version,
            add_field: Some(field),
        };
        let ticket = self.submit(label, request);
        self.ledger.assert_waiting(ticket);
        self.pending.push(Pending {
            label: label.to_string(),
            ticket,
            is_ddl: true,
        });
        ticket
    }

    /// A write that must wait behind the region's pending DDLs.
    fn pend_write(&mut self, region_id: RegionId, label: &str) -> Ticket {
        let rows = self.rows(1);
        let ticket = self.submit(
            label,
            Request::Write {
                region_id,
                rows: rows.into(),
            },
        );
        self.ledger.assert_waiting(ticket);
        self.pending.push(Pending {
            label: label.to_string(),
            ticket,
            is_ddl: false,
        });
        ticket
    }

    /// A region with a running flush `f1` and, behind it, new data, a merged
    /// flush `f2`, an alter `a1` and a write `w1`.
    fn busy_region(&mut self, region_id: RegionId) -> [Ticket; 4] {
        self.write(region_id, 10);
        let (f1, started) = self.flush(region_id, "f1");
        assert_eq!(started, Ok(()));
        self.write(region_id, 5);
        let (f2, merged) = self.flush(region_id, "f2");
        assert_eq!(merged, Ok(()));
        let a1 = self.pend_ddl(region_id, "a1");
        let w1 = self.pend_write(region_id, "w1");
        assert_eq!(
            self.status(region_id),
            Some(FlushStatusView {
                running_epoch: Some(0),
                pending_task: true,
                pending_ddls: 1,
                pending_writes: 1,
            })
        );
        [f1, f2, a1, w1]
    }

    fn status(&self, region_id: RegionId) -> Option<FlushStatusView> {
        self.engine.worker().scheduler().status(region_id)
    }

    fn jobs(&self) -> usize {
        self.engine.ports().jobs.len()
    }

    fn count(&self, mark: &str) -> usize {
        self.engine.ports().events.count(mark)
    }

    fn used_bytes(&self) -> usize {
        self.engine.buffer().used_bytes()
    }

    fn active_bytes(&self) -> usize {
        self.engine.buffer().active_bytes()
    }

    fn flushes_running(&self) -> usize {
        self.engine.buffer().flushes_running()
    }

    fn drop_region(&mut self, region_id: RegionId) {
        let drop = self.submit("drop", Request::Drop { region_id });
        self.expect_ok(drop);
    }

    /// After a flush of `region_id` failed: a new one commits all `rows`.
    fn flush_again_commits(mut self, region_id: RegionId, rows: u64) {
        let (retry, _) = self.flush(region_id, "retry");
        assert_eq!(self.run_job(), Delivered::Committed(vec![]));
        self.expect_ok(retry);
        assert_eq!(self.manifest_rows(region_id), rows);
        self.finish();
    }

    /// Runs the oldest held job; the worker handles what it sends back.
    fn run_job(&mut self) -> Delivered {
        let (committed, failed) = (self.count("flush_committed"), self.count("flush_failed"));
        assert!(
            self.engine.run_one_job().expect("local ports never wait"),
            "a flush job is queued"
        );
        if self.bugs.is_empty() {
            self.assert_invariants();
        }
        match (
            self.count("flush_committed") - committed,
            self.count("flush_failed") - failed,
        ) {
            (1, 0) => Delivered::Committed(self.released()),
            (0, 1) => Delivered::Failed,
            other => panic!("one job ends once, committed or failed; saw {other:?}"),
        }
    }

    /// The pending requests answered Ok since the last look, in the order
    /// the worker ran them: DDLs (arrival order), then writes (by the WAL
    /// entry each got). Pending requests answered with an error are left
    /// for the test to check.
    fn released(&mut self) -> Vec<String> {
        let mut ddls = Vec::new();
        let mut writes = Vec::new();
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            match self.ledger.state(pending.ticket) {
                ReplyState::Answered(Ok(Output::Written { entry_id, .. })) => {
                    writes.push((*entry_id, pending.label));
                }
                ReplyState::Answered(Ok(_)) if pending.is_ddl => ddls.push(pending.label),
                ReplyState::Answered(_) => {}
                ReplyState::Waiting | ReplyState::Lost => still.push(pending),
            }
        }
        self.pending = still;
        writes.sort();
        ddls.into_iter()
            .chain(writes.into_iter().map(|(_, label)| label))
            .collect()
    }

    fn assert_invariants(&self) {
        let invariants = self.engine.worker().scheduler().check_invariants();
        invariants.expect("scheduler invariants hold");
    }

    fn expect_ok(&mut self, ticket: Ticket) {
        self.ledger.expect_ok(ticket);
    }

    fn expect_err(&mut self, tickets: &[Ticket], kind: ErrorKind) {
        for ticket in tickets {
            self.ledger.expect_err(*ticket, kind);
        }
    }

    fn view(&self, region_id: RegionId) -> RegionView {
        let view = self.engine.worker().inspect();
        view.regions
            .get(&region_id)
            .cloned()
            .unwrap_or_else(|| panic!("{region_id} is open"))
    }

    fn memtable_rows(&self, region_id: RegionId) -> usize {
        self.view(region_id).memtable_rows
    }

    fn manifest_rows(&self, region_id: RegionId) -> u64 {
        let manifests = &self.engine.ports().manifests;
        let manifest = manifests.get(region_id).expect("the region exists");
        manifest.files.values().map(|f| f.num_rows).sum()
    }

    /// Every request got exactly one reply, and the buffer counts exactly
    /// the memtables the regions hold.
    fn finish(self) {
        self.finish_expecting_lost(&[]);
    }

    fn finish_expecting_lost(self, lost: &[Ticket]) {
        assert_eq!(self.jobs(), 0, "a job was left unrun");
        self.assert_invariants();
        let view = self.engine.worker().inspect();
        let held: usize = view
            .regions
            .values()
            .map(|r| r.mutable_bytes + r.immutable_bytes)
            .sum();
        assert_eq!(self.used_bytes(), held);
        assert_eq!(self.flushes_running(), 0);
        assert_eq!(self.engine.buffer().accounting_violations(), 0);
        self.ledger.assert_exactly_once_except(lost);
    }
}

#[test]
fn schedule_on_an_empty_region_answers_ok_at_once() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Ok(()));
    h.expect_ok(flush);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.jobs(), 0);
    h.finish();
}

#[test]
fn schedule_freezes_submits_a_job_and_marks_the_region_flushing() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let bytes = h.used_bytes();
    assert_eq!(h.active_bytes(), bytes);

    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Ok(()));
    assert_eq!(h.status(R1), Some(running(0)));
    assert_eq!(h.jobs(), 1);
    let view = h.view(R1);
    assert_eq!((view.mutable_bytes, view.immutable_bytes), (0, bytes));
    assert_eq!(
        (h.used_bytes(), h.active_bytes(), h.flushes_running()),
        (bytes, 0, 1),
        "frozen memory is scheduled to be freed, not freed"
    );
    h.ledger.assert_waiting(flush);

    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.expect_ok(flush);
    assert_eq!(h.status(R1), None);
    assert_eq!((h.used_bytes(), h.active_bytes()), (0, 0));
    assert_eq!(h.manifest_rows(R1), 10);
    h.finish();
}

#[test]
fn later_schedules_merge_into_one_pending_task_and_all_succeed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let (f1, _) = h.flush(R1, "f1");
    let (f2, second) = h.flush(R1, "f2");
    let (f3, third) = h.flush(R1, "f3");
    assert_eq!((second, third), (Ok(()), Ok(())));
    assert_eq!(h.jobs(), 1, "merged tasks submit no job");
    assert_eq!(h.count("flush_merged"), 2);
    assert!(h.status(R1).is_some_and(|s| s.pending_task));
    for ticket in [f1, f2, f3] {
        h.ledger.assert_waiting(ticket);
    }

    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    for ticket in [f1, f2, f3] {
        h.expect_ok(ticket);
    }
    assert_eq!(h.jobs(), 0, "nothing was left to flush");
    assert_eq!(h.status(R1), None);
    h.finish();
}

#[test]
fn success_without_pending_task_removes_status_and_releases_ddls_then_writes_in_order() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let (f1, _) = h.flush(R1, "f1");
    h.pend_ddl(R1, "a1");
    h.pend_write(R1, "w1");
    h.pend_ddl(R1, "a2");
    h.pend_write(R1, "w2");
    assert!(h.engine.worker().scheduler().has_pending_ddls(R1));

    let released = h.run_job();
    assert_eq!(
        released,
        Delivered::Committed(vec![
            "a1".to_string(),
            "a2".to_string(),
            "w1".to_string(),
            "w2".to_string()
        ])
    );
    h.expect_ok(f1);
    assert_eq!(h.status(R1), None);
    assert!(!h.engine.worker().scheduler().has_pending_ddls(R1));
    // The alters ran first: had a write run before one, that alter would
    // have found rows in the memtable and waited for another flush.
    assert_eq!(h.jobs(), 0, "no alter waited for a flush of w1 or w2");
    assert_eq!(h.memtable_rows(R1), 2, "both writes applied");
    h.finish();
}

#[test]
fn success_with_pending_task_and_new_data_flushes_again_before_releasing() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let (f1, _) = h.flush(R1, "f1");
    h.write(R1, 5);
    let (f2, _) = h.flush(R1, "f2");
    let a1 = h.pend_ddl(R1, "a1");

    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.expect_ok(f1);
    h.ledger.assert_waiting(f2);
    h.ledger.assert_waiting(a1);
    assert_eq!(h.jobs(), 1, "the region flushes again");
    assert_eq!(
        h.status(R1),
        Some(FlushStatusView {
            pending_ddls: 1,
            ..running(0)
        })
    );
    assert_eq!(h.manifest_rows(R1), 10);

    assert_eq!(h.run_job(), Delivered::Committed(vec!["a1".to_string()]));
    h.expect_ok(f2);
    assert_eq!(h.manifest_rows(R1), 15);
    assert_eq!(h.memtable_rows(R1), 0);
    h.finish();
}

#[test]
fn success_with_pending_task_and_no_data_answers_it_ok_and_releases() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let (f1, _) = h.flush(R1, "f1");
    let (f2, _) = h.flush(R1, "f2");
    h.pend_ddl(R1, "a1");
    h.pend_write(R1, "w1");

    assert_eq!(
        h.run_job(),
        Delivered::Committed(vec!["a1".to_string(), "w1".to_string()])
    );
    h.expect_ok(f1);
    h.expect_ok(f2);
    assert_eq!(h.jobs(), 0, "no second flush of an empty region");
    assert_eq!(h.status(R1), None);
    h.finish();
}

#[test]
fn failure_fails_every_waiter_with_flush_failed_and_keeps_the_data() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    h.engine
        .ports()
        .manifests
        .fail_next
        .store(1, Ordering::Relaxed);

    assert_eq!(h.run_job(), Delivered::Failed);
    h.expect_err(&waiters, ErrorKind::FlushFailed);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.jobs(), 0, "a failed flush is not retried by itself");
    assert_eq!(
        h.memtable_rows(R1),
        15,
        "nothing was committed, nothing dropped"
    );
    assert_eq!(h.manifest_rows(R1), 0);

    let (f3, _) = h.flush(R1, "f3");
    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.expect_ok(f3);
    assert_eq!(h.manifest_rows(R1), 15);
    assert_eq!(h.memtable_rows(R1), 0);
    h.finish();
}

#[test]
fn dropped_region_fails_pending_work_with_region_dropped() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    h.drop_region(R1);
    h.expect_err(&waiters, ErrorKind::RegionDropped);
    assert_eq!(h.status(R1), None);

    // The worker forgets the region; its orphaned job still ends cleanly
    // (its commit finds the manifest dropped) and frees the memtable it
    // held.
    assert!(h.used_bytes() > 0, "the job still holds its memtable");
    assert_eq!(h.run_job(), Delivered::Failed);
    assert_eq!(h.used_bytes(), 0);
    h.finish();
}

#[test]
fn closed_region_fails_pending_work_with_region_closed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    let close = h.submit("close", Request::Close { region_id: R1 });
    h.expect_ok(close);
    h.expect_err(&waiters, ErrorKind::RegionClosed);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.finish();
}

#[test]
fn truncated_region_fails_pending_work_and_keeps_its_job_fenced() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    let truncate = h.submit("truncate", Request::Truncate { region_id: R1 });
    h.expect_ok(truncate);
    h.expect_err(&waiters, ErrorKind::RegionTruncated);
    assert_eq!(
        h.status(R1),
        Some(running(0)),
        "the running job is remembered so no second job of the region runs beside it"
    );

    // The worker truncated the region: a new epoch, empty memtables.
    assert_eq!((h.view(R1).epoch, h.memtable_rows(R1)), (1, 0));

    // A flush of the new incarnation waits behind the old job...
    h.write(R1, 3);
    let (f3, started) = h.flush(R1, "f3");
    assert_eq!(started, Ok(()));
    assert_eq!(h.jobs(), 1);
    assert!(h.status(R1).is_some_and(|s| s.pending_task));

    // ...whose commit is fenced off by the epoch. That failure belongs to
    // the old incarnation: f3 is flushed next, not failed with it.
    assert_eq!(h.run_job(), Delivered::Failed);
    h.ledger.assert_waiting(f3);
    assert_eq!(h.status(R1), Some(running(1)));
    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.expect_ok(f3);
    assert_eq!(h.manifest_rows(R1), 3);
    h.finish();
}

#[test]
fn freeze_failure_answers_the_task_with_freeze_failed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let bytes = h.used_bytes();
    h.engine
        .ports()
        .faults
        .fail_freezes
        .store(1, Ordering::Relaxed);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Err(ErrorKind::FreezeFailed));
    h.expect_err(&[flush], ErrorKind::FreezeFailed);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.jobs(), 0);
    assert_eq!(
        (h.used_bytes(), h.active_bytes()),
        (bytes, bytes),
        "nothing was frozen"
    );
    h.finish();
}

#[test]
fn job_rejection_answers_the_task_with_job_rejected() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    h.engine
        .ports()
        .jobs
        .reject_next
        .store(1, Ordering::Relaxed);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Err(ErrorKind::JobRejected));
    h.expect_err(&[flush], ErrorKind::JobRejected);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.flushes_running(), 0);
    assert_eq!(h.memtable_rows(R1), 10, "the rows stay, frozen");
    assert_eq!(
        h.count("flush_failed"),
        0,
        "a rejected job is not reported lost as well"
    );

    h.flush_again_commits(R1, 10);
}

#[test]
fn an_accepted_job_dropped_unrun_reports_itself_failed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Ok(()));
    assert_eq!(h.flushes_running(), 1);
    // The runtime drops the job unrun; its end guard reports it lost, and
    // the worker handles that report.
    assert!(h.engine.lose_one_job().expect("local ports never wait"));
    let failures: Vec<CoreEvent> = h
        .engine
        .ports()
        .events
        .events()
        .into_iter()
        .filter(|e| e.mark() == "flush_failed")
        .collect();
    assert!(
        matches!(&failures[..], [CoreEvent::FlushFailed { region_id: R1, reason, .. }]
            if reason.contains("dropped before it finished")),
        "the dropped job reported itself lost: {failures:?}"
    );
    assert_eq!(h.flushes_running(), 0, "the lost flush ended");
    h.expect_err(&[flush], ErrorKind::FlushFailed);
    assert_eq!(h.status(R1), None, "the region is not left flushing");

    h.flush_again_commits(R1, 10);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_rejected_senders_loses_the_rejected_task() {
    let mut h = Harness::new(Bugs::only(PlantedBug::SeedFaithfulRejectedSenders));
    h.add_region(R1);
    h.write(R1, 10);
    h.engine
        .ports()
        .jobs
        .reject_next
        .store(1, Ordering::Relaxed);
    let (flush, _) = h.flush(R1, "flush");
    // The job was rejected, and the flush request went with it, unanswered.
    assert_eq!(h.count("job_rejected"), 1);
    h.ledger.assert_lost(flush);
    h.finish_expecting_lost(&[flush]);
}

/// A busy region whose flush ends while the next start is made to fail:
/// the pending task, DDL and write are answered with `kind`.
fn failed_restart(
    bugs: Bugs,
    fail: impl FnOnce(&Harness),
    kind: ErrorKind,
) -> (Harness, [Ticket; 3]) {
    let mut h = Harness::new(bugs);
    h.add_region(R1);
    let [f1, f2, a1, w1] = h.busy_region(R1);
    fail(&h);
    assert_eq!(h.run_job(), Delivered::Committed(vec![]));
    h.expect_ok(f1);
    assert_eq!(h.status(R1), None, "the region's status is gone");
    assert_eq!(h.jobs(), 0);
    assert_eq!(h.count(kind_mark(kind)), 1);
    (h, [f2, a1, w1])
}

fn kind_mark(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::FreezeFailed => "freeze_failed",
        ErrorKind::JobRejected => "job_rejected",
        other => panic!("no start failure of kind {other:?}"),
    }
}

fn fail_freeze(h: &Harness) {
    h.engine
        .ports()
        .faults
        .fail_freezes
        .store(1, Ordering::Relaxed);
}

fn reject_job(h: &Harness) {
    h.engine
        .ports()
        .jobs
        .reject_next
        .store(1, Ordering::Relaxed);
}

#[test]
fn freeze_failure_on_restart_fails_pending_ddls_and_writes_with_freeze_failed() {
    let (mut h, waiters) = failed_restart(Bugs::NONE, fail_freeze, ErrorKind::FreezeFailed);
    h.expect_err(&waiters, ErrorKind::FreezeFailed);
    h.finish();
}

#[test]
fn job_rejection_on_restart_fails_pending_ddls_and_writes_with_job_rejected() {
    let (mut h, waiters) = failed_restart(Bugs::NONE, reject_job, ErrorKind::JobRejected);
    h.expect_err(&waiters, ErrorKind::JobRejected);
    h.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_status_removed_loses_pending_ddls_and_writes_on_freeze_failure() {
    let bugs = Bugs::only(PlantedBug::SeedFaithfulStatusRemoved);
    let (mut h, [f2, a1, w1]) = failed_restart(bugs, fail_freeze, ErrorKind::FreezeFailed);
    h.expect_err(&[f2], ErrorKind::FreezeFailed);
    h.ledger.assert_lost(a1);
    h.ledger.assert_lost(w1);
    h.finish_expecting_lost(&[a1, w1]);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_status_removed_loses_pending_ddls_and_writes_on_rejection() {
    let bugs = Bugs::only(PlantedBug::SeedFaithfulStatusRemoved);
    let (mut h, [f2, a1, w1]) = failed_restart(bugs, reject_job, ErrorKind::JobRejected);
    h.expect_err(&[f2], ErrorKind::JobRejected);
    h.finish_expecting_lost(&[a1, w1]);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_rejected_senders_loses_the_pending_task_on_rejected_restart() {
    let bugs = Bugs::only(PlantedBug::SeedFaithfulRejectedSenders);
    let (mut h, [f2, a1, w1]) = failed_restart(bugs, reject_job, ErrorKind::JobRejected);
    h.expect_err(&[a1, w1], ErrorKind::JobRejected);
    h.finish_expecting_lost(&[f2]);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn drop_pending_writes_on_failure_loses_the_pending_writes() {
    let mut h = Harness::new(Bugs::only(PlantedBug::DropPendingWritesOnFailure));
    h.add_region(R1);
    let [f1, f2, a1, w1] = h.busy_region(R1);
    h.engine
        .ports()
        .manifests
        .fail_next
        .store(1, Ordering::Relaxed);
    assert_eq!(h.run_job(), Delivered::Failed);
    h.expect_err(&[f1, f2, a1], ErrorKind::FlushFailed);
    h.finish_expecting_lost(&[w1]);
}

/// Two regions, each with a running flush and a pending one with new data;
/// R2's job was submitted first, so it ends first.
fn two_busy_regions(bugs: Bugs) -> (Harness, [Ticket; 4]) {
    let mut h = Harness::new(bugs);
    h.add_region(R1);
    h.add_region(R2);
    h.write(R2, 10);
    let (r2_first, _) = h.flush(R2, "r2 first");
    h.write(R1, 10);
    let (r1_first, _) = h.flush(R1, "r1 first");
    h.write(R1, 5);
    h.write(R2, 5);
    let (r1_second, _) = h.flush(R1, "r1 second");
    let (r2_second, _) = h.flush(R2, "r2 second");
    assert_eq!(h.jobs(), 2);

    assert_eq!(h.run_job(), Delivered::Committed(vec![]), "R2's first job");
    h.expect_ok(r2_first);
    (h, [r1_first, r1_second, r2_first, r2_second])
}

#[test]
fn schedule_next_flush_after_success_starts_the_waiting_region() {
    let (mut h, [r1_first, r1_second, _, r2_second]) = two_busy_regions(Bugs::NONE);
    assert_eq!(h.status(R2), Some(running(0)), "R2 starts again at once");
    assert_eq!(h.jobs(), 2, "R1's job and R2's second job");
    h.ledger.assert_waiting(r2_second);

    assert_eq!(h.run_job(), Delivered::Committed(vec![]), "R1's first job");
    h.expect_ok(r1_first);
    assert_eq!(h.run_job(), Delivered::Committed(vec![]), "R2's second");
    h.expect_ok(r2_second);
    assert_eq!(h.run_job(), Delivered::Committed(vec![]), "R1's second");
    h.expect_ok(r1_second);
    assert_eq!((h.manifest_rows(R1), h.manifest_rows(R2)), (15, 15));
    h.finish();
}

#[cfg(feature = "planted-bugs")]
#[test]
fn seed_faithful_schedule_next_leaves_a_waiting_region_without_a_job() {
    let bugs = Bugs::only(PlantedBug::SeedFaithfulScheduleNext);
    let (mut h, [r1_first, r1_second, _, r2_second]) = two_busy_regions(bugs);
    // The seed looks at the first region with a pending task, R1, which is
    // still flushing, and starts nothing: R2 waits with no job to end it.
    assert_eq!(
        h.status(R2),
        Some(FlushStatusView {
            running_epoch: None,
            pending_task: true,
            pending_ddls: 0,
            pending_writes: 0,
        })
    );
    assert_eq!(h.jobs(), 1, "only R1's job exists");
    let broken = h
        .engine
        .worker()
        .scheduler()
        .check_invariants()
        .unwrap_err();
    assert!(broken.contains("no running job"), "{broken}");

    // R1 is dropped; its orphaned job fails (the manifest is dropped) and
    // schedules nothing.
    h.drop_region(R1);
    h.expect_err(&[r1_first, r1_second], ErrorKind::RegionDropped);
    assert_eq!(h.run_job(), Delivered::Failed);

    // Quiescent: no job anywhere, and R2's flush is never answered.
    assert_eq!(h.jobs(), 0);
    h.ledger.assert_waiting(r2_second);
    assert_eq!(h.ledger.unanswered(), vec!["r2 second".to_string()]);
}

#[test]
fn a_dropped_region_does_not_hold_up_a_waiting_one() {
    let (mut h, [r1_first, r1_second, _, r2_second]) = two_busy_regions(Bugs::NONE);
    h.drop_region(R1);
    h.expect_err(&[r1_first, r1_second], ErrorKind::RegionDropped);
    assert_eq!(h.run_job(), Delivered::Failed, "R1's orphaned job");
    assert_eq!(h.run_job(), Delivered::Committed(vec![]), "R2's second");
    h.expect_ok(r2_second);
    assert_eq!(h.manifest_rows(R2), 15);
    h.finish();
}

/// Dropping the worker (its scheduler with it) answers everything the
/// scheduler held, while the jobs are still queued.
#[test]
fn dropping_the_worker_answers_every_waiter_region_closed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.add_region(R2);
    let mut waiters = h.busy_region(R1).to_vec();
    waiters.extend(h.busy_region(R2));
    assert_eq!(h.jobs(), 2);

    let Harness {
        engine, mut ledger, ..
    } = h;
    drop(engine);
    for ticket in &waiters {
        ledger.expect_err(*ticket, ErrorKind::RegionClosed);
    }
    ledger.assert_exactly_once();
}
