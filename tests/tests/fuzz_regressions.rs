//! Every committed fuzz crash input, replayed as a test.
//!
//! Workflow: when `cargo +nightly fuzz run scheduler_ops` finds a crash in
//! `fuzz/artifacts/scheduler_ops/crash-…`, minimize it
//! (`cargo +nightly fuzz tmin scheduler_ops <file>`), read it
//! (`cargo +nightly fuzz fmt scheduler_ops <file>`), fix the core (or the
//! model), then copy the minimized file to
//! `fuzz/regressions/scheduler_ops/<short-name>` and commit it. This test
//! decodes each file exactly as the fuzz target does and runs it through the
//! same `run_ops`; it must pass on the correct core from then on.

use std::path::{Path, PathBuf};

use flush_core::bugs::Bugs;
use flush_tests::fuzz::scheduler_ops;
use flush_tests::ops::{describe, run_ops};

fn regression_inputs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/scheduler_ops");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn scheduler_ops_regressions_pass() {
    let mut failures = Vec::new();
    let files = regression_inputs();
    for path in &files {
        let bytes = std::fs::read(path).expect("a readable regression input");
        let Some(ops) = scheduler_ops::decode(&bytes) else {
            // The fuzz target rejects such inputs too; nothing ran.
            continue;
        };
        if let Err(violation) = run_ops(&ops, Bugs::NONE) {
            failures.push(format!(
                "{}: {violation}\n  ops: {}",
                path.display(),
                describe(&ops)
            ));
        }
    }
    println!("replayed {} fuzz regression inputs", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rewrites `fuzz/corpus/scheduler_ops/seed-*`: short scenarios that start
/// the fuzzer in the interesting states. Run after changing `Op`:
/// `cargo test -p flush-tests --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "writes the committed seed corpus"]
fn regenerate_seed_corpus() {
    use flush_tests::ops::Op::*;

    let write = |region, rows| Write { region, rows };
    let seeds = [
        (
            "seed-write-flush",
            vec![
                write(0, 4),
                Flush { region: 0 },
                RunJob,
                write(1, 8),
                write(1, 8),
                RunJob,
            ],
        ),
        (
            "seed-stall",
            vec![
                write(0, 8),
                write(0, 8),
                write(0, 8),
                write(1, 8),
                write(1, 8),
                write(2, 8),
                write(2, 8),
                write(0, 1),
                write(1, 1),
                RunJob,
                Tick,
                RunJob,
            ],
        ),
        (
            "seed-alter-behind-flush",
            vec![
                write(2, 5),
                Alter { region: 2 },
                write(2, 3),
                FailNextManifest,
                RunJob,
                write(2, 2),
                Alter { region: 2 },
                write(2, 1),
                RunJob,
            ],
        ),
        (
            "seed-start-failures",
            vec![
                write(0, 3),
                RejectNextJob,
                Flush { region: 0 },
                FailNextFreeze,
                Downgrade { region: 0 },
                Flush { region: 0 },
                RunJob,
            ],
        ),
        (
            "seed-lifecycle",
            vec![
                write(1, 2),
                Flush { region: 1 },
                Truncate { region: 1 },
                write(1, 2),
                Downgrade { region: 1 },
                RunJob,
                RunJob,
                Close { region: 1 },
                Open { region: 1 },
                write(1, 1),
                Drop { region: 1 },
                SetRole {
                    region: 1,
                    leader: true,
                },
                Drop { region: 1 },
                Create { region: 1 },
                write(1, 1),
                SetRole {
                    region: 1,
                    leader: false,
                },
                Flush { region: 1 },
            ],
        ),
        (
            "seed-lost-job-and-stop",
            vec![
                write(0, 6),
                Flush { region: 0 },
                write(0, 2),
                Alter { region: 0 },
                LoseJob,
                write(1, 8),
                write(1, 8),
                write(1, 8),
                write(2, 8),
                Flush { region: 2 },
                Stop,
                RunJob,
                Open { region: 0 },
                Open { region: 2 },
                SetRole {
                    region: 2,
                    leader: true,
                },
                write(2, 1),
            ],
        ),
        (
            "seed-close-during-flush",
            vec![
                write(0, 6),
                Flush { region: 0 },
                write(0, 2),
                Close { region: 0 },
                RunJob,
                Open { region: 0 },
                write(0, 2),
                Flush { region: 0 },
                RunJob,
            ],
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/scheduler_ops");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, ops) in seeds {
        run_ops(&ops, Bugs::NONE).unwrap_or_else(|v| panic!("{name}: {v}"));
        std::fs::write(dir.join(name), scheduler_ops::encode(&ops)).expect("a seed file");
    }
}
