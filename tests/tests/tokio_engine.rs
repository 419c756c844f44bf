//! The core on tokio over real files: every acknowledged row comes back
//! exactly once after a stop and a start over the same directory, a
//! graceful stop answers every request it holds, and a full job pool
//! refuses instead of queueing without bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flush_core::durable::DurableStores;
use flush_core::fs::StdFs;
use flush_core::ids::RegionId;
use flush_core::memtable::{Row, RowValue};
use flush_core::ports::{JobScheduler, ManifestStore, ObjectStore};
use flush_core::request::{Output, RegionRole, Request};
use flush_core::sst;
use flush_core::tokio_engine::jobs::TokioJobs;
use flush_core::tokio_engine::{Stores, TokioEngine, TokioEngineConfig};
use futures::FutureExt as _;

const REGIONS: [RegionId; 3] = [RegionId(1), RegionId(2), RegionId(3)];
const PATIENCE: Duration = Duration::from_secs(10);

fn config() -> TokioEngineConfig {
    TokioEngineConfig {
        workers: 2,
        // Small: engine-full flushes happen while writing.
        buffer_bytes: 48 << 10,
        tick: Duration::from_millis(10),
        ..TokioEngineConfig::default()
    }
}

fn start(root: &std::path::Path) -> (TokioEngine, DurableStores) {
    let fs = Arc::new(StdFs::open(root).expect("root"));
    let stores = DurableStores::new(fs);
    (TokioEngine::start(&config(), Stores::from(&stores)), stores)
}

fn rows(region_id: RegionId, write: usize) -> Vec<RowValue> {
    (0..20)
        .map(|index| RowValue {
            series: format!("r{}-host-{}", region_id.0, index % 3).into(),
            ts: (write * 20 + index) as i64,
            value: write as f64 + index as f64 / 100.0,
            fields: Vec::new(),
        })
        .collect()
}

/// Writes `writes` batches to every region; returns the acknowledged rows.
async fn write_all(
    engine: &TokioEngine,
    from: usize,
    writes: usize,
) -> BTreeMap<RegionId, Vec<Row>> {
    let mut acknowledged: BTreeMap<RegionId, Vec<Row>> = BTreeMap::new();
    for write in from..from + writes {
        for region_id in REGIONS {
            let batch = rows(region_id, write);
            let reply = engine
                .call(Request::Write {
                    region_id,
                    rows: batch.clone().into(),
                })
                .await;
            let Ok(Output::Written { first_sequence, .. }) = reply else {
                panic!("write {write} to {region_id}: expected an acknowledgement, saw {reply:?}");
            };
            acknowledged.entry(region_id).or_default().extend(
                (first_sequence..)
                    .zip(batch)
                    .map(|(sequence, row)| row.at_sequence(sequence)),
            );
        }
    }
    acknowledged
}

/// Sends `request` for every region; each must succeed.
async fn on_every_region(engine: &TokioEngine, request: impl Fn(RegionId) -> Request) {
    for region_id in REGIONS {
        let sent = request(region_id);
        let kind = sent.kind();
        assert_eq!(
            engine.call(sent).await,
            Ok(Output::Done),
            "{kind} of {region_id}"
        );
    }
}

/// Every row in the SSTs the region's manifest lists.
async fn rows_in_ssts(stores: &DurableStores, region_id: RegionId) -> Vec<Row> {
    let manifest = stores
        .manifests
        .load(region_id)
        .await
        .expect("load")
        .expect("a manifest");
    let mut rows = Vec::new();
    for file_id in manifest.files.keys() {
        let path = flush_core::ids::sst_path(region_id, *file_id);
        let bytes = stores
            .objects
            .get(&path)
            .await
            .expect("a listed SST exists");
        rows.extend(sst::decode_rows(&path, bytes).expect("a listed SST decodes"));
    }
    rows.sort_by_key(|row| row.sequence);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_come_back_exactly_once_after_a_stop_and_a_start() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (engine, _) = start(dir.path());
    on_every_region(&engine, Request::create).await;
    let mut acknowledged = write_all(&engine, 0, 30).await;
    // One region flushed by hand; the others keep rows only in the WAL.
    assert_eq!(
        engine
            .call(Request::Flush {
                region_id: REGIONS[0]
            })
            .await,
        Ok(Output::Done)
    );
    assert!(
        engine.stop(PATIENCE).await,
        "the engine did not stop in time"
    );

    let (engine, stores) = start(dir.path());
    on_every_region(&engine, |region_id| Request::Open { region_id }).await;
    // Regions open as followers; this engine holds their leases.
    on_every_region(&engine, |region_id| Request::SetRole {
        region_id,
        role: RegionRole::Leader,
    })
    .await;
    for (region_id, more) in write_all(&engine, 30, 5).await {
        acknowledged.entry(region_id).or_default().extend(more);
    }
    on_every_region(&engine, |region_id| Request::Flush { region_id }).await;
    assert!(
        engine.stop(PATIENCE).await,
        "the engine did not stop in time"
    );
    for region_id in REGIONS {
        assert_eq!(
            rows_in_ssts(&stores, region_id).await,
            acknowledged[&region_id],
            "{region_id}: expected every acknowledged row once in the SSTs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_every_request_it_holds() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (engine, _) = start(dir.path());
    on_every_region(&engine, Request::create).await;
    let mut receivers = Vec::new();
    for write in 0..40 {
        for region_id in REGIONS {
            receivers.push(
                engine
                    .submit(Request::Write {
                        region_id,
                        rows: rows(region_id, write).into(),
                    })
                    .await,
            );
        }
        receivers.push(
            engine
                .submit(Request::Flush {
                    region_id: REGIONS[write % 3],
                })
                .await,
        );
    }
    assert!(
        engine.stop(PATIENCE).await,
        "the engine did not stop in time"
    );
    for (index, receiver) in receivers.into_iter().enumerate() {
        let answered = receiver.now_or_never().and_then(Result::ok).is_some();
        assert!(answered, "request {index} was never answered");
    }
}

#[tokio::test]
async fn a_full_job_pool_refuses_and_frees_its_slot_when_a_job_ends() {
    let jobs = TokioJobs::new(1, 1);
    let (release, released) = futures::channel::oneshot::channel::<()>();
    let shared = released.shared();
    for _ in 0..2 {
        let wait = shared.clone();
        jobs.schedule(Box::pin(async move {
            let _ = wait.await;
        }))
        .expect("room for one running and one waiting");
    }
    let refused = jobs.schedule(Box::pin(async {}));
    assert!(refused.is_err(), "a third job should be refused");
    assert_eq!(jobs.in_flight(), 2);
    let _ = release.send(());
    tokio::time::timeout(PATIENCE, jobs.idle())
        .await
        .expect("the jobs end once released");
    jobs.schedule(Box::pin(async {})).expect("room again");
    jobs.close();
    assert!(
        jobs.schedule(Box::pin(async {})).is_err(),
        "a closed pool refuses"
    );
}
