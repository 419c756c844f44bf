//! What may explain an error reply, indexed once per run for `reply_kind`.
//!
//! `reply_kind` asks, for every error a run answered, whether something
//! came before it that may cause it: a request of some kind on its region,
//! an injected fault, a close or crash since the region last opened. Asked
//! by walking the run's history per error, that is quadratic: a plan that
//! truncates a region every millisecond for two simulated minutes
//! (accepted as input) took 13 s of checks, most of it comparing request
//! kinds. The answers come from these indexes instead, each built in one
//! pass, each question a lookup or a binary search.

use std::collections::BTreeMap;

use flush_core::ids::{RegionId, RequestId};

use crate::ledger::LedgerEntry;
use crate::plan::FaultClass;
use crate::world::FaultLog;

/// The lifecycle requests of one region (creates, opens, closes, drops,
/// truncates, downgrades, alters, role changes), indexed.
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    /// Per kind, its two earliest requests as (issued step, id): enough to
    /// say whether one *other* than a given request was issued by a step.
    earliest: BTreeMap<&'static str, Vec<(u64, RequestId)>>,
    /// Successful creates and opens as (replied step, the latest issued
    /// step among them up to this one), by replied step.
    opens: Vec<(u64, u64)>,
    /// Closes and drops as (issued step, the latest settled step among
    /// them up to this one; `u64::MAX` for one never settled), by issued
    /// step.
    closes: Vec<(u64, u64)>,
}

impl Lifecycle {
    /// Indexes `requests`: one region's lifecycle requests.
    fn new(requests: &[&LedgerEntry]) -> Lifecycle {
        let mut earliest: BTreeMap<&'static str, Vec<(u64, RequestId)>> = BTreeMap::new();
        let mut opens = Vec::new();
        let mut closes = Vec::new();
        for request in requests {
            earliest
                .entry(request.kind)
                .or_default()
                .push((request.issued_step, request.id));
            if matches!(request.kind, "create" | "open") && request.outcome.is_ok() {
                if let Some(replied) = request.replied_step {
                    opens.push((replied, request.issued_step));
                }
            }
            if matches!(request.kind, "close" | "drop") {
                let settled = request.settled_step().unwrap_or(u64::MAX);
                closes.push((request.issued_step, settled));
            }
        }
        for requests in earliest.values_mut() {
            requests.sort_unstable();
            requests.truncate(2);
        }
        Lifecycle {
            earliest,
            opens: running_max(opens),
            closes: running_max(closes),
        }
    }

    /// Was a request of one of `kinds`, other than `entry`, issued on the
    /// region at or before step `by`?
    pub(super) fn requested(&self, kinds: &[&str], entry: &LedgerEntry, by: u64) -> bool {
        kinds.iter().any(|kind| {
            self.earliest.get(kind).is_some_and(|requests| {
                requests
                    .iter()
                    .find(|(_, id)| *id != entry.id)
                    .is_some_and(|(issued, _)| *issued <= by)
            })
        })
    }

    /// `RegionNotFound` is wrong only when the region was certainly open:
    /// a create or open had succeeded before the request was sent, and no
    /// close, drop or crash could have come in between (a restart may fail
    /// to reopen a region while faults are on).
    pub(super) fn not_found_explained(&self, entry: &LedgerEntry, crash_steps: &[u64]) -> bool {
        // The latest issued step of the opens answered before `entry`.
        let answered_before = self
            .opens
            .partition_point(|(replied, _)| *replied < entry.issued_step);
        let Some(&(_, opened_issued)) = answered_before.checked_sub(1).map(|i| &self.opens[i])
        else {
            return true;
        };
        let replied = entry.replied_step.unwrap_or(u64::MAX);
        if crash_steps
            .iter()
            .any(|step| *step > opened_issued && *step < replied)
        {
            return true;
        }
        // A close or drop sent before the reply that had not settled by
        // the time of that open.
        let sent_before = self.closes.partition_point(|(issued, _)| *issued < replied);
        sent_before
            .checked_sub(1)
            .is_some_and(|i| self.closes[i].1 > opened_issued)
    }
}

/// Sorts (key, value) pairs by key and replaces each value by the largest
/// value up to it.
fn running_max(mut pairs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    pairs.sort_unstable();
    let mut most = 0;
    for (_, value) in pairs.iter_mut() {
        most = most.max(*value);
        *value = most;
    }
    pairs
}

/// Every region's lifecycle requests, indexed; `kinds` says which request
/// kinds are lifecycle ones.
pub(super) fn lifecycles(
    entries: &[&LedgerEntry],
    kinds: &[&str],
) -> BTreeMap<RegionId, Lifecycle> {
    let mut by_region: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries.iter().filter(|entry| kinds.contains(&entry.kind)) {
        by_region.entry(entry.region_id).or_default().push(entry);
    }
    by_region
        .into_iter()
        .map(|(region_id, requests)| (region_id, Lifecycle::new(&requests)))
        .collect()
}

/// The earliest trace step of each fault class, per region it hit (`None`:
/// a fault on no particular region).
#[derive(Debug, Default)]
pub(super) struct FirstFaults(BTreeMap<(FaultClass, Option<RegionId>), u64>);

impl FirstFaults {
    pub(super) fn new(log: &FaultLog) -> FirstFaults {
        let mut first = BTreeMap::new();
        for fault in &log.injected {
            first
                .entry((fault.class, fault.region_id))
                .and_modify(|step: &mut u64| *step = (*step).min(fault.step))
                .or_insert(fault.step);
        }
        FirstFaults(first)
    }

    /// Was a fault of one of `classes` injected, on `region_id` (or on no
    /// particular region), at or before `step`?
    pub(super) fn any_before(
        &self,
        classes: &[FaultClass],
        region_id: RegionId,
        step: u64,
    ) -> bool {
        classes.iter().any(|class| {
            [Some(region_id), None].iter().any(|region| {
                self.0
                    .get(&(*class, *region))
                    .is_some_and(|first| *first <= step)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, Origin};
    use crate::world::InjectedFault;
    use flush_core::request::{Output, Reply, Request};

    /// Requests on region 1 as (kind, issued step, replied step, ok).
    fn ledger(requests: &[(&str, u64, Option<u64>, bool)]) -> Ledger {
        let mut ledger = Ledger::default();
        for (kind, issued, replied, ok) in requests {
            let region_id = RegionId(1);
            let request = match *kind {
                "create" => Request::Create {
                    region_id,
                    options: Default::default(),
                },
                "open" => Request::Open { region_id },
                "close" => Request::Close { region_id },
                "drop" => Request::Drop { region_id },
                "truncate" => Request::Truncate { region_id },
                other => panic!("no {other} in this test"),
            };
            let id = ledger.issue(Origin::Client(0), &request, *issued, 0, 0);
            if let Some(step) = replied {
                let reply: Reply = if *ok {
                    Ok(Output::Done)
                } else {
                    Err(flush_core::error::RequestError::RegionNotFound { region_id })
                };
                ledger.reply(id, Some(&reply), *step, 0);
            }
        }
        ledger
    }

    /// The request `not_found_explained` judges: sent at `issued`,
    /// answered at `replied`.
    fn judged(issued: u64, replied: u64) -> LedgerEntry {
        let ledger = ledger(&[("truncate", issued, Some(replied), false)]);
        let entry = ledger.entries().next().cloned();
        entry.expect("the entry just issued")
    }

    fn lifecycle(ledger: &Ledger) -> Lifecycle {
        let entries: Vec<&LedgerEntry> = ledger.entries().collect();
        Lifecycle::new(&entries)
    }

    #[test]
    fn not_found_needs_an_open_answered_before_and_nothing_since() {
        // Opened (sent at 1, answered at 2); a close sent at 10, settled
        // at 12.
        let opened_then_closed =
            ledger(&[("create", 1, Some(2), true), ("close", 10, Some(12), true)]);
        let index = lifecycle(&opened_then_closed);
        // Sent before the create was answered: nothing was surely open.
        assert!(index.not_found_explained(&judged(2, 5), &[]));
        // Sent and answered while open, no close or crash: unexplained.
        assert!(!index.not_found_explained(&judged(3, 5), &[]));
        // A crash in between explains it; one before the open does not.
        assert!(index.not_found_explained(&judged(3, 5), &[4]));
        assert!(!index.not_found_explained(&judged(3, 5), &[1]));
        // Answered after the close was sent.
        assert!(index.not_found_explained(&judged(3, 11), &[]));
        // A failed open does not count as open.
        let failed_open = ledger(&[("open", 1, Some(2), false)]);
        assert!(lifecycle(&failed_open).not_found_explained(&judged(3, 5), &[]));
    }

    #[test]
    fn a_close_settled_before_the_latest_open_does_not_explain() {
        // Closed (sent 3, settled 4), reopened (sent 5, answered 6).
        let reopened = ledger(&[
            ("create", 1, Some(2), true),
            ("close", 3, Some(4), true),
            ("open", 5, Some(6), true),
        ]);
        let index = lifecycle(&reopened);
        assert!(!index.not_found_explained(&judged(7, 9), &[]));
        // A close never settled explains anything after it was sent.
        let unsettled = ledger(&[("create", 1, Some(2), true), ("close", 3, None, true)]);
        assert!(lifecycle(&unsettled).not_found_explained(&judged(7, 9), &[]));
    }

    #[test]
    fn requested_looks_for_another_request_of_the_kinds_by_the_step() {
        let truncated = ledger(&[
            ("truncate", 5, Some(6), true),
            ("truncate", 9, Some(10), true),
        ]);
        let index = lifecycle(&truncated);
        let first = truncated.entries().next().expect("two entries");
        // The first truncate itself does not count: the second came at 9.
        assert!(!index.requested(&["truncate"], first, 8));
        assert!(index.requested(&["truncate"], first, 9));
        assert!(!index.requested(&["drop", "close"], first, 100));
    }

    #[test]
    fn first_faults_answer_as_a_walk_over_the_log_would() {
        let fault = |step, class, region: Option<u64>| InjectedFault {
            step,
            class,
            region_id: region.map(RegionId),
        };
        let log = FaultLog {
            counts: BTreeMap::new(),
            injected: vec![
                fault(5, FaultClass::SstWriteError, Some(1)),
                fault(7, FaultClass::JobRejection, None),
                fault(2, FaultClass::SstWriteError, Some(2)),
            ],
        };
        let first = FirstFaults::new(&log);
        // The walk over the log the index replaces.
        let walk = |class, region: RegionId, step| {
            log.injected.iter().any(|fault| {
                fault.step <= step
                    && fault.class == class
                    && fault.region_id.is_none_or(|r| r == region)
            })
        };
        for class in [FaultClass::SstWriteError, FaultClass::JobRejection] {
            for region in [RegionId(1), RegionId(2), RegionId(3)] {
                for step in 0..10 {
                    assert_eq!(
                        first.any_before(&[class], region, step),
                        walk(class, region, step),
                        "{class:?} {region} {step}"
                    );
                }
            }
        }
    }
}
