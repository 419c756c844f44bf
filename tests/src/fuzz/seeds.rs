//! The committed seed corpora of `sim_plan` and `cli_input`, as readable
//! values. `cargo test -p flush-tests --lib fuzz::seeds -- --ignored`
//! writes them to `fuzz/corpus/<target>/seed-*`; the other tests check the committed files
//! still decode to these values, and that every sim seed passes.

use std::ffi::OsString;

use flush_core::bugs::{Bugs, PlantedBug};
use flush_sim::plan::{FaultClass, Plan};
use flush_sim::shrink::PlanFile;

use super::cli_input::CliInput;
use super::sim_plan::PlanInput;

/// A sweep plan cut down to the fuzz bounds, with `faults` (class,
/// probability step 0..=127) switched on and every other class off.
fn with_faults(seed: u64, faults: &[(FaultClass, u8)]) -> PlanInput {
    let mut input = PlanInput::from_plan(&Plan::from_seed(seed));
    input.faults = FaultClass::ALL
        .iter()
        .map(|class| {
            faults
                .iter()
                .find(|(on, _)| on == class)
                .map_or(0, |(_, step)| 1 | step << 1)
        })
        .collect();
    input
}

/// Sets a workload knob's byte to the one nearest `value`.
fn knob(mut input: PlanInput, name: &str, value: u64) -> PlanInput {
    let index = super::sim_plan::KNOBS
        .iter()
        .position(|knob| knob.name == name)
        .expect("a knob of the table");
    input.knobs[index] = super::sim_plan::KNOBS[index].byte(value);
    input
}

pub fn sim_plan() -> Vec<(&'static str, PlanInput)> {
    use FaultClass::*;
    let busy = |input| knob(knob(input, "writes", 160), "clients", 4);
    vec![
        // The sweep's own plans for seeds 1..=3, cut down.
        ("seed-sweep-1", PlanInput::from_plan(&Plan::from_seed(1))),
        ("seed-sweep-2", PlanInput::from_plan(&Plan::from_seed(2))),
        ("seed-sweep-3", PlanInput::from_plan(&Plan::from_seed(3))),
        ("seed-no-faults", busy(with_faults(4, &[]))),
        (
            "seed-region-faults",
            busy(with_faults(
                5,
                &[(RegionDrop, 64), (RegionClose, 64), (RegionTruncate, 64)],
            )),
        ),
        (
            "seed-flush-faults",
            busy(with_faults(
                6,
                &[
                    (JobRejection, 80),
                    (FreezeFailure, 60),
                    (NotifyFailure, 80),
                    (AlterDuringFlush, 80),
                    (DowngradeDuringFlush, 60),
                ],
            )),
        ),
        (
            "seed-io-faults",
            busy(with_faults(
                7,
                &[
                    (ManifestFailure, 70),
                    (SstWriteError, 70),
                    (SstPartialObject, 70),
                    (SlowIo, 70),
                ],
            )),
        ),
        (
            "seed-crash-wal",
            busy(with_faults(8, &[(Crash, 64), (WalAppendFailure, 100)])),
        ),
        (
            // The smallest buffer and stall limit: writes stall, engine-full
            // flushes pick regions.
            "seed-tight-buffer",
            knob(
                knob(
                    knob(
                        busy(with_faults(9, &[(JobRejection, 30)])),
                        "global_buffer_bytes",
                        2_048,
                    ),
                    "max_stalled_writes",
                    2,
                ),
                "rows_per_write_max",
                60,
            ),
        ),
        (
            "seed-all-faults",
            busy(with_faults(
                10,
                &FaultClass::ALL
                    .iter()
                    .map(|class| (*class, 40))
                    .collect::<Vec<_>>(),
            )),
        ),
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
