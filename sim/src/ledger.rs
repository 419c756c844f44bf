//! The ledger: every request the simulation issued and what came back.
//!
//! Entries are ordered by a logical step (the trace position) as well as by
//! simulated time. Steps order observations causally: if a client saw a
//! reply at step 10 and another request was issued at step 11, the worker
//! handled the first before it even received the second. The row oracle
//! relies on that to decide which truncates and drops a write precedes.
//!
//! A request in flight when the engine crashed is *interrupted*: no reply
//! will come and its effect is unknown (a write's rows may or may not have
//! survived). That is not a lost request: nobody dropped its sender, the
//! engine holding it died.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use flush_core::error::ErrorKind;
use flush_core::ids::{RegionId, RequestId};
use flush_core::memtable::RowValue;
use flush_core::request::{Output, Reply, Request};
use serde::{Deserialize, Serialize};

/// Who issued a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Region creation before the workload starts.
    Setup,
    /// A workload client.
    Client(u32),
    /// The fault injector (drops, closes, truncates, DDLs during flushes).
    Injector,
    /// Reopening regions before the final checks.
    Final,
    /// Reopening regions after a crash.
    Restart,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Outcome {
    Pending,
    Ok(Output),
    Err {
        kind: ErrorKind,
        message: String,
    },
    /// The reply sender was dropped without an answer.
    Lost,
    /// The engine crashed with the request in flight: no answer, effect
    /// unknown.
    Interrupted,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn is_pending(&self) -> bool {
        matches!(self, Outcome::Pending)
    }
}

/// Short text for traces and messages.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("pending"),
            Outcome::Ok(Output::Done) => f.write_str("ok"),
            Outcome::Ok(Output::Written {
                entry_id,
                first_sequence,
                rows,
            }) => write!(f, "ok entry={entry_id} seq={first_sequence} rows={rows}"),
            Outcome::Err { kind, message } => write!(f, "err {}: {message}", kind.as_str()),
            Outcome::Lost => f.write_str("LOST (reply sender dropped)"),
            Outcome::Interrupted => f.write_str("interrupted by a crash"),
        }
    }
}

/// The rows of a write, numbered: row `i` has id `first_row_id + i`, and the
/// id is also the row's value, so a row read back names its write. The rows
/// are the request's own, shared: the ledger keeps no copy.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteRows {
    pub first_row_id: u64,
    pub rows: Arc<[RowValue]>,
}

#[derive(Clone, Debug)]
pub struct LedgerEntry {
    pub id: RequestId,
    pub origin: Origin,
    pub kind: &'static str,
    pub region_id: RegionId,
    pub issued_step: u64,
    pub issued_us: u64,
    /// The engine generation the request was sent to.
    pub generation: u64,
    pub write: Option<WriteRows>,
    pub outcome: Outcome,
    /// When the reply was seen; for an interrupted request, its crash.
    pub replied_step: Option<u64>,
    pub replied_us: Option<u64>,
    /// Replies received; anything but 1 at the end is a violation.
    pub replies: u32,
}

impl LedgerEntry {
    /// `request 12 (write region-3)`, for messages.
    pub fn describe(&self) -> String {
        format!("request {} ({} {})", self.id.0, self.kind, self.region_id)
    }

    /// The step by which the worker had certainly handled this request.
    /// An interrupted request is settled at its crash: whatever it did, it
    /// did on the engine that died then.
    pub fn settled_step(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Pending | Outcome::Lost => None,
            _ => self.replied_step,
        }
    }
}

/// Request counts, as reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub issued: u64,
    pub ok: u64,
    pub err: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Still without a reply when the run ended.
    pub pending: u64,
    /// In flight when the engine crashed.
    #[serde(default)]
    pub interrupted: u64,
}

impl RequestCounts {
    pub fn add(&mut self, other: &RequestCounts) {
        self.issued += other.issued;
        self.ok += other.ok;
        self.err += other.err;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.pending += other.pending;
        self.interrupted += other.interrupted;
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<RequestId, LedgerEntry>,
    next_request_id: u64,
    next_row_id: u64,
    /// The entries still waiting for an answer. Kept beside `entries` so
    /// that asking what waits costs the waiting requests, not the run's
    /// whole history (the checks ask on every failed flush, the crash
    /// actor on every poll while it waits for answers).
    pending: BTreeSet<RequestId>,
    last_reply_us: u64,
}

impl Ledger {
    /// Records a request about to be sent; numbers its rows if it writes.
    pub fn issue(
        &mut self,
        origin: Origin,
        request: &Request,
        step: u64,
        now_us: u64,
        generation: u64,
    ) -> RequestId {
        self.next_request_id += 1;
        let id = RequestId(self.next_request_id);
        let write = match request {
            Request::Write { rows, .. } => {
                let first_row_id = self.next_row_id + 1;
                self.next_row_id += rows.len() as u64;
                Some(WriteRows {
                    first_row_id,
                    rows: rows.clone(),
                })
            }
            _ => None,
        };
        self.pending.insert(id);
        self.entries.insert(
            id,
            LedgerEntry {
                id,
                origin,
                kind: request.kind(),
                region_id: request.region_id(),
                issued_step: step,
                issued_us: now_us,
                generation,
                write,
                outcome: Outcome::Pending,
                replied_step: None,
                replied_us: None,
                replies: 0,
            },
        );
        id
    }

    /// The id the next write's first row will get (rows carry it as value).
    pub fn peek_next_row_id(&self) -> u64 {
        self.next_row_id + 1
    }

    /// Records a reply, or a lost one (`None`).
    pub fn reply(&mut self, id: RequestId, reply: Option<&Reply>, step: u64, now_us: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            debug_assert!(false, "reply for unknown {id}");
            return;
        };
        entry.replies += 1;
        self.last_reply_us = self.last_reply_us.max(now_us);
        if entry.replies > 1 {
            return;
        }
        let was_pending = self.pending.remove(&id);
        debug_assert!(
            was_pending,
            "the first reply of {id}, which was not pending"
        );
        entry.outcome = match reply {
            None => Outcome::Lost,
            Some(Ok(output)) => Outcome::Ok(output.clone()),
            Some(Err(error)) => Outcome::Err {
                kind: error.kind(),
                message: error.to_string(),
            },
        };
        entry.replied_step = Some(step);
        entry.replied_us = Some(now_us);
    }

    /// Records that the engine crashed with `id` in flight, at trace step
    /// `crash_step`.
    pub fn interrupt(&mut self, id: RequestId, crash_step: u64, now_us: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            debug_assert!(false, "interrupt of unknown {id}");
            return;
        };
        if !entry.outcome.is_pending() {
            return;
        }
        self.pending.remove(&id);
        self.last_reply_us = self.last_reply_us.max(now_us);
        entry.outcome = Outcome::Interrupted;
        entry.replied_step = Some(crash_step);
        entry.replied_us = Some(now_us);
    }

    /// Requests sent to an engine generation before `generation` that are
    /// still waiting.
    pub fn pending_before(&self, generation: u64) -> usize {
        self.pending()
            .filter(|entry| entry.generation < generation)
            .count()
    }

    pub fn get(&self, id: RequestId) -> Option<&LedgerEntry> {
        self.entries.get(&id)
    }

    pub fn entries(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.entries.values()
    }

    /// The requests still waiting for an answer, in the order they were
    /// issued.
    pub fn pending(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.pending.iter().filter_map(|id| {
            let entry = self.entries.get(id);
            debug_assert!(entry.is_some_and(|e| e.outcome.is_pending()));
            entry
        })
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Simulated time of the latest reply (0 before the first).
    pub fn last_reply_us(&self) -> u64 {
        self.last_reply_us
    }

    pub fn counts(&self) -> RequestCounts {
        let mut counts = RequestCounts::default();
        for entry in self.entries.values() {
            counts.issued += 1;
            if entry.replies > 1 {
                counts.duplicated += 1;
            }
            match entry.outcome {
                Outcome::Pending => counts.pending += 1,
                Outcome::Ok(_) => counts.ok += 1,
                Outcome::Err { .. } => counts.err += 1,
                Outcome::Lost => counts.lost += 1,
                Outcome::Interrupted => counts.interrupted += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flush_core::error::RequestError;

    fn write(rows: usize) -> Request {
        Request::Write {
            region_id: RegionId(1),
            rows: (0..rows)
                .map(|i| RowValue {
                    series: "s".into(),
                    ts: i as i64,
                    value: 0.0,
                    fields: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_are_numbered_across_writes() {
        let mut ledger = Ledger::default();
        let a = ledger.issue(Origin::Client(0), &write(3), 1, 0, 0);
        let b = ledger.issue(Origin::Client(0), &write(2), 2, 0, 0);
        assert_eq!(
            ledger
                .get(a)
                .and_then(|e| e.write.as_ref())
                .map(|w| w.first_row_id),
            Some(1)
        );
        assert_eq!(
            ledger
                .get(b)
                .and_then(|e| e.write.as_ref())
                .map(|w| w.first_row_id),
            Some(4)
        );
        assert_eq!(ledger.peek_next_row_id(), 6);
    }

    #[test]
    fn counts_classify_outcomes() {
        let mut ledger = Ledger::default();
        let ok = ledger.issue(Origin::Client(0), &write(1), 1, 0, 0);
        let err = ledger.issue(Origin::Client(0), &write(1), 2, 0, 0);
        let lost = ledger.issue(Origin::Client(0), &write(1), 3, 0, 0);
        let _pending = ledger.issue(Origin::Client(0), &write(1), 4, 0, 0);
        ledger.reply(ok, Some(&Ok(Output::Done)), 5, 0);
        let error = RequestError::RegionDropped {
            region_id: RegionId(1),
        };
        ledger.reply(err, Some(&Err(error)), 6, 0);
        ledger.reply(lost, None, 7, 0);
        ledger.reply(ok, Some(&Ok(Output::Done)), 8, 0);
        let counts = ledger.counts();
        assert_eq!(
            (
                counts.issued,
                counts.ok,
                counts.err,
                counts.lost,
                counts.pending,
                counts.duplicated
            ),
            (4, 1, 1, 1, 1, 1)
        );
    }
}
