//! `flushsim crash-test`: the simulator's crash model held against a real
//! process on a real file system.
//!
//! Each round starts the tokio engine as a child process (`flushsim
//! crash-child`) over the same directory, waits for it to reopen every
//! region, drives a seeded workload through its stdin (writes, flushes,
//! alters, truncates, drops, creates) with several requests in flight, and
//! kills it with SIGKILL at a seeded moment — often right behind a flush.
//! After each kill the parent reads the directory as a restart would (SSTs
//! listed by each manifest, then the WAL after its marks) and holds it to
//! the [`model`]. Sometimes it then tears the tail of a WAL segment, as a
//! write cut short by a power loss would. The last round stops the child gracefully after
//! flushing every region, and the parent judges the directory itself with
//! the [`model`]: every acknowledged row present exactly once, nothing
//! refused, truncated or dropped back, every manifest loads, every SST on
//! disk listed by its manifest (orphans purged), every region that was
//! open reopened.
//!
//! The plan of a round comes from the seed; the instant of a kill is real
//! time, so a rerun replays the plan, not the exact interleaving. Every
//! wait is bounded: a child that stops answering is a failed round.

pub mod child;
pub mod model;
pub mod protocol;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use flush_core::durable::DurableStores;
use flush_core::fs::{FileSystem, StdFs};
use flush_core::ids::{region_sst_prefix, sst_path, RegionId};
use flush_core::ports::{ManifestStore, ObjectStore, Wal};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::plan::stream_rng;
use model::{Model, RegionState};
use protocol::{Message, Op};

/// Regions of the workload.
const REGIONS: u64 = 4;
/// How long the parent waits for any one line from the child.
const ANSWER_PATIENCE: Duration = Duration::from_secs(30);
/// Ops sent in one round before its kill.
const OPS_PER_ROUND: std::ops::Range<u32> = std::ops::Range {
    start: 20,
    end: 160,
};
/// The transcript's file name in the test's directory.
pub const TRANSCRIPT: &str = "transcript.txt";
/// Stream of the crash test's draws (apart from the simulator's streams).
const STREAM_CRASH_TEST: u64 = 0xC4A5_7E57;

#[derive(Clone, Debug)]
pub struct CrashTestOptions {
    pub seed: u64,
    pub rounds: u32,
    /// The directory the engine lives in; a fresh temporary one if `None`.
    pub dir: Option<PathBuf>,
    /// The `flushsim` binary to start as the child.
    pub child: PathBuf,
    /// Plants a bug in the child: torn WAL tails are left on disk.
    pub skip_torn_tail_repair: bool,
}

/// What the crash test saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CrashTestReport {
    pub seed: u64,
    pub rounds: u32,
    pub kills: u32,
    pub requests: u64,
    pub acknowledged: u64,
    pub in_flight_at_kills: u64,
    pub tails_torn: u32,
    pub torn_tails_repaired: u64,
    pub rows_checked: u64,
    pub problems: Vec<String>,
    pub dir: String,
    pub rerun: String,
}

impl CrashTestReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the crash test; a setup error (no directory, no child) is `Err`.
pub fn crash_test(options: &CrashTestOptions) -> Result<CrashTestReport, String> {
    let (dir, _temp) = match &options.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = fresh_dir(&std::env::temp_dir(), "flushsim-crash")?;
            (temp.clone(), Some(TempDir(temp)))
        }
    };
    let mut run = Run {
        options,
        transcript: std::fs::File::create(dir.join(TRANSCRIPT)).ok(),
        dir: dir.clone(),
        rng: stream_rng(options.seed, STREAM_CRASH_TEST),
        model: Model::default(),
        report: CrashTestReport {
            seed: options.seed,
            rounds: options.rounds,
            dir: dir.display().to_string(),
            rerun: format!(
                "flushsim crash-test --seed {} --rounds {}{}",
                options.seed,
                options.rounds,
                if options.skip_torn_tail_repair {
                    " --skip-torn-tail-repair"
                } else {
                    ""
                }
            ),
            ..CrashTestReport::default()
        },
        next_id: 1,
        next_write: 1,
        next_schema: 1,
    };
    for round in 0..options.rounds {
        if let Err(problem) = run.round(round) {
            run.report
                .problems
                .push(format!("round {round}: {problem}"));
            break;
        }
    }
    if run.report.problems.is_empty() {
        if let Err(problem) = run.final_round() {
            run.report.problems.push(format!("final round: {problem}"));
        } else {
            run.judge();
        }
    }
    if !run.report.problems.is_empty() && options.dir.is_none() {
        // Keep the evidence: the directory is named in the report.
        std::mem::forget(_temp);
    }
    Ok(run.report)
}

/// A temporary directory removed on drop (kept on failure).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new directory `<prefix>-<pid>-<n>` under `base` (made if missing).
pub fn fresh_dir(base: &std::path::Path, prefix: &str) -> Result<PathBuf, String> {
    let _ = std::fs::create_dir_all(base);
    for attempt in 0..100u32 {
        let dir = base.join(format!("{prefix}-{}-{attempt}", std::process::id()));
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    Err(format!("cannot make a directory under {}", base.display()))
}

struct Run<'a> {
    options: &'a CrashTestOptions,
    /// Every line sent and received, with the round, kept in the test's
    /// directory as `transcript.txt` (the evidence of a failed run).
    transcript: Option<std::fs::File>,
    dir: PathBuf,
    rng: ChaCha8Rng,
    model: Model,
    report: CrashTestReport,
    next_id: u64,
    next_write: u64,
    next_schema: u64,
}

/// A running child and what it has not answered yet.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Request id -> (region, op, position sent).
    outstanding: std::collections::BTreeMap<u64, (RegionId, Op, u64)>,
}

impl Run<'_> {
    fn start(&mut self) -> Result<Session, String> {
        let mut command = Command::new(&self.options.child);
        command
            .arg("crash-child")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.options.skip_torn_tail_repair {
            command.arg("--skip-torn-tail-repair");
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start the child: {error}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the child has no pipes".to_string());
        };
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session {
            child,
            stdin,
            lines,
            outstanding: Default::default(),
        };
        match self.next_message(&mut session)? {
            Message::Ready { open, torn } => {
                self.report.torn_tails_repaired += torn;
                let problems = self.model.ready(&open);
                if !problems.is_empty() {
                    kill(&mut session);
                    return Err(problems.join("; "));
                }
                Ok(session)
            }
            other => Err(format!("expected 'ready' first, saw {other:?}")),
        }
    }

    fn log(&mut self, line: &str) {
        if let Some(file) = &mut self.transcript {
            let _ = writeln!(file, "{line}");
        }
    }

    fn next_message(&mut self, session: &mut Session) -> Result<Message, String> {
        match session.lines.recv_timeout(ANSWER_PATIENCE) {
            Ok(line) => {
                self.log(&format!("< {line}"));
                protocol::parse_message(&line)
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(session);
                Err(format!(
                    "the child stopped answering ({} s without a line)",
                    ANSWER_PATIENCE.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err("the child exited unexpectedly".to_string()),
        }
    }

    fn send(&mut self, session: &mut Session, region_id: RegionId, op: Op) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let sent_at = match op {
            Op::Write { write_id } => {
                self.model.write_sent(write_id, region_id);
                0
            }
            Op::Truncate | Op::Drop => self.model.ddl_sent(),
            _ => 0,
        };
        let line = protocol::format_command(id, region_id, &op);
        self.log(&format!("> {line}"));
        writeln!(session.stdin, "{line}")
            .and_then(|()| session.stdin.flush())
            .map_err(|error| format!("cannot write to the child: {error}"))?;
        session.outstanding.insert(id, (region_id, op, sent_at));
        self.report.requests += 1;
        Ok(())
    }

    /// Applies one reply to the model.
    fn apply(&mut self, session: &mut Session, message: Message) -> Result<(), String> {
        let (id, ok) = match &message {
            Message::Ok { id } | Message::Written { id, .. } => (*id, true),
            Message::Err { id, .. } => (*id, false),
            other => return Err(format!("expected a reply, saw {other:?}")),
        };
        let Some((region_id, op, sent_at)) = session.outstanding.remove(&id) else {
            return Err(format!("a reply to request {id}, which is not outstanding"));
        };
        if ok {
            self.report.acknowledged += 1;
        }
        match (op, ok) {
            (Op::Write { write_id }, true) => self.model.write_acked(write_id),
            (Op::Write { write_id }, false) => self.model.write_refused(write_id),
            (Op::Truncate, true) => self.model.truncated(region_id, sent_at, true),
            (Op::Drop, true) => self.model.dropped(region_id, sent_at, true),
            (Op::Create, true) => self.model.created(region_id),
            _ => {}
        }
        Ok(())
    }

    fn await_one(&mut self, session: &mut Session) -> Result<(), String> {
        let message = self.next_message(session)?;
        self.apply(session, message)
    }

    fn round(&mut self, round: u32) -> Result<(), String> {
        self.log(&format!("# round {round}"));
        let mut session = self.start()?;
        if round == 0 {
            for region in 1..=REGIONS {
                self.send(&mut session, RegionId(region), Op::Create)?;
                self.await_one(&mut session)?;
            }
        }
        let ops = self.rng.gen_range(OPS_PER_ROUND);
        let window = self.rng.gen_range(1..=8usize);
        for _ in 0..ops {
            let Some((region_id, op)) = self.draw_op() else {
                break;
            };
            self.send(&mut session, region_id, op)?;
            while session.outstanding.len() >= window {
                self.await_one(&mut session)?;
            }
        }
        // The kill: right away, or after a short real-time delay that
        // often lands inside a flush the last requests started.
        let delay_us = self.rng.gen_range(0..3_000u64);
        // The crash test drives a real process in real time.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_micros(delay_us));
        kill(&mut session);
        self.report.kills += 1;
        // Replies the child printed before it died still count.
        self.log("! SIGKILL");
        while let Ok(line) = session.lines.recv_timeout(ANSWER_PATIENCE) {
            self.log(&format!("< {line}"));
            let message = protocol::parse_message(&line)?;
            self.apply(&mut session, message)?;
        }
        for (_, (region_id, op, sent_at)) in std::mem::take(&mut session.outstanding) {
            self.report.in_flight_at_kills += 1;
            match op {
                Op::Truncate => self.model.truncated(region_id, sent_at, false),
                Op::Drop => self.model.dropped(region_id, sent_at, false),
                Op::Create => self.model.maybe_created(region_id),
                _ => {}
            }
        }
        self.judge_recoverable()?;
        if self.rng.gen_bool(0.3) {
            self.tear_a_wal_tail()?;
        }
        Ok(())
    }

    /// After a kill, before the restart: what a restart would recover of
    /// each region the model holds open (its SSTs, and its WAL after the
    /// manifest's marks) must hold every acknowledged row once.
    fn judge_recoverable(&mut self) -> Result<(), String> {
        let fs: std::sync::Arc<dyn FileSystem> =
            std::sync::Arc::new(StdFs::open(&self.dir).map_err(|error| error.to_string())?);
        let stores = DurableStores::new(fs);
        let mut problems = Vec::new();
        for region_id in self.model.open_regions() {
            match recoverable_rows(&stores, region_id) {
                Ok(rows) => {
                    let (found, checked) = self.model.judge_rows(region_id, &rows);
                    self.report.rows_checked += checked;
                    problems.extend(found);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "after the kill, the directory holds: {}",
                problems.join("; ")
            ))
        }
    }

    /// Picks what to send next, to a region the model holds open (or a
    /// create for a dropped one).
    fn draw_op(&mut self) -> Option<(RegionId, Op)> {
        let dropped = self.model.dropped_regions();
        if !dropped.is_empty() && self.rng.gen_bool(0.3) {
            let region_id = dropped[self.rng.gen_range(0..dropped.len())];
            return Some((region_id, Op::Create));
        }
        let open = self.model.open_regions();
        if open.is_empty() {
            return None;
        }
        let region_id = open[self.rng.gen_range(0..open.len())];
        let op = match self.rng.gen_range(0..100u32) {
            0..=77 => {
                let write_id = self.next_write;
                self.next_write += 1;
                Op::Write { write_id }
            }
            78..=92 => Op::Flush,
            93..=96 => {
                self.next_schema += 1;
                Op::Alter {
                    schema_version: self.next_schema,
                }
            }
            97..=98 => Op::Truncate,
            _ => Op::Drop,
        };
        Some((region_id, op))
    }

    /// Appends the start of a frame that never finished to the newest WAL
    /// segment of a region: what a crash mid-append leaves.
    fn tear_a_wal_tail(&mut self) -> Result<(), String> {
        let fs = StdFs::open(&self.dir).map_err(|error| error.to_string())?;
        let open = self.model.open_regions();
        if open.is_empty() {
            return Ok(());
        }
        let region_id = open[self.rng.gen_range(0..open.len())];
        let dir = format!("wal/{}", region_id.0);
        let segments = fs.list(&dir).map_err(|error| error.to_string())?;
        let Some(last) = segments.iter().rev().find(|name| name.ends_with(".wal")) else {
            return Ok(());
        };
        let mut torn = Vec::new();
        torn.extend_from_slice(&4_096u32.to_le_bytes());
        torn.extend_from_slice(&self.rng.gen::<u32>().to_le_bytes());
        let extra: usize = self.rng.gen_range(0..32);
        torn.extend((0..extra).map(|_| self.rng.gen::<u8>()));
        let path = format!("{dir}/{last}");
        fs.append(&path, &torn)
            .and_then(|()| fs.sync(&path))
            .map_err(|error| error.to_string())?;
        self.log(&format!("! tore {path}: {} bytes", torn.len()));
        self.report.tails_torn += 1;
        Ok(())
    }

    /// Reopens everything, flushes every open region, stops gracefully.
    fn final_round(&mut self) -> Result<(), String> {
        let mut session = self.start()?;
        for region_id in self.model.open_regions() {
            self.send(&mut session, region_id, Op::Flush)?;
            self.await_one(&mut session)?;
        }
        writeln!(session.stdin, "stop")
            .and_then(|()| session.stdin.flush())
            .map_err(|error| format!("cannot write to the child: {error}"))?;
        match self.next_message(&mut session)? {
            Message::Stopped { graceful: true } => {}
            other => return Err(format!("expected a graceful stop, saw {other:?}")),
        }
        let status = session
            .child
            .wait()
            .map_err(|error| format!("waiting for the child: {error}"))?;
        if !status.success() {
            return Err(format!("the child exited with {status}"));
        }
        Ok(())
    }

    /// Reads the directory and holds it to the model.
    fn judge(&mut self) {
        let fs = match StdFs::open(&self.dir) {
            Ok(fs) => std::sync::Arc::new(fs),
            Err(error) => {
                self.report.problems.push(error.to_string());
                return;
            }
        };
        let stores = DurableStores::new(fs);
        for region in 1..=REGIONS {
            let region_id = RegionId(region);
            let problems = self.judge_region(&stores, region_id);
            self.report.problems.extend(problems);
        }
    }

    fn judge_region(&mut self, stores: &DurableStores, region_id: RegionId) -> Vec<String> {
        let manifest = match settled(stores.manifests.load(region_id)) {
            Ok(manifest) => manifest,
            Err(error) => return vec![format!("{region_id}: manifest did not load: {error}")],
        };
        let state = self.model.state(region_id);
        let Some(manifest) = manifest else {
            return match state {
                None => Vec::new(),
                Some(_) => vec![format!("{region_id}: expected a manifest, found none")],
            };
        };
        if manifest.dropped {
            return match state {
                Some(RegionState::Dropped) => Vec::new(),
                other => vec![format!(
                    "{region_id}: manifest says dropped, expected {other:?}"
                )],
            };
        }
        let (rows, mut problems) = listed_sst_rows(stores, region_id, &manifest);
        let (row_problems, checked) = self.model.judge_rows(region_id, &rows);
        problems.extend(row_problems);
        self.report.rows_checked += checked;
        match settled(stores.objects.list(&region_sst_prefix(region_id))) {
            Ok(on_disk) => {
                let listed: Vec<String> = manifest
                    .files
                    .keys()
                    .map(|file_id| sst_path(region_id, *file_id))
                    .collect();
                for path in on_disk.iter().filter(|path| !listed.contains(path)) {
                    problems.push(format!(
                        "{region_id}: {path} is on disk but not in the manifest (an orphan \
                         not purged)"
                    ));
                }
            }
            Err(error) => problems.push(format!("{region_id}: cannot list SSTs: {error}")),
        }
        problems
    }
}

/// The rows a restart would recover for an open region: those in the
/// SSTs its manifest lists, then those of the WAL entries after its marks
/// (skipping entries whose rows a flush already holds, as recovery does).
fn recoverable_rows(
    stores: &DurableStores,
    region_id: RegionId,
) -> Result<Vec<flush_core::memtable::Row>, String> {
    let manifest = settled(stores.manifests.load(region_id))
        .map_err(|error| format!("{region_id}: manifest did not load: {error}"))?
        .ok_or_else(|| format!("{region_id}: expected a manifest, found none"))?;
    if manifest.dropped {
        return Err(format!(
            "{region_id}: expected it open, its manifest says dropped"
        ));
    }
    let (mut rows, problems) = listed_sst_rows(stores, region_id, &manifest);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let entries = settled(
        stores
            .wal
            .replay(region_id, manifest.replay_from_entry_id()),
    )
    .map_err(|error| format!("{region_id}: WAL replay failed: {error}"))?;
    let mut next_sequence = manifest.flushed_sequence + 1;
    for entry in entries {
        if entry.first_sequence < next_sequence {
            continue;
        }
        next_sequence = entry.first_sequence + entry.rows.len() as u64;
        rows.extend(entry.to_rows());
    }
    Ok(rows)
}

/// Runs a file-backed store's future (ready when first polled, see
/// `flush_core::local::block_on`) and turns either failure into text.
fn settled<T, E: std::fmt::Display>(
    future: futures::future::BoxFuture<'static, Result<T, E>>,
) -> Result<T, String> {
    flush_core::local::block_on(future)
        .map_err(|stuck| stuck.to_string())?
        .map_err(|error| error.to_string())
}

/// The rows of every SST `manifest` lists, and a problem for each one that
/// cannot be read or decoded.
fn listed_sst_rows(
    stores: &DurableStores,
    region_id: RegionId,
    manifest: &flush_core::manifest::RegionManifest,
) -> (Vec<flush_core::memtable::Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for file_id in manifest.files.keys() {
        let path = sst_path(region_id, *file_id);
        let decoded = settled(stores.objects.get(&path)).and_then(|bytes| {
            flush_core::sst::decode_rows(&path, bytes).map_err(|error| error.to_string())
        });
        match decoded {
            Ok(decoded) => rows.extend(decoded),
            Err(error) => problems.push(format!("{region_id}: listed SST unreadable: {error}")),
        }
    }
    (rows, problems)
}

/// SIGKILL (std's `Child::kill` on Unix), then reap.
fn kill(session: &mut Session) {
    let _ = session.child.kill();
    let _ = session.child.wait();
}

/// The crash test as the CLI runs it; its own binary is the child.
pub fn child_binary() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|error| format!("cannot find flushsim's own binary: {error}"))
}

/// Renders a report for people.
pub fn render(report: &CrashTestReport) -> String {
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let mut out = format!(
        "{verdict}: crash test seed {} — {} rounds, {} SIGKILLs, {} requests ({} acknowledged, \
         {} in flight at a kill), {} WAL tails torn, {} torn tails repaired, {} acknowledged \
         rows checked\n",
        report.seed,
        report.rounds,
        report.kills,
        report.requests,
        report.acknowledged,
        report.in_flight_at_kills,
        report.tails_torn,
        report.torn_tails_repaired,
        report.rows_checked
    );
    for problem in report.problems.iter().take(20) {
        out.push_str(&format!("  {problem}\n"));
    }
    if !report.passed() {
        out.push_str(&format!(
            "  directory kept: {}\n  rerun (same plan; kill instants are real time): {}\n",
            report.dir, report.rerun
        ));
    }
    out
}
