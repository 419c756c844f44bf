//! `idle_memory`: no worker sits on memory the engine needs.

use super::*;

/// At quiescence, no worker sits on memory the engine needs: mutable
/// memory over the flush threshold means a flush runs or is pending
/// somewhere. (Memory no open region holds is `buffer_accounting`'s.)
pub(super) fn idle_memory(observed: &Observations, violations: &Violations) -> CheckResult {
    let reading = &observed.buffer_at_views;
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::IdleMemory);
    };
    let flushing = reading.flushes_running > 0
        || views.iter().any(|view| {
            !view.orphan_statuses.is_empty() || view.regions.values().any(|r| r.flush.is_some())
        });
    let holders: Vec<String> = views
        .iter()
        .flat_map(|view| {
            view.regions
                .iter()
                // A follower's memory waits for its leadership, as in mito2.
                .filter(|(_, region)| {
                    region.mutable_bytes > 0 && region.leader_state == LeaderState::Writable
                })
                .map(move |(id, region)| {
                    format!(
                        "{id} in worker {} ({} bytes)",
                        view.worker_id, region.mutable_bytes
                    )
                })
        })
        .collect();
    let mut problems = Vec::new();
    if reading.should_flush_engine && !flushing && !holders.is_empty() {
        problems.push(format!(
            "expected a flush running or pending while mutable memory {} is over the flush \
             threshold {} (used {} of {}), saw none; mutable memory held by {}",
            reading.active_bytes,
            reading.mutable_limit_bytes,
            reading.used_bytes,
            reading.global_size_bytes,
            holders.join(", ")
        ));
    }
    CheckResult::from_problems(
        Check::IdleMemory,
        format!(
            "mutable memory {} against a flush threshold of {} at quiescence",
            reading.active_bytes, reading.mutable_limit_bytes
        ),
        violations.of(Check::IdleMemory),
        problems,
    )
}
