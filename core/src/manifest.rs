//! Region manifests: the durable truth about a region.
//!
//! A manifest lists the region's SSTs and its flush marks (flushed entry id
//! and sequence: everything up to them is in SSTs, the WAL holds the rest).
//! Changes are data ([`ManifestChange`]) and the rules for applying them live
//! here, in the code under test; a [`crate::ports::ManifestStore`] only
//! persists the result.
//!
//! Fencing: an edit made by a flush carries the region `epoch` it started
//! in. Truncate and reopen bump the epoch, so a flush that raced them cannot
//! commit files holding rows that were truncated or that WAL replay already
//! restored.

use std::collections::BTreeMap;

use crate::error::ManifestError;
use crate::ids::{FileId, RegionId};
pub use crate::leader::LeaderState;
use crate::schema::RegionSchema;

/// What a flush wrote: one level-0 SST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub region_id: RegionId,
    pub file_id: FileId,
    /// Inclusive timestamp range of the rows.
    pub time_range: (i64, i64),
    pub num_rows: u64,
    pub size_bytes: u64,
    pub max_sequence: u64,
    pub level: u8,
}

/// The result of a flush, committed to the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionEdit {
    pub files_to_add: Vec<FileMeta>,
    pub flushed_entry_id: u64,
    pub flushed_sequence: u64,
}

/// A change to a region's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestChange {
    /// Commit a flush made in `epoch`, expecting the region in `expected_state`.
    Edit {
        edit: RegionEdit,
        expected_state: LeaderState,
        epoch: u64,
    },
    /// Remove every file; everything up to the given marks is gone.
    Truncate {
        truncated_entry_id: u64,
        truncated_sequence: u64,
    },
    /// Change the leader state.
    SetLeaderState(LeaderState),
    /// An alter: a schema version, perhaps adding a nullable field
    /// ([`RegionSchema::altered`]: a retried alter changes nothing).
    Alter {
        schema_version: u64,
        add_field: Option<String>,
    },
    /// The region is reopened: a new epoch, and a follower until
    /// someone sets it leader (as mito2 opens regions).
    Reopen,
    /// The region is dropped; the manifest refuses every later change.
    Drop,
}

/// The durable state of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionManifest {
    pub region_id: RegionId,
    /// Bumped on every successful change.
    pub version: u64,
    /// Bumped by truncate and reopen; fences stale flush edits.
    pub epoch: u64,
    pub leader_state: LeaderState,
    pub schema_version: u64,
    /// Fields alters added, oldest first (see [`RegionSchema`]).
    pub added_fields: Vec<String>,
    pub files: BTreeMap<FileId, FileMeta>,
    pub flushed_entry_id: u64,
    pub flushed_sequence: u64,
    /// Entries up to here were truncated; the WAL must not replay them.
    pub truncated_entry_id: u64,
    pub dropped: bool,
    /// The region does not log its writes (a region option, fixed at
    /// create): its unflushed rows do not survive a restart.
    pub skip_wal: bool,
}

impl RegionManifest {
    pub fn new(region_id: RegionId) -> Self {
        RegionManifest {
            region_id,
            version: 0,
            epoch: 0,
            leader_state: LeaderState::Writable,
            schema_version: 0,
            added_fields: Vec::new(),
            files: BTreeMap::new(),
            flushed_entry_id: 0,
            flushed_sequence: 0,
            truncated_entry_id: 0,
            dropped: false,
            skip_wal: false,
        }
    }

    /// The region's schema as this manifest records it.
    pub fn schema(&self) -> RegionSchema {
        RegionSchema {
            version: self.schema_version,
            added_fields: self.added_fields.clone(),
        }
    }

    /// WAL entries after this id must be replayed on open.
    pub fn replay_from_entry_id(&self) -> u64 {
        self.flushed_entry_id.max(self.truncated_entry_id)
    }

    /// Applies `change` atomically: on error nothing changed.
    pub fn apply(&mut self, change: &ManifestChange) -> Result<(), ManifestError> {
        let region_id = self.region_id;
        if self.dropped {
            return Err(ManifestError::Dropped { region_id });
        }
        match change {
            ManifestChange::Edit {
                edit,
                expected_state,
                epoch,
            } => self.apply_edit(edit, *expected_state, *epoch)?,
            ManifestChange::Truncate {
                truncated_entry_id,
                truncated_sequence,
            } => {
                self.files.clear();
                self.truncated_entry_id = self.truncated_entry_id.max(*truncated_entry_id);
                self.flushed_entry_id = self.flushed_entry_id.max(*truncated_entry_id);
                self.flushed_sequence = self.flushed_sequence.max(*truncated_sequence);
                self.epoch += 1;
            }
            ManifestChange::SetLeaderState(state) => self.leader_state = *state,
            ManifestChange::Alter {
                schema_version,
                add_field,
            } => {
                if let Some(next) = self.schema().altered(*schema_version, add_field.as_deref()) {
                    self.schema_version = next.version;
                    self.added_fields = next.added_fields;
                }
            }
            ManifestChange::Reopen => {
                self.epoch += 1;
                self.leader_state = LeaderState::Follower;
            }
            ManifestChange::Drop => {
                self.dropped = true;
                self.files.clear();
            }
        }
        self.version += 1;
        Ok(())
    }

    /// Whether `edit` is in this manifest: its files are listed and its
    /// flushed entry id reached. File ids are unique to one flush of one
    /// memtable in one epoch, so only that edit (or the same edit again)
    /// lists them. For telling a commit saved but reported failed from
    /// one that was lost.
    pub fn holds_edit(&self, edit: &RegionEdit) -> bool {
        self.flushed_entry_id >= edit.flushed_entry_id
            && edit
                .files_to_add
                .iter()
                .all(|file| self.files.contains_key(&file.file_id))
    }

    fn apply_edit(
        &mut self,
        edit: &RegionEdit,
        expected_state: LeaderState,
        epoch: u64,
    ) -> Result<(), ManifestError> {
        let region_id = self.region_id;
        if self.leader_state != expected_state {
            return Err(ManifestError::UnexpectedState {
                region_id,
                expected: expected_state,
                actual: self.leader_state,
            });
        }
        if epoch != self.epoch {
            return Err(ManifestError::StaleEpoch {
                region_id,
                edit_epoch: epoch,
                manifest_epoch: self.epoch,
            });
        }
        if edit.flushed_entry_id < self.flushed_entry_id {
            return Err(ManifestError::FlushedEntryBackwards {
                region_id,
                current: self.flushed_entry_id,
                proposed: edit.flushed_entry_id,
            });
        }
        for file in &edit.files_to_add {
            strict_assert_eq!(file.region_id, region_id);
            self.files.insert(file.file_id, file.clone());
        }
        self.flushed_entry_id = edit.flushed_entry_id;
        self.flushed_sequence = self.flushed_sequence.max(edit.flushed_sequence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(flushed_entry_id: u64, file: u64) -> RegionEdit {
        RegionEdit {
            files_to_add: vec![FileMeta {
                region_id: RegionId(1),
                file_id: FileId(file),
                time_range: (0, 1),
                num_rows: 2,
                size_bytes: 100,
                max_sequence: flushed_entry_id,
                level: 0,
            }],
            flushed_entry_id,
            flushed_sequence: flushed_entry_id,
        }
    }

    fn commit(epoch: u64, flushed: u64, file: u64) -> ManifestChange {
        ManifestChange::Edit {
            edit: edit(flushed, file),
            expected_state: LeaderState::Writable,
            epoch,
        }
    }

    #[test]
    fn edit_adds_files_and_moves_marks() {
        let mut manifest = RegionManifest::new(RegionId(1));
        manifest.apply(&commit(0, 5, 1)).unwrap();
        assert_eq!(manifest.files.len(), 1);
        assert_eq!(manifest.flushed_entry_id, 5);
        assert_eq!(manifest.version, 1);
    }

    #[test]
    fn edit_in_wrong_state_or_epoch_is_refused_without_change() {
        let mut manifest = RegionManifest::new(RegionId(1));
        manifest
            .apply(&ManifestChange::SetLeaderState(LeaderState::Downgrading))
            .unwrap();
        let before = manifest.clone();
        assert!(matches!(
            manifest.apply(&commit(0, 5, 1)),
            Err(ManifestError::UnexpectedState { .. })
        ));
        assert_eq!(manifest, before);
        manifest.apply(&ManifestChange::Reopen).unwrap();
        assert_eq!(manifest.leader_state, LeaderState::Follower);
        manifest
            .apply(&ManifestChange::SetLeaderState(LeaderState::Writable))
            .unwrap();
        assert!(matches!(
            manifest.apply(&commit(0, 5, 1)),
            Err(ManifestError::StaleEpoch {
                edit_epoch: 0,
                manifest_epoch: 1,
                ..
            })
        ));
    }

    #[test]
    fn truncate_clears_files_and_fences_older_flushes() {
        let mut manifest = RegionManifest::new(RegionId(1));
        manifest.apply(&commit(0, 5, 1)).unwrap();
        manifest
            .apply(&ManifestChange::Truncate {
                truncated_entry_id: 9,
                truncated_sequence: 30,
            })
            .unwrap();
        assert!(manifest.files.is_empty());
        assert_eq!(manifest.replay_from_entry_id(), 9);
        assert!(manifest.apply(&commit(0, 9, 2)).is_err());
        assert!(manifest.apply(&commit(1, 12, 2)).is_ok());
    }

    #[test]
    fn flushed_entry_id_never_goes_backwards() {
        let mut manifest = RegionManifest::new(RegionId(1));
        manifest.apply(&commit(0, 5, 1)).unwrap();
        assert!(matches!(
            manifest.apply(&commit(0, 4, 2)),
            Err(ManifestError::FlushedEntryBackwards { .. })
        ));
    }

    #[test]
    fn dropped_manifest_refuses_everything() {
        let mut manifest = RegionManifest::new(RegionId(1));
        manifest.apply(&ManifestChange::Drop).unwrap();
        assert!(matches!(
            manifest.apply(&ManifestChange::Reopen),
            Err(ManifestError::Dropped { .. })
        ));
    }
}
