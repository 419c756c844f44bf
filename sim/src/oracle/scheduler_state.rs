//! `scheduler_state`: at the end every flush status is flushing or pending.

use super::*;

pub(super) fn scheduler_state(observed: &Observations, violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    for view in observed.views.iter().flatten() {
        for (region_id, status) in statuses(view) {
            if let Some(problem) = status_problem(region_id, &status) {
                problems.push(problem);
            } else if observed.quiescent {
                problems.push(format!(
                    "{region_id}: expected no flush status once every flush job ended, saw {status:?}"
                ));
            }
        }
    }
    CheckResult::from_problems(
        Check::SchedulerState,
        "every flush status was flushing or pending; one job per region at a time".to_string(),
        violations.of(Check::SchedulerState),
        problems,
    )
}
