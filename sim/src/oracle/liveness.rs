//! `liveness`: every request completes once faults stop.

use super::*;

pub(super) fn liveness(observed: &Observations, violations: &Violations) -> CheckResult {
    let live = &observed.liveness;
    let mut problems = Vec::new();
    if !live.pending.is_empty() {
        let shown: Vec<&str> = live
            .pending
            .iter()
            .take(PROBLEMS_SHOWN)
            .map(String::as_str)
            .collect();
        problems.push(format!(
            "expected 0 pending requests {} ms after faults stopped, saw {}: {}",
            live.budget_ms,
            live.pending.len(),
            shown.join(", ")
        ));
    }
    if live.clients_running > 0 {
        problems.push(format!(
            "expected every client to finish within {} ms, saw {} still running",
            live.budget_ms, live.clients_running
        ));
    }
    match live.stalled_writes {
        None => problems.push(
            "expected every worker to be idle between requests, saw one stuck inside a request"
                .to_string(),
        ),
        Some(0) => {}
        Some(stalled) => problems.push(format!(
            "expected 0 stalled writes after faults stopped, saw {stalled}"
        )),
    }
    CheckResult::from_problems(
        Check::Liveness,
        format!(
            "every request completed within {} ms of faults stopping",
            live.budget_ms
        ),
        violations.of(Check::Liveness),
        problems,
    )
}
