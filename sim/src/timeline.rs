//! The timeline of a run: its event trace as a Chrome trace event file
//! (`replay --timeline run.json`), which Perfetto (ui.perfetto.dev) and
//! chrome://tracing open.
//!
//! Time is simulated time (microseconds since the run started). Tracks:
//!
//! - process `run`: threads `phases` (phase changes, drawn across every
//!   track), `faults` (faults aimed at no region), `violations` and `other`
//!   (engine lines, stall releases);
//! - one process per worker, `worker W`, with a thread `worker W` for the
//!   worker's decisions on its regions (flushes scheduled, engine-full and
//!   stall-relief flushes, writes stalled or queued behind DDLs, pending
//!   requests failed, flush results applied), and per region `R` it owns:
//!   - thread `region R`: its flush jobs as slices (start to commit or
//!     failure), SSTs written, manifest, WAL and object-store lines, and the
//!     faults injected on it;
//!   - threads `region R requests` (and `… #2`, `… #3` when requests
//!     overlap): every request as a slice from issue to reply, named by kind,
//!     with its origin and outcome; a request with no reply runs to the end
//!     and says so.
//!
//! Regions sit on workers by `region_id % workers`, as the router places
//! them. The timeline is built from the trace lines alone (kept with
//! `RunOptions::keep_trace`), so it shows exactly what the trace hash covers.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::plan::Plan;
use crate::report::Report;
use crate::world::trace::TraceLine;

/// The `run` process.
const RUN_PID: u64 = 1;
const PHASES_TID: u64 = 1;
const FAULTS_TID: u64 = 2;
const VIOLATIONS_TID: u64 = 3;
const OTHER_TID: u64 = 4;
/// Worker `w` is process `WORKER_PID_BASE + w`.
const WORKER_PID_BASE: u64 = 10;
/// The worker's own thread inside its process.
const WORKER_TID: u64 = 1;
/// Region `r`'s threads are `r * REGION_TID_STRIDE + lane`: lane 0 is the
/// region track, lanes `1..REQUEST_LANE_BASE` hold overlapping flush jobs,
/// lanes from `REQUEST_LANE_BASE` hold requests.
const REGION_TID_STRIDE: u64 = 1_000;
const REQUEST_LANE_BASE: u64 = 100;
const MAX_FLUSH_LANES: u64 = REQUEST_LANE_BASE;
const MAX_REQUEST_LANES: u64 = REGION_TID_STRIDE - REQUEST_LANE_BASE;

/// The Chrome trace JSON object for `report`'s kept trace of `plan`.
pub fn chrome_trace(plan: &Plan, report: &Report) -> Value {
    let mut builder = Builder::new(plan.workload.workers.max(1), plan.workload.regions);
    for line in &report.trace {
        builder.add(line);
    }
    let events = builder.finish();
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "seed": plan.seed,
            "workload": plan.workload.name,
            "bugs": report.bugs,
            "passed": report.passed,
            "trace_hash": report.trace_hash,
            "events": report.events,
            "time": "simulated microseconds since the run started",
        },
    })
}

/// A span between two trace lines, placed on a lane when all are known.
struct Slice {
    region: u64,
    name: String,
    category: &'static str,
    start_us: u64,
    end_us: u64,
    args: Value,
}

struct OpenRequest {
    region: u64,
    kind: String,
    origin: String,
    start_us: u64,
    detail: String,
}

struct OpenJob {
    epoch: Option<u64>,
    start_us: u64,
}

struct Builder {
    workers: u64,
    events: Vec<Value>,
    requests: BTreeMap<u64, OpenRequest>,
    jobs: BTreeMap<u64, Vec<OpenJob>>,
    request_slices: Vec<Slice>,
    job_slices: Vec<Slice>,
    seen_regions: std::collections::BTreeSet<u64>,
    last_us: u64,
}

impl Builder {
    fn new(workers: u32, regions: u32) -> Self {
        Builder {
            workers: u64::from(workers),
            events: Vec::new(),
            requests: BTreeMap::new(),
            jobs: BTreeMap::new(),
            request_slices: Vec::new(),
            job_slices: Vec::new(),
            seen_regions: (1..=u64::from(regions)).collect(),
            last_us: 0,
        }
    }

    fn worker_pid(&self, region: u64) -> u64 {
        WORKER_PID_BASE + region % self.workers
    }

    fn region_tid(region: u64) -> u64 {
        region * REGION_TID_STRIDE
    }

    fn instant(&mut self, pid: u64, tid: u64, line: &TraceLine, name: String, scope: &str) {
        self.events.push(json!({
            "name": name,
            "cat": line.source,
            "ph": "i",
            "s": scope,
            "ts": line.t_us,
            "pid": pid,
            "tid": tid,
            "args": { "step": line.step, "text": line.text },
        }));
    }

    fn on_region(&mut self, region: u64, line: &TraceLine, name: String) {
        self.seen_regions.insert(region);
        let pid = self.worker_pid(region);
        self.instant(pid, Self::region_tid(region), line, name, "t");
    }

    fn on_worker(&mut self, region: u64, line: &TraceLine, name: String) {
        self.seen_regions.insert(region);
        let pid = self.worker_pid(region);
        self.instant(pid, WORKER_TID, line, name, "t");
    }

    fn on_run(&mut self, tid: u64, line: &TraceLine, name: String) {
        let scope = if tid == PHASES_TID { "g" } else { "t" };
        self.instant(RUN_PID, tid, line, name, scope);
    }

    fn add(&mut self, line: &TraceLine) {
        self.last_us = self.last_us.max(line.t_us);
        match line.source {
            "request" => self.add_request(line),
            "reply" => self.add_reply(line),
            "core" => self.add_core(line),
            "FAULT" => self.add_fault(line),
            "VIOLATE" => self.on_run(VIOLATIONS_TID, line, first_words(&line.text, 1)),
            "phase" | "plan" => self.on_run(PHASES_TID, line, line.text.clone()),
            source => match region_of_text(&line.text) {
                Some(region) => self.on_region(region, line, format!("{source}: {}", line.text)),
                None => self.on_run(OTHER_TID, line, format!("{source}: {}", line.text)),
            },
        }
    }

    /// `"{id} {origin:?} {kind} region-{r}[ detail]"`.
    fn add_request(&mut self, line: &TraceLine) {
        let mut words = line.text.splitn(5, ' ');
        let parsed = (|| {
            let id: u64 = words.next()?.parse().ok()?;
            let origin = words.next()?.to_string();
            let kind = words.next()?.to_string();
            let region = parse_region_display(words.next()?)?;
            let detail = words.next().unwrap_or("").to_string();
            Some((id, origin, kind, region, detail))
        })();
        let Some((id, origin, kind, region, detail)) = parsed else {
            self.on_run(OTHER_TID, line, format!("request: {}", line.text));
            return;
        };
        self.seen_regions.insert(region);
        self.requests.insert(
            id,
            OpenRequest {
                region,
                kind,
                origin,
                start_us: line.t_us,
                detail,
            },
        );
    }

    /// `"{id} {outcome}"`.
    fn add_reply(&mut self, line: &TraceLine) {
        let (id, outcome) = line.text.split_once(' ').unwrap_or((&line.text, ""));
        let request = id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.requests.remove(&id).map(|request| (id, request)));
        let Some((id, request)) = request else {
            self.on_run(OTHER_TID, line, format!("reply: {}", line.text));
            return;
        };
        let verdict = if outcome.starts_with("ok") {
            "ok"
        } else if outcome.starts_with("LOST") {
            "LOST"
        } else {
            "err"
        };
        self.request_slices.push(Slice {
            region: request.region,
            name: request_name(&request, verdict),
            category: "request",
            start_us: request.start_us,
            end_us: line.t_us,
            args: json!({
                "id": id,
                "origin": request.origin,
                "detail": request.detail,
                "outcome": outcome,
            }),
        });
    }

    /// `"{CoreEvent:?}"`, e.g. `FlushJobStarted { region_id: RegionId(3), epoch: 1 }`.
    fn add_core(&mut self, line: &TraceLine) {
        let name = first_words(&line.text, 1);
        let Some(region) = field_after(&line.text, "region_id: RegionId(") else {
            self.on_run(OTHER_TID, line, name);
            return;
        };
        let epoch = field_after(&line.text, "epoch: ");
        match name.as_str() {
            "FlushJobStarted" => {
                self.seen_regions.insert(region);
                self.jobs.entry(region).or_default().push(OpenJob {
                    epoch,
                    start_us: line.t_us,
                });
            }
            "FlushCommitted" | "FlushFailed" => {
                self.close_job(region, epoch, line, &name);
                self.on_region(region, line, name);
            }
            "SstWritten" => self.on_region(region, line, name),
            _ => self.on_worker(region, line, name),
        }
    }

    fn close_job(&mut self, region: u64, epoch: Option<u64>, line: &TraceLine, outcome: &str) {
        let open = self.jobs.entry(region).or_default();
        let position = open
            .iter()
            .position(|job| job.epoch == epoch)
            .or(if open.is_empty() { None } else { Some(0) });
        let Some(position) = position else {
            return;
        };
        let job = open.remove(position);
        let committed = outcome == "FlushCommitted";
        self.job_slices.push(Slice {
            region,
            name: if committed {
                "flush job".to_string()
            } else {
                "flush job (failed)".to_string()
            },
            category: "flush",
            start_us: job.start_us,
            end_us: line.t_us,
            args: json!({ "epoch": epoch, "end": line.text }),
        });
    }

    /// `"{class} {region-N | -} {detail}"`.
    fn add_fault(&mut self, line: &TraceLine) {
        let mut words = line.text.splitn(3, ' ');
        let class = words.next().unwrap_or("fault").to_string();
        let region = words.next().and_then(parse_region_display);
        let name = format!("FAULT {class}");
        match region {
            Some(region) => self.on_region(region, line, name),
            None => self.on_run(FAULTS_TID, line, name),
        }
    }

    fn finish(mut self) -> Vec<Value> {
        let end_us = self.last_us;
        let unanswered = std::mem::take(&mut self.requests);
        for (id, request) in unanswered {
            self.request_slices.push(Slice {
                region: request.region,
                name: request_name(&request, "NO REPLY"),
                category: "request",
                start_us: request.start_us,
                end_us,
                args: json!({
                    "id": id,
                    "origin": request.origin,
                    "detail": request.detail,
                    "outcome": "no reply by the end of the run",
                }),
            });
        }
        let unfinished = std::mem::take(&mut self.jobs);
        for (region, jobs) in unfinished {
            for job in jobs {
                self.job_slices.push(Slice {
                    region,
                    name: "flush job (unfinished)".to_string(),
                    category: "flush",
                    start_us: job.start_us,
                    end_us,
                    args: json!({ "epoch": job.epoch }),
                });
            }
        }
        let job_slices = std::mem::take(&mut self.job_slices);
        let flush_lanes = self.place_slices(job_slices, 0, MAX_FLUSH_LANES);
        let request_slices = std::mem::take(&mut self.request_slices);
        let request_lanes = self.place_slices(request_slices, REQUEST_LANE_BASE, MAX_REQUEST_LANES);
        let mut events = self.metadata(&flush_lanes, &request_lanes);
        events.append(&mut self.events);
        events
    }

    /// Emits `slices` on lanes `first_lane..first_lane + max_lanes` of their
    /// regions; returns how many lanes each region used.
    fn place_slices(
        &mut self,
        slices: Vec<Slice>,
        first_lane: u64,
        max_lanes: u64,
    ) -> BTreeMap<u64, u64> {
        let mut lanes_used: BTreeMap<u64, u64> = BTreeMap::new();
        for (slice, lane) in assign_lanes(slices, max_lanes) {
            let used = lanes_used.entry(slice.region).or_default();
            *used = (*used).max(lane + 1);
            let tid = Self::region_tid(slice.region) + first_lane + lane;
            self.push_slice(slice, tid);
        }
        lanes_used
    }

    fn push_slice(&mut self, slice: Slice, tid: u64) {
        let pid = self.worker_pid(slice.region);
        self.events.push(json!({
            "name": slice.name,
            "cat": slice.category,
            "ph": "X",
            "ts": slice.start_us,
            "dur": slice.end_us.saturating_sub(slice.start_us),
            "pid": pid,
            "tid": tid,
            "args": slice.args,
        }));
    }

    /// Process and thread names, in a stable order.
    fn metadata(
        &self,
        flush_lanes: &BTreeMap<u64, u64>,
        request_lanes: &BTreeMap<u64, u64>,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        let mut process = |pid: u64, name: String| {
            events.push(
                json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}}),
            );
            events.push(json!({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}}));
        };
        process(RUN_PID, "run".to_string());
        for worker in 0..self.workers {
            process(WORKER_PID_BASE + worker, format!("worker {worker}"));
        }
        let mut thread = |pid: u64, tid: u64, name: String| {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}));
            events.push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}));
        };
        thread(RUN_PID, PHASES_TID, "phases".to_string());
        thread(RUN_PID, FAULTS_TID, "faults".to_string());
        thread(RUN_PID, VIOLATIONS_TID, "violations".to_string());
        thread(RUN_PID, OTHER_TID, "other".to_string());
        for worker in 0..self.workers {
            thread(
                WORKER_PID_BASE + worker,
                WORKER_TID,
                format!("worker {worker}"),
            );
        }
        for region in &self.seen_regions {
            let pid = self.worker_pid(*region);
            let base = Self::region_tid(*region);
            thread(pid, base, format!("region {region}"));
            for lane in 1..flush_lanes.get(region).copied().unwrap_or(1) {
                thread(
                    pid,
                    base + lane,
                    format!("region {region} flush jobs #{}", lane + 1),
                );
            }
            let lanes = request_lanes.get(region).copied().unwrap_or(1);
            for lane in 0..lanes {
                let name = if lane == 0 {
                    format!("region {region} requests")
                } else {
                    format!("region {region} requests #{}", lane + 1)
                };
                thread(pid, base + REQUEST_LANE_BASE + lane, name);
            }
        }
        events
    }
}

/// Puts every slice on the lowest lane of its region free at its start, so
/// slices on one track never overlap (Chrome's format needs them nested).
/// Past `max_lanes` lanes, slices share the last one.
fn assign_lanes(mut slices: Vec<Slice>, max_lanes: u64) -> Vec<(Slice, u64)> {
    slices.sort_by_key(|slice| (slice.region, slice.start_us, slice.end_us));
    let mut lane_ends: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    slices
        .into_iter()
        .map(|slice| {
            let ends = lane_ends.entry(slice.region).or_default();
            let free = ends.iter().position(|end| *end <= slice.start_us);
            let lane = match free {
                Some(lane) => lane,
                None if (ends.len() as u64) < max_lanes.max(1) => {
                    ends.push(0);
                    ends.len() - 1
                }
                None => ends.len() - 1,
            };
            ends[lane] = ends[lane].max(slice.end_us);
            (slice, lane as u64)
        })
        .collect()
}

fn request_name(request: &OpenRequest, verdict: &str) -> String {
    if verdict == "ok" {
        request.kind.clone()
    } else {
        format!("{} ({verdict})", request.kind)
    }
}

fn first_words(text: &str, count: usize) -> String {
    text.split_whitespace()
        .take(count)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `region-N` (the `Display` of a region id).
fn parse_region_display(word: &str) -> Option<u64> {
    word.strip_prefix("region-")?.parse().ok()
}

/// The number right after `prefix` in `text`.
fn field_after(text: &str, prefix: &str) -> Option<u64> {
    let start = text.find(prefix)? + prefix.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The region a world line is about: a `region-N` word, or an SST path
/// `data/N/…`.
fn region_of_text(text: &str) -> Option<u64> {
    text.split_whitespace().find_map(|word| {
        parse_region_display(word.trim_end_matches([':', ','])).or_else(|| {
            let rest = word.strip_prefix("data/")?;
            rest.split('/').next()?.parse().ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, t_us: u64, source: &'static str, text: &str) -> TraceLine {
        TraceLine {
            step,
            t_us,
            source,
            text: text.to_string(),
        }
    }

    #[test]
    fn requests_jobs_and_faults_land_on_their_tracks() {
        let mut builder = Builder::new(2, 3);
        for (t_us, source, text) in [
            (0, "phase", "safety"),
            (10, "request", "1 Client(0) write region-3 rows=5"),
            (12, "request", "2 Client(1) flush region-3"),
            (
                15,
                "core",
                "FlushJobStarted { region_id: RegionId(3), epoch: 0 }",
            ),
            (20, "reply", "1 ok entry=1 seq=1 rows=5"),
            (22, "FAULT", "manifest_failure region-3 apply"),
            (23, "FAULT", "job_rejection - schedule"),
            (
                25,
                "core",
                "FlushFailed { region_id: RegionId(3), epoch: 0, reason: \"x\" }",
            ),
            (26, "objects", "put data/2/0000.parquet 10 bytes"),
        ] {
            builder.add(&line(t_us, t_us, source, text));
        }
        let events = builder.finish();
        let find = |name: &str| {
            events
                .iter()
                .find(|event| event["name"] == name)
                .unwrap_or_else(|| panic!("no event {name}"))
        };
        let write = find("write");
        assert_eq!(write["ph"], "X");
        assert_eq!(
            (write["ts"].as_u64(), write["dur"].as_u64()),
            (Some(10), Some(10))
        );
        assert_eq!(write["pid"], WORKER_PID_BASE + 1);
        let flush = find("flush (NO REPLY)");
        assert_ne!(
            flush["tid"], write["tid"],
            "overlapping requests share a lane"
        );
        let job = find("flush job (failed)");
        assert_eq!(job["tid"], 3 * REGION_TID_STRIDE);
        assert_eq!(job["dur"], 10);
        assert_eq!(find("FAULT job_rejection")["pid"], RUN_PID);
        assert_eq!(find("FAULT manifest_failure")["tid"], 3 * REGION_TID_STRIDE);
        let thread_names: Vec<&str> = events
            .iter()
            .filter(|event| event["name"] == "thread_name")
            .filter_map(|event| event["args"]["name"].as_str())
            .collect();
        for expected in [
            "worker 0",
            "worker 1",
            "region 1",
            "region 2",
            "region 3",
            "region 3 requests",
            "region 3 requests #2",
        ] {
            assert!(
                thread_names.contains(&expected),
                "{expected}: {thread_names:?}"
            );
        }
    }

    #[test]
    fn regions_are_found_in_world_lines() {
        assert_eq!(region_of_text("region-4 truncate up to 10"), Some(4));
        assert_eq!(region_of_text("put data/7/00ab.parquet 5 bytes"), Some(7));
        assert_eq!(region_of_text("create region-2 incarnation 1"), Some(2));
        assert_eq!(region_of_text("spawn job 1, starts in 4ms"), None);
        assert_eq!(
            field_after(
                "WalReplayed { region_id: RegionId(12), entries: 3 }",
                "region_id: RegionId("
            ),
            Some(12)
        );
    }
}
