//! Micro-benchmarks of the core's hot operations: buffer-manager checks,
//! flush-scheduler transitions, a write + flush cycle through the worker,
//! and SST encoding against a bare arrow-rs `ArrowWriter`. Run with
//! `cargo bench -p flush-core`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use flush_core::buffer::WriteBufferManager;
use flush_core::bugs::Bugs;
use flush_core::error::{FlushError, ManifestError};
use flush_core::flush::{FlushEnv, FlushScheduler, FlushTask};
use flush_core::ids::{RegionId, RequestId};
use flush_core::local::{
    block_on, Inbox, LocalEngine, ManualClock, MemoryManifestStore, MemoryObjectStore, MemoryWal,
    QueuedJobs,
};
use flush_core::manifest::RegionManifest;
use flush_core::memtable::{Row, RowValue, WalEntry};
use flush_core::ports::{ManifestStore, NoFaults, Ports, TracingEvents};
use flush_core::region::Region;
use flush_core::request::{ClientRequest, FlushReason, Reply, Request, Responder};
use flush_core::schema::RegionSchema;
use flush_core::sst;
use flush_core::worker::WorkerConfig;
use futures::channel::oneshot;
use parquet::arrow::ArrowWriter;

fn buffer_ops(c: &mut Criterion) {
    let manager = WriteBufferManager::new(64 << 20);
    c.bench_function("buffer/reserve_check_schedule_free", |b| {
        b.iter(|| {
            manager.reserve_mem(black_box(4096));
            black_box(manager.should_flush_engine());
            black_box(manager.should_stall());
            let _ = manager.schedule_free_mem(4096);
            let _ = manager.free_mem(4096);
        })
    });
}

fn rows(count: usize) -> Vec<RowValue> {
    (0..count)
        .map(|i| RowValue {
            series: format!("host-{}", i % 16).into(),
            ts: i as i64,
            value: i as f64 * 0.5,
            fields: Vec::new(),
        })
        .collect()
}

fn worker_cycle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    c.bench_function("worker/100_writes_of_50_rows_then_flush", |b| {
        b.iter_batched(
            || {
                let mut engine = LocalEngine::new(dir.path(), 64 << 20, WorkerConfig::default())
                    .expect("a local engine over a temporary directory");
                let create = engine.call(Request::create(RegionId(1)));
                assert!(matches!(create, Ok(Ok(_))));
                engine
            },
            |mut engine| {
                for _ in 0..100 {
                    let write = Request::Write {
                        region_id: RegionId(1),
                        rows: rows(50).into(),
                    };
                    let _ = black_box(engine.call(write));
                }
                let _ = black_box(engine.call(Request::Flush {
                    region_id: RegionId(1),
                }));
            },
            BatchSize::PerIteration,
        )
    });
}

fn sst_encoding(c: &mut Criterion) {
    let stored: Vec<Row> = rows(5_000)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Row {
            series: r.series,
            ts: r.ts,
            value: r.value,
            sequence: i as u64 + 1,
            fields: Vec::new(),
        })
        .collect();
    c.bench_function("sst/encode_rows_5000", |b| {
        b.iter(|| {
            sst::encode_rows(
                "bench.parquet",
                &RegionSchema::default(),
                black_box(&stored),
            )
        })
    });
    let batch = sst::rows_to_batch(&RegionSchema::default(), &stored).expect("batch");
    c.bench_function("sst/raw_arrow_writer_5000", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).expect("writer");
            writer.write(black_box(&batch)).expect("write");
            writer.close().expect("close");
            out
        })
    });
}

/// One region with data and the scheduler around it: the ports a flush
/// would use are in memory, and submitted jobs are held, never run, so the
/// bench times the scheduler's bookkeeping alone.
struct SchedulerRig {
    scheduler: FlushScheduler,
    regions: BTreeMap<RegionId, Region>,
    env: FlushEnv,
    next_request: u64,
    receivers: Vec<oneshot::Receiver<Reply>>,
}

impl SchedulerRig {
    fn new() -> Self {
        let manifests = Arc::new(MemoryManifestStore::default());
        let buffer = Arc::new(WriteBufferManager::new(64 << 20));
        let ports = Ports {
            jobs: Arc::new(QueuedJobs::default()),
            objects: Arc::new(MemoryObjectStore::default()),
            manifests: manifests.clone(),
            wal: Arc::new(MemoryWal::default()),
            clock: Arc::new(ManualClock::default()),
            faults: Arc::new(NoFaults),
            events: Arc::new(TracingEvents::default()),
        };
        let env = FlushEnv {
            ports,
            notifier: Arc::new(Inbox::default()),
            buffer: buffer.clone(),
            bugs: Bugs::NONE,
            notify_retry_limit: 1,
            notify_retry_backoff_ms: 0,
            lost_reports: Arc::default(),
        };
        let region_id = RegionId(1);
        let manifest = block_on(manifests.create(RegionManifest::new(region_id)))
            .expect("memory manifests never wait")
            .expect("a new region");
        let mut region = Region::from_manifest(&manifest, buffer, Bugs::NONE);
        let (entry_id, first_sequence) = region.version.next_write_marks();
        region.version.apply_write(&WalEntry {
            entry_id,
            first_sequence,
            rows: rows(50).into(),
        });
        SchedulerRig {
            scheduler: FlushScheduler::new(Bugs::NONE, Arc::new(TracingEvents::default())),
            regions: BTreeMap::from([(region_id, region)]),
            env,
            next_request: 1,
            receivers: Vec::new(),
        }
    }

    fn responder(&mut self) -> Responder {
        let (responder, receiver) = Responder::new(RequestId(self.next_request));
        self.next_request += 1;
        self.receivers.push(receiver);
        responder
    }

    /// Schedule a flush, merge a second one into it, queue a DDL and a
    /// write behind it, then fail the flush: every waiter is answered.
    fn cycle(&mut self) {
        let region_id = RegionId(1);
        for _ in 0..2 {
            let task = FlushTask::new(FlushReason::Manual, Some(self.responder()));
            let region = self.regions.get_mut(&region_id).expect("the region exists");
            let started = self.scheduler.schedule_flush(region, task, &self.env);
            assert!(started.is_ok());
        }
        let request = Request::Alter {
            region_id,
            schema_version: 1,
            add_field: None,
        };
        let responder = self.responder();
        let queued = self
            .scheduler
            .add_ddl_request_to_pending(ClientRequest { request, responder });
        assert!(queued.is_ok());
        let request = Request::Write {
            region_id,
            rows: rows(1).into(),
        };
        let responder = self.responder();
        let queued = self
            .scheduler
            .add_write_request_to_pending(ClientRequest { request, responder });
        assert!(queued.is_ok());
        let error = FlushError::Manifest {
            region_id,
            source: ManifestError::Io {
                region_id,
                reason: "bench".to_string(),
            },
        };
        let epoch = self
            .scheduler
            .status(region_id)
            .and_then(|status| status.running_epoch)
            .expect("the flush is running");
        self.scheduler
            .on_flush_failed(region_id, epoch, error, &mut self.regions, &self.env);
        assert!(self.scheduler.status(region_id).is_none());
    }
}

fn scheduler_ops(c: &mut Criterion) {
    c.bench_function("scheduler/schedule_merge_pend_then_fail", |b| {
        b.iter_batched(
            SchedulerRig::new,
            |mut rig| {
                rig.cycle();
                rig
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    buffer_ops,
    scheduler_ops,
    worker_cycle,
    sst_encoding
);
criterion_main!(benches);
