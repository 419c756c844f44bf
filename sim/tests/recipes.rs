//! The ready-to-use recipes under `ci/recipes/` hold together: they parse
//! as YAML, carry the fields their engine requires (a schema test of the
//! fields used, since neither actionlint nor kubeconform is on a clean CI
//! machine), and the shard count each one gives flushsim matches the fan-out
//! it asks the engine for; every `flushsim` command in them parses.

use std::path::{Path, PathBuf};

use clap::Parser;
use flush_sim::cli::Cli;
use serde::Deserialize as _;
use serde_yaml::Value;

fn recipe(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ci/recipes")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    (path, text)
}

fn documents(name: &str) -> Vec<Value> {
    let (path, text) = recipe(name);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{}: not YAML: {error}", path.display()))
        })
        .collect()
}

fn text_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("expected a string at {path:?}, saw {at:?}"))
}

fn sequence_at<'a>(value: &'a Value, path: &[&str]) -> &'a Vec<Value> {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_sequence()
        .unwrap_or_else(|| panic!("expected a list at {path:?}, saw {at:?}"))
}

/// Every `flushsim SUBCOMMAND …` command line in `text`, shell variables
/// replaced by sample values, parses as the binary would parse it.
fn assert_commands_parse(text: &str, samples: &[(&str, &str)]) -> usize {
    let mut commands = 0;
    let mut joined = text.replace("\\\n", " ");
    for (variable, value) in samples {
        joined = joined.replace(variable, value);
    }
    let is_command = |line: &str| {
        !line.trim_start().starts_with('#')
            && (line.contains("flushsim sweep ") || line.contains("flushsim merge "))
    };
    for line in joined.lines().filter(|line| is_command(line)) {
        let Some(start) = line.find("flushsim ") else {
            continue;
        };
        let command = line[start..].split(['|', ';']).next().unwrap_or_default();
        let command = command.split(" >").next().unwrap_or_default();
        let command = command.split(" ||").next().unwrap_or_default();
        let args: Vec<String> = command
            .split_whitespace()
            .map(|word| word.trim_matches(['"', ',', '[', ']']).to_string())
            .collect();
        if let Err(error) = Cli::try_parse_from(&args) {
            panic!("{args:?} does not parse: {}", error.render());
        }
        commands += 1;
    }
    commands
}

#[test]
fn the_github_actions_workflow_fans_out_a_matrix_and_merges_it() {
    let workflow = documents("github-actions.yml").remove(0);
    assert!(!text_at(&workflow, &["name"]).is_empty());
    // YAML 1.1 parsers read a bare `on` as true; GitHub reads the key "on".
    assert!(
        workflow["on"].is_mapping(),
        "`on` triggers: {:?}",
        workflow["on"]
    );
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    for (name, job) in jobs {
        assert!(!text_at(job, &["runs-on"]).is_empty(), "{name:?}: runs-on");
        let steps = sequence_at(job, &["steps"]);
        assert!(!steps.is_empty(), "{name:?}: steps");
        for step in steps {
            let uses = step["uses"].as_str();
            let run = step["run"].as_str();
            assert!(
                uses.is_some() != run.is_some(),
                "{name:?}: a step is `uses` or `run`: {step:?}"
            );
        }
    }
    let sweep = &workflow["jobs"]["sweep"];
    let shards = sequence_at(sweep, &["strategy", "matrix", "shard"]);
    let indexes: Vec<u64> = shards.iter().filter_map(Value::as_u64).collect();
    assert_eq!(
        indexes,
        (1..=shards.len() as u64).collect::<Vec<_>>(),
        "shards 1..=N, 1-based"
    );
    assert_eq!(
        text_at(sweep, &["env", "FLUSHSIM_SHARD_INDEX"]),
        "${{ matrix.shard }}"
    );
    assert_eq!(
        text_at(sweep, &["env", "FLUSHSIM_SHARD_COUNT"]),
        "${{ strategy.job-total }}"
    );
    assert_eq!(sweep["strategy"]["fail-fast"].as_bool(), Some(false));
    let uses = |job: &Value| -> Vec<String> {
        sequence_at(job, &["steps"])
            .iter()
            .filter_map(|step| step["uses"].as_str())
            .map(str::to_string)
            .collect()
    };
    assert!(uses(sweep)
        .iter()
        .any(|action| action.starts_with("actions/upload-artifact@")));
    let merge = &workflow["jobs"]["merge"];
    assert_eq!(text_at(merge, &["needs"]), "sweep");
    let download = sequence_at(merge, &["steps"])
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|action| action.starts_with("actions/download-artifact@"))
        })
        .expect("the merge job downloads the shards");
    assert_eq!(download["with"]["merge-multiple"].as_bool(), Some(true));
    let (_, text) = recipe("github-actions.yml");
    let samples = [
        ("\"$range\"", "0..100"),
        ("\"shard-${FLUSHSIM_SHARD_INDEX}.jsonl\"", "shard-1.jsonl"),
        ("target/release/flushsim", "flushsim"),
    ];
    assert_eq!(assert_commands_parse(&text, &samples), 3);
}

#[test]
fn the_kubernetes_indexed_job_gives_flushsim_its_completions_as_the_count() {
    let jobs = documents("k8s-indexed-job.yaml");
    assert_eq!(jobs.len(), 2, "the sweep Job and the merge Job");
    for job in &jobs {
        assert_eq!(text_at(job, &["apiVersion"]), "batch/v1");
        assert_eq!(text_at(job, &["kind"]), "Job");
        assert!(!text_at(job, &["metadata", "name"]).is_empty());
        let pod = &job["spec"]["template"]["spec"];
        let restart = text_at(pod, &["restartPolicy"]);
        assert!(
            restart == "Never" || restart == "OnFailure",
            "a Job's pods: {restart}"
        );
        for container in sequence_at(pod, &["containers"]) {
            assert!(!text_at(container, &["name"]).is_empty());
            assert!(!text_at(container, &["image"]).is_empty());
            for variable in container["env"].as_sequence().into_iter().flatten() {
                // Kubernetes refuses a number here: env values are strings.
                assert!(variable["value"].is_string(), "{variable:?}");
            }
        }
    }
    let sweep = &jobs[0];
    assert_eq!(text_at(sweep, &["spec", "completionMode"]), "Indexed");
    let completions = sweep["spec"]["completions"].as_u64().expect("completions");
    let parallelism = sweep["spec"]["parallelism"].as_u64().expect("parallelism");
    assert!(parallelism >= 1 && parallelism <= completions);
    let container = &sequence_at(sweep, &["spec", "template", "spec", "containers"])[0];
    let count = sequence_at(container, &["env"])
        .iter()
        .find(|variable| variable["name"] == "FLUSHSIM_SHARD_COUNT")
        .expect("FLUSHSIM_SHARD_COUNT: Kubernetes gives the index only");
    assert_eq!(
        count["value"].as_str(),
        Some(completions.to_string().as_str())
    );
    let (_, text) = recipe("k8s-indexed-job.yaml");
    let samples = [
        ("\"$SEED_RANGE\"", "0..100"),
        ("\"$out\"", "/results/shard-0.jsonl"),
    ];
    assert_eq!(assert_commands_parse(&text, &samples), 2);
    let merge_command: Vec<&str> =
        sequence_at(&jobs[1], &["spec", "template", "spec", "containers"])[0]["command"]
            .as_sequence()
            .expect("the merge command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
    assert!(
        Cli::try_parse_from(&merge_command).is_ok(),
        "{merge_command:?}"
    );
}
