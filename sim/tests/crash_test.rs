//! `flushsim crash-test` end to end: the real binary as the child, SIGKILLs
//! at seeded moments, torn WAL tails; it passes on the real core and fails
//! when the child leaves torn tails on disk.

use flush_sim::crash_test::{crash_test, CrashTestOptions};

fn options(seed: u64, rounds: u32, skip_torn_tail_repair: bool) -> CrashTestOptions {
    CrashTestOptions {
        seed,
        rounds,
        dir: None,
        child: env!("CARGO_BIN_EXE_flushsim").into(),
        skip_torn_tail_repair,
    }
}

#[test]
fn the_real_engine_survives_seeded_sigkills_and_torn_tails() {
    let report = crash_test(&options(7, 12, false)).expect("the test starts");
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.kills, 12);
    assert!(
        report.acknowledged > 0 && report.rows_checked > 0,
        "{report:#?}"
    );
    assert_eq!(report.torn_tails_repaired, u64::from(report.tails_torn));
}

#[test]
fn leaving_torn_tails_on_disk_is_caught() {
    // Whether a torn tail is later written after depends on the run; over
    // a few seeds one always is.
    let caught = (1..=4).any(|seed| {
        let report = crash_test(&options(seed, 12, true)).expect("the test starts");
        if report.passed() {
            return false;
        }
        // A failed crash test keeps its directory as evidence for whoever
        // runs it; this failure is the expected one, so clean up after it.
        assert!(report.dir.contains("flushsim-crash-"), "{}", report.dir);
        let _ = std::fs::remove_dir_all(&report.dir);
        true
    });
    assert!(caught, "torn tails left on disk went unnoticed in 4 runs");
}

#[test]
fn a_directory_that_is_not_empty_is_bad_input() {
    let dir = std::env::temp_dir().join(format!("flushsim-crash-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a dir");
    std::fs::write(dir.join("precious.txt"), b"keep me").expect("a file");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flushsim"))
        .args(["crash-test", "--rounds", "1", "--dir"])
        .arg(&dir)
        .output()
        .expect("flushsim runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must be new or empty"), "{stderr}");
    assert!(dir.join("precious.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
