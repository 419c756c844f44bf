//! The committed seed corpora of `sim_plan` and `cli_input`, as readable
//! values. `cargo test -p flush-tests --lib fuzz::seeds -- --ignored`
//! writes them to `fuzz/corpus/<target>/seed-*`; the other tests check the committed files
//! still decode to these values, and that every sim seed passes.

use std::ffi::OsString;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::plan::{FaultClass, Plan};
use flush_sim::shrink::PlanFile;

use super::cli_input::CliInput;
use super::sim_plan::{scripted_classes, Entry, PlanInput, RequestKind};

/// The header byte of a shape: workers 1..=4, regions 1..=8, clients 1..=4.
fn shape(workers: u8, regions: u8, clients: u8) -> u8 {
    (workers - 1) | (regions - 1) << 2 | (clients - 1) << 5
}

/// An input of `seed` with header bytes `[shape, memory, flow, crash,
/// timing, series]` (the table in [`super::sim_plan`]).
fn input(seed: u16, header: [u8; 6], entries: Vec<Entry>) -> PlanInput {
    PlanInput {
        seed,
        header,
        entries,
    }
}

/// `count` writes of `rows` rows from `client`, round-robin over region
/// slots `0..regions`.
fn writes(client: u8, regions: u8, rows: u8, count: u8) -> Vec<Entry> {
    (0..count)
        .map(|n| Entry::Write {
            client,
            region: n % regions,
            rows,
        })
        .collect()
}

fn request(client: u8, region: u8, kind: RequestKind) -> Entry {
    Entry::Request {
        client,
        region,
        kind,
    }
}

/// The `nth` decision of `class` fires.
fn fault(class: FaultClass, nth: u8) -> Entry {
    let index = scripted_classes()
        .iter()
        .position(|c| *c == class)
        .expect("a scripted class");
    Entry::Fault {
        class: u8::try_from(index).expect("few classes"),
        nth,
    }
}

/// Two clients' writes interleaved with `extra` (for client 0) in the
/// middle: few and small, so a fuzzer's run of a seed or of its mutants
/// stays a few milliseconds.
fn busy(extra: Vec<Entry>) -> Vec<Entry> {
    let mut entries = writes(0, 4, 30, 3);
    entries.extend(extra);
    entries.extend(writes(1, 4, 40, 3));
    entries.extend(writes(0, 4, 20, 2));
    entries
}

pub fn sim_plan() -> Vec<(&'static str, PlanInput)> {
    use FaultClass::*;
    use RequestKind::*;
    // 2 workers, 4 regions, 2 clients; an 8 KiB buffer; 5 in flight, 8
    // writes may stall; 1 ms I/O, 50 ms slow I/O, 15 ms injector tick,
    // periodic flush every 200 ms; 4 series.
    let base = [
        shape(2, 4, 2),
        16,
        3 | 3 << 3,
        0,
        1 | 1 << 2 | 1 << 4 | 2 << 6,
        3,
    ];
    let crash = [
        base[0],
        base[1],
        base[2],
        1 | 3 << 1 | 0x10,
        base[4],
        base[5],
    ];
    // Smallest buffer, fewest stalls, one worker: engine-full flushes.
    let tight = [shape(1, 3, 2), 0, 1, 0, 0, 7];
    vec![
        ("seed-writes", input(1, base, busy(Vec::new()))),
        (
            "seed-ddls",
            input(
                2,
                base,
                busy(vec![
                    request(0, 0, Flush),
                    request(1, 1, Alter),
                    Entry::Think { client: 0, ms: 7 },
                    request(0, 2, Truncate),
                    request(1, 3, Close),
                    request(0, 1, Downgrade),
                    request(1, 2, Drop),
                ]),
            ),
        ),
        (
            "seed-flush-faults",
            input(
                3,
                base,
                busy(vec![
                    fault(JobRejection, 1),
                    fault(FreezeFailure, 2),
                    fault(NotifyFailure, 0),
                    fault(AlterDuringFlush, 1),
                    fault(DowngradeDuringFlush, 3),
                    request(1, 0, Alter),
                ]),
            ),
        ),
        (
            "seed-io-faults",
            input(
                4,
                base,
                busy(vec![
                    fault(SstWriteError, 0),
                    fault(ManifestFailure, 2),
                    fault(SstPartialObject, 3),
                    fault(SlowIo, 5),
                    fault(ManifestAmbiguousCommit, 4),
                    fault(WalAppendFailure, 9),
                    fault(WalTruncateFailure, 1),
                ]),
            ),
        ),
        (
            "seed-job-faults",
            input(5, base, busy(vec![fault(JobLost, 1), fault(JobPanic, 3)])),
        ),
        (
            "seed-region-faults",
            input(
                6,
                base,
                busy(vec![
                    fault(RegionDrop, 2),
                    fault(RegionClose, 0),
                    fault(RegionTruncate, 1),
                ]),
            ),
        ),
        (
            "seed-crash",
            input(7, crash, busy(vec![fault(JobRejection, 2)])),
        ),
        ("seed-tight-buffer", input(8, tight, writes(0, 3, 64, 6))),
    ]
}

fn args(line: &str) -> CliInput {
    CliInput::Args(line.split(' ').map(OsString::from).collect())
}

pub fn cli_input() -> Vec<(&'static str, CliInput)> {
    vec![
        ("seed-range", CliInput::SeedRange("100..200".into())),
        ("seed-range-empty", CliInput::SeedRange("7..7".into())),
        ("seed-shard", CliInput::Shard("2/4".into())),
        ("seed-shard-zero", CliInput::Shard("0/0".into())),
        (
            "seed-bug",
            CliInput::Bug(PlantedBug::SeedFaithfulRejectedSenders.name().into()),
        ),
        ("seed-bug-unknown", CliInput::Bug("free-thrice".into())),
        (
            "seed-plan-file",
            CliInput::PlanFile(
                PlanFile::new(Plan::from_seed(7), Bugs::only(PlantedBug::FreeTwice))
                    .to_json()
                    .into_bytes(),
            ),
        ),
        (
            "seed-plan-plain",
            CliInput::PlanFile(serde_json::to_vec(&Plan::standard(8)).expect("plans serialise")),
        ),
        (
            "seed-args-sweep",
            args("sweep --seed-range 10..20 --shard 2/3 --bug free-twice --jobs 2 --json"),
        ),
        (
            "seed-args-replay",
            args("replay --seed 42 --bug forget-free-mem --workload standard --print-plan"),
        ),
        (
            "seed-args-replay-plan",
            args("replay --plan plan.json --trace"),
        ),
        (
            "seed-args-shrink",
            args("shrink --seed 3 --bug stall-not-retried --max-runs 10 --out shrunk.json"),
        ),
        (
            "seed-args-determinism",
            args("check-determinism --seeds 5 --jobs 1"),
        ),
        ("seed-args-bugs", args("bugs --json")),
        (
            "seed-args-bench",
            args("bench --seeds 1 --pairs 1 --parquet-rounds 1"),
        ),
        ("seed-args-help", args("sweep --help")),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
    }

    #[test]
    fn committed_seeds_match() {
        for (name, input) in sim_plan() {
            let path = corpus("sim_plan").join(name);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                PlanInput::decode(&bytes),
                input,
                "{name}: rerun with --ignored"
            );
        }
        for (name, input) in cli_input() {
            let path = corpus("cli_input").join(name);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                CliInput::decode(&bytes),
                input,
                "{name}: rerun with --ignored"
            );
        }
    }

    #[test]
    fn sim_seeds_pass() {
        for (name, input) in sim_plan() {
            let report = flush_sim::run(&input.plan(), Bugs::NONE);
            assert!(report.passed, "{name}: {}\n{input:?}", report.render());
        }
    }

    /// Rewrites `fuzz/corpus/{sim_plan,cli_input}/seed-*`.
    #[test]
    #[ignore = "writes the committed seed corpora"]
    fn regenerate_seed_corpora() {
        for (target, seeds) in [
            (
                "sim_plan",
                sim_plan()
                    .into_iter()
                    .map(|(name, input)| (name, input.to_bytes()))
                    .collect::<Vec<_>>(),
            ),
            (
                "cli_input",
                cli_input()
                    .into_iter()
                    .map(|(name, input)| (name, input.to_bytes()))
                    .collect(),
            ),
        ] {
            let dir = corpus(target);
            std::fs::create_dir_all(&dir).expect("the corpus directory");
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).expect("a seed file");
            }
        }
    }
}
