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
            "expected 0 pending requests {} ms after faults stopped, saw {} ({}): {}",
            live.budget_ms,
            live.pending.len(),
            progress(live),
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

/// A reply this close to the end of the phase means the engine was still
/// answering when the budget ran out.
const STILL_ANSWERING_MS: u64 = 1_000;

/// Whether the engine was still answering when the phase ended: a backlog
/// too big for the plan's liveness budget (a plan that truncates every
/// region on every tick for minutes, say) reads differently from requests
/// nobody answers.
fn progress(live: &LivenessObservation) -> String {
    let before = live.pending_when_faults_stopped;
    match live.last_reply_before_end_ms {
        Some(ago) if ago <= STILL_ANSWERING_MS => format!(
            "{before} when faults stopped; the last reply came {ago} ms before the end, so the \
             engine was still answering: a backlog longer than the budget, or these requests \
             stuck (a longer workload.liveness_budget_ms tells which)"
        ),
        Some(ago) => format!("{before} when faults stopped; no reply in the last {ago} ms"),
        None => format!("{before} when faults stopped; no reply at all"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(last_reply_before_end_ms: Option<u64>) -> LivenessObservation {
        LivenessObservation {
            budget_ms: 60_000,
            pending: vec!["request 7 (write region-1) issued at 10 ms".to_string()],
            pending_when_faults_stopped: 40,
            last_reply_before_end_ms,
            clients_running: 0,
            stalled_writes: Some(0),
        }
    }

    #[test]
    fn a_failure_says_whether_the_engine_was_still_answering() {
        let busy = progress(&observed(Some(3)));
        assert!(busy.starts_with("40 when faults stopped"), "{busy}");
        assert!(busy.contains("still answering"), "{busy}");
        let quiet = progress(&observed(Some(45_000)));
        assert!(quiet.contains("no reply in the last 45000 ms"), "{quiet}");
        assert!(!quiet.contains("still answering"), "{quiet}");
        assert!(progress(&observed(None)).contains("no reply at all"));
    }
}
