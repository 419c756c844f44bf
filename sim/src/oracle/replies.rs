//! `exactly_once_reply` and `reply_kind`: every request answered once,
//! every error with a cause, every Ok flush or downgrade keeping its promise.

use super::causes::{lifecycles, FirstFaults, Lifecycle};
use super::*;

pub(super) fn exactly_once_reply(entries: &[&LedgerEntry], violations: &Violations) -> CheckResult {
    let mut problems = Vec::new();
    for entry in entries {
        if matches!(entry.outcome, Outcome::Lost) {
            problems.push(format!(
                "{} got 0 replies (its reply sender was dropped), expected 1",
                entry.describe()
            ));
        } else if entry.replies > 1 {
            problems.push(format!(
                "{} got {} replies, expected 1",
                entry.describe(),
                entry.replies
            ));
        }
    }
    CheckResult::from_problems(
        Check::ExactlyOnceReply,
        format!("{} requests, none lost or answered twice", entries.len()),
        violations.of(Check::ExactlyOnceReply),
        problems,
    )
}

/// What may legitimately cause an error of some kind.
pub(super) enum Cause {
    Always,
    Never,
    /// A request of one of these kinds on the same region, issued by then.
    Requests(&'static [&'static str]),
    /// An injected fault of one of these classes (on the region, or on no
    /// particular region), by then.
    Faults(&'static [FaultClass]),
    Either(&'static [&'static str], &'static [FaultClass]),
    /// Only while the engine shuts down.
    Shutdown,
    /// Special rule for `RegionNotFound`.
    NotOpen,
    /// An injected fault of one of these classes, and the error says it
    /// was injected (the same kind can come from a real mistake).
    Injected(&'static [FaultClass]),
}

/// The requests that change a region's life; every request kind a
/// [`Cause`] names is one of them.
pub(super) const LIFECYCLE: &[&str] = &[
    "create",
    "open",
    "close",
    "drop",
    "truncate",
    "downgrade",
    "alter",
    "set_role",
];
pub(super) const MANIFEST_FAULTS: &[FaultClass] = &[
    FaultClass::ManifestFailure,
    FaultClass::ManifestAmbiguousCommit,
];
pub(super) const FLUSH_FAULTS: &[FaultClass] = &[
    FaultClass::JobLost,
    FaultClass::JobPanic,
    FaultClass::SstWriteError,
    FaultClass::SstPartialObject,
    FaultClass::ManifestFailure,
    FaultClass::ManifestAmbiguousCommit,
];

pub(super) fn cause_of(kind: ErrorKind) -> Cause {
    match kind {
        ErrorKind::RegionDropped => Cause::Requests(&["drop"]),
        ErrorKind::RegionClosed => Cause::Requests(&["close"]),
        ErrorKind::RegionTruncated => Cause::Requests(&["truncate"]),
        // A region opens as a follower; a downgrade makes one.
        ErrorKind::RegionReadOnly => Cause::Requests(&["downgrade", "open"]),
        ErrorKind::RegionNotFound => Cause::NotOpen,
        ErrorKind::RegionExists | ErrorKind::WriteStallFull | ErrorKind::WriteStallTimeout => {
            Cause::Always
        }
        ErrorKind::FlushFailed => Cause::Either(LIFECYCLE, FLUSH_FAULTS),
        ErrorKind::JobRejected => Cause::Faults(&[FaultClass::JobRejection]),
        ErrorKind::FreezeFailed => Cause::Faults(&[FaultClass::FreezeFailure]),
        ErrorKind::Manifest => Cause::Either(LIFECYCLE, MANIFEST_FAULTS),
        ErrorKind::ObjectStore | ErrorKind::Sst => {
            Cause::Faults(&[FaultClass::SstWriteError, FaultClass::SstPartialObject])
        }
        ErrorKind::WorkerStopped => Cause::Shutdown,
        ErrorKind::Wal => {
            Cause::Injected(&[FaultClass::WalAppendFailure, FaultClass::WalTruncateFailure])
        }
        ErrorKind::InvalidRequest => Cause::Never,
        // A client writes the fields its alters added; a drop (and the
        // create after it) starts the region over without them.
        ErrorKind::UnknownColumn => Cause::Requests(&["drop"]),
    }
}

/// `reply_kind` also holds Ok replies to their promise: a manual flush
/// answered Ok means every write acknowledged before it was sent is in the
/// manifest (its flushed sequence covers them) by the time of the answer.
pub(super) fn reply_kind(
    entries: &[&LedgerEntry],
    faults: &FaultLog,
    observed: &Observations,
    crash_steps: &[u64],
    stop_windows: &[(u64, u64)],
    violations: &Violations,
) -> CheckResult {
    let (history, shutdown_step, unlogged) = (
        &observed.manifest_history[..],
        observed.shutdown_step,
        &observed.unlogged,
    );
    let mut by_region: BTreeMap<RegionId, Vec<&LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        by_region.entry(entry.region_id).or_default().push(entry);
    }
    // Only lifecycle requests and injected faults explain errors: indexed
    // once, so that judging every error stays linear in the run.
    let lifecycles = lifecycles(entries, LIFECYCLE);
    let first_faults = FirstFaults::new(faults);
    let no_lifecycle = Lifecycle::default();
    let mut problems = Vec::new();
    let mut errors = 0;
    for entry in entries {
        let Outcome::Err { kind, message } = &entry.outcome else {
            continue;
        };
        errors += 1;
        let Some(replied) = entry.replied_step else {
            continue;
        };
        if entry.origin == Origin::Final || replied >= shutdown_step {
            continue;
        }
        let stopping = stop_windows
            .iter()
            .any(|(began, ended)| (*began..=*ended).contains(&replied));
        if stopping && matches!(kind, ErrorKind::WorkerStopped | ErrorKind::RegionClosed) {
            continue;
        }
        let region = lifecycles.get(&entry.region_id).unwrap_or(&no_lifecycle);
        let requested = |kinds: &[&str]| {
            assert!(
                kinds.iter().all(|kind| LIFECYCLE.contains(kind)),
                "a cause names {kinds:?}, expected only lifecycle kinds (the only ones looked up)"
            );
            region.requested(kinds, entry, replied)
        };
        let injected =
            |classes: &[FaultClass]| first_faults.any_before(classes, entry.region_id, replied);
        let explained = match cause_of(*kind) {
            Cause::Always => true,
            Cause::Never | Cause::Shutdown => false,
            Cause::Requests(kinds) => requested(kinds),
            Cause::Faults(classes) => injected(classes),
            Cause::Either(kinds, classes) => requested(kinds) || injected(classes),
            Cause::NotOpen => region.not_found_explained(entry, crash_steps),
            Cause::Injected(classes) => injected(classes) && message.contains("injected"),
        };
        if !explained {
            problems.push(format!(
                "{} got {} ({message}), expected a cause for it before the reply, saw none",
                entry.describe(),
                kind.as_str()
            ));
        }
    }
    let flushes = covering_promises(&by_region, history, unlogged, "flush", &mut problems);
    CheckResult::from_problems(
        Check::ReplyKind,
        format!("{errors} error replies, each with a cause; {flushes} flushes kept their promise"),
        violations.of(Check::ReplyKind),
        problems,
    )
}

/// Checks every Ok request of `kind` (a manual flush, a downgrade) against
/// the manifest history: the manifest covers every write acknowledged
/// before it was sent. Returns how many were checked.
pub(super) fn covering_promises(
    by_region: &BTreeMap<RegionId, Vec<&LedgerEntry>>,
    history: &[ManifestRecord],
    unlogged: &BTreeSet<RegionId>,
    kind: &str,
    problems: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    for (region_id, region) in by_region {
        let records: Vec<&ManifestRecord> = history
            .iter()
            .filter(|r| r.region_id == *region_id)
            .collect();
        for flush in region
            .iter()
            .filter(|e| e.kind == kind && e.outcome.is_ok())
        {
            let Some(replied) = flush.replied_step else {
                continue;
            };

            // The manifest as it stood when the answer was seen.
            let Some(at_reply) = records.iter().rev().find(|r| r.step <= replied) else {
                continue;
            };
            if at_reply.dropped {
                continue;
            }
            // mito2 answers a downgrade of a follower at once: the data is
            // not its to flush. Only an open (or set_role) makes the
            // manifest say follower (a downgrade leaves it downgrading), so
            // a follower anywhere in the request's flight may have met it.
            let follower_in_flight = records
                .iter()
                .rev()
                .skip_while(|r| r.step > replied)
                .take_while(|r| r.step > flush.issued_step)
                .chain(records.iter().rev().find(|r| r.step <= flush.issued_step))
                .any(|r| r.follower);
            if kind == "downgrade" && follower_in_flight {
                continue;
            }
            // Writes of that incarnation: issued after it was created.
            let Some(created) = records
                .iter()
                .find(|r| r.incarnation == at_reply.incarnation)
                .map(|r| r.step)
            else {
                continue;
            };
            let covered = region
                .iter()
                .filter(|w| {
                    w.issued_step > created
                        && w.replied_step.is_some_and(|s| s < flush.issued_step)
                        // Without a WAL, a write of an engine that ended
                        // may be gone, and sequences start over after it.
                        && !(unlogged.contains(region_id) && w.generation != flush.generation)
                })
                .filter_map(|w| match w.outcome {
                    Outcome::Ok(Output::Written {
                        first_sequence,
                        rows,
                        ..
                    }) => Some((first_sequence + rows.saturating_sub(1), w)),
                    _ => None,
                })
                .max_by_key(|(sequence, _)| *sequence);
            checked += 1;
            if let Some((sequence, write)) = covered {
                if at_reply.flushed_sequence < sequence {
                    problems.push(format!(
                        "{} answered ok: expected the manifest to cover sequence {sequence} of {} \
                         acknowledged before it, saw flushed sequence {}",
                        flush.describe(),
                        write.describe(),
                        at_reply.flushed_sequence
                    ));
                }
            }
        }
    }
    checked
}
