//! `buffer_accounting`: the write buffer counts exactly what the memtables
//! and running flushes hold.

use super::*;

pub(super) fn buffer_accounting(observed: &Observations, violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    let at_views = observed.buffer_at_views;
    if at_views.accounting_violations > 0 {
        problems.push(format!(
            "expected 0 underflowing frees, saw {}",
            at_views.accounting_violations
        ));
    }
    if let (true, Some(views)) = (observed.quiescent, &observed.views) {
        let memtable_bytes: usize = views
            .iter()
            .flat_map(|view| view.regions.values())
            .map(|region| region.mutable_bytes + region.immutable_bytes)
            .sum();
        if at_views.used_bytes != memtable_bytes {
            problems.push(format!(
                "at quiescence expected used == memtable bytes {memtable_bytes}, saw used {}",
                at_views.used_bytes
            ));
        }
    }
    if let Some(after) = observed.buffer_after_teardown {
        if after.used_bytes != 0 || after.active_bytes != 0 {
            problems.push(format!(
                "after every region was released expected used 0 and active 0, saw used {} and active {}",
                after.used_bytes, after.active_bytes
            ));
        }
        if after.accounting_violations > at_views.accounting_violations {
            problems.push(format!(
                "expected no underflowing frees at teardown, saw {}",
                after.accounting_violations - at_views.accounting_violations
            ));
        }
    }
    CheckResult::from_problems(
        Check::BufferAccounting,
        format!(
            "used {} B at quiescence matches the memtables; 0 after teardown",
            at_views.used_bytes
        ),
        violations.of(Check::BufferAccounting),
        problems,
    )
}
