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
        (
            "recipe_not_draw_seed_pairs",
            &["replay", "--seed", "1", "--recipe", "12"][..],
        ),
        (
            "recipe_draws_not_increasing",
            &["replay", "--seed", "1", "--recipe", "5:1,5:2"][..],
        ),
        ("recipe_without_seed", &["shrink", "--recipe", "5:1"][..]),
        ("explore_zero_runs", &["explore", "--budget-runs", "0"][..]),
        // A count of nothing would run nothing and pass.
        ("sweep_zero_seeds", &["sweep", "--seeds", "0"][..]),
        (
            "determinism_zero_seeds",
            &["check-determinism", "--seeds", "0"][..],
        ),
        ("sweep_zero_jobs", &["sweep", "--jobs", "0"][..]),
        (
            "explore_zero_jobs",
            &["explore", "--budget-runs", "5", "--jobs", "0"][..],
        ),
        (
            "determinism_zero_jobs",
            &["check-determinism", "--jobs", "0"][..],
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

/// Plans that parse but that the simulator cannot run: refused before
/// anything runs, each bad field named by its JSON path.
#[test]
fn unrunnable_plan_files() {
    let valid = serde_json::to_value(flush_sim::Plan::from_seed(1)).expect("plans serialise");
    let with = |changes: &[(&str, serde_json::Value)]| {
        let mut plan = valid.clone();
        for (pointer, value) in changes {
            *plan
                .pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer} is a field of the plan")) = value.clone();
        }
        plan.to_string()
    };
    for (name, changes) in [
        (
            "plan_zero_workers",
            vec![("/workload/workers", serde_json::json!(0))],
        ),
        (
            "plan_zero_regions",
            vec![("/workload/regions", serde_json::json!(0))],
        ),
        (
            "plan_zero_clients",
            vec![("/workload/clients", serde_json::json!(0))],
        ),
        (
            "plan_rows_min_above_max",
            vec![
                ("/workload/rows_per_write_min", serde_json::json!(70)),
                ("/workload/rows_per_write_max", serde_json::json!(60)),
            ],
        ),
        (
            "plan_zero_rows_per_write_max",
            vec![("/workload/rows_per_write_max", serde_json::json!(0))],
        ),
        (
            "plan_zero_rows_per_write_min",
            vec![("/workload/rows_per_write_min", serde_json::json!(0))],
        ),
        (
            "plan_zero_buffer",
            vec![("/workload/global_buffer_bytes", serde_json::json!(0))],
        ),
        (
            "plan_probability_above_one",
            vec![(
                "/faults/classes/slow_io/probability",
                serde_json::json!(1.5),
            )],
        ),
        (
            "plan_probability_negative",
            vec![(
                "/faults/classes/crash/probability",
                serde_json::json!(-0.25),
            )],
        ),
        (
            "plan_absurd_sizes",
            vec![
                ("/workload/workers", serde_json::json!(u32::MAX)),
                ("/workload/regions", serde_json::json!(u32::MAX)),
                ("/workload/clients", serde_json::json!(u32::MAX)),
                ("/workload/writes_per_client", serde_json::json!(u32::MAX)),
                ("/workload/rows_per_write_max", serde_json::json!(u32::MAX)),
                ("/workload/series", serde_json::json!(u32::MAX)),
                ("/workload/max_in_flight", serde_json::json!(u32::MAX)),
                ("/workload/notify_retry_limit", serde_json::json!(u32::MAX)),
            ],
        ),
        (
            "plan_too_many_writes_in_all",
            vec![
                ("/workload/clients", serde_json::json!(200)),
                ("/workload/writes_per_client", serde_json::json!(10_000)),
            ],
        ),
        (
            "plan_zero_notify_backoff",
            vec![("/workload/notify_retry_backoff_ms", serde_json::json!(0))],
        ),
        (
            "plan_too_many_rows_in_all",
            vec![
                ("/workload/clients", serde_json::json!(100)),
                ("/workload/writes_per_client", serde_json::json!(10_000)),
                ("/workload/rows_per_write_max", serde_json::json!(10_000)),
            ],
        ),
        (
            "plan_delays_beyond_their_caps",
            vec![
                ("/workload/think_ms_max", serde_json::json!(1_001)),
                ("/workload/io_latency_ms_max", serde_json::json!(101)),
                ("/workload/slow_io_ms_max", serde_json::json!(u64::MAX)),
                (
                    "/workload/notify_retry_backoff_ms",
                    serde_json::json!(u64::MAX),
                ),
                (
                    "/workload/auto_flush_interval_ms",
                    serde_json::json!(3_600_001),
                ),
            ],
        ),
        (
            "plan_zero_ticks",
            vec![
                ("/workload/injector_tick_ms", serde_json::json!(0)),
                ("/workload/monitor_tick_ms", serde_json::json!(0)),
            ],
        ),
        (
            "plan_zero_budgets",
            vec![
                ("/workload/safety_budget_ms", serde_json::json!(0)),
                ("/workload/liveness_budget_ms", serde_json::json!(0)),
            ],
        ),
        (
            "plan_budget_beyond_a_day",
            vec![("/workload/liveness_budget_ms", serde_json::json!(u64::MAX))],
        ),
        (
            "plan_mix_above_per_mille",
            vec![("/workload/mix/flush", serde_json::json!(1_001))],
        ),
        (
            "plan_skip_wal_beyond_regions",
            vec![
                ("/workload/regions", serde_json::json!(2)),
                ("/workload/skip_wal_regions", serde_json::json!(3)),
            ],
        ),
    ] {
        let path = plan_file(&format!("{name}.json"), &with(&changes));
        insta::assert_snapshot!(name, plan_error(&path));
    }
    // A timeline whose second split could never fire.
    let mut forked = valid.clone();
    forked["splits"] = serde_json::json!([
        {"at_draw": 9, "seed": 1},
        {"at_draw": 4, "seed": 2}
    ]);
    let path = plan_file("plan_splits_out_of_order.json", &forked.to_string());
    insta::assert_snapshot!("plan_splits_out_of_order", plan_error(&path));
    // A script with one list for two clients, steps on regions the plan
    // lacks, an empty write, too long a pause, a crash it cannot decide,
    // and a class the mix still switches on.
    let mut scripted = valid.clone();
    scripted["workload"]["clients"] = serde_json::json!(2);
    scripted["workload"]["regions"] = serde_json::json!(4);
    scripted["workload"]["skip_wal_regions"] = serde_json::json!(0);
    if let Some(classes) = scripted["faults"]["classes"].as_object_mut() {
        for setting in classes.values_mut() {
            setting["enabled"] = serde_json::json!(false);
        }
    }
    scripted["faults"]["classes"]["slow_io"]["enabled"] = serde_json::json!(true);
    scripted["script"] = serde_json::json!({
        "clients": [[
            {"op": "write", "region": 0, "rows": 5},
            {"op": "write", "region": 2, "rows": 0},
            {"op": "think", "ms": 5000},
            {"op": "flush", "region": 9}
        ]],
        "faults": [{"class": "crash", "nth": 0}]
    });
    let path = plan_file("plan_bad_script.json", &scripted.to_string());
    insta::assert_snapshot!("plan_bad_script", plan_error(&path));
    // A step the script does not know.
    scripted["script"] = serde_json::json!({"clients": [[{"op": "compact", "region": 1}], []]});
    let path = plan_file("plan_script_unknown_step.json", &scripted.to_string());
    insta::assert_snapshot!("plan_script_unknown_step", plan_error(&path));
}
