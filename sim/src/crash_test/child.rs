//! The crash test's child: the tokio engine over a real directory, driven
//! by lines on stdin, answering on stdout (`flushsim crash-child`). It
//! reopens every region the directory holds, says `ready`, then queues
//! each request in the order its line came (so a region sees requests in
//! the parent's order) and prints each reply the moment the engine gives
//! it: a printed `written` is an acknowledgement the parent holds the
//! engine to after any crash.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_core::durable::manifest::FileManifestStore;
use flush_core::durable::objects::FileObjectStore;
use flush_core::durable::wal::FileWal;
use flush_core::fs::{FileSystem, StdFs};
use flush_core::ids::RegionId;
use flush_core::ports::ManifestStore;
use flush_core::request::{Output, RegionRole, Request};
use flush_core::tokio_engine::{Stores, TokioEngine, TokioEngineConfig};
use tokio::io::AsyncBufReadExt as _;

use super::protocol::{self, Command, Message};

/// How long a graceful stop may take.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// The engine's settings: a small buffer, so flushes happen on their own.
fn engine_config() -> TokioEngineConfig {
    TokioEngineConfig {
        workers: 2,
        buffer_bytes: 32 << 10,
        tick: Duration::from_millis(20),
        ..TokioEngineConfig::default()
    }
}

/// Runs the child until `stop` or the end of stdin; returns its exit code.
pub fn run(dir: &Path, repair_torn_tails: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("crash-child: no tokio runtime: {error}");
            return 1;
        }
    };
    runtime.block_on(serve(dir, repair_torn_tails))
}

async fn serve(dir: &Path, repair_torn_tails: bool) -> u8 {
    let fs: Arc<dyn FileSystem> = match StdFs::open(dir) {
        Ok(fs) => Arc::new(fs),
        Err(error) => {
            eprintln!("crash-child: {error}");
            return 2;
        }
    };
    let bugs = if repair_torn_tails {
        Bugs::NONE
    } else {
        Bugs::only(PlantedBug::WalReplayPastTornTail)
    };
    let wal = Arc::new(FileWal::new(fs.clone()).with_bugs(bugs));
    let manifests = Arc::new(FileManifestStore::new(fs.clone()));
    let stores = Stores {
        objects: Arc::new(FileObjectStore::new(fs)),
        manifests: manifests.clone(),
        wal: wal.clone(),
    };
    let engine = Arc::new(TokioEngine::start(&engine_config(), stores));
    let open = reopen(&engine, &manifests).await;
    let torn = wal
        .repairs()
        .torn_tails
        .load(std::sync::atomic::Ordering::Relaxed);
    say(&protocol::format_ready(&open, torn));

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match protocol::parse_command(&line) {
            Ok(Command::Stop) => break,
            Ok(Command::Request { id, region_id, op }) => {
                let receiver = engine.submit(op.request(region_id)).await;
                tokio::spawn(async move {
                    let reply = receiver.await.unwrap_or(Err(
                        flush_core::error::RequestError::WorkerStopped { region_id },
                    ));
                    say(&format_reply(id, &reply));
                });
            }
            Err(error) => {
                eprintln!("crash-child: {error}");
                return 2;
            }
        }
    }
    let graceful = engine.stop(STOP_PATIENCE).await;
    say(&format!("stopped {graceful}"));
    0
}

/// Opens every region whose manifest is not dropped; returns those that
/// opened.
async fn reopen(engine: &TokioEngine, manifests: &FileManifestStore) -> Vec<RegionId> {
    let mut open = Vec::new();
    let Ok(regions) = manifests.regions() else {
        return open;
    };
    for region_id in regions {
        let dropped = manifests
            .load(region_id)
            .await
            .map(|manifest| manifest.is_none_or(|m| m.dropped));
        match dropped {
            Ok(false) => {}
            Ok(true) => continue,
            Err(error) => {
                eprintln!("crash-child: {region_id}: {error}");
                continue;
            }
        }
        // A region opens as a follower; this process holds its lease.
        let role = RegionRole::Leader;
        let opened = match engine.call(Request::Open { region_id }).await {
            Ok(_) => engine.call(Request::SetRole { region_id, role }).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(_) => open.push(region_id),
            Err(error) => eprintln!("crash-child: reopening {region_id}: {error}"),
        }
    }
    open
}

fn format_reply(id: u64, reply: &flush_core::request::Reply) -> String {
    let message = match reply {
        Ok(Output::Written { first_sequence, .. }) => Message::Written {
            id,
            first_sequence: *first_sequence,
        },
        Ok(Output::Done) => Message::Ok { id },
        Err(error) => Message::Err {
            id,
            kind: format!("{:?}", error.kind()),
        },
    };
    match message {
        Message::Written { first_sequence, .. } => format!("{id} written {first_sequence}"),
        Message::Err { kind, .. } => format!("{id} err {kind}"),
        _ => format!("{id} ok"),
    }
}

/// One line on stdout, flushed at once: the parent may kill us any time.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
