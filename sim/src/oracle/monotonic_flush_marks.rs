//! `monotonic_flush_marks`: flush marks never go backwards.

use super::*;

pub(super) fn monotonic_flush_marks(
    observed: &Observations,
    violations: &Violations,
) -> CheckResult {
    let mut problems = Vec::new();
    for view in observed.views.iter().flatten() {
        for (region_id, region) in &view.regions {
            if let Some(slot) = observed.manifests.get(region_id) {
                if region.flushed_entry_id < slot.manifest.flushed_entry_id
                    && region.epoch == slot.manifest.epoch
                    && observed.quiescent
                {
                    problems.push(format!(
                        "{region_id}: expected the worker's flushed entry id to reach the manifest's {}, saw {}",
                        slot.manifest.flushed_entry_id, region.flushed_entry_id
                    ));
                }
            }
        }
    }
    CheckResult::from_problems(
        Check::MonotonicFlushMarks,
        "flush marks never went backwards nor past the last entry".to_string(),
        violations.of(Check::MonotonicFlushMarks),
        problems,
    )
}
