//! What the crash test's parent knows of every row it sent, and the
//! judgement of what a directory holds at the end.
//!
//! A row's fate follows the replies: acknowledged rows must be on disk
//! exactly once; rows of writes that were refused, truncated or dropped
//! must not come back; rows whose fate a crash left open (a write, a
//! truncate or a drop in flight when the child was killed) may be there
//! once, or not at all.

use std::collections::BTreeMap;

use flush_core::ids::RegionId;
use flush_core::memtable::Row;

use super::protocol::{parse_series, rows_of, ROWS_PER_WRITE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Acknowledged: must be present, once.
    Acked,
    /// Sent, fate unknown (in flight at a crash, or acknowledged after a
    /// truncate or drop it may have run before).
    Maybe,
    /// Refused, truncated or dropped: must not be present.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionState {
    Open,
    /// A drop (or a create after one) was in flight at a crash; the next
    /// `ready` tells.
    MaybeDropped,
    Dropped,
}

/// One write of the workload.
#[derive(Clone, Debug)]
struct Write {
    region_id: RegionId,
    /// Position in the order of everything sent.
    sent_at: u64,
    acked_at: Option<u64>,
    fate: Fate,
    /// A truncate or drop may have run on either side of it: its
    /// acknowledgement no longer says its rows are there. (The child
    /// prints replies as they come, so their order on the pipe is not the
    /// order the engine answered in.)
    ambiguous: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    writes: BTreeMap<u64, Write>,
    regions: BTreeMap<RegionId, RegionState>,
    /// Counts everything sent and every reply, to order them.
    clock: u64,
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub fn state(&self, region_id: RegionId) -> Option<RegionState> {
        self.regions.get(&region_id).copied()
    }

    pub fn open_regions(&self) -> Vec<RegionId> {
        self.regions
            .iter()
            .filter(|(_, state)| **state == RegionState::Open)
            .map(|(region_id, _)| *region_id)
            .collect()
    }

    pub fn dropped_regions(&self) -> Vec<RegionId> {
        self.regions
            .iter()
            .filter(|(_, state)| **state == RegionState::Dropped)
            .map(|(region_id, _)| *region_id)
            .collect()
    }

    pub fn created(&mut self, region_id: RegionId) {
        self.regions.insert(region_id, RegionState::Open);
    }

    /// A create was in flight at a crash: the next `ready` tells whether
    /// the region exists.
    pub fn maybe_created(&mut self, region_id: RegionId) {
        if self.regions.get(&region_id) == Some(&RegionState::Dropped) {
            self.regions.insert(region_id, RegionState::MaybeDropped);
        }
    }

    pub fn write_sent(&mut self, write_id: u64, region_id: RegionId) {
        let sent_at = self.tick();
        self.writes.insert(
            write_id,
            Write {
                region_id,
                sent_at,
                acked_at: None,
                fate: Fate::Maybe,
                ambiguous: false,
            },
        );
    }

    pub fn write_acked(&mut self, write_id: u64) {
        let now = self.tick();
        if let Some(write) = self.writes.get_mut(&write_id) {
            write.acked_at = Some(now);
            if write.fate == Fate::Maybe && !write.ambiguous {
                write.fate = Fate::Acked;
            }
        }
    }

    pub fn write_refused(&mut self, write_id: u64) {
        if let Some(write) = self.writes.get_mut(&write_id) {
            write.fate = Fate::Gone;
        }
    }

    /// A truncate or drop sent at `sent_at` ran: writes acknowledged
    /// before it was sent are gone; writes sent before it but not yet
    /// acknowledged then may have run on either side of it.
    fn wipe(&mut self, region_id: RegionId, sent_at: u64, certain: bool) {
        for write in self.writes.values_mut() {
            if write.region_id != region_id || write.sent_at > sent_at || write.fate == Fate::Gone {
                continue;
            }
            let acked_before = write.acked_at.is_some_and(|acked| acked < sent_at);
            if certain && acked_before {
                write.fate = Fate::Gone;
            } else {
                write.fate = Fate::Maybe;
                write.ambiguous = true;
            }
        }
    }

    /// Marks the send of a truncate or drop; returns its position.
    pub fn ddl_sent(&mut self) -> u64 {
        self.tick()
    }

    pub fn truncated(&mut self, region_id: RegionId, sent_at: u64, certain: bool) {
        self.wipe(region_id, sent_at, certain);
    }

    pub fn dropped(&mut self, region_id: RegionId, sent_at: u64, certain: bool) {
        if certain {
            self.wipe(region_id, sent_at, true);
            self.forget_region(region_id);
        } else {
            self.wipe(region_id, sent_at, false);
            self.regions.insert(region_id, RegionState::MaybeDropped);
        }
    }

    /// Every row of a dropped region is gone, whatever its fate was.
    fn forget_region(&mut self, region_id: RegionId) {
        for write in self.writes.values_mut() {
            if write.region_id == region_id {
                write.fate = Fate::Gone;
            }
        }
        self.regions.insert(region_id, RegionState::Dropped);
    }

    /// The child reopened `open`: a region that may have been dropped is
    /// settled; a region we hold open that did not reopen is a failure.
    pub fn ready(&mut self, open: &[RegionId]) -> Vec<String> {
        let mut problems = Vec::new();
        let known: Vec<(RegionId, RegionState)> =
            self.regions.iter().map(|(r, s)| (*r, *s)).collect();
        for (region_id, state) in known {
            let reopened = open.contains(&region_id);
            match (state, reopened) {
                (RegionState::MaybeDropped, false) => self.forget_region(region_id),
                (RegionState::MaybeDropped, true) => {
                    self.regions.insert(region_id, RegionState::Open);
                }
                (RegionState::Open, false) => problems.push(format!(
                    "{region_id}: expected it to reopen after the restart, it did not"
                )),
                (RegionState::Dropped, true) => problems.push(format!(
                    "{region_id}: expected it to stay dropped, it reopened"
                )),
                _ => {}
            }
        }
        problems
    }

    /// Judges the rows found in one open region's SSTs.
    pub fn judge_rows(&self, region_id: RegionId, rows: &[Row]) -> (Vec<String>, u64) {
        let mut problems = Vec::new();
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        for row in rows {
            *seen.entry(&*row.series).or_default() += 1;
            let Some((write_id, index)) = parse_series(&row.series) else {
                problems.push(format!("{region_id}: a row of no write of ours: {row:?}"));
                continue;
            };
            let expected = rows_of(write_id).into_iter().nth(index);
            let write = self.writes.get(&write_id);
            match (write, expected) {
                (Some(write), Some(expected))
                    if write.region_id == region_id
                        && expected.ts == row.ts
                        && expected.value == row.value =>
                {
                    if write.fate == Fate::Gone {
                        problems.push(format!(
                            "{region_id}: row {} of write {write_id} came back, expected it \
                             gone (refused, truncated or dropped)",
                            row.series
                        ));
                    }
                }
                _ => problems.push(format!(
                    "{region_id}: row {} is not what write {write_id} sent: {row:?}",
                    row.series
                )),
            }
        }
        for (series, count) in &seen {
            if *count > 1 {
                problems.push(format!("{region_id}: row {series} found {count} times"));
            }
        }
        let mut checked = 0;
        for (write_id, write) in &self.writes {
            if write.region_id != region_id || write.fate != Fate::Acked {
                continue;
            }
            for index in 0..ROWS_PER_WRITE {
                checked += 1;
                let series = super::protocol::series_name(*write_id, index);
                if !seen.contains_key(series.as_str()) {
                    problems.push(format!(
                        "{region_id}: acknowledged row {series} of write {write_id} is lost"
                    ));
                }
            }
        }
        (problems, checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(write_id: u64, index: usize) -> Row {
        let value = &rows_of(write_id)[index];
        Row {
            series: value.series.clone(),
            ts: value.ts,
            value: value.value,
            sequence: 0,
            fields: Vec::new(),
        }
    }

    fn all_rows(write_id: u64) -> Vec<Row> {
        (0..ROWS_PER_WRITE)
            .map(|index| row(write_id, index))
            .collect()
    }

    #[test]
    fn acked_rows_must_be_there_once_and_truncated_rows_must_not() {
        let region = RegionId(1);
        let mut model = Model::default();
        model.created(region);
        model.write_sent(1, region);
        model.write_acked(1);
        let truncate = model.ddl_sent();
        model.truncated(region, truncate, true);
        model.write_sent(2, region);
        model.write_acked(2);
        model.write_sent(3, region); // in flight at a crash

        let (problems, checked) = model.judge_rows(region, &all_rows(2));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(checked, ROWS_PER_WRITE as u64);
        let mut with_maybe = all_rows(2);
        with_maybe.extend(all_rows(3));
        assert!(model.judge_rows(region, &with_maybe).0.is_empty());

        let (lost, _) = model.judge_rows(region, &all_rows(2)[1..]);
        assert!(lost.iter().any(|p| p.contains("lost")), "{lost:?}");
        let mut back = all_rows(2);
        back.push(row(1, 0));
        let (resurrected, _) = model.judge_rows(region, &back);
        assert!(
            resurrected.iter().any(|p| p.contains("came back")),
            "{resurrected:?}"
        );
        let mut twice = all_rows(2);
        twice.push(row(2, 3));
        let (duplicated, _) = model.judge_rows(region, &twice);
        assert!(
            duplicated.iter().any(|p| p.contains("2 times")),
            "{duplicated:?}"
        );
    }

    #[test]
    fn a_write_answered_after_a_truncate_it_was_sent_before_may_go_either_way() {
        let region = RegionId(1);
        let mut model = Model::default();
        model.created(region);
        model.write_sent(1, region);
        let truncate = model.ddl_sent();
        model.truncated(region, truncate, true);
        model.write_acked(1);
        model.write_sent(2, region);
        model.write_acked(2);
        for rows in [all_rows(2), [all_rows(1), all_rows(2)].concat()] {
            let (problems, checked) = model.judge_rows(region, &rows);
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(checked, ROWS_PER_WRITE as u64, "only write 2 is owed");
        }
    }

    #[test]
    fn a_drop_in_flight_is_settled_by_the_next_ready() {
        let region = RegionId(2);
        let mut model = Model::default();
        model.created(region);
        model.write_sent(1, region);
        model.write_acked(1);
        let drop = model.ddl_sent();
        model.dropped(region, drop, false);
        assert!(model.ready(&[]).is_empty());
        assert_eq!(model.state(region), Some(RegionState::Dropped));
        let (problems, _) = model.judge_rows(region, &all_rows(1));
        assert!(
            problems.iter().any(|p| p.contains("came back")),
            "{problems:?}"
        );
        // A region we hold open must reopen.
        model.created(RegionId(3));
        assert_eq!(model.ready(&[]).len(), 1);
    }
}
