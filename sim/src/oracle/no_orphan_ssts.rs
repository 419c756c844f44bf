//! `no_orphan_ssts`: no SST is left that no manifest lists.

use super::*;

/// At quiescence, no SST of an open or dropped region is left that its
/// manifest does not list. A flush that fails, or is refused because a
/// truncate or drop overtook it, removes what it wrote; a drop removes
/// everything; what a crash left was purged when the region reopened.
/// Regions closed at the end are not judged: their next open purges.
pub(super) fn no_orphan_ssts(observed: &Observations, violations: &Violations) -> CheckResult {
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::NoOrphanSsts);
    };
    let open: BTreeSet<RegionId> = views
        .iter()
        .flat_map(|view| view.regions.keys().copied())
        .collect();
    let mut problems = Vec::new();
    let mut judged = 0;
    for path in observed.objects.keys() {
        let Some(region_id) = region_of_path(path) else {
            continue;
        };
        let slot = observed.manifests.get(&region_id);
        let dropped = slot.is_some_and(|slot| slot.manifest.dropped);
        if !dropped && !open.contains(&region_id) {
            continue;
        }
        judged += 1;
        if !slot.is_some_and(|slot| lists(slot, path)) {
            let state = if dropped { "dropped" } else { "open" };
            problems.push(format!(
                "{path} of {state} {region_id}: expected every SST to be listed by the manifest \
                 or removed, saw an orphan ({} bytes)",
                observed.objects[path].len()
            ));
        }
    }
    CheckResult::from_problems(
        Check::NoOrphanSsts,
        format!("{judged} SSTs of open or dropped regions, all listed"),
        violations.of(Check::NoOrphanSsts),
        problems,
    )
}
