//! What the world tells whoever watches the run, as it happens.
//!
//! The world's ports call these hooks at the moment a fact happens (an
//! event of the core, a manifest change, a flush commit in doubt, an engine
//! gone); the world does not know what is checked. The run installs its
//! checks (`oracle::Checks`) here before anything happens, and judges with
//! them at the end.

use flush_core::buffer::WriteBufferManager;
use flush_core::events::CoreEvent;
use flush_core::ids::RegionId;
use flush_core::manifest::RegionManifest;

use super::crash::CrashWindow;
use super::World;

pub trait Hooks: Send + Sync {
    /// The core reported `event` (from an engine that has not crashed),
    /// before the world updates its own record of running flush jobs.
    /// `buffer` is that engine's write buffer, once it exists.
    fn on_core_event(&self, world: &World, event: &CoreEvent, buffer: Option<&WriteBufferManager>);

    /// The manifest of a region changed from `before` to `after`;
    /// `last_entry_id` is the region's last WAL entry at that moment.
    fn on_manifest_change(
        &self,
        world: &World,
        before: &RegionManifest,
        after: &RegionManifest,
        last_entry_id: u64,
    );

    /// A flush edit of `region_id` is saved, but its job does not know yet
    /// that it committed (a failure reported after the save, a panic).
    fn on_commit_in_doubt(&self, region_id: RegionId);

    /// An engine crashed or stopped (`window` says how): its
    /// `jobs_running` flush jobs died with it.
    fn on_engine_gone(&self, world: &World, window: CrashWindow, jobs_running: usize);
}

/// Hooks that watch nothing: a world built outside a run.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn on_core_event(&self, _: &World, _: &CoreEvent, _: Option<&WriteBufferManager>) {}

    fn on_manifest_change(&self, _: &World, _: &RegionManifest, _: &RegionManifest, _: u64) {}

    fn on_commit_in_doubt(&self, _: RegionId) {}

    fn on_engine_gone(&self, _: &World, _: CrashWindow, _: usize) {}
}
