//! `manifest_consistency`: every SST a live manifest lists is there and
//! readable; the SSTs decoded once for every row check.

use super::*;

/// An SST read back: its rows (shared with the run's cache) or why it
/// could not be read.
pub type SstRows = Result<Arc<[Row]>, String>;

/// SSTs read back, by path.
pub type Decoded = BTreeMap<String, SstRows>;

/// SSTs decoded once per run, by every recovery check and the final one:
/// an object is immutable once written, except that a retried flush may
/// rewrite the same path, so an entry is reused only for the very same
/// bytes (the same buffer, the same length).
#[derive(Default)]
pub struct SstCache {
    decoded: BTreeMap<String, (Bytes, SstRows)>,
}

impl SstCache {
    pub fn decode(&mut self, path: &str, bytes: &Bytes) -> SstRows {
        if let Some((cached, rows)) = self.decoded.get(path) {
            if cached.as_ptr() == bytes.as_ptr() && cached.len() == bytes.len() {
                return rows.clone();
            }
        }
        let rows = flush_core::sst::decode_rows(path, bytes.clone())
            .map(Arc::from)
            .map_err(|error| error.to_string());
        self.decoded
            .insert(path.to_string(), (bytes.clone(), rows.clone()));
        rows
    }
}

/// Decodes every SST some live manifest lists (through the run's cache:
/// an SST a recovery check already read is not decoded again).
pub(super) fn decode_listed_ssts(observed: &Observations, cache: &mut SstCache) -> Decoded {
    let mut decoded = Decoded::new();
    for (region_id, slot) in &observed.manifests {
        if slot.manifest.dropped {
            continue;
        }
        for file_id in slot.manifest.files.keys() {
            let path = sst_path(*region_id, *file_id);
            let rows = match observed.objects.get(&path) {
                None => Err("no such object".to_string()),
                Some(bytes) => cache.decode(&path, bytes),
            };
            decoded.insert(path, rows);
        }
    }
    decoded
}

pub(super) fn manifest_consistency(
    observed: &Observations,
    decoded: &Decoded,
    violations: &Violations,
) -> (CheckResult, u64) {
    let mut problems = Vec::new();
    let mut files = 0;
    for (region_id, slot) in &observed.manifests {
        if slot.manifest.dropped {
            continue;
        }
        for (file_id, meta) in &slot.manifest.files {
            files += 1;
            let path = sst_path(*region_id, *file_id);
            match decoded.get(&path) {
                None | Some(Err(_)) if !observed.objects.contains_key(&path) => problems.push(format!(
                    "manifest of {region_id} lists {path}: expected it in the object store, saw no object"
                )),
                Some(Err(reason)) => problems.push(format!(
                    "manifest of {region_id} lists {path}: expected a readable Parquet file, saw {reason}"
                )),
                Some(Ok(rows)) if rows.len() as u64 != meta.num_rows => problems.push(format!(
                    "{path}: expected {} rows as the manifest says, saw {}",
                    meta.num_rows,
                    rows.len()
                )),
                _ => {}
            }
            if meta.region_id != *region_id {
                problems.push(format!(
                    "manifest of {region_id} lists {path} as a file of {}",
                    meta.region_id
                ));
            }
        }
    }
    let orphans = observed
        .objects
        .keys()
        .filter(|path| {
            let slot =
                region_of_path(path).and_then(|region_id| observed.manifests.get(&region_id));
            !slot.is_some_and(|slot| lists(slot, path))
        })
        .count() as u64;
    let check = CheckResult::from_problems(
        Check::ManifestConsistency,
        format!("{files} listed SSTs all readable; {orphans} orphans"),
        violations.of(Check::ManifestConsistency),
        problems,
    );
    (check, orphans)
}

/// Whether the (live) manifest in `slot` lists the SST at `path`.
pub(super) fn lists(slot: &ManifestSlot, path: &str) -> bool {
    let manifest = &slot.manifest;
    !manifest.dropped
        && manifest
            .files
            .keys()
            .any(|file_id| sst_path(manifest.region_id, *file_id) == path)
}
