//! Every transition of the flush scheduler, driven directly.
//!
//! A [`Harness`] plays the worker around one [`FlushScheduler`]: it holds
//! the regions, keeps submitted flush jobs until the test runs them, applies
//! committed edits and hands results back to the scheduler the way
//! `worker/handle_flush.rs` does. Every request's receiver goes into a
//! [`ReplyLedger`]; each test ends by checking that every request got
//! exactly one reply.
//!
//! For each place where the seed loses a request there are two tests: ours
//! answers it, and the matching planted bug (the seed's behaviour) loses it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{ReplyLedger, Ticket, R1, R2};
use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
#[cfg(feature = "planted-bugs")]
use flush_core::bugs::PlantedBug;
use flush_core::error::{ErrorKind, FlushError};
use flush_core::flush::{FlushEnv, FlushScheduler, FlushStatusView, FlushTask};
use flush_core::ids::{RegionId, RequestId};
use flush_core::local::{
    block_on, CountedFaults, Inbox, LocalObjectStore, ManualClock, MemoryManifestStore, MemoryWal,
    QueuedJobs, RecordedEvents,
};
use flush_core::manifest::{ManifestChange, RegionManifest};
use flush_core::memtable::WalEntry;
use flush_core::ports::{ManifestStore, Ports};
use flush_core::region::Region;
use flush_core::request::{
    BackgroundNotify, ClientRequest, FlushReason, Output, Reply, Request, Responder, WorkerRequest,
};

/// What handing a job's result to the scheduler did.
#[derive(Debug, PartialEq, Eq)]
enum Delivered {
    /// The flush committed. `Some`: the scheduler released the region's
    /// pending requests (their labels, in the order it released them);
    /// `None`: it kept them (the region flushes again first).
    Finished(Option<Vec<String>>),
    Failed,
}

/// The scheduler with a minimal worker around it.
struct Harness {
    scheduler: FlushScheduler,
    regions: BTreeMap<RegionId, Region>,
    env: FlushEnv,
    jobs: Arc<QueuedJobs>,
    outbox: Arc<Inbox>,
    manifests: Arc<MemoryManifestStore>,
    faults: Arc<CountedFaults>,
    events: Arc<RecordedEvents>,
    buffer: Arc<WriteBufferManager>,
    ledger: ReplyLedger<Reply>,
    labels: BTreeMap<RequestId, String>,
    bugs: Bugs,
    _dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().expect("a temporary directory");
        let jobs = Arc::new(QueuedJobs::default());
        let outbox = Arc::new(Inbox::default());
        let manifests = Arc::new(MemoryManifestStore::default());
        let faults = Arc::new(CountedFaults::default());
        let events = Arc::new(RecordedEvents::default());
        let buffer = Arc::new(WriteBufferManager::new(BUFFER_BYTES));
        let ports = Ports {
            jobs: jobs.clone(),
            objects: Arc::new(LocalObjectStore::new(dir.path())),
            manifests: manifests.clone(),
            wal: Arc::new(MemoryWal::default()),
            clock: Arc::new(ManualClock::default()),
            faults: faults.clone(),
            events: events.clone(),
        };
        let env = FlushEnv {
            ports,
            notifier: outbox.clone(),
            buffer: buffer.clone(),
            bugs,
            notify_retry_limit: 1,
            notify_retry_backoff_ms: 0,
            lost_reports: Arc::default(),
        };
        Harness {
            scheduler: FlushScheduler::new(bugs, events.clone()),
            regions: BTreeMap::new(),
            env,
            jobs,
            outbox,
            manifests,
            faults,
            events,
            buffer,
            ledger: ReplyLedger::new(),
            labels: BTreeMap::new(),
            bugs,
            _dir: dir,
        }
    }

    fn add_region(&mut self, region_id: RegionId) {
        let manifest = block_on(self.manifests.create(RegionManifest::new(region_id)))
            .expect("memory manifests never wait")
            .expect("a new region");
        let region = Region::from_manifest(&manifest, self.buffer.clone(), self.bugs);
        self.regions.insert(region_id, region);
    }

    fn region(&mut self, region_id: RegionId) -> &mut Region {
        self.regions
            .get_mut(&region_id)
            .unwrap_or_else(|| panic!("{region_id} was added"))
    }

    /// Applies a write of `count` rows to the mutable memtable (what the
    /// worker does once the WAL has it).
    fn write(&mut self, region_id: RegionId, count: usize) {
        let region = self.region(region_id);
        let (entry_id, first_sequence) = region.version.next_write_marks();
        let rows = common::rows("host-1", count, first_sequence as i64);
        region.version.apply_write(&WalEntry {
            entry_id,
            first_sequence,
            rows,
        });
    }

    fn responder(&mut self, label: &str) -> (Responder, Ticket) {
        let request_id = RequestId(self.labels.len() as u64 + 1);
        let (responder, receiver) = Responder::new(request_id);
        self.labels.insert(request_id, label.to_string());
        (responder, self.ledger.track(label, receiver))
    }

    /// A manual flush of `region_id`; the result is what `schedule_flush`
    /// returned.
    fn flush(&mut self, region_id: RegionId, label: &str) -> (Ticket, Result<(), ErrorKind>) {
        let (responder, ticket) = self.responder(label);
        let task = FlushTask::new(FlushReason::Manual, Some(responder));
        let region = self
            .regions
            .get_mut(&region_id)
            .unwrap_or_else(|| panic!("{region_id} was added"));
        let started = self
            .scheduler
            .schedule_flush(region, task, &self.env)
            .map_err(|error| error.kind());
        (ticket, started)
    }

    /// Queues an alter behind the region's flush.
    fn pend_ddl(&mut self, region_id: RegionId, label: &str) -> Ticket {
        let (responder, ticket) = self.responder(label);
        let request = Request::Alter {
            region_id,
            schema_version: 1,
            add_field: None,
        };
        self.scheduler
            .add_ddl_request_to_pending(ClientRequest { request, responder })
            .expect("the region has a flush status");
        ticket
    }

    /// Queues a write behind the region's pending DDLs.
    fn pend_write(&mut self, region_id: RegionId, label: &str) -> Ticket {
        let (responder, ticket) = self.responder(label);
        let request = Request::Write {
            region_id,
            rows: common::rows("host-2", 1, 0),
        };
        self.scheduler
            .add_write_request_to_pending(ClientRequest { request, responder })
            .expect("the region has a flush status");
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
        self.scheduler.status(region_id)
    }

    /// The oldest report a job sent back, if any.
    fn next_report(&self) -> Option<BackgroundNotify> {
        match self.outbox.pop()? {
            WorkerRequest::Background(notify) => Some(notify),
            other => panic!("only jobs report to this harness, got {other:?}"),
        }
    }

    /// After a flush of `region_id` failed: a new one commits all `rows`.
    fn flush_again_commits(mut self, region_id: RegionId, rows: u64) {
        let (retry, _) = self.flush(region_id, "retry");
        assert_eq!(self.run_job(), Delivered::Finished(Some(vec![])));
        self.expect_ok(retry);
        assert_eq!(self.manifest_rows(region_id), rows);
        self.finish();
    }

    /// Runs the oldest held job and hands its result to the scheduler.
    fn run_job(&mut self) -> Delivered {
        let job = self.jobs.pop().expect("a flush job is queued");
        block_on(job).expect("local ports never wait");
        let notify = self.next_report().expect("the job reported back");
        let delivered = self.deliver(notify);
        let invariants = self.scheduler.check_invariants();
        if self.bugs.is_empty() {
            invariants.expect("scheduler invariants hold");
        }
        delivered
    }

    fn deliver(&mut self, notify: BackgroundNotify) -> Delivered {
        match notify {
            BackgroundNotify::FlushFinished(done) => {
                if let Some(region) = self.regions.get_mut(&done.region_id) {
                    if region.epoch == done.epoch {
                        region
                            .version
                            .apply_edit(&done.edit, &done.flushed_memtables);
                    }
                }
                let released = self.scheduler.on_flush_success(
                    done.region_id,
                    done.epoch,
                    &mut self.regions,
                    &self.env,
                );
                Delivered::Finished(released.map(|(ddls, writes)| self.run_released(ddls, writes)))
            }
            BackgroundNotify::FlushFailed(failed) => {
                self.scheduler.on_flush_failed(
                    failed.region_id,
                    failed.epoch,
                    failed.error,
                    &mut self.regions,
                    &self.env,
                );
                Delivered::Failed
            }
        }
    }

    /// "Runs" released requests (answers them Ok) in the order given, as
    /// the worker does: DDLs first, then writes.
    fn run_released(
        &mut self,
        ddls: Vec<ClientRequest>,
        writes: Vec<ClientRequest>,
    ) -> Vec<String> {
        let mut labels = Vec::new();
        for request in ddls.into_iter().chain(writes) {
            labels.push(self.labels[&request.responder.request_id()].clone());
            request.responder.send(Ok(Output::Done));
        }
        labels
    }

    fn expect_ok(&mut self, ticket: Ticket) {
        let label = self.ledger.label(ticket).to_string();
        match self.ledger.reply(ticket) {
            Ok(_) => {}
            Err(error) => panic!("{label}: expected Ok, got {error}"),
        }
    }

    fn expect_err(&mut self, tickets: &[Ticket], kind: ErrorKind) {
        for ticket in tickets {
            let label = self.ledger.label(*ticket).to_string();
            match self.ledger.reply(*ticket) {
                Err(error) if error.kind() == kind => {}
                other => panic!("{label}: expected {}, got {other:?}", kind.as_str()),
            }
        }
    }

    fn memtable_rows(&self, region_id: RegionId) -> usize {
        self.regions[&region_id].version.memtable_rows().count()
    }

    fn manifest_rows(&self, region_id: RegionId) -> u64 {
        let manifest = self.manifests.get(region_id).expect("the region exists");
        manifest.files.values().map(|f| f.num_rows).sum()
    }

    /// Every request got exactly one reply, and the buffer counts exactly
    /// the memtables the regions hold.
    fn finish(self) {
        self.finish_expecting_lost(&[]);
    }

    fn finish_expecting_lost(self, lost: &[Ticket]) {
        assert_eq!(self.jobs.len(), 0, "a job was left unrun");
        self.scheduler
            .check_invariants()
            .expect("scheduler invariants hold");
        let held: usize = self
            .regions
            .values()
            .map(|r| r.version.memtable_bytes())
            .sum();
        assert_eq!(self.buffer.used_bytes(), held);
        assert_eq!(self.buffer.flushes_running(), 0);
        assert_eq!(self.buffer.accounting_violations(), 0);
        let Harness {
            scheduler, ledger, ..
        } = self;
        ledger.assert_exactly_once_except(lost);
        drop(scheduler);
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
    assert_eq!(h.jobs.len(), 0);
    h.finish();
}

#[test]
fn schedule_freezes_submits_a_job_and_marks_the_region_flushing() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let bytes = h.buffer.used_bytes();
    assert_eq!(h.buffer.active_bytes(), bytes);

    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Ok(()));
    assert_eq!(h.status(R1), Some(running(0)));
    assert_eq!(h.jobs.len(), 1);
    let version = &h.regions[&R1].version;
    assert_eq!(
        (version.mutable_bytes(), version.immutable_bytes()),
        (0, bytes)
    );
    assert_eq!(
        (
            h.buffer.used_bytes(),
            h.buffer.active_bytes(),
            h.buffer.flushes_running()
        ),
        (bytes, 0, 1),
        "frozen memory is scheduled to be freed, not freed"
    );
    h.ledger.assert_waiting(flush);

    assert_eq!(h.run_job(), Delivered::Finished(Some(vec![])));
    h.expect_ok(flush);
    assert_eq!(h.status(R1), None);
    assert_eq!((h.buffer.used_bytes(), h.buffer.active_bytes()), (0, 0));
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
    assert_eq!(h.jobs.len(), 1, "merged tasks submit no job");
    assert_eq!(h.events.count("flush_merged"), 2);
    assert!(h.status(R1).is_some_and(|s| s.pending_task));
    for ticket in [f1, f2, f3] {
        h.ledger.assert_waiting(ticket);
    }

    assert_eq!(h.run_job(), Delivered::Finished(Some(vec![])));
    for ticket in [f1, f2, f3] {
        h.expect_ok(ticket);
    }
    assert_eq!(h.jobs.len(), 0, "nothing was left to flush");
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
    assert!(h.scheduler.has_pending_ddls(R1));

    let released = h.run_job();
    assert_eq!(
        released,
        Delivered::Finished(Some(vec![
            "a1".to_string(),
            "a2".to_string(),
            "w1".to_string(),
            "w2".to_string()
        ]))
    );
    h.expect_ok(f1);
    assert_eq!(h.status(R1), None);
    assert!(!h.scheduler.has_pending_ddls(R1));
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

    assert_eq!(h.run_job(), Delivered::Finished(None));
    h.expect_ok(f1);
    h.ledger.assert_waiting(f2);
    h.ledger.assert_waiting(a1);
    assert_eq!(h.jobs.len(), 1, "the region flushes again");
    assert_eq!(
        h.status(R1),
        Some(FlushStatusView {
            pending_ddls: 1,
            ..running(0)
        })
    );
    assert_eq!(h.manifest_rows(R1), 10);

    assert_eq!(
        h.run_job(),
        Delivered::Finished(Some(vec!["a1".to_string()]))
    );
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
        Delivered::Finished(Some(vec!["a1".to_string(), "w1".to_string()]))
    );
    h.expect_ok(f1);
    h.expect_ok(f2);
    assert_eq!(h.jobs.len(), 0, "no second flush of an empty region");
    assert_eq!(h.status(R1), None);
    h.finish();
}

#[test]
fn failure_fails_every_waiter_with_flush_failed_and_keeps_the_data() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    h.manifests.fail_next.store(1, Ordering::Relaxed);

    assert_eq!(h.run_job(), Delivered::Failed);
    h.expect_err(&waiters, ErrorKind::FlushFailed);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.jobs.len(), 0, "a failed flush is not retried by itself");
    assert_eq!(
        h.memtable_rows(R1),
        15,
        "nothing was committed, nothing dropped"
    );
    assert_eq!(h.manifest_rows(R1), 0);

    let (f3, _) = h.flush(R1, "f3");
    assert_eq!(h.run_job(), Delivered::Finished(Some(vec![])));
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
    h.scheduler.on_region_dropped(R1);
    h.expect_err(&waiters, ErrorKind::RegionDropped);
    assert_eq!(h.status(R1), None);

    // The worker forgets the region; its orphaned job still ends cleanly
    // and frees the memtable it held.
    h.regions.remove(&R1);
    assert!(
        h.buffer.used_bytes() > 0,
        "the job still holds its memtable"
    );
    assert_eq!(h.run_job(), Delivered::Finished(None));
    assert_eq!(h.buffer.used_bytes(), 0);
    h.finish();
}

#[test]
fn closed_region_fails_pending_work_with_region_closed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    h.scheduler.on_region_closed(R1);
    h.expect_err(&waiters, ErrorKind::RegionClosed);
    assert_eq!(h.status(R1), None);
    h.regions.remove(&R1);
    assert_eq!(h.run_job(), Delivered::Finished(None));
    h.finish();
}

#[test]
fn truncated_region_fails_pending_work_and_keeps_its_job_fenced() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    let waiters = h.busy_region(R1);
    h.scheduler.on_region_truncated(R1);
    h.expect_err(&waiters, ErrorKind::RegionTruncated);
    assert_eq!(
        h.status(R1),
        Some(running(0)),
        "the running job is remembered so no second job of the region runs beside it"
    );

    // What the worker does on truncate: new epoch, empty memtables.
    let manifest = block_on(h.manifests.apply(
        R1,
        ManifestChange::Truncate {
            truncated_entry_id: 2,
            truncated_sequence: 15,
        },
    ))
    .expect("memory manifests never wait")
    .expect("the region exists");
    let region = h.region(R1);
    region.epoch = manifest.epoch;
    region.version.truncate(2, 15);

    // A flush of the new incarnation waits behind the old job...
    h.write(R1, 3);
    let (f3, started) = h.flush(R1, "f3");
    assert_eq!(started, Ok(()));
    assert_eq!(h.jobs.len(), 1);
    assert!(h.status(R1).is_some_and(|s| s.pending_task));

    // ...whose commit is fenced off by the epoch. That failure belongs to
    // the old incarnation: f3 is flushed next, not failed with it.
    assert_eq!(h.run_job(), Delivered::Failed);
    h.ledger.assert_waiting(f3);
    assert_eq!(h.status(R1), Some(running(1)));
    assert_eq!(h.run_job(), Delivered::Finished(Some(vec![])));
    h.expect_ok(f3);
    assert_eq!(h.manifest_rows(R1), 3);
    h.finish();
}

#[test]
fn freeze_failure_answers_the_task_with_freeze_failed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.write(R1, 10);
    let bytes = h.buffer.used_bytes();
    h.faults.fail_freezes.store(1, Ordering::Relaxed);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Err(ErrorKind::FreezeFailed));
    h.expect_err(&[flush], ErrorKind::FreezeFailed);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.jobs.len(), 0);
    assert_eq!(
        (h.buffer.used_bytes(), h.buffer.active_bytes()),
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
    h.jobs.reject_next.store(1, Ordering::Relaxed);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Err(ErrorKind::JobRejected));
    h.expect_err(&[flush], ErrorKind::JobRejected);
    assert_eq!(h.status(R1), None);
    assert_eq!(h.buffer.flushes_running(), 0);
    assert_eq!(h.memtable_rows(R1), 10, "the rows stay, frozen");
    assert!(
        h.next_report().is_none(),
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
    assert_eq!(h.buffer.flushes_running(), 1);
    drop(h.jobs.pop().expect("a flush job is queued"));
    let report = h.next_report().expect("the dropped job reported itself");
    assert!(
        matches!(&report, BackgroundNotify::FlushFailed(failed)
            if matches!(failed.error, FlushError::JobLost { region_id: R1 })),
        "{report:?}"
    );
    assert_eq!(h.buffer.flushes_running(), 0, "the lost flush ended");
    assert_eq!(h.deliver(report), Delivered::Failed);
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
    h.jobs.reject_next.store(1, Ordering::Relaxed);
    let (flush, started) = h.flush(R1, "flush");
    assert_eq!(started, Err(ErrorKind::JobRejected));
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
    assert_eq!(h.run_job(), Delivered::Finished(None));
    h.expect_ok(f1);
    assert_eq!(h.status(R1), None, "the region's status is gone");
    assert_eq!(h.jobs.len(), 0);
    assert_eq!(h.events.count(kind_mark(kind)), 1);
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
    h.faults.fail_freezes.store(1, Ordering::Relaxed);
}

fn reject_job(h: &Harness) {
    h.jobs.reject_next.store(1, Ordering::Relaxed);
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
    h.manifests.fail_next.store(1, Ordering::Relaxed);
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
    assert_eq!(h.jobs.len(), 2);

    assert_eq!(h.run_job(), Delivered::Finished(None), "R2's first job");
    h.expect_ok(r2_first);
    (h, [r1_first, r1_second, r2_first, r2_second])
}

#[test]
fn schedule_next_flush_after_success_starts_the_waiting_region() {
    let (mut h, [r1_first, r1_second, _, r2_second]) = two_busy_regions(Bugs::NONE);
    assert_eq!(h.status(R2), Some(running(0)), "R2 starts again at once");
    assert_eq!(h.jobs.len(), 2, "R1's job and R2's second job");
    h.ledger.assert_waiting(r2_second);

    assert_eq!(h.run_job(), Delivered::Finished(None), "R1's first job");
    h.expect_ok(r1_first);
    assert_eq!(
        h.run_job(),
        Delivered::Finished(Some(vec![])),
        "R2's second"
    );
    h.expect_ok(r2_second);
    assert_eq!(
        h.run_job(),
        Delivered::Finished(Some(vec![])),
        "R1's second"
    );
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
    assert_eq!(h.jobs.len(), 1, "only R1's job exists");
    let broken = h.scheduler.check_invariants().unwrap_err();
    assert!(broken.contains("no running job"), "{broken}");

    // R1 is dropped; its orphaned job ends without scheduling anything.
    h.scheduler.on_region_dropped(R1);
    h.expect_err(&[r1_first, r1_second], ErrorKind::RegionDropped);
    h.regions.remove(&R1);
    assert_eq!(h.run_job(), Delivered::Finished(None));

    // Quiescent: no job anywhere, and R2's flush is never answered.
    assert_eq!(h.jobs.len(), 0);
    h.ledger.assert_waiting(r2_second);
    assert_eq!(h.ledger.unanswered(), vec!["r2 second".to_string()]);
}

#[test]
fn a_dropped_region_does_not_hold_up_a_waiting_one() {
    let (mut h, [r1_first, r1_second, _, r2_second]) = two_busy_regions(Bugs::NONE);
    h.scheduler.on_region_dropped(R1);
    h.expect_err(&[r1_first, r1_second], ErrorKind::RegionDropped);
    h.regions.remove(&R1);
    assert_eq!(h.run_job(), Delivered::Finished(None), "R1's orphaned job");
    assert_eq!(
        h.run_job(),
        Delivered::Finished(Some(vec![])),
        "R2's second"
    );
    h.expect_ok(r2_second);
    assert_eq!(h.manifest_rows(R2), 15);
    h.finish();
}

#[test]
fn scheduler_drop_answers_every_waiter_region_closed() {
    let mut h = Harness::new(Bugs::NONE);
    h.add_region(R1);
    h.add_region(R2);
    let mut waiters = h.busy_region(R1).to_vec();
    waiters.extend(h.busy_region(R2));

    let Harness {
        scheduler,
        mut ledger,
        jobs,
        ..
    } = h;
    drop(scheduler);
    for ticket in &waiters {
        match ledger.reply(*ticket) {
            Err(error) => assert_eq!(error.kind(), ErrorKind::RegionClosed, "{error}"),
            Ok(output) => panic!("expected RegionClosed, got {output:?}"),
        }
    }
    ledger.assert_exactly_once();
    drop(jobs);
}
