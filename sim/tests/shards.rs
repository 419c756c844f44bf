//! Sweeps past one machine, end to end through the `flushsim` binary:
//! shards read from each engine's environment and merged back into exactly
//! the single sweep, merges that refuse shards that do not add up, and a
//! budgeted stream killed mid-run that loses no finished seed and resumes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// Every variable `--shard auto` reads: removed from each child, so the
/// machine running the tests (a GitLab or Buildkite CI job) cannot shard
/// them by surprise.
const ENGINE_VARIABLES: &[&str] = &[
    "FLUSHSIM_SHARD_INDEX",
    "FLUSHSIM_SHARD_COUNT",
    "JOB_COMPLETION_INDEX",
    "CI_NODE_INDEX",
    "CI_NODE_TOTAL",
    "BUILDKITE_PARALLEL_JOB",
    "BUILDKITE_PARALLEL_JOB_COUNT",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
];

/// Fields that differ between two runs of the same seeds (wall time,
/// memory) or say how they were split (shard).
const RUN_FIELDS: &[&str] = &["wall_ms", "peak_rss_mb", "shard", "stopped_early"];

fn flushsim(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flushsim"));
    command.args(args);
    for variable in ENGINE_VARIABLES {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    command
}

fn output(mut command: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the flushsim binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a fresh temp dir");
    dir
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Compares two sweep reports field by field, all but [`RUN_FIELDS`].
fn assert_same_sweep(merged: &Value, single: &Value) {
    let (Some(merged), Some(single)) = (merged.as_object(), single.as_object()) else {
        panic!("reports are JSON objects: {merged} {single}");
    };
    let fields: BTreeSet<&String> = merged.keys().chain(single.keys()).collect();
    for field in fields {
        if RUN_FIELDS.contains(&field.as_str()) {
            continue;
        }
        assert_eq!(merged.get(field), single.get(field), "field {field}");
    }
}

/// The acceptance test of issue 18: 4 shards of 0..400, each as its own
/// process with its shard from a different engine's variables, merged,
/// give exactly the report of one sweep of 0..400.
#[test]
fn four_shards_from_four_engines_merge_into_the_single_sweep() {
    let dir = fresh_dir("four-engines");
    let range = "0..400";
    let engines: [(&str, &[(&str, &str)]); 4] = [
        ("GitLab", &[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "4")]),
        (
            "Buildkite",
            &[
                ("BUILDKITE_PARALLEL_JOB", "1"),
                ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
            ],
        ),
        (
            "Slurm",
            &[
                ("SLURM_ARRAY_TASK_ID", "12"),
                ("SLURM_ARRAY_TASK_MIN", "10"),
                ("SLURM_ARRAY_TASK_MAX", "13"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        ),
        (
            "Kubernetes",
            &[("JOB_COMPLETION_INDEX", "3"), ("FLUSHSIM_SHARD_COUNT", "4")],
        ),
    ];
    let shards: Vec<(usize, &str, Child)> = engines
        .iter()
        .enumerate()
        .map(|(position, (engine, env))| {
            let report = std::fs::File::create(dir.join(format!("shard-{position}.json")))
                .expect("a report file");
            let child = flushsim(
                &[
                    "sweep",
                    "--seed-range",
                    range,
                    "--shard",
                    "auto",
                    "--jobs",
                    "1",
                    "--json",
                ],
                env,
            )
            .stdout(report)
            .stderr(Stdio::piped())
            .spawn()
            .expect("a shard starts");
            (position, *engine, child)
        })
        .collect();
    let (single_code, single, _) = output(flushsim(
        &["sweep", "--seed-range", range, "--jobs", "2", "--json"],
        &[],
    ));
    for (position, engine, child) in shards {
        let done = child.wait_with_output().expect("a shard finishes");
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(single_code), "{engine}: {stderr}");
        let said = format!("shard {}/4 from the {engine}", position + 1);
        assert!(stderr.contains(&said), "{engine} said: {stderr}");
    }
    let (code, merged, stderr) = output(flushsim(&["merge", "--json", path(&dir)], &[]));
    assert_eq!(code, single_code, "{stderr}");
    let (merged, single) = (json(&merged), json(&single));
    assert_eq!(merged["seeds_run"], 400);
    assert_eq!(merged["seed_range"], "0..400");
    assert_same_sweep(&merged, &single);
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Writes `report` edited by `edit` to `dir/name`.
fn write_edited(dir: &Path, name: &str, report: &Value, edit: impl FnOnce(&mut Value)) -> String {
    let mut report = report.clone();
    edit(&mut report);
    let file = dir.join(name);
    std::fs::write(&file, report.to_string()).expect("a report written");
    path(&file).to_string()
}

#[test]
fn merge_refuses_overlapping_missing_and_mixed_version_shards() {
    let dir = fresh_dir("merge-refusals");
    let shard = |spec: &str| {
        let (code, stdout, stderr) = output(flushsim(
            &["sweep", "--seed-range", "0..20", "--shard", spec, "--json"],
            &[],
        ));
        assert_eq!(code, 0, "{stderr}");
        json(&stdout)
    };
    let (first, second) = (shard("1/2"), shard("2/2"));
    let one = write_edited(&dir, "one.json", &first, |_| {});
    let two = write_edited(&dir, "two.json", &second, |_| {});
    let one_again = write_edited(&dir, "one-again.json", &first, |_| {});
    let newer = write_edited(&dir, "newer.json", &second, |report| {
        report["flushsim_version"] = "99.0.0".into();
    });
    let other_plans = write_edited(&dir, "other-plans.json", &second, |report| {
        report["plan_generator_version"] = 99.into();
    });
    let other_range = write_edited(&dir, "other-range.json", &second, |report| {
        report["seed_range"] = "0..22".into();
        report["seeds_run"] = 11.into();
    });
    let (code, merged, stderr) = output(flushsim(&["merge", "--json", &one, &two], &[]));
    assert_eq!(code, 0, "the two halves merge: {stderr}");
    assert_eq!(json(&merged)["seeds_run"], 20);
    for (inputs, needles) in [
        (vec![&one], &["missing shards", "shard 2/2", "0..20"][..]),
        (
            vec![&one, &two, &one_again],
            &["overlapping shards", "10 seeds (0, 2, 4"][..],
        ),
        (
            vec![&one, &newer],
            &["mixed versions", "flushsim 99.0.0"][..],
        ),
        (
            vec![&one, &other_plans],
            &["mixed versions", "plan generator 99"][..],
        ),
        (
            vec![&one, &other_range],
            &["mismatched ranges", "0..22"][..],
        ),
    ] {
        let mut args = vec!["merge"];
        args.extend(inputs.iter().map(|input| input.as_str()));
        let (code, stdout, stderr) = output(flushsim(&args, &[]));
        assert_eq!(code, 2, "{inputs:?}: {stderr}");
        assert!(stdout.is_empty(), "{inputs:?} printed a report: {stdout}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{inputs:?}: no '{needle}' in {stderr}"
            );
        }
    }
}

#[test]
fn bad_shard_environments_and_open_ranges_exit_2_naming_the_problem() {
    let sweep = ["sweep", "--seeds", "2", "--shard", "auto"];
    for (env, needle) in [
        (&[][..], "saw none of"),
        (&[("CI_NODE_INDEX", "2")][..], "CI_NODE_TOTAL is not"),
        (
            &[
                ("BUILDKITE_PARALLEL_JOB", "4"),
                ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
            ][..],
            "BUILDKITE_PARALLEL_JOB=4",
        ),
        (
            &[
                ("CI_NODE_INDEX", "1"),
                ("CI_NODE_TOTAL", "2"),
                ("FLUSHSIM_SHARD_INDEX", "2"),
                ("FLUSHSIM_SHARD_COUNT", "2"),
            ][..],
            "two engines disagree",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ][..],
            "saw 'x'",
        ),
    ] {
        let (code, _, stderr) = output(flushsim(&sweep, env));
        assert_eq!(code, 2, "{env:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
    }
    let (code, _, stderr) = output(flushsim(&["sweep", "--seed-range", "5.."], &[]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--time-budget or --until-failures"),
        "{stderr}"
    );
    // Without --shard, an engine's variables are named but do not shard.
    let (code, stdout, stderr) = output(flushsim(
        &["sweep", "--seeds", "2", "--json"],
        &[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "2")],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("--shard auto"), "{stderr}");
    assert_eq!(json(&stdout)["seeds_run"], 2);
}

/// The seeds of a stream's seed lines, in file order.
fn stream_seeds(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["line"] == "seed")
        .filter_map(|line| line["seed"].as_u64())
        .collect()
}

/// Waits (bounded) until `file` holds at least `seeds` seed lines while
/// `child` still runs.
fn wait_for_seed_lines(child: &mut Child, file: &Path, seeds: usize) -> Vec<u64> {
    for _ in 0..2_400 {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let found = stream_seeds(&text);
        if found.len() >= seeds {
            return found;
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the sweep ended before streaming {seeds} seeds: {text}"
        );
        // A poll of a real child process, outside any simulation.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "no {seeds} seed lines in {} after 2 minutes",
        file.display()
    );
}

#[test]
fn a_budgeted_stream_killed_midway_keeps_its_seeds_resumes_and_merges() {
    let dir = fresh_dir("budget-stream");
    let stream = dir.join("sweep.jsonl");
    let args = ["sweep", "--seed-range", "1000..", "--jobs", "2"];
    let mut child = flushsim(&args, &[])
        .args(["--time-budget", "30s", "--jsonl", path(&stream)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the budgeted sweep starts");
    // Lines present while the sweep runs: each seed was flushed as it
    // finished, not at the end.
    let seen = wait_for_seed_lines(&mut child, &stream, 6);
    child.kill().expect("the sweep is killed");
    let _ = child.wait();
    let killed: BTreeSet<u64> =
        stream_seeds(&std::fs::read_to_string(&stream).expect("the stream"))
            .into_iter()
            .collect();
    assert!(
        seen.iter().all(|seed| killed.contains(seed)),
        "{seen:?} vs {killed:?}"
    );
    assert_eq!(
        killed.len(),
        stream_seeds(&std::fs::read_to_string(&stream).expect("the stream")).len(),
        "a seed twice"
    );
    // A kill mid-write leaves a cut last line: the resume drops it.
    let mut text = std::fs::read_to_string(&stream).expect("the stream");
    text.push_str("{\"line\":\"seed\",\"seed\":99");
    std::fs::write(&stream, text).expect("a cut line appended");
    let (code, resumed, stderr) = output({
        let mut command = flushsim(&args, &[]);
        command.args(["--time-budget", "2s", "--resume", path(&stream), "--json"]);
        command
    });
    assert!(code <= 1, "{stderr}");
    assert!(stderr.contains("cut short"), "{stderr}");
    let resumed = json(&resumed);
    let after = stream_seeds(&std::fs::read_to_string(&stream).expect("the stream"));
    let unique: BTreeSet<u64> = after.iter().copied().collect();
    assert_eq!(unique.len(), after.len(), "a seed ran twice: {after:?}");
    assert!(killed.is_subset(&unique), "a finished seed was lost");
    let highest = unique.last().copied().expect("seeds");
    assert_eq!(
        unique,
        (1000..=highest).collect(),
        "the seeds are one prefix of 1000.."
    );
    assert_eq!(resumed["seeds_run"], after.len());
    // The stream alone merges into the report the resumed sweep printed.
    let (code, merged, stderr) = output(flushsim(&["merge", "--json", path(&stream)], &[]));
    assert!(code <= 1, "{stderr}");
    let merged = json(&merged);
    assert_eq!(merged["seed_range"], format!("1000..{}", highest + 1));
    assert_same_sweep(&merged, &resumed);
    // And on stdin, as JSON Lines.
    let mut command = flushsim(&["merge", "--json", "-"], &[]);
    command.stdin(std::fs::File::open(&stream).expect("the stream"));
    let (_, from_stdin, stderr) = output(command);
    assert_same_sweep(&json(&from_stdin), &merged);
    assert!(stderr.contains("merged 1 reports"), "{stderr}");
}

#[test]
fn a_seed_in_a_budgeted_stream_is_the_seed_run_alone() {
    let dir = fresh_dir("budget-determinism");
    let stream = dir.join("sweep.jsonl");
    let (code, _, stderr) = output(flushsim(
        &[
            "sweep",
            "--seed-range",
            "40..",
            "--until-failures",
            "1",
            "--bug",
            "forget-free-mem",
            "--jsonl",
            path(&stream),
        ],
        &[],
    ));
    assert_eq!(code, 1, "a planted bug fails the sweep: {stderr}");
    let text = std::fs::read_to_string(&stream).expect("the stream");
    let line = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["line"] == "seed" && line["passed"] == false)
        .expect("a failed seed's line");
    let seed = line["seed"].as_u64().expect("a seed");
    let (_, alone, _) = output(flushsim(
        &[
            "replay",
            "--seed",
            &seed.to_string(),
            "--bug",
            "forget-free-mem",
            "--json",
        ],
        &[],
    ));
    assert_eq!(json(&alone)["trace_hash"], line["trace_hash"]);
}

/// `ci/sweep-shards.sh`: N shard processes on this machine, merged.
#[test]
fn the_local_shard_script_merges_into_the_single_sweep() {
    let dir = fresh_dir("shard-script");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/sweep-shards.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(["3", "7..37", path(&dir)])
        .env("FLUSHSIM", env!("CARGO_BIN_EXE_flushsim"));
    for variable in ENGINE_VARIABLES {
        command.env_remove(variable);
    }
    let (code, table, stderr) = output(command);
    let (single_code, single, _) =
        output(flushsim(&["sweep", "--seed-range", "7..37", "--json"], &[]));
    assert_eq!(code, single_code, "{stderr}");
    assert!(table.contains("30 seeds"), "{table}");
    let merged = std::fs::read_to_string(dir.join("merged.json")).expect("merged.json");
    assert_same_sweep(&json(&merged), &json(&single));
}
