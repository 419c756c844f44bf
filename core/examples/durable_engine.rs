//! The core for real: the tokio engine over a directory of durable files
//! (framed WAL segments, manifest files, Parquet SSTs). Run it, stop it (or
//! kill it), run it again over the same directory: it reopens every region
//! it finds and prints what it recovered before writing more.
//!
//! ```text
//! cargo run -p flush-core --features tokio --example durable_engine -- DIR [WRITES]
//! ```
//!
//! `WRITES` (default 50) batches of 20 rows go to each region; region 1 is
//! then flushed by hand, the others keep their newest rows only in the WAL,
//! and the engine stops gracefully.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use flush_core::durable::DurableStores;
use flush_core::fs::StdFs;
use flush_core::ids::RegionId;
use flush_core::memtable::RowValue;
use flush_core::ports::ManifestStore;
use flush_core::request::{Output, Request};
use flush_core::tokio_engine::{Stores, TokioEngine, TokioEngineConfig};

const NEW_REGIONS: [RegionId; 3] = [RegionId(1), RegionId(2), RegionId(3)];
const ROWS_PER_WRITE: usize = 20;

#[tokio::main]
async fn main() {
    // What can go wrong here is the directory (missing, unwritable, a
    // damaged file in it) or the arguments: bad input, exit 2.
    if let Err(error) = run().await {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: durable_engine DIR [WRITES]");
        std::process::exit(2);
    };
    let writes: usize = match args.next().map(|text| text.parse()) {
        None => 50,
        Some(Ok(writes)) => writes,
        Some(Err(_)) => {
            eprintln!("WRITES must be a number");
            std::process::exit(2);
        }
    };
    let stores = DurableStores::new(Arc::new(StdFs::open(&dir)?));
    let config = TokioEngineConfig {
        buffer_bytes: 256 << 10,
        ..TokioEngineConfig::default()
    };
    let engine = TokioEngine::start(&config, Stores::from(&stores));
    let regions = recover(&engine, &stores).await?;
    let mut next_write = 0;
    for view in engine.inspect().await {
        for region in view.regions.values() {
            next_write = next_write.max(region.last_entry_id as usize);
        }
    }
    for write in next_write..next_write + writes {
        for region_id in &regions {
            let rows = rows(*region_id, write);
            match engine
                .call(Request::Write {
                    region_id: *region_id,
                    rows: rows.into(),
                })
                .await?
            {
                Output::Written { .. } => {}
                other => return Err(format!("{region_id}: unexpected reply {other:?}").into()),
            }
        }
    }
    engine
        .call(Request::Flush {
            region_id: regions[0],
        })
        .await?;
    print_state("after writing", &engine, &stores, &regions).await?;
    let stopped = engine.stop(Duration::from_secs(30)).await;
    println!("stopped gracefully: {stopped}; run again over {dir} to see it recover");
    Ok(())
}

/// Opens every region the directory holds (creating the first ones in a
/// new directory) and prints what each recovered.
async fn recover(
    engine: &TokioEngine,
    stores: &DurableStores,
) -> Result<Vec<RegionId>, Box<dyn Error>> {
    let mut regions = Vec::new();
    for region_id in stores.manifests.regions()? {
        let dropped = stores
            .manifests
            .load(region_id)
            .await?
            .is_none_or(|manifest| manifest.dropped);
        if !dropped {
            engine.call(Request::Open { region_id }).await?;
            regions.push(region_id);
        }
    }
    if regions.is_empty() {
        println!("a new directory: creating {} regions", NEW_REGIONS.len());
        for region_id in NEW_REGIONS {
            engine.call(Request::create(region_id)).await?;
        }
        return Ok(NEW_REGIONS.to_vec());
    }
    let repairs = stores.wal.repairs();
    println!(
        "recovered {} regions; WAL torn tails cut: {} ({} bytes)",
        regions.len(),
        repairs
            .torn_tails
            .load(std::sync::atomic::Ordering::Relaxed),
        repairs
            .bytes_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    print_state(
        "recovered (memtables replayed from the WAL)",
        engine,
        stores,
        &regions,
    )
    .await?;
    Ok(regions)
}

async fn print_state(
    when: &str,
    engine: &TokioEngine,
    stores: &DurableStores,
    regions: &[RegionId],
) -> Result<(), Box<dyn Error>> {
    let views = engine.inspect().await;
    for region_id in regions {
        let Some(view) = views.iter().find_map(|view| view.regions.get(region_id)) else {
            continue;
        };
        let manifest = stores.manifests.load(*region_id).await?;
        let sst_rows: u64 = manifest
            .iter()
            .flat_map(|manifest| manifest.files.values())
            .map(|file| file.num_rows)
            .sum();
        println!(
            "{when} {region_id}: {} SSTs holding {sst_rows} rows, {} rows in memtables, \
             last entry {}, flushed up to entry {}",
            view.files, view.memtable_rows, view.last_entry_id, view.flushed_entry_id
        );
    }
    Ok(())
}

fn rows(region_id: RegionId, write: usize) -> Vec<RowValue> {
    (0..ROWS_PER_WRITE)
        .map(|index| {
            let n = write * ROWS_PER_WRITE + index;
            RowValue {
                series: format!("region{}/host-{:02}", region_id.0, n % 4).into(),
                ts: 1_700_000_000_000 + n as i64 * 1_000,
                value: (n as f64).cos() * 50.0,
                fields: Vec::new(),
            }
        })
        .collect()
}
