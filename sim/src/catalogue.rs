//! The planted-bug catalogue as a measurement (DESIGN §6): with one bug
//! planted, how many seeds of a default sweep run before one of them fails,
//! and which check failed it.
//!
//! Seeds use the sweep's own plans ([`Plan::from_seed`]): no fault mix is
//! chosen per bug, so a bug counts as caught only if the default sweep
//! catches it. The `bug_catalogue` test bounds [`first_detection`] for every
//! bug; `cargo run --release -p flush-sim --example catalogue` runs
//! [`measure`] over several starting seeds for BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use flush_core::bugs::{Bugs, PlantedBug};
use serde::Serialize;

use crate::plan::Plan;
use crate::run::run;

/// The seed that caught a bug, and how.
#[derive(Clone, Debug, Serialize)]
pub struct Catch {
    pub seed: u64,
    /// The first failed check of that seed's report.
    pub check: String,
    pub message: String,
    pub replay: String,
    pub trace_hash: String,
}

/// One search: from `start_seed` on, seed by seed, until one fails.
#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    pub bug: String,
    pub start_seed: u64,
    /// Seeds run, the catching one included (`seed_limit` when none caught it).
    pub seeds_run: u64,
    pub wall_ms: u64,
    pub caught: Option<Catch>,
}

impl Detection {
    /// Seeds run up to and including the first that failed; `None` if no
    /// seed within the limit failed.
    pub fn seeds_to_detect(&self) -> Option<u64> {
        self.caught.as_ref().map(|_| self.seeds_run)
    }
}

/// Runs the default plans of `start_seed..start_seed + seed_limit` with
/// `bug` planted, one at a time, and stops at the first failing seed.
pub fn first_detection(bug: PlantedBug, start_seed: u64, seed_limit: u64) -> Detection {
    // Wall time of a search, for the table.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let mut detection = Detection {
        bug: bug.name().to_string(),
        start_seed,
        seeds_run: 0,
        wall_ms: 0,
        caught: None,
    };
    for seed in start_seed..start_seed.saturating_add(seed_limit) {
        let report = run(&Plan::from_seed(seed), Bugs::only(bug));
        detection.seeds_run += 1;
        if let Some(failed) = report.first_failure() {
            detection.caught = Some(Catch {
                seed,
                check: failed.name.clone(),
                message: failed.message.clone(),
                replay: report.replay.clone(),
                trace_hash: report.trace_hash.clone(),
            });
            break;
        }
    }
    detection.wall_ms = elapsed_ms(started);
    detection
}

/// What [`measure`] found for one bug over every starting seed.
#[derive(Clone, Debug, Serialize)]
pub struct BugMeasurement {
    pub bug: String,
    pub description: String,
    /// One search per starting seed, in the order the starts were given.
    pub detections: Vec<Detection>,
    /// Median of seeds-to-detect; a search that caught nothing counts as
    /// above every other, so `None` means at least half caught nothing.
    pub median_seeds_to_detect: Option<f64>,
    /// Median wall time of one search, in milliseconds.
    pub median_wall_ms: u64,
    /// How often each check was the one that caught the bug.
    pub caught_by: BTreeMap<String, u64>,
}

impl BugMeasurement {
    fn new(bug: PlantedBug, detections: Vec<Detection>) -> Self {
        let mut seeds: Vec<Option<u64>> =
            detections.iter().map(Detection::seeds_to_detect).collect();
        // `None` (not caught) sorts above every number.
        seeds.sort_by_key(|seeds| seeds.unwrap_or(u64::MAX));
        let median_seeds_to_detect = median(&seeds);
        let mut walls: Vec<u64> = detections
            .iter()
            .map(|detection| detection.wall_ms)
            .collect();
        walls.sort_unstable();
        let median_wall_ms = walls.get(walls.len() / 2).copied().unwrap_or(0);
        let mut caught_by = BTreeMap::new();
        for catch in detections.iter().filter_map(|d| d.caught.as_ref()) {
            *caught_by.entry(catch.check.clone()).or_default() += 1;
        }
        BugMeasurement {
            bug: bug.name().to_string(),
            description: bug.description().to_string(),
            detections,
            median_seeds_to_detect,
            median_wall_ms,
            caught_by,
        }
    }
}

/// Median of values sorted with `None` last (as infinity).
fn median(sorted: &[Option<u64>]) -> Option<f64> {
    let count = sorted.len();
    if count == 0 {
        return None;
    }
    let middle = |index: usize| sorted[index].map(|value| value as f64);
    if count % 2 == 1 {
        middle(count / 2)
    } else {
        Some((middle(count / 2 - 1)? + middle(count / 2)?) / 2.0)
    }
}

/// Runs [`first_detection`] for every bug from every start seed, `jobs`
/// searches at a time.
pub fn measure(
    bugs: &[PlantedBug],
    start_seeds: &[u64],
    seed_limit: u64,
    jobs: usize,
    on_detection: impl Fn(&Detection) + Sync,
) -> Vec<BugMeasurement> {
    let searches: Vec<(usize, usize)> = (0..bugs.len())
        .flat_map(|bug| (0..start_seeds.len()).map(move |start| (bug, start)))
        .collect();
    let found: Mutex<BTreeMap<(usize, usize), Detection>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, searches.len().max(1)) {
            scope.spawn(|| {
                while let Some(&(bug, start)) = searches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let detection = first_detection(bugs[bug], start_seeds[start], seed_limit);
                    on_detection(&detection);
                    found
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert((bug, start), detection);
                }
            });
        }
    });
    let mut found = found
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    bugs.iter()
        .enumerate()
        .map(|(bug_index, bug)| {
            let detections = (0..start_seeds.len())
                .filter_map(|start| found.remove(&(bug_index, start)))
                .collect();
            BugMeasurement::new(*bug, detections)
        })
        .collect()
}

/// The Markdown table of BENCHMARKS.md.
pub fn render_markdown(measurements: &[BugMeasurement], seed_limit: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| bug | seeds to detect (median) | per start | wall ms (median) | caught by |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---|");
    for measurement in measurements {
        let median = measurement
            .median_seeds_to_detect
            .map_or(format!("> {seed_limit}"), |median| format!("{median}"));
        let per_start: Vec<String> = measurement
            .detections
            .iter()
            .map(|detection| {
                detection
                    .seeds_to_detect()
                    .map_or("—".to_string(), |seeds| seeds.to_string())
            })
            .collect();
        let caught_by: Vec<String> = measurement
            .caught_by
            .iter()
            .map(|(check, count)| format!("`{check}` ×{count}"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {median} | {} | {} | {} |",
            measurement.bug,
            per_start.join(", "),
            measurement.median_wall_ms,
            if caught_by.is_empty() {
                "nothing".to_string()
            } else {
                caught_by.join(", ")
            }
        );
    }
    out
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_counts_misses_as_infinite() {
        assert_eq!(median(&[Some(1), Some(3), None]), Some(3.0));
        assert_eq!(median(&[Some(1), None, None]), None);
        assert_eq!(median(&[Some(2), Some(4)]), Some(3.0));
        assert_eq!(median(&[Some(2), None]), None);
        assert_eq!(median(&[]), None);
    }
}
