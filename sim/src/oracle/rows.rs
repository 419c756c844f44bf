//! `no_lost_rows`: every acknowledged row where it must be, once, with the
//! values written; the row judge shared with `recovery`.

use super::*;

/// Where an acknowledged row must be at the end.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expect {
    Present,
    /// Must not be anywhere, and why.
    Absent(String),
    /// Either is fine (a lost reply, a truncate racing the write, ...).
    Either,
}

/// A row found at the end, and where: borrowed, with a shared place name
/// (a standard run finds ~40,000 rows).
#[derive(Clone, Debug)]
pub(super) struct Found<'a> {
    pub(super) region_id: RegionId,
    pub(super) row: &'a Row,
    pub(super) place: Rc<str>,
}

pub(super) fn expect_of(write: &LedgerEntry, erasers: &[&LedgerEntry]) -> Expect {
    match &write.outcome {
        Outcome::Ok(Output::Written { .. }) => {}
        Outcome::Err { kind, .. } => {
            return Expect::Absent(format!("the write failed with {}", kind.as_str()))
        }
        _ => return Expect::Either,
    }
    let Some(acked) = write.replied_step else {
        return Expect::Either;
    };
    let mut either = false;
    for eraser in erasers {
        if eraser
            .settled_step()
            .is_some_and(|settled| settled < write.issued_step)
        {
            continue;
        }
        if eraser.issued_step > acked && eraser.outcome.is_ok() {
            return Expect::Absent(format!(
                "{} succeeded after it was acknowledged",
                eraser.describe()
            ));
        }
        either = true;
    }
    if either {
        Expect::Either
    } else {
        Expect::Present
    }
}

/// Whether a row read back sets exactly the added fields written, to the
/// same bits; the order may differ (a file orders its columns by schema).
pub(super) fn same_fields(found: &[FieldValue], written: &[FieldValue]) -> bool {
    found.len() == written.len()
        && written.iter().all(|field| {
            found
                .iter()
                .any(|f| f.name == field.name && f.value.to_bits() == field.value.to_bits())
        })
}

pub(super) fn describe_fields(fields: &[FieldValue]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|field| format!("{}={}", field.name, field.value))
        .collect();
    parts.join(", ")
}

/// Regions that skip the WAL, and what flushed them. An acknowledged
/// write to such a region outlives its engine (a crash, a stop) only if a
/// close, flush or downgrade of the region sent after the ack answered Ok
/// on that same engine: otherwise its rows were only ever in memory, and
/// losing them is the option's contract, not a bug.
pub struct Unlogged<'a> {
    regions: &'a BTreeSet<RegionId>,
    /// The latest engine generation any request went to.
    current_generation: u64,
    flushes: BTreeMap<RegionId, Vec<&'a LedgerEntry>>,
}

impl<'a> Unlogged<'a> {
    pub fn new(regions: &'a BTreeSet<RegionId>, entries: &[&'a LedgerEntry]) -> Self {
        let mut flushes: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
        for entry in entries.iter().filter(|entry| {
            matches!(entry.kind, "close" | "flush" | "downgrade") && entry.outcome.is_ok()
        }) {
            flushes.entry(entry.region_id).or_default().push(entry);
        }
        Unlogged {
            regions,
            current_generation: entries.iter().map(|e| e.generation).max().unwrap_or(0),
            flushes,
        }
    }

    fn may_be_lost(&self, write: &LedgerEntry) -> bool {
        if !self.regions.contains(&write.region_id) || write.generation >= self.current_generation {
            return false;
        }
        let Some(acked) = write.replied_step else {
            return true;
        };
        let flushed = self.flushes.get(&write.region_id).is_some_and(|flushes| {
            flushes
                .iter()
                .any(|flush| flush.generation == write.generation && flush.issued_step > acked)
        });
        !flushed
    }
}

/// The rows a closed region's next open would replay from its WAL tail,
/// by region, each entry with its place name. Built before the rows found
/// are gathered, so that every found row can be borrowed.
pub(super) type WalTails = BTreeMap<RegionId, Vec<(Rc<str>, Vec<Row>)>>;

pub(super) fn wal_tails(observed: &Observations) -> WalTails {
    let mut tails = WalTails::new();
    for region_id in &observed.regions {
        if observed.memtable_rows.contains_key(region_id) {
            continue;
        }
        let live = observed
            .manifests
            .get(region_id)
            .filter(|slot| !slot.manifest.dropped);
        let (Some(slot), Some(Ok(log))) = (live, observed.wal.get(region_id)) else {
            continue;
        };
        let after = slot.manifest.replay_from_entry_id();
        let mut next_sequence = slot.manifest.flushed_sequence + 1;
        for entry in log.iter().filter(|entry| entry.entry_id > after) {
            if entry.first_sequence < next_sequence {
                continue;
            }
            next_sequence = entry.first_sequence + entry.rows.len() as u64;
            let place: Rc<str> = Rc::from(format!("wal entry {}", entry.entry_id));
            tails
                .entry(*region_id)
                .or_default()
                .push((place, entry.to_rows().collect()));
        }
    }
    tails
}

/// Every row at the end: SSTs of live manifests, memtables of open regions,
/// and for a closed region the WAL tail its next open would replay. A
/// standard run finds ~40,000 rows: the vector is sized once, up front.
pub(super) fn found_rows<'a>(
    observed: &'a Observations,
    decoded: &'a Decoded,
    tails: &'a WalTails,
) -> Vec<Found<'a>> {
    let mut sources: Vec<(RegionId, Rc<str>, &'a [Row])> = Vec::new();
    let memtable: Rc<str> = Rc::from("memtable");
    for region_id in &observed.regions {
        let live = observed
            .manifests
            .get(region_id)
            .filter(|slot| !slot.manifest.dropped);
        if let Some(slot) = live {
            for file_id in slot.manifest.files.keys() {
                let path = sst_path(*region_id, *file_id);
                if let Some(Ok(rows)) = decoded.get(&path) {
                    sources.push((*region_id, Rc::from(path), rows));
                }
            }
        }
        if let Some(rows) = observed.memtable_rows.get(region_id) {
            sources.push((*region_id, memtable.clone(), rows));
        } else if let Some(entries) = tails.get(region_id) {
            for (place, rows) in entries {
                sources.push((*region_id, place.clone(), rows));
            }
        }
    }
    let mut found = Vec::with_capacity(sources.iter().map(|(_, _, rows)| rows.len()).sum());
    for (region_id, place, rows) in sources {
        found.extend(rows.iter().map(|row| Found {
            region_id,
            row,
            place: place.clone(),
        }));
    }
    found
}

pub(super) fn no_lost_rows(
    observed: &Observations,
    decoded: &Decoded,
    entries: &[&LedgerEntry],
    violations: &Violations,
) -> (CheckResult, u64) {
    let tails = wal_tails(observed);
    let found = found_rows(observed, decoded, &tails);
    let unlogged = Unlogged::new(&observed.unlogged, entries);
    let (problems, checked) = row_problems(&found, entries, &unlogged, |_| true);
    let check = CheckResult::from_problems(
        Check::NoLostRows,
        format!(
            "{checked} written rows accounted for, {} found",
            found.len()
        ),
        violations.of(Check::NoLostRows),
        problems,
    );
    (check, checked)
}

/// A write in the ledger and what is expected of its rows, keyed by its
/// first row id.
type ExpectedWrite<'a> = (u64, &'a LedgerEntry, Expect);

/// Judges the rows `found` against every write in the ledger: no phantom,
/// none twice, none in the wrong region or with the wrong values or
/// sequence, none that should be gone; and every row of a write to a region
/// `in_scope` that must be present, present. Returns the problems and how
/// many written rows of regions in scope were judged.
pub(super) fn row_problems(
    found: &[Found<'_>],
    entries: &[&LedgerEntry],
    unlogged: &Unlogged<'_>,
    in_scope: impl Fn(RegionId) -> bool,
) -> (Vec<String>, u64) {
    let writes = expected_writes(entries, unlogged);
    let mut problems = Vec::new();
    let by_row = rows_by_id(found, &mut problems);
    // (region, sequence, row id) of every row found, for duplicates.
    let mut sequences: Vec<(RegionId, u64, u64)> = Vec::with_capacity(by_row.len());
    // Row ids ascend, so the write holding each (the last one starting at
    // or before it) only moves forward.
    let mut writes_started = 0;
    // One buffer for every row's places: a row is nearly always in one.
    let mut places: Vec<&Found<'_>> = Vec::new();
    for group in by_row.chunk_by(|a, b| a.0 == b.0) {
        let row_id = group[0].0;
        while writes
            .get(writes_started)
            .is_some_and(|(first_row_id, _, _)| *first_row_id <= row_id)
        {
            writes_started += 1;
        }
        places.clear();
        places.extend(group.iter().map(|(_, index)| &found[*index]));
        let write = writes_started.checked_sub(1).map(|i| &writes[i]);
        if judge_row(row_id, &places, write, &mut problems) {
            sequences.extend(places.iter().map(|f| (f.region_id, f.row.sequence, row_id)));
        }
    }
    duplicate_sequences(sequences, &mut problems);
    let found_row_ids: Vec<u64> = by_row
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| group[0].0)
        .collect();
    let checked = missing_rows(&writes, &found_row_ids, in_scope, &mut problems);
    (problems, checked)
}

/// Every write of the ledger with what is expected of its rows (present,
/// absent because a truncate or drop erased them, or either), sorted by
/// first row id. Sorted vectors, not maps: a standard run judges ~100,000
/// rows here.
fn expected_writes<'a>(
    entries: &[&'a LedgerEntry],
    unlogged: &Unlogged<'_>,
) -> Vec<ExpectedWrite<'a>> {
    let mut erasers: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| matches!(e.kind, "truncate" | "drop"))
    {
        erasers.entry(entry.region_id).or_default().push(entry);
    }
    let mut writes: Vec<ExpectedWrite<'a>> = entries
        .iter()
        .filter_map(|entry| {
            let rows = entry.write.as_ref()?;
            let region_erasers = erasers
                .get(&entry.region_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let expect = match expect_of(entry, region_erasers) {
                Expect::Present if unlogged.may_be_lost(entry) => Expect::Either,
                expect => expect,
            };
            Some((rows.first_row_id, *entry, expect))
        })
        .collect();
    writes.sort_by_key(|(first_row_id, _, _)| *first_row_id);
    writes
}

/// Rows found, as (row id, index in `found`), by row id then place order.
/// A value that is no row id (clients write row ids ≥ 1 as values) is a
/// phantom.
fn rows_by_id(found: &[Found<'_>], problems: &mut Vec<String>) -> Vec<(u64, usize)> {
    let mut by_row: Vec<(u64, usize)> = Vec::with_capacity(found.len());
    for (index, item) in found.iter().enumerate() {
        let value = item.row.value;
        if value.fract() != 0.0 || value < 1.0 {
            problems.push(format!(
                "{} holds a row with value {value} in {}: expected only rows the clients wrote, saw a phantom",
                item.region_id, item.place
            ));
            continue;
        }
        by_row.push((value as u64, index));
    }
    by_row.sort_unstable();
    by_row
}

/// Judges row `row_id`, found in `places`, against `write`, the write
/// whose rows start at or before it. False when it is a phantom (no write
/// holds it), so its sequence is not worth comparing.
fn judge_row(
    row_id: u64,
    places: &[&Found<'_>],
    write: Option<&ExpectedWrite<'_>>,
    problems: &mut Vec<String>,
) -> bool {
    let item = places[0];
    let phantom = || {
        format!(
            "row {row_id} in {}: expected only rows the clients wrote, saw a phantom",
            item.place
        )
    };
    let Some((_, write, expect)) = write else {
        problems.push(phantom());
        return false;
    };
    let Some(rows) = &write.write else {
        return false;
    };
    let index = (row_id - rows.first_row_id) as usize;
    let Some(written) = rows.rows.get(index) else {
        problems.push(phantom());
        return false;
    };
    let what = || format!("row {row_id} of {}", write.describe());
    if places.len() > 1 {
        let where_: Vec<&str> = places.iter().map(|f| &*f.place).collect();
        problems.push(format!(
            "{}: expected once, saw {} times (in {})",
            what(),
            places.len(),
            where_.join(", ")
        ));
    }
    if let Expect::Absent(reason) = expect {
        problems.push(format!(
            "{}: expected gone because {reason}, saw it in {}",
            what(),
            item.place
        ));
    }
    if item.region_id != write.region_id {
        problems.push(format!(
            "{}: expected in {}, saw it in {} ({})",
            what(),
            write.region_id,
            item.region_id,
            item.place
        ));
    }
    if item.row.series != written.series || item.row.ts != written.ts {
        problems.push(format!(
            "{}: expected series {} ts {}, saw series {} ts {} in {}",
            what(),
            written.series,
            written.ts,
            item.row.series,
            item.row.ts,
            item.place
        ));
    }
    if !same_fields(&item.row.fields, &written.fields) {
        problems.push(format!(
            "{}: expected added fields [{}], saw [{}] in {} (a field the row did not set \
             reads null)",
            what(),
            describe_fields(&written.fields),
            describe_fields(&item.row.fields),
            item.place
        ));
    }
    if let Outcome::Ok(Output::Written { first_sequence, .. }) = write.outcome {
        let expected = first_sequence + index as u64;
        if item.row.sequence != expected {
            problems.push(format!(
                "{}: expected sequence {expected}, saw {} in {}",
                what(),
                item.row.sequence,
                item.place
            ));
        }
    }
    true
}

/// Two different rows under one (region, sequence).
fn duplicate_sequences(mut sequences: Vec<(RegionId, u64, u64)>, problems: &mut Vec<String>) {
    sequences.sort_unstable();
    for pair in sequences.windows(2) {
        let ((region_id, sequence, other), (next_region_id, next_sequence, row_id)) =
            (pair[0], pair[1]);
        if (region_id, sequence) == (next_region_id, next_sequence) && other != row_id {
            problems.push(format!(
                "{region_id} sequence {sequence}: expected one row, saw rows {other} and {row_id}"
            ));
        }
    }
}

/// Every row of a write to a region `in_scope` that must be present and
/// was not found. Writes and their rows ascend by row id, and so do the ids
/// found: one walk over both. Returns how many written rows were judged.
fn missing_rows(
    writes: &[ExpectedWrite<'_>],
    found_row_ids: &[u64],
    in_scope: impl Fn(RegionId) -> bool,
    problems: &mut Vec<String>,
) -> u64 {
    let mut checked = 0u64;
    let mut found_before = 0;
    for (_, write, expect) in writes {
        let Some(rows) = &write.write else { continue };
        if !in_scope(write.region_id) {
            continue;
        }
        checked += rows.rows.len() as u64;
        if *expect != Expect::Present {
            continue;
        }
        for index in 0..rows.rows.len() as u64 {
            let row_id = rows.first_row_id + index;
            while found_row_ids
                .get(found_before)
                .is_some_and(|found_id| *found_id < row_id)
            {
                found_before += 1;
            }
            if found_row_ids.get(found_before) != Some(&row_id) {
                problems.push(format!(
                    "row {row_id} of {} (acknowledged {}): expected in a memtable, a listed SST or the WAL tail, \
                     saw it nowhere",
                    write.describe(),
                    write.outcome
                ));
            }
        }
    }
    checked
}
