//! Writes: WAL first, then the mutable memtable, then the reply. Also the
//! stall queue and the engine-wide flush rules that writes trigger.

use crate::bugs::PlantedBug;
use crate::error::RequestError;
use crate::events::CoreEvent;
use crate::flush::FlushTask;
use crate::ids::RegionId;
use crate::request::{ClientRequest, FlushReason, Output, Request};
use crate::row::{RowValue, WalEntry};
use crate::schema::RegionSchema;

use super::{RegionWorker, Stalled};

/// A write's rows against the region's schema: at least one row, each
/// added field named once and in the schema. An alter never removes a
/// field, so rows checked here still fit when a stalled write runs later.
fn check_rows(
    region_id: RegionId,
    schema: &RegionSchema,
    rows: &[RowValue],
) -> Result<(), RequestError> {
    if rows.is_empty() {
        let reason = "a write needs at least one row".to_string();
        return Err(RequestError::InvalidRequest { region_id, reason });
    }
    for row in rows {
        for (index, field) in row.fields.iter().enumerate() {
            if !schema.has_field(&field.name) {
                let column = field.name.to_string();
                return Err(RequestError::UnknownColumn { region_id, column });
            }
            if row.fields[..index].iter().any(|f| f.name == field.name) {
                let reason = format!("a row sets field {} twice", field.name);
                return Err(RequestError::InvalidRequest { region_id, reason });
            }
        }
    }
    Ok(())
}

impl RegionWorker {
    pub(super) async fn handle_write(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        if !region.is_writable() && !self.config.bugs.has(PlantedBug::WriteIgnoresLeaderState) {
            return Self::reply_err(request, region.read_only());
        }
        if let Request::Write { rows, .. } = &request.request {
            if let Err(error) = check_rows(region_id, region.version.schema(), rows) {
                return Self::reply_err(request, error);
            }
        }
        let request = if self.scheduler.has_pending_ddls(region_id) {
            match self.scheduler.add_write_request_to_pending(request) {
                Ok(()) => return,
                Err(request) => request,
            }
        } else {
            request
        };
        if self.env.buffer.should_stall() {
            return self.stall(request);
        }
        self.apply_write(request).await;
    }

    fn stall(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let limit = self.config.max_stalled_writes;
        if self.stalled.len() >= limit {
            let stalled = self.stalled.len();
            return Self::reply_err(
                request,
                RequestError::WriteStallFull {
                    region_id,
                    stalled,
                    limit,
                },
            );
        }
        let since_ms = self.env.ports.clock.now_ms();
        self.stalled.push_back(Stalled { request, since_ms });
        self.env.buffer.writes_stalled(1);
        self.env.ports.events.record(CoreEvent::WriteStalled {
            region_id,
            stalled: self.stalled.len(),
        });
    }

    /// Logs the write, applies it, answers it. Nothing else runs in this
    /// worker while the WAL append is awaited, so the marks read before it
    /// are still the region's marks after it.
    async fn apply_write(&mut self, request: ClientRequest) {
        let ClientRequest { request, responder } = request;
        let Request::Write { region_id, rows } = request else {
            let region_id = request.region_id();
            let reason = format!("{} routed to the write path", request.kind());
            return responder.send(Err(RequestError::InvalidRequest { region_id, reason }));
        };
        let Some(region) = self.regions.get(&region_id) else {
            return responder.send(Err(RequestError::RegionNotFound { region_id }));
        };
        let (entry_id, first_sequence) = region.version.next_write_marks();
        let row_count = rows.len() as u64;
        let entry = WalEntry {
            entry_id,
            first_sequence,
            rows,
        };
        let ack = Output::Written {
            entry_id,
            first_sequence,
            rows: row_count,
        };
        let mut responder = Some(responder);
        if self.config.bugs.has(PlantedBug::AckBeforeWalDurable) {
            if let Some(early) = responder.take() {
                early.send(Ok(ack.clone()));
            }
        }
        let appended = if region.skip_wal {
            Ok(())
        } else {
            self.env.ports.wal.append(region_id, entry.clone()).await
        };
        if let Err(source) = appended {
            if let Some(responder) = responder {
                responder.send(Err(RequestError::Wal { region_id, source }));
            }
            return;
        }
        match self.regions.get_mut(&region_id) {
            Some(region) => {
                region.version.apply_write(&entry);
                if let Some(responder) = responder {
                    responder.send(Ok(ack));
                }
            }
            None => {
                if let Some(responder) = responder {
                    responder.send(Err(RequestError::RegionNotFound { region_id }));
                }
            }
        }
    }

    /// Moves stalled writes back to the queue once memory allows.
    pub(super) fn retry_stalled(&mut self) {
        if self.config.bugs.has(PlantedBug::StallNotRetried)
            || self.stalled.is_empty()
            || self.env.buffer.should_stall()
        {
            return;
        }
        let released: Vec<Stalled> = self.stalled.drain(..).collect();
        self.env.buffer.writes_released(released.len());
        self.env.ports.events.record(CoreEvent::StallReleased {
            count: released.len(),
        });
        for stalled in released.into_iter().rev() {
            self.requeued.push_front(stalled.request);
        }
    }

    /// Answers `WriteStallTimeout` to every stalled write that has waited
    /// the stall timeout or longer; the others keep their place.
    pub(super) fn expire_stalled(&mut self) {
        let Some(timeout_ms) = self.config.stall_timeout_ms else {
            return;
        };
        let now_ms = self.env.ports.clock.now_ms();
        let (expired, kept): (Vec<Stalled>, Vec<Stalled>) = self
            .stalled
            .drain(..)
            .partition(|s| now_ms.saturating_sub(s.since_ms) >= timeout_ms);
        self.stalled = kept.into();
        if expired.is_empty() {
            return;
        }
        self.env.buffer.writes_released(expired.len());
        self.env.ports.events.record(CoreEvent::StallTimedOut {
            count: expired.len(),
        });
        for stalled in expired {
            let region_id = stalled.request.request.region_id();
            let waited_ms = now_ms.saturating_sub(stalled.since_ms);
            let error = RequestError::WriteStallTimeout {
                region_id,
                waited_ms,
                timeout_ms,
            };
            Self::reply_err(stalled.request, error);
        }
    }

    /// The seed's engine-full rule: flush the region with the largest
    /// mutable memtable that is not already flushing. Only writable
    /// regions, as mito2: a follower's memory waits for its leadership.
    pub(super) fn maybe_flush_engine(&mut self) {
        if !self.env.buffer.should_flush_engine() {
            return;
        }
        if self.config.bugs.has(PlantedBug::EngineFlushWaitsForFull)
            && !self.env.buffer.should_stall()
        {
            return;
        }
        let smallest = self.config.bugs.has(PlantedBug::EngineFullPicksSmallest);
        let candidates = self
            .regions
            .iter()
            .filter(|(id, r)| {
                r.is_writable()
                    && r.version.mutable_bytes() > 0
                    && !self.scheduler.is_flush_requested(**id)
            })
            .map(|(id, r)| (r.version.mutable_bytes(), *id));
        let largest = candidates.clone().max();
        let picked = if smallest { candidates.min() } else { largest };
        if let (Some((picked_bytes, region_id)), Some((largest_bytes, _))) = (picked, largest) {
            self.env.ports.events.record(CoreEvent::EngineFullFlush {
                region_id,
                picked_bytes,
                largest_bytes,
            });
            self.flush_for(region_id, FlushReason::EngineFull);
        }
    }

    /// Our rule beyond the seed: writes are stalled somewhere and no flush
    /// runs anywhere, so no memory will ever be freed unless we flush. Flush
    /// the region holding the most memtable memory.
    pub(super) fn maybe_relieve_stall(&mut self) {
        let buffer = &self.env.buffer;
        if self.config.bugs.has(PlantedBug::SeedNoStallFlush)
            || buffer.stalled_writes() == 0
            || buffer.flushes_running() > 0
            || !buffer.should_stall()
        {
            return;
        }
        let picked = self
            .regions
            .iter()
            .filter(|(id, r)| {
                r.is_flushable()
                    && !r.version.memtables_empty()
                    && !self.scheduler.is_flush_requested(**id)
            })
            .map(|(id, r)| (r.version.memtable_bytes(), *id))
            .max();
        if let Some((_, region_id)) = picked {
            self.env
                .ports
                .events
                .record(CoreEvent::StallReliefFlush { region_id });
            self.flush_for(region_id, FlushReason::StallRelief);
        }
    }

    /// A flush nobody waits on; a failure to start is already recorded.
    pub(super) fn flush_for(&mut self, region_id: RegionId, reason: FlushReason) {
        if let Some(region) = self.regions.get_mut(&region_id) {
            let task = FlushTask::new(reason, None);
            let _ = self.scheduler.schedule_flush(region, task, &self.env);
        }
    }
}
