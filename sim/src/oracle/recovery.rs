//! `recovery`: what each restart reopened holds exactly the rows it must.

use super::*;

/// A region right after a restart reopened it, seen between two requests
/// of its worker: the SSTs its manifest lists (bytes as stored, if any) and
/// the rows WAL replay put in its memtable.
#[derive(Clone, Debug)]
pub struct RecoveredRegion {
    pub region_id: RegionId,
    pub ssts: Vec<(String, Option<Bytes>)>,
    pub memtable_rows: Vec<Row>,
}

/// Each listed SST of `recovered`, decoded (or why it could not be).
pub fn decode_recovered(recovered: &[RecoveredRegion], cache: &mut SstCache) -> Decoded {
    let mut decoded = Decoded::new();
    for region in recovered {
        for (path, bytes) in &region.ssts {
            let rows = match bytes {
                None => Err("no such object".to_string()),
                Some(bytes) => cache.decode(path, bytes),
            };
            decoded.insert(path.clone(), rows);
        }
    }
    decoded
}

/// What one recovery check judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    pub rows_checked: u64,
    pub rows_found: u64,
}

/// `recovery` (DESIGN §4 check 9) for one restart: every reopened region
/// holds exactly the acknowledged rows not truncated or dropped since (plus
/// perhaps rows of writes the crash interrupted), each once, nothing
/// truncated come back; and every SST its manifest lists is there.
pub fn recovery_problems(
    recovered: &[RecoveredRegion],
    decoded: &Decoded,
    entries: &[&LedgerEntry],
    unlogged: &BTreeSet<RegionId>,
) -> (Vec<String>, RecoveryStats) {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for region in recovered {
        for (path, _) in &region.ssts {
            match decoded.get(path) {
                Some(Ok(rows)) => {
                    let place: Rc<str> = Rc::from(path.as_str());
                    found.extend(rows.iter().map(|row| Found {
                        region_id: region.region_id,
                        row,
                        place: place.clone(),
                    }));
                }
                Some(Err(reason)) => problems.push(format!(
                    "manifest of {} lists {path}: expected a readable SST after reopening, saw {reason}",
                    region.region_id
                )),
                None => {}
            }
        }
        let place: Rc<str> = Rc::from("memtable after WAL replay");
        found.extend(region.memtable_rows.iter().map(|row| Found {
            region_id: region.region_id,
            row,
            place: place.clone(),
        }));
    }
    let in_scope = |region_id: RegionId| recovered.iter().any(|r| r.region_id == region_id);
    let unlogged = Unlogged::new(unlogged, entries);
    let (row_problems, rows_checked) = row_problems(&found, entries, &unlogged, in_scope);
    problems.extend(row_problems);
    let stats = RecoveryStats {
        rows_checked,
        rows_found: found.len() as u64,
    };
    (problems, stats)
}

/// `recovery` over the run: the violations each restart's check recorded,
/// and every crash's restart completed.
pub(super) fn recovery(state: &WorldState, violations: &Violations) -> CheckResult {
    let crashes = &state.crash.records;
    let recoveries = &state.crash.recoveries;
    let mut problems = Vec::new();
    if recoveries.len() < crashes.len() {
        problems.push(format!(
            "expected every crash's restart to complete, saw {} of {} complete at the end",
            recoveries.len(),
            crashes.len()
        ));
    }
    let ok = if crashes.is_empty() {
        "no crash in this run".to_string()
    } else {
        let windows: Vec<&str> = crashes.iter().map(|crash| crash.window.name()).collect();
        let reopened: u64 = recoveries.iter().map(|r| r.regions_reopened).sum();
        let not_reopened: u64 = recoveries.iter().map(|r| r.regions_not_reopened).sum();
        let skipped: u64 = recoveries.iter().map(|r| r.regions_skipped).sum();
        let rows: u64 = recoveries.iter().map(|r| r.rows_checked).sum();
        format!(
            "{} crashes ({}): {reopened} regions reopened ({not_reopened} failed to reopen, \
             {skipped} skipped mid-flush), {rows} written rows judged after reopening; \
             none lost, duplicated or resurrected",
            crashes.len(),
            windows.join(", ")
        )
    };
    CheckResult::from_problems(
        Check::Recovery,
        ok,
        violations.of(Check::Recovery),
        problems,
    )
}
