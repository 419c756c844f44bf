//! Requests, replies and background notifications: everything that crosses
//! a worker's queue.
//!
//! Every client request carries a [`Responder`]. A responder must be answered
//! exactly once; the core never lets one drop unanswered (a dropped responder
//! is a *lost request*, the worst bug this project hunts). `send` consumes
//! the responder, so the type system rules out a second reply.

use std::sync::Arc;

use futures::channel::oneshot;

use crate::error::{FlushError, RequestError};
use crate::ids::{MemtableId, RegionId, RequestId};
use crate::manifest::RegionEdit;
use crate::row::RowValue;

/// What a client asks a worker to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Create a new, empty region, the leader of its data.
    Create {
        region_id: RegionId,
        options: RegionOptions,
    },
    /// Open an existing region: load its manifest, replay its WAL. It opens
    /// as a follower, as in mito2: whoever holds the lease makes it the
    /// leader with [`Request::SetRole`].
    Open {
        region_id: RegionId,
    },
    /// A write's rows are shared, not copied, by whoever keeps them beside
    /// the worker (a checker's ledger, the WAL entry they become).
    Write {
        region_id: RegionId,
        rows: Arc<[RowValue]>,
    },
    /// Manual flush; answered once the data written before it is in SSTs.
    Flush {
        region_id: RegionId,
    },
    /// Schema change, perhaps adding a nullable field; waits for a flush if
    /// the region holds data. A field already there is not added again and
    /// the version never goes back (see [`crate::schema::RegionSchema`]).
    Alter {
        region_id: RegionId,
        schema_version: u64,
        add_field: Option<String>,
    },
    Truncate {
        region_id: RegionId,
    },
    Drop {
        region_id: RegionId,
    },
    Close {
        region_id: RegionId,
    },
    /// Flush with the Downgrading leader state, then become a follower.
    Downgrade {
        region_id: RegionId,
    },
    /// mito2's `set_region_role`: at once, no flush. `Leader` makes a
    /// follower or a downgrading region writable; `Follower` makes any
    /// region a follower.
    SetRole {
        region_id: RegionId,
        role: RegionRole,
    },
}

/// A region's options that matter to flushing, fixed when it is created
/// and kept in its manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegionOptions {
    /// mito2's `skip_wal`: writes are not logged. Rows not yet flushed are
    /// lost on a crash or an engine stop by design; closing the region
    /// flushes them first.
    pub skip_wal: bool,
}

impl RegionOptions {
    pub const SKIP_WAL: RegionOptions = RegionOptions { skip_wal: true };
}

/// The roles [`Request::SetRole`] can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionRole {
    Leader,
    Follower,
}

impl Request {
    /// A create with the default options (the WAL on).
    pub fn create(region_id: RegionId) -> Request {
        Request::Create {
            region_id,
            options: RegionOptions::default(),
        }
    }

    pub fn region_id(&self) -> RegionId {
        match self {
            Request::Create { region_id, .. }
            | Request::Open { region_id }
            | Request::Write { region_id, .. }
            | Request::Flush { region_id }
            | Request::Alter { region_id, .. }
            | Request::Truncate { region_id }
            | Request::Drop { region_id }
            | Request::Close { region_id }
            | Request::Downgrade { region_id }
            | Request::SetRole { region_id, .. } => *region_id,
        }
    }

    /// Short stable name of the request kind, for traces and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Open { .. } => "open",
            Request::Write { .. } => "write",
            Request::Flush { .. } => "flush",
            Request::Alter { .. } => "alter",
            Request::Truncate { .. } => "truncate",
            Request::Drop { .. } => "drop",
            Request::Close { .. } => "close",
            Request::Downgrade { .. } => "downgrade",
            Request::SetRole { .. } => "set_role",
        }
    }
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// The write is durable in the WAL and applied to the memtable.
    Written {
        entry_id: u64,
        first_sequence: u64,
        rows: u64,
    },
    /// Any other request completed.
    Done,
}

pub type Reply = Result<Output, RequestError>;

/// The one-shot answer channel of a request.
#[derive(Debug)]
pub struct Responder {
    request_id: RequestId,
    sender: oneshot::Sender<Reply>,
}

impl Responder {
    pub fn new(request_id: RequestId) -> (Responder, oneshot::Receiver<Reply>) {
        let (sender, receiver) = oneshot::channel();
        (sender_pair(request_id, sender), receiver)
    }

    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// Answers the request. A receiver that has gone away is not an error of
    /// ours: the client gave up waiting.
    pub fn send(self, reply: Reply) {
        if let Err(reply) = &reply {
            tracing::debug!(request = %self.request_id, error = %reply, "reply error");
        }
        let _ = self.sender.send(reply);
    }

    /// Drops the responder without an answer. Only planted bugs that
    /// reproduce the seed's lost requests call this.
    pub fn lose(self) {
        tracing::warn!(request = %self.request_id, "reply sender dropped without an answer");
        drop(self.sender);
    }
}

fn sender_pair(request_id: RequestId, sender: oneshot::Sender<Reply>) -> Responder {
    Responder { request_id, sender }
}

/// A request with its responder, as queued in a worker.
#[derive(Debug)]
pub struct ClientRequest {
    pub request: Request,
    pub responder: Responder,
}

/// Why a region is flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlushReason {
    EngineFull,
    Manual,
    Alter,
    Downgrading,
    /// Writes are stalled and no flush runs anywhere (our rule, not the seed's).
    StallRelief,
    /// The region's last flush is older than the worker's auto-flush
    /// interval (mito2's periodic flush).
    Periodically,
    /// A region that skips the WAL is closed with data in its memtables:
    /// the close waits for this flush (mito2's `Closing`).
    Closing,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::EngineFull => "engine_full",
            FlushReason::Manual => "manual",
            FlushReason::Alter => "alter",
            FlushReason::Downgrading => "downgrading",
            FlushReason::StallRelief => "stall_relief",
            FlushReason::Periodically => "periodically",
            FlushReason::Closing => "closing",
        }
    }
}

/// A flush committed to the manifest.
#[derive(Debug)]
pub struct FlushFinished {
    pub region_id: RegionId,
    /// The region epoch the flush ran in.
    pub epoch: u64,
    pub edit: RegionEdit,
    /// The immutable memtables now in SSTs.
    pub flushed_memtables: Vec<MemtableId>,
}

/// A flush that wrote nothing durable to the manifest.
#[derive(Debug)]
pub struct FlushFailed {
    pub region_id: RegionId,
    pub epoch: u64,
    pub error: FlushError,
}

/// Messages from background jobs to the worker owning the region.
#[derive(Debug)]
pub enum BackgroundNotify {
    FlushFinished(FlushFinished),
    FlushFailed(FlushFailed),
}

impl BackgroundNotify {
    pub fn region_id(&self) -> RegionId {
        match self {
            BackgroundNotify::FlushFinished(done) => done.region_id,
            BackgroundNotify::FlushFailed(failed) => failed.region_id,
        }
    }
}

/// Everything a worker's queue carries.
#[derive(Debug)]
pub enum WorkerRequest {
    Client(ClientRequest),
    Background(BackgroundNotify),
    /// Some memory was released somewhere: retry stalled writes.
    MemoryFreed,
    /// Periodic wake-up (mito2's periodic flush check): retry stalled
    /// writes and relieve a stall no flush is working on.
    Tick,
}
