//! `flushsim replay --timeline FILE` writes a Chrome trace event file that
//! Perfetto opens: it parses, and it holds a track per worker and per
//! region, with requests, flush jobs and faults on them.

use std::collections::BTreeSet;
use std::process::Command;

use flush_sim::run::seed_from_env;
use flush_sim::Plan;
use serde_json::Value;

/// A seed with several workers and regions, faults injected and flushes:
/// the first of a few candidates that has them all (traces change with the
/// simulator, the properties asked of the seed do not).
fn busy_seed() -> u64 {
    let first = seed_from_env(0);
    (first..first + 50)
        .find(|seed| {
            let workload = Plan::from_seed(*seed).workload;
            workload.workers >= 2 && workload.regions >= 3 && workload.clients >= 2
        })
        .expect("one of 50 seeds has two workers and three regions")
}

#[test]
fn the_timeline_has_a_track_per_worker_and_region() {
    let seed = busy_seed();
    let plan = Plan::from_seed(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("run.json");
    let output = Command::new(env!("CARGO_BIN_EXE_flushsim"))
        .args(["replay", "--seed", &seed.to_string(), "--timeline"])
        .arg(&path)
        .output()
        .expect("the flushsim binary runs");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("the timeline file exists");
    let timeline: Value = serde_json::from_str(&text).expect("the timeline is JSON");
    let events = timeline["traceEvents"]
        .as_array()
        .expect("a Chrome trace has traceEvents");
    assert_eq!(timeline["otherData"]["seed"], seed);

    let names = |kind: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|event| event["ph"] == "M" && event["name"] == kind)
            .filter_map(|event| event["args"]["name"].as_str().map(str::to_string))
            .collect()
    };
    let processes = names("process_name");
    let threads = names("thread_name");
    assert!(processes.contains("run"), "{processes:?}");
    for worker in 0..plan.workload.workers {
        assert!(
            processes.contains(&format!("worker {worker}")),
            "{processes:?}"
        );
        assert!(threads.contains(&format!("worker {worker}")), "{threads:?}");
    }
    for region in 1..=plan.workload.regions {
        assert!(threads.contains(&format!("region {region}")), "{threads:?}");
        assert!(
            threads.contains(&format!("region {region} requests")),
            "{threads:?}"
        );
    }
    for track in ["phases", "faults", "violations"] {
        assert!(threads.contains(track), "{threads:?}");
    }

    for event in events.iter().filter(|event| event["ph"] != "M") {
        for field in ["name", "ph", "ts", "pid", "tid"] {
            assert!(event.get(field).is_some(), "{field} missing in {event}");
        }
        if event["ph"] == "X" {
            assert!(event["dur"].as_u64().is_some(), "{event}");
        }
    }
    let count = |predicate: &dyn Fn(&Value) -> bool| events.iter().filter(|e| predicate(e)).count();
    let writes = count(&|e| e["ph"] == "X" && e["cat"] == "request" && e["name"] == "write");
    let flush_jobs = count(&|e| e["ph"] == "X" && e["cat"] == "flush");
    let phases = count(&|e| e["ph"] == "i" && e["cat"] == "phase");
    assert!(writes > 0, "no write slices");
    assert!(flush_jobs > 0, "no flush job slices");
    assert!(phases >= 4, "phases: {phases}");
    // Slices on one track never overlap: Perfetto needs them nested.
    let mut by_track: std::collections::BTreeMap<(u64, u64), Vec<(u64, u64)>> = Default::default();
    for event in events.iter().filter(|event| event["ph"] == "X") {
        let key = (
            event["pid"].as_u64().unwrap_or(0),
            event["tid"].as_u64().unwrap_or(0),
        );
        let start = event["ts"].as_u64().unwrap_or(0);
        let end = start + event["dur"].as_u64().unwrap_or(0);
        by_track.entry(key).or_default().push((start, end));
    }
    for (track, mut slices) in by_track {
        slices.sort_unstable();
        for pair in slices.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "track {track:?}: {pair:?} overlap");
        }
    }
}
