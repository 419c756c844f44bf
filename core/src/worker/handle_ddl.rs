//! Alter: a schema change that must not mix rows of two schemas in one
//! memtable, so a region holding data flushes first and the alter waits.

use crate::bugs::PlantedBug;
use crate::error::RequestError;
use crate::events::CoreEvent;
use crate::flush::FlushTask;
use crate::manifest::ManifestChange;
use crate::request::{ClientRequest, FlushReason, Output, Request};
use crate::schema::check_field_name;

use super::RegionWorker;

impl RegionWorker {
    pub(super) async fn handle_alter(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Some(region) = self.regions.get_mut(&region_id) else {
            return Self::reply_err(request, RequestError::RegionNotFound { region_id });
        };
        if !region.is_writable() {
            return Self::reply_err(request, region.read_only());
        }
        if let Request::Alter {
            add_field: Some(name),
            ..
        } = &request.request
        {
            if let Err(error) = check_field_name(name) {
                let reason = error.to_string();
                return Self::reply_err(
                    request,
                    RequestError::InvalidRequest { region_id, reason },
                );
            }
        }
        // DDLs of one region run in arrival order.
        let request = if self.scheduler.has_pending_ddls(region_id) {
            match self.scheduler.add_ddl_request_to_pending(request) {
                Ok(()) => return,
                Err(request) => request,
            }
        } else {
            request
        };
        let skip_wait = self.config.bugs.has(PlantedBug::AlterSkipsFlushWait);
        if !region.version.memtables_empty() && !skip_wait {
            let task = FlushTask::new(FlushReason::Alter, None);
            if let Err(error) = self.scheduler.schedule_flush(region, task, &self.env) {
                return Self::reply_err(request, error);
            }
            match self.scheduler.add_ddl_request_to_pending(request) {
                Ok(()) => return,
                // Nothing was left to flush after all: alter now.
                Err(request) => return self.apply_alter(request).await,
            }
        }
        self.apply_alter(request).await;
    }

    async fn apply_alter(&mut self, request: ClientRequest) {
        let region_id = request.request.region_id();
        let Request::Alter {
            schema_version,
            add_field,
            ..
        } = &request.request
        else {
            let reason = format!("{} routed to alter", request.request.kind());
            return Self::reply_err(request, RequestError::InvalidRequest { region_id, reason });
        };
        let (schema_version, add_field) = (*schema_version, add_field.clone());
        let change = ManifestChange::Alter {
            schema_version,
            add_field: add_field.clone(),
        };
        match self.env.ports.manifests.apply(region_id, change).await {
            Ok(manifest) => {
                let schema = manifest.schema();
                if let Some(region) = self.regions.get_mut(&region_id) {
                    if *region.version.schema().as_ref() != schema {
                        region.version.set_schema(schema);
                        self.env.ports.events.record(CoreEvent::RegionAltered {
                            region_id,
                            schema_version,
                            added_field: add_field,
                        });
                    }
                }
                request.responder.send(Ok(Output::Done));
            }
            Err(source) => Self::reply_err(request, RequestError::Manifest { region_id, source }),
        }
    }
}
