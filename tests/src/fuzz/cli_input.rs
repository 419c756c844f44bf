//! `cli_input`: the `flushsim` command line's input parsing, fed anything.
//!
//! Every path calls what the CLI itself calls: clap's parser for [`Cli`]
//! (with the `--seed-range`, `--shard` and `--bug` value parsers inside),
//! [`parse_seed_range`], [`Shard`]'s `FromStr`, [`PlantedBug`]'s `FromStr`,
//! and [`load_plan`] on a plan file (the file `replay --plan` and
//! `shrink --plan` read). Errors are fine; a panic, a hang or an answer
//! that does not survive a round trip is a finding.
//!
//! Byte layout of a [`CliInput`]: the first byte picks the kind (modulo
//! [`KINDS`]), the rest is its payload: text for the string parsers (lossy
//! UTF-8), the file's raw bytes for a plan file, NUL-separated raw
//! arguments (not necessarily UTF-8) for a command line.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use clap::Parser;
use flush_core::bugs::PlantedBug;
use flush_sim::cli::{load_plan, BugArgs, Cli, Command};
use flush_sim::report::WorkloadChoice;
use flush_sim::shard_env::ShardArg;
use flush_sim::shrink::PlanFile;
use flush_sim::sweep::{parse_seed_range, Shard};

/// Number of input kinds.
pub const KINDS: u8 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CliInput {
    /// `--seed-range A..B`.
    SeedRange(String),
    /// `--shard K/N`.
    Shard(String),
    /// `--bug NAME`.
    Bug(String),
    /// The contents of `--plan FILE`.
    PlanFile(Vec<u8>),
    /// `flushsim ARGS…`.
    Args(Vec<OsString>),
}

impl<'a> Arbitrary<'a> for CliInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let kind = u.arbitrary::<u8>().unwrap_or(0) % KINDS;
        let payload = u.bytes(u.len())?;
        let text = || String::from_utf8_lossy(payload).into_owned();
        Ok(match kind {
            0 => CliInput::SeedRange(text()),
            1 => CliInput::Shard(text()),
            2 => CliInput::Bug(text()),
            3 => CliInput::PlanFile(payload.to_vec()),
            _ => CliInput::Args(if payload.is_empty() {
                Vec::new()
            } else {
                payload
                    .split(|byte| *byte == 0)
                    .map(|arg| OsString::from_vec(arg.to_vec()))
                    .collect()
            }),
        })
    }
}

impl CliInput {
    /// Decodes `bytes` exactly as the `cli_input` target does.
    pub fn decode(bytes: &[u8]) -> CliInput {
        CliInput::arbitrary_take_rest(Unstructured::new(bytes)).expect("every byte string decodes")
    }

    /// The bytes that decode to this input (arguments must not hold NUL).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            CliInput::SeedRange(text) => (0, text.clone().into_bytes()),
            CliInput::Shard(text) => (1, text.clone().into_bytes()),
            CliInput::Bug(text) => (2, text.clone().into_bytes()),
            CliInput::PlanFile(bytes) => (3, bytes.clone()),
            CliInput::Args(args) => (
                4,
                args.iter()
                    .map(|arg| arg.clone().into_vec())
                    .collect::<Vec<_>>()
                    .join(&0u8),
            ),
        };
        let mut bytes = vec![kind];
        bytes.extend(payload);
        bytes
    }
}

/// Feeds `input` to the CLI's parsers; panics only on a finding.
pub fn check(input: &CliInput) {
    match input {
        CliInput::SeedRange(text) => check_seed_range(text),
        CliInput::Shard(text) => check_shard(text),
        CliInput::Bug(text) => check_bug(text),
        CliInput::PlanFile(bytes) => check_plan_file(bytes),
        CliInput::Args(args) => check_args(args),
    }
}

fn check_seed_range(text: &str) {
    if let Ok(range) = parse_seed_range(text) {
        assert!(
            range.start < range.end,
            "{text:?} parsed to empty {range:?}"
        );
        let again = format!("{}..{}", range.start, range.end);
        assert_eq!(parse_seed_range(&again), Ok(range), "{text:?}");
    }
}

fn check_shard(text: &str) {
    if let Ok(shard) = text.parse::<Shard>() {
        check_parsed_shard(text, shard);
    }
}

fn check_parsed_shard(text: &str, shard: Shard) {
    assert!(
        shard.index >= 1 && shard.index <= shard.count,
        "{text:?} parsed to {shard:?}"
    );
    assert_eq!(shard.to_string().parse::<Shard>(), Ok(shard), "{text:?}");
    let seeds: Vec<u64> = (100..164).collect();
    let selected = shard.select(&seeds);
    // Positions p in 0..64 with p % N == K - 1.
    let (index, count) = (u128::from(shard.index), u128::from(shard.count));
    let expected = (64 + count - index) / count;
    assert_eq!(selected.len() as u128, expected, "{text:?}: {selected:?}");
}

fn check_bug(text: &str) {
    match text.parse::<PlantedBug>() {
        Ok(bug) => assert_eq!(bug.name(), text),
        Err(error) => assert!(error.to_string().contains("known bugs")),
    }
}

/// The file `--plan` reads, one per process, removed after each read (a
/// fuzz run ends by `exit`, with no chance to clean up after itself).
fn plan_path() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "flushsim-fuzz-cli-input-{}.json",
            std::process::id()
        ))
    })
}

fn check_plan_file(bytes: &[u8]) {
    let path = plan_path();
    if std::fs::write(path, bytes).is_err() {
        return;
    }
    let no_bugs = BugArgs {
        bugs: Vec::new(),
        workload: WorkloadChoice::Sweep,
    };
    let loaded = load_plan(Some(path), None, None, &no_bugs);
    let _ = std::fs::remove_file(path);
    // The same text parsed in memory agrees with the file.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let parsed = PlanFile::from_json(text).and_then(|file| Ok((file.bugs()?, file.plan)));
        match (&loaded, &parsed) {
            (Ok((plan, bugs)), Ok((parsed_bugs, parsed_plan))) => {
                assert_eq!(plan, parsed_plan);
                assert_eq!(bugs, parsed_bugs);
            }
            (Err(_), Err(_)) => {}
            _ => panic!("load_plan and PlanFile::from_json disagree: {loaded:?} vs {parsed:?}"),
        }
    }
    let Ok((plan, bugs)) = loaded else {
        return;
    };
    // What `replay` prints of it, and what `--print-plan` writes back.
    let _ = plan.faults.to_string();
    let json = PlanFile::new(plan.clone(), bugs).to_json();
    match PlanFile::from_json(&json) {
        Ok(again) => {
            assert_eq!(
                again.plan, plan,
                "the plan changed through --print-plan:\n{json}"
            );
            assert_eq!(again.bugs(), Ok(bugs));
        }
        Err(error) => panic!("--print-plan wrote a plan it cannot read back: {error}\n{json}"),
    }
}

fn check_args(args: &[OsString]) {
    let argv = std::iter::once(OsString::from("flushsim")).chain(args.iter().cloned());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(error) => {
            // What the CLI would print (also for --help and --version).
            let _ = error.render().to_string();
            return;
        }
    };
    match &cli.command {
        Command::Sweep(args) => {
            if let Some(range) = &args.selection.seed_range {
                assert!(range.end.is_none_or(|end| range.start < end));
            }
            if let Some(ShardArg::Fixed(shard)) = args.shard {
                check_parsed_shard("--shard", shard);
            }
        }
        // A `--plan FILE` named in fuzzed arguments is not read (it could
        // be /dev/zero); plan files are fuzzed through `PlanFile` above.
        Command::Replay(args) if args.plan.is_none() => {
            check_load(args.seed, &args.bug);
        }
        Command::Shrink(args) if args.plan.is_none() => {
            check_load(args.seed, &args.bug);
        }
        _ => {}
    }
}

fn check_load(seed: Option<u64>, bug: &BugArgs) {
    match load_plan(None, seed, None, bug) {
        Ok((plan, bugs)) => {
            assert_eq!(Some(plan.seed), seed);
            assert_eq!(bugs.iter().count(), {
                let mut names: Vec<_> = bug.bugs.iter().map(|bug| bug.name()).collect();
                names.sort_unstable();
                names.dedup();
                names.len()
            });
        }
        Err(_) => assert!(seed.is_none()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_through_bytes() {
        let inputs = [
            CliInput::SeedRange("0..100".into()),
            CliInput::Shard("2/4".into()),
            CliInput::Bug("free-twice".into()),
            CliInput::PlanFile(b"{}".to_vec()),
            CliInput::Args(vec!["sweep".into(), "--seeds".into(), "3".into()]),
            CliInput::Args(Vec::new()),
        ];
        for input in inputs {
            assert_eq!(CliInput::decode(&input.to_bytes()), input);
        }
    }

    #[test]
    fn seeds_pass() {
        for (_, input) in crate::fuzz::seeds::cli_input() {
            check(&input);
        }
    }
}
