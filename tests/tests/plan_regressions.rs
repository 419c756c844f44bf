//! Every committed `sim_plan` fuzz finding, replayed as a test.
//!
//! Workflow: when `cargo +nightly fuzz run --features sim sim_plan` (with
//! `RUSTFLAGS="--cfg madsim"`) fails, it prints the failing plan as a plan
//! file. Save it, shrink it (`flushsim shrink --plan FILE --out SMALL`), fix
//! the core, and commit the small file as
//! `fuzz/regressions/sim_plan/<short-name>.json`. This test replays each
//! file through `flush_sim::run`, the same function `flushsim replay --plan`
//! calls:
//! - a plan that names no planted bug must pass every check: it guards the
//!   fix;
//! - a plan that names planted bugs (a finding of a `FLUSHSIM_FUZZ_BUG`
//!   run) must still fail: it guards the oracle that caught the bug.

use std::path::{Path, PathBuf};

use flush_sim::run;
use flush_sim::shrink::PlanFile;

fn regression_plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/sim_plan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// What replaying one file showed that it should not have, if anything.
fn replay(path: &Path) -> Option<String> {
    let file = PlanFile::read(path).unwrap_or_else(|error| panic!("{error}"));
    let bugs = file.bugs().unwrap_or_else(|error| panic!("{error}"));
    // Each plan on a fresh thread, as the CLI runs one plan per process.
    let plan = file.plan.clone();
    let report = std::thread::spawn(move || run(&plan, bugs))
        .join()
        .expect("a run reports failures, it does not panic");
    let name = path.display();
    match (bugs.is_empty(), report.first_failure()) {
        (true, None) | (false, Some(_)) => None,
        (true, Some(check)) => Some(format!(
            "{name}: expected every check to pass with no bug planted, saw {} fail: {}",
            check.name, check.message
        )),
        (false, None) => Some(format!(
            "{name}: expected a failed check with bugs {:?} planted, saw every check pass \
             (an oracle stopped catching this bug)",
            file.bugs
        )),
    }
}

#[test]
fn sim_plan_regressions_replay_as_recorded() {
    let files = regression_plans();
    assert!(
        !files.is_empty(),
        "expected at least one plan under fuzz/regressions/sim_plan, saw none"
    );
    let failures: Vec<String> = files.iter().filter_map(|path| replay(path)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
