//! `writability`: no write acknowledged on a read-only region, and every
//! Ok downgrade covering the writes before it.

use super::*;

/// No write is acknowledged on a region the manifest held read-only for
/// its whole time in flight (from before it was sent until its reply, no
/// reopen in between), and a successful downgrade covers every write
/// acknowledged before it was sent.
pub(super) fn writability(
    entries: &[&LedgerEntry],
    history: &[ManifestRecord],
    unlogged: &BTreeSet<RegionId>,
    violations: &Violations,
) -> CheckResult {
    let mut problems = Vec::new();
    let mut by_region: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        by_region.entry(entry.region_id).or_default().push(entry);
    }
    let mut writes = 0;
    for write in entries
        .iter()
        .filter(|e| e.kind == "write" && e.outcome.is_ok())
    {
        let Some(replied) = write.replied_step else {
            continue;
        };
        writes += 1;
        let mut records = history.iter().filter(|r| r.region_id == write.region_id);
        let before = records.clone().rev().find(|r| r.step < write.issued_step);
        let read_only_throughout = before.is_some_and(|r| !r.writable && !r.dropped)
            && !records.any(|r| r.step >= write.issued_step && r.step <= replied && r.writable);
        if read_only_throughout {
            problems.push(format!(
                "{} answered ok: expected writes to a read-only region refused, saw the manifest \
                 hold {} read-only from before it was sent until its reply",
                write.describe(),
                write.region_id
            ));
        }
    }
    let downgrades = covering_promises(&by_region, history, unlogged, "downgrade", &mut problems);
    CheckResult::from_problems(
        Check::Writability,
        format!("{writes} acknowledged writes on writable regions; {downgrades} downgrades kept their promise"),
        violations.of(Check::Writability),
        problems,
    )
}
