//! `version_matches_manifest`: each open region's version agrees with its
//! manifest.

use super::*;

/// At quiescence each open region's in-memory version agrees with its
/// manifest: the same SSTs, the same flushed marks and epoch, writable in
/// memory exactly when the manifest says so. What reads serve is the
/// version; what a restart serves is the manifest.
pub(super) fn version_matches_manifest(
    observed: &Observations,
    violations: &Violations,
) -> CheckResult {
    let Some(views) = quiescent_views(observed) else {
        return not_quiescent(Check::VersionMatchesManifest);
    };
    let mut problems = Vec::new();
    let mut judged = 0;
    for (region_id, region) in views.iter().flat_map(|view| &view.regions) {
        judged += 1;
        let Some(slot) = observed.manifests.get(region_id) else {
            problems.push(format!(
                "{region_id} is open: expected a manifest for it, saw none"
            ));
            continue;
        };
        let manifest = &slot.manifest;
        let listed: Vec<FileId> = manifest.files.keys().copied().collect();
        let mut differ = |what: &str, memory: String, stored: String| {
            if memory != stored {
                problems.push(format!(
                    "{region_id}: expected its version's {what} to equal the manifest's {stored}, \
                     saw {memory}"
                ));
            }
        };
        differ(
            "SSTs",
            format!("{:?}", region.file_ids),
            format!("{listed:?}"),
        );
        differ(
            "flushed entry/sequence",
            format!("{}/{}", region.flushed_entry_id, region.flushed_sequence),
            format!(
                "{}/{}",
                manifest.flushed_entry_id, manifest.flushed_sequence
            ),
        );
        differ(
            "epoch",
            region.epoch.to_string(),
            manifest.epoch.to_string(),
        );
        differ(
            "writability",
            (region.leader_state == LeaderState::Writable).to_string(),
            (manifest.leader_state == LeaderState::Writable).to_string(),
        );
    }
    CheckResult::from_problems(
        Check::VersionMatchesManifest,
        format!("{judged} open regions agree with their manifests"),
        violations.of(Check::VersionMatchesManifest),
        problems,
    )
}
