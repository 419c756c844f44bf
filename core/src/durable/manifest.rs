//! The durable manifest store: one file per region, rewritten whole on
//! every change (manifests are small: a few marks and the list of SSTs).
//!
//! ```text
//! manifest/<region id>/MANIFEST       the current manifest
//! manifest/<region id>/MANIFEST.tmp   a change being written
//! file    = magic "FSMF" | format: u32 | len: u32 | crc32(payload): u32 | payload
//! ```
//!
//! A change is visible only once it is durable: the new manifest goes to
//! the temp file, which is synced, renamed over `MANIFEST`, and the
//! directory is synced. A crash before the rename leaves the old manifest;
//! after the directory sync, the new one. A failure between the rename and
//! the directory sync is *ambiguous* (the change may or may not survive a
//! crash): the caller sees an error, and the store forgets what it cached;
//! before it reads the file again it syncs the directory, so whatever a
//! caller then reads back (the change or not) is durable. The rules of a
//! change (leader state, epochs, marks) are [`RegionManifest::apply`]'s,
//! as for every store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{self, BoxFuture, FutureExt as _};

use super::codec::{PutLe as _, Reader};
use crate::bugs::{Bugs, PlantedBug};
use crate::error::ManifestError;
use crate::fs::{
    create_dir_durably, ignore_missing, join, replace_skipping, FileSystem, FsError, SkippedSteps,
};
use crate::ids::{FileId, RegionId};
use crate::manifest::{FileMeta, LeaderState, ManifestChange, RegionManifest};
use crate::ports::ManifestStore;

/// Directory of every region's manifest, under the file system's root.
pub const MANIFEST_DIR: &str = "manifest";
const CURRENT: &str = "MANIFEST";
const TEMP: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 4] = b"FSMF";
/// Format 2 added the schema's added fields after the files; format 1
/// files (no fields) are still read.
const FORMAT: u32 = 2;
const FORMAT_WITHOUT_FIELDS: u32 = 1;
const HEADER_BYTES: usize = 16;
const FILE_META_BYTES: usize = 8 * 6 + 1;

/// Manifests in files over a [`FileSystem`].
pub struct FileManifestStore {
    fs: Arc<dyn FileSystem>,
    /// What each region's file holds, once read or written by us.
    cache: Mutex<BTreeMap<RegionId, Option<RegionManifest>>>,
    /// Regions whose last change failed part-way: their directory is
    /// synced before their manifest is read again.
    unsettled: Mutex<BTreeSet<RegionId>>,
    /// Steps of a durable replace a planted bug leaves out.
    skipped: SkippedSteps,
}

impl FileManifestStore {
    pub fn new(fs: Arc<dyn FileSystem>) -> FileManifestStore {
        FileManifestStore {
            fs,
            cache: Mutex::new(BTreeMap::new()),
            unsettled: Mutex::new(BTreeSet::new()),
            skipped: SkippedSteps::default(),
        }
    }

    /// Plants the store's bugs (`manifest-rename-before-sync`,
    /// `manifest-skip-dir-sync`); others are ignored.
    pub fn with_bugs(mut self, bugs: Bugs) -> FileManifestStore {
        self.skipped = SkippedSteps {
            temp_sync: bugs.has(PlantedBug::ManifestRenameBeforeSync),
            dir_sync: bugs.has(PlantedBug::ManifestSkipDirSync),
        };
        self
    }

    /// Regions that have a manifest file (dropped ones included), for a
    /// restart to reopen.
    pub fn regions(&self) -> Result<Vec<RegionId>, FsError> {
        let mut regions: Vec<RegionId> = self
            .fs
            .list(MANIFEST_DIR)?
            .iter()
            .filter_map(|name| name.parse().ok().map(RegionId))
            .collect();
        regions.sort_unstable();
        Ok(regions)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RegionId, Option<RegionManifest>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a failed change the region's directory may hold a rename
    /// that is visible but not durable: it is synced before the file is
    /// read again, so what a caller reads back survives a crash (a change
    /// saved but reported failed becomes simply saved).
    fn settle(&self, region_id: RegionId) -> Result<(), ManifestError> {
        if !self.unsettled_lock().contains(&region_id) {
            return Ok(());
        }
        ignore_missing(self.fs.sync_dir(&region_dir(region_id)))
            .map_err(|error| io_error(region_id, &error))?;
        self.unsettled_lock().remove(&region_id);
        Ok(())
    }

    fn unsettled_lock(&self) -> MutexGuard<'_, BTreeSet<RegionId>> {
        self.unsettled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(
        &self,
        cache: &mut BTreeMap<RegionId, Option<RegionManifest>>,
        region_id: RegionId,
    ) -> Result<Option<RegionManifest>, ManifestError> {
        if let Some(cached) = cache.get(&region_id) {
            return Ok(cached.clone());
        }
        self.settle(region_id)?;
        let loaded = self.read(region_id)?;
        cache.insert(region_id, loaded.clone());
        Ok(loaded)
    }

    fn read(&self, region_id: RegionId) -> Result<Option<RegionManifest>, ManifestError> {
        let path = join(&region_dir(region_id), CURRENT);
        let bytes = match self.fs.read(&path) {
            Ok(bytes) => bytes,
            Err(FsError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(io_error(region_id, &error)),
        };
        let manifest = decode(&bytes).map_err(|reason| ManifestError::Corrupt {
            region_id,
            reason: format!("{path}: {reason}"),
        })?;
        if manifest.region_id != region_id {
            return Err(ManifestError::Corrupt {
                region_id,
                reason: format!("{path} holds the manifest of {}", manifest.region_id),
            });
        }
        Ok(Some(manifest))
    }

    /// Temp file, sync, rename, directory sync. On an error the cache
    /// entry is dropped: what is on disk is read again next time.
    fn persist(
        &self,
        cache: &mut BTreeMap<RegionId, Option<RegionManifest>>,
        manifest: &RegionManifest,
    ) -> Result<(), ManifestError> {
        let region_id = manifest.region_id;
        let dir = region_dir(region_id);
        let bytes = encode(manifest);
        let written = replace_skipping(
            self.fs.as_ref(),
            &join(&dir, TEMP),
            &join(&dir, CURRENT),
            &bytes,
            self.skipped,
        );
        match written {
            Ok(()) => {
                cache.insert(region_id, Some(manifest.clone()));
                Ok(())
            }
            Err(error) => {
                cache.remove(&region_id);
                self.unsettled_lock().insert(region_id);
                Err(io_error(region_id, &error))
            }
        }
    }

    /// The blocking call behind [`ManifestStore::load`].
    pub fn load_now(&self, region_id: RegionId) -> Result<Option<RegionManifest>, ManifestError> {
        self.current(&mut self.lock(), region_id)
    }

    /// The blocking call behind [`ManifestStore::create`].
    pub fn create_now(&self, manifest: RegionManifest) -> Result<RegionManifest, ManifestError> {
        let region_id = manifest.region_id;
        let mut cache = self.lock();
        if let Some(existing) = self.current(&mut cache, region_id)? {
            if !existing.dropped {
                return Err(ManifestError::Exists { region_id });
            }
        }
        // The region's directory may be new: its name is made durable
        // before the manifest in it counts.
        create_dir_durably(self.fs.as_ref(), &region_dir(region_id))
            .map_err(|error| io_error(region_id, &error))?;
        self.persist(&mut cache, &manifest)?;
        Ok(manifest)
    }

    /// The blocking call behind [`ManifestStore::apply`].
    pub fn apply_now(
        &self,
        region_id: RegionId,
        change: &ManifestChange,
    ) -> Result<RegionManifest, ManifestError> {
        let mut cache = self.lock();
        let mut manifest = self
            .current(&mut cache, region_id)?
            .ok_or(ManifestError::NotFound { region_id })?;
        manifest.apply(change)?;
        self.persist(&mut cache, &manifest)?;
        Ok(manifest)
    }
}

impl ManifestStore for FileManifestStore {
    fn create(
        &self,
        manifest: RegionManifest,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        future::ready(self.create_now(manifest)).boxed()
    }

    fn load(
        &self,
        region_id: RegionId,
    ) -> BoxFuture<'static, Result<Option<RegionManifest>, ManifestError>> {
        future::ready(self.load_now(region_id)).boxed()
    }

    fn apply(
        &self,
        region_id: RegionId,
        change: ManifestChange,
    ) -> BoxFuture<'static, Result<RegionManifest, ManifestError>> {
        future::ready(self.apply_now(region_id, &change)).boxed()
    }
}

fn region_dir(region_id: RegionId) -> String {
    join(MANIFEST_DIR, &region_id.0.to_string())
}

fn io_error(region_id: RegionId, error: &FsError) -> ManifestError {
    ManifestError::Io {
        region_id,
        reason: error.to_string(),
    }
}

/// The manifest file's bytes.
pub fn encode(manifest: &RegionManifest) -> Vec<u8> {
    let mut payload = Vec::with_capacity(80 + manifest.files.len() * FILE_META_BYTES);
    payload.put_u64(manifest.region_id.0);
    payload.put_u64(manifest.version);
    payload.put_u64(manifest.epoch);
    payload.put_u8(leader_code(manifest.leader_state));
    payload.put_u64(manifest.schema_version);
    payload.put_u64(manifest.flushed_entry_id);
    payload.put_u64(manifest.flushed_sequence);
    payload.put_u64(manifest.truncated_entry_id);
    payload.put_u8(flags(manifest));
    payload.put_u32(u32::try_from(manifest.files.len()).unwrap_or(u32::MAX));
    for file in manifest.files.values() {
        payload.put_u64(file.file_id.0);
        payload.put_i64(file.time_range.0);
        payload.put_i64(file.time_range.1);
        payload.put_u64(file.num_rows);
        payload.put_u64(file.size_bytes);
        payload.put_u64(file.max_sequence);
        payload.put_u8(file.level);
    }
    payload.put_u32(u32::try_from(manifest.added_fields.len()).unwrap_or(u32::MAX));
    for name in &manifest.added_fields {
        payload.put_u32(u32::try_from(name.len()).unwrap_or(u32::MAX));
        payload.extend_from_slice(name.as_bytes());
    }
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.put_u32(FORMAT);
    bytes.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    bytes.put_u32(crc32fast::hash(&payload));
    bytes.extend_from_slice(&payload);
    bytes
}

/// A manifest from its file's bytes; any damage is an error naming it.
pub fn decode(bytes: &[u8]) -> Result<RegionManifest, String> {
    let mut header = Reader::new(bytes);
    if header.take(4, "the magic")? != MAGIC {
        return Err("not a manifest file (bad magic)".to_string());
    }
    let format = header.u32("the format")?;
    if format != FORMAT && format != FORMAT_WITHOUT_FIELDS {
        return Err(format!(
            "format {format}, this build reads {FORMAT_WITHOUT_FIELDS} and {FORMAT}"
        ));
    }
    let len = header.u32("the length")? as usize;
    let crc = header.u32("the checksum")?;
    let payload = header.take(len, "the payload (file cut short)")?;
    header.finish("payload")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".to_string());
    }
    decode_payload(payload, format)
}

fn decode_payload(payload: &[u8], format: u32) -> Result<RegionManifest, String> {
    let mut reader = Reader::new(payload);
    let region_id = RegionId(reader.u64("the region id")?);
    let mut manifest = RegionManifest::new(region_id);
    manifest.version = reader.u64("the version")?;
    manifest.epoch = reader.u64("the epoch")?;
    manifest.leader_state = leader_state(reader.u8("the leader state")?)?;
    manifest.schema_version = reader.u64("the schema version")?;
    manifest.flushed_entry_id = reader.u64("the flushed entry id")?;
    manifest.flushed_sequence = reader.u64("the flushed sequence")?;
    manifest.truncated_entry_id = reader.u64("the truncated entry id")?;
    let flags = reader.u8("the flags")?;
    if flags & !(DROPPED | SKIP_WAL) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    manifest.dropped = flags & DROPPED != 0;
    manifest.skip_wal = flags & SKIP_WAL != 0;
    let count = reader.count("files", FILE_META_BYTES)?;
    for _ in 0..count {
        let file = FileMeta {
            region_id,
            file_id: FileId(reader.u64("a file id")?),
            time_range: (reader.i64("a time range")?, reader.i64("a time range")?),
            num_rows: reader.u64("a row count")?,
            size_bytes: reader.u64("a file size")?,
            max_sequence: reader.u64("a max sequence")?,
            level: reader.u8("a level")?,
        };
        manifest.files.insert(file.file_id, file);
    }
    if format >= FORMAT {
        let count = reader.count("added fields", 4)?;
        for _ in 0..count {
            let len = reader.u32("a field name length")? as usize;
            let name = reader.take(len, "a field name")?;
            let name = std::str::from_utf8(name)
                .map_err(|_| "a field name that is not UTF-8".to_string())?;
            manifest.added_fields.push(name.to_string());
        }
    }
    reader.finish("file")?;
    Ok(manifest)
}

/// Bits of the flags byte. A file written before `SKIP_WAL` existed has
/// only `DROPPED` there, so it still reads the same.
const DROPPED: u8 = 1;
const SKIP_WAL: u8 = 2;

fn flags(manifest: &RegionManifest) -> u8 {
    let mut flags = 0;
    if manifest.dropped {
        flags |= DROPPED;
    }
    if manifest.skip_wal {
        flags |= SKIP_WAL;
    }
    flags
}

fn leader_code(state: LeaderState) -> u8 {
    match state {
        LeaderState::Writable => 0,
        LeaderState::Downgrading => 1,
        LeaderState::Follower => 2,
    }
}

fn leader_state(code: u8) -> Result<LeaderState, String> {
    match code {
        0 => Ok(LeaderState::Writable),
        1 => Ok(LeaderState::Downgrading),
        2 => Ok(LeaderState::Follower),
        other => Err(format!("leader state {other}")),
    }
}
