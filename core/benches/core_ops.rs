//! Micro-benchmarks of the core's hot operations: buffer-manager checks,
//! a write + flush cycle through the worker, and SST encoding against a bare
//! arrow-rs `ArrowWriter`. Run with `cargo bench -p flush-core`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use flush_core::buffer::WriteBufferManager;
use flush_core::ids::RegionId;
use flush_core::local::LocalEngine;
use flush_core::memtable::{Row, RowValue};
use flush_core::request::Request;
use flush_core::sst;
use flush_core::worker::WorkerConfig;
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
            series: format!("host-{}", i % 16),
            ts: i as i64,
            value: i as f64 * 0.5,
        })
        .collect()
}

fn worker_cycle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    c.bench_function("worker/100_writes_of_50_rows_then_flush", |b| {
        b.iter_batched(
            || {
                let mut engine = LocalEngine::new(dir.path(), 64 << 20, WorkerConfig::default());
                let create = engine.call(Request::Create {
                    region_id: RegionId(1),
                });
                assert!(matches!(create, Ok(Ok(_))));
                engine
            },
            |mut engine| {
                for _ in 0..100 {
                    let write = Request::Write {
                        region_id: RegionId(1),
                        rows: rows(50),
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
        })
        .collect();
    c.bench_function("sst/encode_rows_5000", |b| {
        b.iter(|| sst::encode_rows("bench.parquet", black_box(&stored)))
    });
    let batch = sst::rows_to_batch(&stored).expect("batch");
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

criterion_group!(benches, buffer_ops, worker_cycle, sst_encoding);
criterion_main!(benches);
