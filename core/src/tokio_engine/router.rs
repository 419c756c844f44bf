//! The workers' bounded queues, and what reaches them: client requests
//! (waiting for room), flush results from jobs (refused when full, so the
//! job backs off and retries), memory releases and ticks (dropped when the
//! queue is full: the worker has work queued and will look at its stalled
//! writes when it gets to it, and the next tick comes anyway).
//!
//! Regions are placed on workers by `region_id % workers`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::error::RequestError;
use crate::ids::RegionId;
use crate::ports::{MemoryNotifier, NotifyError, WorkerNotifier};
use crate::request::{BackgroundNotify, ClientRequest, WorkerRequest};

/// The sending side of one worker's queue.
pub(super) struct Inbox {
    pub(super) sender: Sender<WorkerRequest>,
    /// A `MemoryFreed` is queued already; the worker loop clears it when it
    /// takes the message.
    pub(super) memory_freed_queued: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Router {
    inboxes: Mutex<Vec<Inbox>>,
}

impl Router {
    fn inboxes(&self) -> MutexGuard<'_, Vec<Inbox>> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn set(&self, inboxes: Vec<Inbox>) {
        *self.inboxes() = inboxes;
    }

    /// Drops every sender: each worker drains its queue and stops.
    pub(super) fn close(&self) {
        self.inboxes().clear();
    }

    fn sender_for(&self, region_id: RegionId) -> Option<Sender<WorkerRequest>> {
        let inboxes = self.inboxes();
        let index = usize::try_from(region_id.0 % inboxes.len().max(1) as u64).ok()?;
        inboxes.get(index).map(|inbox| inbox.sender.clone())
    }

    /// Queues a client request, waiting for room. A stopped engine answers
    /// it with `WorkerStopped` here.
    pub(super) async fn send_client(&self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let refused = match self.sender_for(region_id) {
            Some(sender) => sender
                .send(WorkerRequest::Client(request))
                .await
                .err()
                .map(|e| e.0),
            None => Some(WorkerRequest::Client(request)),
        };
        if let Some(WorkerRequest::Client(request)) = refused {
            request
                .responder
                .send(Err(RequestError::WorkerStopped { region_id }));
        }
    }

    /// Offers a tick to every worker; a full queue skips this one.
    pub(super) fn tick(&self) {
        for inbox in self.inboxes().iter() {
            let _ = inbox.sender.try_send(WorkerRequest::Tick);
        }
    }
}

impl WorkerNotifier for Router {
    fn notify(&self, notify: BackgroundNotify) -> Result<(), NotifyError> {
        let Some(sender) = self.sender_for(notify.region_id()) else {
            return Err(NotifyError::Closed(notify));
        };
        match sender.try_send(WorkerRequest::Background(notify)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(WorkerRequest::Background(notify))) => {
                Err(NotifyError::Full(notify))
            }
            Err(TrySendError::Closed(WorkerRequest::Background(notify))) => {
                Err(NotifyError::Closed(notify))
            }
            // try_send gives back the message it was given.
            Err(_) => unreachable!("a background notification was sent"),
        }
    }
}

impl MemoryNotifier for Router {
    fn memory_freed(&self) {
        for inbox in self.inboxes().iter() {
            if inbox.memory_freed_queued.swap(true, Ordering::AcqRel) {
                continue;
            }
            if inbox.sender.try_send(WorkerRequest::MemoryFreed).is_err() {
                inbox.memory_freed_queued.store(false, Ordering::Release);
            }
        }
    }
}
