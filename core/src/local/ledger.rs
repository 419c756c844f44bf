//! `ReplyLedger`: the test-side check that every request got exactly one
//! reply.
//!
//! A test hands the ledger the receiver of every request it sends. At the
//! end each receiver must hold exactly one reply: `try_recv` gives
//! `Ok(Some(_))`. `Ok(None)` means nobody answered yet (a hang), and
//! `Err(Canceled)` means the reply sender was dropped without a value (a
//! lost request, the bug this project exists to catch). A oneshot cannot
//! carry two values, so "at least one" plus the channel type gives "exactly
//! one".
//!
//! Part of the test kit (feature `test-kit`; always in the crate's own
//! unit tests). Generic over the reply type.

use std::fmt::Debug;

use futures::channel::oneshot;

use crate::error::ErrorKind;
use crate::request::{Output, Reply};

/// A request the ledger tracks; returned by [`ReplyLedger::track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(usize);

/// What a tracked request has received so far.
#[derive(Debug, PartialEq)]
pub enum ReplyState<'a, T> {
    Answered(&'a T),
    /// No reply yet; the sender is still held somewhere.
    Waiting,
    /// The sender was dropped without a reply.
    Lost,
}

struct Entry<T> {
    label: String,
    receiver: oneshot::Receiver<T>,
    /// The reply, once taken out of the channel (a oneshot gives it once).
    reply: Option<T>,
    lost: bool,
}

impl<T> Entry<T> {
    fn poll(&mut self) {
        if self.reply.is_some() || self.lost {
            return;
        }
        match self.receiver.try_recv() {
            Ok(Some(reply)) => self.reply = Some(reply),
            Ok(None) => {}
            Err(oneshot::Canceled) => self.lost = true,
        }
    }
}

pub struct ReplyLedger<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Default for ReplyLedger<T> {
    fn default() -> Self {
        ReplyLedger {
            entries: Vec::new(),
        }
    }
}

impl<T: Debug> ReplyLedger<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking the receiver of one request; `label` names it in
    /// failure messages.
    pub fn track(&mut self, label: impl Into<String>, receiver: oneshot::Receiver<T>) -> Ticket {
        self.entries.push(Entry {
            label: label.into(),
            receiver,
            reply: None,
            lost: false,
        });
        Ticket(self.entries.len() - 1)
    }

    pub fn label(&self, ticket: Ticket) -> &str {
        &self.entries[ticket.0].label
    }

    /// What `ticket` has received so far.
    pub fn state(&mut self, ticket: Ticket) -> ReplyState<'_, T> {
        let entry = &mut self.entries[ticket.0];
        entry.poll();
        match (&entry.reply, entry.lost) {
            (Some(reply), _) => ReplyState::Answered(reply),
            (None, true) => ReplyState::Lost,
            (None, false) => ReplyState::Waiting,
        }
    }

    /// The reply of `ticket`; panics if it has none yet or lost it.
    pub fn reply(&mut self, ticket: Ticket) -> &T {
        let label = self.entries[ticket.0].label.clone();
        match self.state(ticket) {
            ReplyState::Answered(reply) => reply,
            ReplyState::Waiting => panic!("{label}: no reply yet"),
            ReplyState::Lost => panic!("{label}: LOST, reply sender dropped without an answer"),
        }
    }

    pub fn assert_waiting(&mut self, ticket: Ticket) {
        let label = self.label(ticket).to_string();
        match self.state(ticket) {
            ReplyState::Waiting => {}
            other => panic!("{label}: expected no reply yet, found {other:?}"),
        }
    }

    pub fn assert_lost(&mut self, ticket: Ticket) {
        let label = self.label(ticket).to_string();
        match self.state(ticket) {
            ReplyState::Lost => {}
            other => panic!("{label}: expected a lost reply, found {other:?}"),
        }
    }

    /// Labels of the requests with no reply so far, waiting or lost.
    pub fn unanswered(&mut self) -> Vec<String> {
        self.entries
            .iter_mut()
            .filter_map(|entry| {
                entry.poll();
                entry.reply.is_none().then(|| entry.label.clone())
            })
            .collect()
    }

    /// The end-of-test check: every tracked request got exactly one reply.
    pub fn assert_exactly_once(self) {
        self.assert_exactly_once_except(&[]);
    }

    /// Like [`Self::assert_exactly_once`], but the requests in `lost` must
    /// have lost their reply (a planted bug reproducing the seed) and every
    /// other one must have exactly one.
    pub fn assert_exactly_once_except(mut self, lost: &[Ticket]) {
        let mut problems = Vec::new();
        for (index, entry) in self.entries.iter_mut().enumerate() {
            entry.poll();
            let expect_lost = lost.contains(&Ticket(index));
            let problem = match (&entry.reply, entry.lost, expect_lost) {
                (Some(_), _, false) | (None, true, true) => continue,
                (Some(reply), _, true) => format!("got {reply:?}, expected it lost"),
                (None, true, false) => "LOST: sender dropped without a reply".to_string(),
                (None, false, _) => "got 0 replies (still waiting)".to_string(),
            };
            problems.push(format!(
                "exactly_once_reply: request {index} ({}) {problem}",
                entry.label
            ));
        }
        assert!(
            problems.is_empty(),
            "{} of {} requests broke exactly-once:\n{}",
            problems.len(),
            self.entries.len(),
            problems.join("\n")
        );
    }
}

/// What the tests expect of a client reply, for every rig that tracks
/// replies in a [`ReplyLedger`].
impl ReplyLedger<Reply> {
    /// The reply's output; panics, naming the request, unless it is `Ok`.
    pub fn expect_ok(&mut self, ticket: Ticket) -> Output {
        let label = self.label(ticket).to_string();
        match self.reply(ticket) {
            Ok(output) => output.clone(),
            Err(error) => panic!("{label}: expected Ok, got {error}"),
        }
    }

    /// Panics, naming the request, unless the reply is an error of `kind`.
    pub fn expect_err(&mut self, ticket: Ticket, kind: ErrorKind) {
        let label = self.label(ticket).to_string();
        match self.reply(ticket) {
            Err(error) if error.kind() == kind => {}
            other => panic!("{label}: expected {}, got {other:?}", kind.as_str()),
        }
    }
}
