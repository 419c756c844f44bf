//! insta snapshots of the `flushsim` command line's answers to bad input:
//! the message a user sees and the exit code (2: bad usage). They come from
//! the same parser and plan loader the binary uses.
//!
//! Accept an intended change with `cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p flush-tests --test snapshots_cli`.

use std::path::PathBuf;

use clap::Parser;
use flush_sim::cli::{load_plan, BugArgs, Cli, EXIT_USAGE};
use flush_sim::report::WorkloadChoice;

/// What `flushsim ARGS` prints and exits with when clap refuses the args.
fn parse_error(args: &[&str]) -> String {
    let argv = std::iter::once("flushsim").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(error) => format!(
            "$ flushsim {}\nexit {}\n{}",
            args.join(" "),
            error.exit_code(),
            error.render()
        ),
    }
}

#[test]
fn bad_arguments() {
    for (name, args) in [
        ("seeds_not_a_number", &["sweep", "--seeds", "abc"][..]),
        ("shard_past_its_count", &["sweep", "--shard", "3/2"][..]),
        ("shard_malformed", &["sweep", "--shard", "two"][..]),
        (
            "time_budget_without_unit",
            &["sweep", "--time-budget", "30"][..],
        ),
        (
            "until_failures_zero",
            &["sweep", "--until-failures", "0"][..],
        ),
        ("merge_without_reports", &["merge"][..]),
        ("unknown_bug", &["sweep", "--bug", "nope"][..]),
        ("empty_seed_range", &["sweep", "--seed-range", "9..2"][..]),
        ("replay_without_seed", &["replay"][..]),
        (
            "seed_and_plan",
            &["replay", "--seed", "1", "--plan", "p.json"][..],
        ),
        ("unknown_command", &["frobnicate"][..]),
        (
            "crash_test_zero_rounds",
            &["crash-test", "--rounds", "0"][..],
        ),
        (
            "crash_test_seed_not_a_number",
            &["crash-test", "--seed", "x"][..],
        ),
    ] {
        insta::assert_snapshot!(name, parse_error(args));
    }
}

fn plan_file(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("snapshots-cli");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("plan file written");
    path
}

/// What `flushsim replay --plan FILE` prints (as `error: …`) and exits
/// with, the file's path written as FILE.
fn plan_error(path: &std::path::Path) -> String {
    let no_bugs = BugArgs {
        bugs: Vec::new(),
        workload: WorkloadChoice::Sweep,
    };
    match load_plan(Some(path), None, None, &no_bugs) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(message) => format!(
            "$ flushsim replay --plan FILE\nexit {EXIT_USAGE}\nerror: {}",
            message.replace(&path.display().to_string(), "FILE")
        ),
    }
}

#[test]
fn bad_plan_files() {
    let valid = serde_json::to_value(flush_sim::Plan::from_seed(1)).expect("plans serialise");
    let mut unknown_bug = valid;
    unknown_bug["bugs"] = serde_json::json!(["no-such-bug"]);
    for (name, path) in [
        ("plan_not_json", plan_file("not-json.json", "seed = 3\n")),
        (
            "plan_truncated",
            plan_file("truncated.json", "{\"seed\": 3, \"workload\": {"),
        ),
        (
            "plan_missing_field",
            plan_file("missing.json", r#"{"seed": 1, "faults": {"classes": {}}}"#),
        ),
        (
            "plan_unknown_bug",
            plan_file("unknown-bug.json", &unknown_bug.to_string()),
        ),
        (
            "plan_no_such_file",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("snapshots-cli/absent.json"),
        ),
    ] {
        insta::assert_snapshot!(name, plan_error(&path));
    }
}
