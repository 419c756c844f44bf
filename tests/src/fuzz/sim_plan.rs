//! `sim_plan`: bytes → a scripted [`Plan`] (requests and faults as data,
//! [`flush_sim::script`]) → [`flush_sim::run`] on madsim → a panic if any
//! check fails.
//!
//! The first version of this target decoded bytes into the sweep's knobs
//! (how many writes, each fault class's probability): one mutated byte
//! re-drew every request and every fault of the run, so libFuzzer's
//! coverage feedback had nothing to climb, and from an empty corpus it
//! found none of the bugs the sweep finds. Here the bytes *are* the run:
//! each entry is one request of one client, one pause, or one fault
//! decision that fires ("the second job submission is rejected"). A
//! mutation changes one request, moves one fault, or splices two runs.
//!
//! Byte layout (missing bytes read as zero, bytes past
//! [`MAX_ENTRIES`] entries are ignored):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..2 | the plan's seed (madsim's schedule, row series, latencies), little-endian |
//! | 2 | shape: workers `1 + b & 3`, regions `1 + (b >> 2) & 7`, clients `1 + (b >> 5) & 3`; bit 7: region 1 skips the WAL |
//! | 3 | global write buffer: `2048 + 384·b` bytes |
//! | 4 | flow: requests in flight per client `8 - b & 7` (a zero byte, the likeliest, keeps several in flight); stalled writes at most `2 + 2·(b >> 3)` |
//! | 5 | crashes: bit 0 on, bits 1..4 their probability step; bit 4 graceful stops on; bits 5..8 notify retries `1 + v % 5` |
//! | 6 | timing: I/O latency `b & 3` ms; slow I/O, injector tick and periodic flush from bits 2..4, 4..6, 6..8 ([`SLOW_IO_MS`], [`INJECTOR_TICK_MS`], [`AUTO_FLUSH_MS`]) |
//! | 7 | series per client: `1 + b % 8` |
//! | then | entries, each a kind byte and its arguments |
//!
//! An entry's kind byte `k`: the low nibble is the entry, bits 4..6 the
//! client (modulo the clients). Low nibble 0..=5: a write `[k, region,
//! rows]` (region `b & 7` modulo the regions, `1 + b % 64` rows; writes
//! get six of sixteen kinds because they are what fills the buffer);
//! 6..=11: flush, alter, truncate, drop, close, downgrade `[k, region]`;
//! 12: a pause `[k, ms]` (`b % 64` ms); 13..=15: a fault `[k, class,
//! nth]`: decision [`nth_of`]`(b)` of class [`scripted_classes`]`()[b % len]`
//! fires (0..8 for most byte values: the early decisions are where a
//! short run's windows are, and a fuzzer that must guess one of 32 finds
//! them four times slower; the rest reach 8..40).

use std::fmt;

use arbitrary::{Arbitrary, Unstructured};
use flush_core::bugs::Bugs;
use flush_sim::plan::{FaultClass, FaultMix, FaultSetting, OpMix, Plan, Workload};
use flush_sim::script::{Script, ScriptedFault, Step};
use flush_sim::shrink::PlanFile;

/// The workload name of every fuzzed plan.
pub const WORKLOAD_NAME: &str = "fuzz-v2";

/// Entries decoded at most: a run of ~200 requests takes a few
/// milliseconds of CPU.
pub const MAX_ENTRIES: usize = 192;

/// Bytes before the entries.
pub const HEADER_BYTES: usize = 8;

/// The slow-I/O extra latencies a header can pick.
pub const SLOW_IO_MS: [u64; 4] = [10, 50, 150, 300];
/// The injector's ticks a header can pick.
pub const INJECTOR_TICK_MS: [u64; 4] = [5, 15, 30, 60];
/// Periodic-flush intervals a header can pick (`None`: no periodic flush).
pub const AUTO_FLUSH_MS: [Option<u64>; 4] = [None, Some(50), Some(200), Some(1_000)];

/// Probability steps of the crash class (3 bits).
const CRASH_STEPS: u8 = 7;

/// The classes a script decides, in [`FaultClass::ALL`] order.
pub fn scripted_classes() -> Vec<FaultClass> {
    FaultClass::ALL
        .iter()
        .copied()
        .filter(|class| class.scripted())
        .collect()
}

/// The non-write requests an entry can send, by kind nibble 6..=11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Flush,
    Alter,
    Truncate,
    Drop,
    Close,
    Downgrade,
}

impl RequestKind {
    const ALL: [RequestKind; 6] = [
        RequestKind::Flush,
        RequestKind::Alter,
        RequestKind::Truncate,
        RequestKind::Drop,
        RequestKind::Close,
        RequestKind::Downgrade,
    ];

    fn step(self, region: u64) -> Step {
        match self {
            RequestKind::Flush => Step::Flush { region },
            RequestKind::Alter => Step::Alter { region },
            RequestKind::Truncate => Step::Truncate { region },
            RequestKind::Drop => Step::Drop { region },
            RequestKind::Close => Step::Close { region },
            RequestKind::Downgrade => Step::Downgrade { region },
        }
    }
}

/// One decoded entry, in canonical form: `client` 0..=3 and `region`
/// 0..=7 before they are taken modulo the plan's clients and regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `rows` is 1..=64.
    Write { client: u8, region: u8, rows: u8 },
    Request {
        client: u8,
        region: u8,
        kind: RequestKind,
    },
    /// `ms` is 0..=63.
    Think { client: u8, ms: u8 },
    /// `class` is an index into [`scripted_classes`], `nth` is 0..40.
    Fault { class: u8, nth: u8 },
}

const KIND_THINK: u8 = 12;
const KIND_FAULT: u8 = 13;
/// Byte values at or above this name decisions 8 and later.
const LATE_NTH: u8 = 224;

/// The decision a fault entry's byte names: `b % 8` for most bytes, `8 +
/// (b - 224)` for the top 32.
pub fn nth_of(byte: u8) -> u8 {
    if byte < LATE_NTH {
        byte % 8
    } else {
        8 + (byte - LATE_NTH)
    }
}

/// The canonical byte of decision `nth` (0..40).
fn nth_byte(nth: u8) -> u8 {
    if nth < 8 {
        nth
    } else {
        LATE_NTH + (nth - 8)
    }
}

impl Entry {
    fn decode(u: &mut Unstructured<'_>, classes: usize) -> Option<Entry> {
        // `arbitrary` reads zeros from an exhausted input: stop there.
        if u.is_empty() {
            return None;
        }
        let kind = u.arbitrary::<u8>().ok()?;
        let mut arg = || u.arbitrary::<u8>().unwrap_or(0);
        let client = (kind >> 4) & 3;
        let entry = match kind & 0x0f {
            0..=5 => Entry::Write {
                client,
                region: arg() & 7,
                rows: 1 + arg() % 64,
            },
            nibble @ 6..=11 => Entry::Request {
                client,
                region: arg() & 7,
                kind: RequestKind::ALL[usize::from(nibble - 6)],
            },
            KIND_THINK => Entry::Think {
                client,
                ms: arg() % 64,
            },
            _ => Entry::Fault {
                class: u8::try_from(usize::from(arg()) % classes).unwrap_or(0),
                nth: nth_of(arg()),
            },
        };
        Some(entry)
    }

    fn encode(self, bytes: &mut Vec<u8>) {
        match self {
            Entry::Write {
                client,
                region,
                rows,
            } => bytes.extend([client << 4, region, rows - 1]),
            Entry::Request {
                client,
                region,
                kind,
            } => {
                let nibble = RequestKind::ALL
                    .iter()
                    .position(|k| *k == kind)
                    .map_or(6, |i| 6 + i as u8);
                bytes.extend([client << 4 | nibble, region]);
            }
            Entry::Think { client, ms } => bytes.extend([client << 4 | KIND_THINK, ms]),
            Entry::Fault { class, nth } => bytes.extend([KIND_FAULT, class, nth_byte(nth)]),
        }
    }
}

/// Raw fuzz input of `sim_plan`; [`PlanInput::plan`] is what runs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlanInput {
    pub seed: u16,
    /// Header bytes 2..8 of the table above.
    pub header: [u8; HEADER_BYTES - 2],
    pub entries: Vec<Entry>,
}

impl<'a> Arbitrary<'a> for PlanInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Byte by byte, so the layout is the table above whatever
        // `arbitrary`'s integer encoding is; an exhausted input reads zeros.
        let mut byte = || u.arbitrary::<u8>().unwrap_or(0);
        let seed = u16::from_le_bytes([byte(), byte()]);
        let header = std::array::from_fn(|_| byte());
        let classes = scripted_classes().len();
        let mut entries = Vec::new();
        while entries.len() < MAX_ENTRIES {
            match Entry::decode(u, classes) {
                Some(entry) => entries.push(entry),
                None => break,
            }
        }
        Ok(PlanInput {
            seed,
            header,
            entries,
        })
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        // The minimum is 0 (zeros fill in); the most one plan reads.
        (0, Some(HEADER_BYTES + 3 * MAX_ENTRIES))
    }
}

/// The header's fields, decoded.
struct Header {
    workers: u32,
    regions: u32,
    clients: u32,
    skip_wal_regions: u32,
    global_buffer_bytes: usize,
    max_in_flight: u32,
    max_stalled_writes: usize,
    crash: Option<f64>,
    graceful_stop: bool,
    notify_retry_limit: u32,
    io_latency_ms_max: u64,
    slow_io_ms_max: u64,
    injector_tick_ms: u64,
    auto_flush_interval_ms: Option<u64>,
    series: u32,
}

impl Header {
    fn decode(bytes: &[u8; HEADER_BYTES - 2]) -> Header {
        let [shape, memory, flow, crash, timing, series] = *bytes;
        let crash_step = (crash >> 1) & CRASH_STEPS;
        let (low, high) = FaultClass::Crash.probability_range();
        let t = f64::from(crash_step) / f64::from(CRASH_STEPS);
        let crash_probability = ((low + t * (high - low)) * 100.0).round() / 100.0;
        Header {
            workers: 1 + u32::from(shape & 3),
            regions: 1 + u32::from((shape >> 2) & 7),
            clients: 1 + u32::from((shape >> 5) & 3),
            skip_wal_regions: u32::from(shape >> 7),
            global_buffer_bytes: 2_048 + 384 * usize::from(memory),
            max_in_flight: 8 - u32::from(flow & 7),
            max_stalled_writes: 2 + 2 * usize::from(flow >> 3),
            crash: (crash & 1 == 1).then_some(crash_probability),
            graceful_stop: crash & 0x10 != 0,
            notify_retry_limit: 1 + u32::from(crash >> 5) % 5,
            io_latency_ms_max: u64::from(timing & 3),
            slow_io_ms_max: SLOW_IO_MS[usize::from((timing >> 2) & 3)],
            injector_tick_ms: INJECTOR_TICK_MS[usize::from((timing >> 4) & 3)],
            auto_flush_interval_ms: AUTO_FLUSH_MS[usize::from(timing >> 6)],
            series: 1 + u32::from(series % 8),
        }
    }

    fn workload(&self, script: &Script) -> Workload {
        Workload {
            name: WORKLOAD_NAME.to_string(),
            workers: self.workers,
            regions: self.regions,
            clients: self.clients,
            // Only the run's time budgets read it in a scripted plan.
            writes_per_client: script.most_writes_per_client().max(1),
            rows_per_write_min: 1,
            rows_per_write_max: 64,
            series: self.series,
            max_in_flight: self.max_in_flight,
            // Pauses are the script's own steps.
            think_ms_max: 0,
            global_buffer_bytes: self.global_buffer_bytes,
            max_stalled_writes: self.max_stalled_writes,
            // The script sends every request; the mix draws nothing.
            mix: OpMix {
                flush: 0,
                alter: 0,
                truncate: 0,
                drop: 0,
                close: 0,
                downgrade: 0,
            },
            io_latency_ms_max: self.io_latency_ms_max,
            slow_io_ms_max: self.slow_io_ms_max,
            injector_tick_ms: self.injector_tick_ms,
            // The rest as `Workload::draw` has them.
            monitor_tick_ms: 40,
            notify_retry_limit: self.notify_retry_limit,
            notify_retry_backoff_ms: 1,
            safety_budget_ms: 300_000,
            liveness_budget_ms: 60_000,
            auto_flush_interval_ms: self.auto_flush_interval_ms,
            skip_wal_regions: self.skip_wal_regions,
        }
    }

    /// The crash actor's classes from the header; every scripted class
    /// off in the mix (the script decides them).
    fn faults(&self) -> FaultMix {
        let classes = FaultClass::ALL
            .iter()
            .map(|class| {
                let probability = match class {
                    FaultClass::Crash => self.crash,
                    FaultClass::GracefulStop if self.graceful_stop => {
                        Some(FaultClass::GracefulStop.probability_range().1)
                    }
                    _ => None,
                };
                let setting = FaultSetting {
                    enabled: probability.is_some(),
                    probability: probability.unwrap_or(0.0),
                };
                (*class, setting)
            })
            .collect();
        FaultMix { classes }
    }
}

impl PlanInput {
    /// The bytes that decode to this input.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.seed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.header);
        for entry in &self.entries {
            entry.encode(&mut bytes);
        }
        bytes
    }

    /// Decodes `bytes` exactly as the `sim_plan` target does.
    pub fn decode(bytes: &[u8]) -> PlanInput {
        PlanInput::arbitrary_take_rest(Unstructured::new(bytes)).expect("every byte string decodes")
    }

    /// The script the entries stand for, for `clients` clients over
    /// `regions` regions.
    fn script(&self, clients: u32, regions: u32) -> Script {
        let classes = scripted_classes();
        let mut script = Script {
            clients: vec![Vec::new(); clients as usize],
            faults: Vec::new(),
        };
        let region_of = |slot: u8| 1 + u64::from(slot) % u64::from(regions);
        let client_of = |client: u8| usize::from(client) % clients as usize;
        for entry in &self.entries {
            let (client, step) = match *entry {
                Entry::Write {
                    client,
                    region,
                    rows,
                } => (
                    client,
                    Step::Write {
                        region: region_of(region),
                        rows: u32::from(rows),
                    },
                ),
                Entry::Request {
                    client,
                    region,
                    kind,
                } => (client, kind.step(region_of(region))),
                Entry::Think { client, ms } => (client, Step::Think { ms: u64::from(ms) }),
                Entry::Fault { class, nth } => {
                    script.faults.push(ScriptedFault {
                        class: classes[usize::from(class) % classes.len()],
                        nth: u32::from(nth),
                    });
                    continue;
                }
            };
            script.clients[client_of(client)].push(step);
        }
        script
    }

    /// The plan this input stands for.
    pub fn plan(&self) -> Plan {
        let header = Header::decode(&self.header);
        let script = self.script(header.clients, header.regions);
        Plan {
            seed: u64::from(self.seed),
            workload: header.workload(&script),
            faults: header.faults(),
            splits: Vec::new(),
            script: Some(script),
        }
    }
}

/// What `cargo fuzz fmt sim_plan FILE` (and a crash report) prints: the plan
/// file to save and replay with `flushsim replay --plan FILE`.
impl fmt::Debug for PlanInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&PlanFile::new(self.plan(), super::planted_bugs()).to_json())
    }
}

/// Runs the input's plan with `bugs` planted; on any failed check, prints
/// the report, the plan file and the replay command, then panics.
pub fn check(input: &PlanInput, bugs: Bugs) {
    let plan = input.plan();
    let report = flush_sim::run(&plan, bugs);
    // A run frees its world before it returns (one run at a time here): a
    // world still alive is a leak of every SST and trace line of the run.
    // Said here, not left to LeakSanitizer: CI's smoke run builds without
    // sanitizers (ci/fuzz-smoke.sh).
    let alive = flush_sim::world::live_worlds();
    assert_eq!(
        alive, 0,
        "sim_plan: expected the run's world freed when it returned, saw {alive} alive (a leak)"
    );
    if report.passed {
        return;
    }
    // A scripted plan's replay line names its plan file, printed below.
    let failed = report
        .first_failure()
        .map_or_else(|| "a check".to_string(), |check| check.name.clone());
    eprintln!("{}", report.render());
    eprintln!("plan file (save as plan.json):");
    eprintln!("{}", PlanFile::new(plan, bugs).to_json());
    eprintln!("replay: {}", report.replay);
    panic!("sim_plan: {failed} failed (plan and replay command above)");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes from a fixed splitmix64 stream.
    fn random_bytes(state: &mut u64, length: usize) -> Vec<u8> {
        (0..length)
            .map(|_| {
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    #[test]
    fn inputs_round_trip_through_bytes() {
        let mut state = 7;
        for length in 0..400 {
            let input = PlanInput::decode(&random_bytes(&mut state, length));
            assert_eq!(PlanInput::decode(&input.to_bytes()), input);
        }
        let empty = PlanInput::decode(&[]);
        assert_eq!((empty.seed, empty.entries.len()), (0, 0));
        assert_eq!(empty.plan().faults.enabled().count(), 0);
    }

    #[test]
    fn fault_decisions_are_mostly_early_and_invert() {
        let early = (0..=u8::MAX).filter(|b| nth_of(*b) < 8).count();
        assert_eq!(early, 224);
        let reached: std::collections::BTreeSet<u8> = (0..=u8::MAX).map(nth_of).collect();
        assert_eq!(reached, (0..40).collect());
        for nth in 0..40 {
            assert_eq!(nth_of(nth_byte(nth)), nth);
        }
    }

    /// Each entry kind decodes from its bytes as the table says.
    #[test]
    fn entries_decode_as_documented() {
        let mut bytes = vec![5, 0, 0b0110_0101, 0, 0, 0, 0, 0];
        // Client 1 writes 10 rows to region slot 3; client 2 flushes slot
        // 6; client 0 pauses 5 ms; the 3rd decision of the first scripted
        // class fires.
        bytes.extend([0x13, 3, 9, 0x26, 6, 0x0c, 69, 0x0e, 0, 2]);
        let input = PlanInput::decode(&bytes);
        assert_eq!(
            input.entries,
            [
                Entry::Write {
                    client: 1,
                    region: 3,
                    rows: 10
                },
                Entry::Request {
                    client: 2,
                    region: 6,
                    kind: RequestKind::Flush
                },
                Entry::Think { client: 0, ms: 5 },
                Entry::Fault { class: 0, nth: 2 },
            ]
        );
        // Shape 0b0_11_001_01: 2 workers, 2 regions, 4 clients.
        let plan = input.plan();
        let w = &plan.workload;
        assert_eq!((w.workers, w.regions, w.clients), (2, 2, 4));
        let script = plan.script.as_ref().expect("a scripted plan");
        assert_eq!(
            script.clients[1],
            [Step::Write {
                region: 2,
                rows: 10
            }]
        );
        assert_eq!(script.clients[2], [Step::Flush { region: 1 }]);
        assert_eq!(script.clients[0], [Step::Think { ms: 5 }]);
        assert_eq!(
            script.faults,
            [ScriptedFault {
                class: scripted_classes()[0],
                nth: 2
            }]
        );
    }

    /// Random byte strings of every length up to past the entry cap: each
    /// decodes to a plan the simulator can run (a failure of any other
    /// would be the plan's, not the engine's).
    #[test]
    fn every_decoded_plan_validates() {
        let mut state = 0x5eed;
        for round in 0..3_000 {
            let length = round % (HEADER_BYTES + 3 * MAX_ENTRIES + 40);
            let bytes = random_bytes(&mut state, length);
            let plan = PlanInput::decode(&bytes).plan();
            if let Err(problems) = plan.validate() {
                panic!("{bytes:?}: {problems}");
            }
            let script = plan.script.as_ref().expect("a scripted plan");
            let steps: usize = script.clients.iter().map(Vec::len).sum();
            assert!(steps + script.faults.len() <= MAX_ENTRIES);
        }
        for fill in [0u8, 0xff] {
            let plan = PlanInput::decode(&[fill; 700]).plan();
            assert_eq!(plan.validate(), Ok(()), "bytes all {fill:#x}");
        }
    }
}
