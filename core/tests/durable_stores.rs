//! The durable manifest and object stores on a real directory: changes
//! survive a reopen under the same rules as every store, a damaged or
//! foreign manifest is a typed error, a leftover temp file is harmless, and
//! an SST written through the store reads back with the real Parquet
//! reader.

use std::sync::Arc;

use bytes::Bytes;
use flush_core::durable::manifest::{self, FileManifestStore};
use flush_core::durable::objects::FileObjectStore;
use flush_core::error::{ManifestError, StoreError};
use flush_core::fs::{FileSystem, StdFs};
use flush_core::ids::{sst_path, FileId, RegionId};
use flush_core::manifest::{FileMeta, LeaderState, ManifestChange, RegionEdit, RegionManifest};
use flush_core::memtable::Row;
use flush_core::ports::{ManifestStore, ObjectStore};
use flush_core::schema::RegionSchema;
use flush_core::sst;
use futures::future::BoxFuture;

const REGION: RegionId = RegionId(3);

/// The file-backed stores do their blocking work when polled.
fn ready<T>(future: BoxFuture<'static, T>) -> T {
    flush_core::local::block_on(future)
        .expect("a file-backed store's future is ready when first polled")
}

fn root() -> (tempfile::TempDir, Arc<StdFs>) {
    let temp = tempfile::tempdir().expect("a temp dir");
    let fs = Arc::new(StdFs::open(temp.path()).expect("root"));
    (temp, fs)
}

fn edit(epoch: u64, flushed: u64, file: u64) -> ManifestChange {
    ManifestChange::Edit {
        edit: RegionEdit {
            files_to_add: vec![FileMeta {
                region_id: REGION,
                file_id: FileId(file),
                time_range: (-5, 99),
                num_rows: 12,
                size_bytes: 4_096,
                max_sequence: flushed * 3,
                level: 0,
            }],
            flushed_entry_id: flushed,
            flushed_sequence: flushed * 3,
        },
        expected_state: LeaderState::Writable,
        epoch,
    }
}

#[test]
fn manifest_changes_survive_a_reopen_and_follow_the_rules() {
    let (_temp, fs) = root();
    let store = FileManifestStore::new(fs.clone());
    ready(store.create(RegionManifest::new(REGION))).expect("create");
    assert!(matches!(
        ready(store.create(RegionManifest::new(REGION))),
        Err(ManifestError::Exists { .. })
    ));
    ready(store.apply(REGION, edit(0, 5, 1))).expect("edit");
    let alter = ManifestChange::Alter {
        schema_version: 2,
        add_field: Some("cpu".to_string()),
    };
    ready(store.apply(REGION, alter)).expect("alter");
    ready(store.apply(
        REGION,
        ManifestChange::SetLeaderState(LeaderState::Downgrading),
    ))
    .expect("downgrade");
    // The expected-leader-state rule holds here as in every store.
    assert!(matches!(
        ready(store.apply(REGION, edit(0, 6, 2))),
        Err(ManifestError::UnexpectedState { .. })
    ));

    let reopened = FileManifestStore::new(fs.clone());
    let loaded = ready(reopened.load(REGION))
        .expect("load")
        .expect("a manifest");
    assert_eq!(
        Some(loaded.clone()),
        ready(store.load(REGION)).expect("load")
    );
    assert_eq!(loaded.version, 3);
    assert_eq!(loaded.flushed_entry_id, 5);
    assert_eq!(loaded.schema_version, 2);
    assert_eq!(loaded.added_fields, vec!["cpu".to_string()]);
    assert_eq!(loaded.leader_state, LeaderState::Downgrading);
    assert_eq!(loaded.files.len(), 1);
    assert_eq!(reopened.regions().expect("list"), vec![REGION]);
    assert_eq!(ready(reopened.load(RegionId(99))).expect("load"), None);
}

#[test]
fn a_dropped_region_can_be_created_again() {
    let (_temp, fs) = root();
    let store = FileManifestStore::new(fs.clone());
    ready(store.create(RegionManifest::new(REGION))).expect("create");
    ready(store.apply(REGION, ManifestChange::Drop)).expect("drop");
    let reopened = FileManifestStore::new(fs);
    assert!(
        ready(reopened.load(REGION))
            .expect("load")
            .expect("kept")
            .dropped
    );
    ready(reopened.create(RegionManifest::new(REGION))).expect("create again");
}

#[test]
fn every_damaged_manifest_is_a_typed_error_and_a_leftover_temp_file_is_harmless() {
    let (_temp, fs) = root();
    let store = FileManifestStore::new(fs.clone());
    ready(store.create(RegionManifest::new(REGION))).expect("create");
    ready(store.apply(REGION, edit(0, 5, 1))).expect("edit");
    let path = "manifest/3/MANIFEST";
    let good = fs.read(path).expect("read");

    // A crash mid-change leaves a temp file beside a whole manifest.
    fs.create("manifest/3/MANIFEST.tmp").expect("temp");
    fs.append("manifest/3/MANIFEST.tmp", &good[..7])
        .expect("temp");
    let loaded = ready(FileManifestStore::new(fs.clone()).load(REGION)).expect("load");
    assert_eq!(loaded.map(|m| m.flushed_entry_id), Some(5));
    ready(FileManifestStore::new(fs.clone()).apply(REGION, edit(0, 6, 2))).expect("edit");
    let good = fs.read(path).expect("read");

    let mut damaged: Vec<(String, Vec<u8>)> = (0..good.len())
        .step_by(3)
        .map(|cut| (format!("cut at {cut}"), good[..cut].to_vec()))
        .collect();
    for at in (0..good.len()).step_by(5) {
        let mut flipped = good.clone();
        flipped[at] ^= 0x20;
        damaged.push((format!("bit flipped at {at}"), flipped));
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing");
    damaged.push(("trailing bytes".to_string(), longer));
    for (what, bytes) in damaged {
        fs.set_len(path, 0).expect("rewrite");
        fs.write_at(path, 0, &bytes).expect("rewrite");
        let loaded = ready(FileManifestStore::new(fs.clone()).load(REGION));
        assert!(
            matches!(loaded, Err(ManifestError::Corrupt { .. })),
            "{what}: expected a corrupt-manifest error, saw {loaded:?}"
        );
    }
}

/// A manifest written before schemas had fields (format 1: no field list
/// after the files) still reads, with no added fields; the fields a
/// format 2 file lists come back.
#[test]
fn a_format_1_manifest_still_reads_and_format_2_keeps_the_added_fields() {
    let mut with_fields = RegionManifest::new(RegionId(4));
    with_fields.schema_version = 3;
    with_fields.added_fields = vec!["cpu".to_string(), "mem".to_string()];
    let current = manifest::encode(&with_fields);
    assert_eq!(manifest::decode(&current), Ok(with_fields.clone()));

    // The same manifest as format 1 wrote it: no field list, format 1,
    // the length and checksum of that payload.
    let mut old = with_fields.clone();
    old.added_fields.clear();
    let bytes = manifest::encode(&old);
    let payload_len = bytes.len() - 16 - 4;
    let payload = &bytes[16..16 + payload_len];
    let mut format_1 = Vec::new();
    format_1.extend_from_slice(&bytes[..4]);
    format_1.extend_from_slice(&1u32.to_le_bytes());
    format_1.extend_from_slice(&(payload_len as u32).to_le_bytes());
    format_1.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    format_1.extend_from_slice(payload);
    assert_eq!(manifest::decode(&format_1), Ok(old));
}

#[test]
fn a_manifest_in_another_regions_directory_is_refused() {
    let (_temp, fs) = root();
    let bytes = manifest::encode(&RegionManifest::new(RegionId(4)));
    fs.create_dir_all("manifest/3").expect("dir");
    fs.create("manifest/3/MANIFEST").expect("file");
    fs.append("manifest/3/MANIFEST", &bytes).expect("write");
    let loaded = ready(FileManifestStore::new(fs).load(REGION));
    assert!(
        matches!(loaded, Err(ManifestError::Corrupt { reason, .. }) if reason.contains("region-4"))
    );
}

#[test]
fn an_sst_put_through_the_store_reads_back_with_the_parquet_reader() {
    let (_temp, fs) = root();
    let store = FileObjectStore::new(fs.clone());
    let rows: Vec<Row> = (0..50)
        .map(|index| Row {
            series: format!("host-{}", index % 4).into(),
            ts: index * 10,
            value: index as f64 * 0.5,
            sequence: 100 + index as u64,
            fields: Vec::new(),
        })
        .collect();
    let bytes = sst::encode_rows("r3", &RegionSchema::default(), &rows).expect("encode");
    let path = sst_path(REGION, FileId(12));
    ready(store.put(&path, bytes.clone())).expect("put");
    // A crash mid-put of another SST leaves only a temp file: never listed.
    fs.create(&format!("objects/{}.tmp", sst_path(REGION, FileId(13))))
        .expect("temp");
    assert_eq!(
        ready(store.list("data/3/")).expect("list"),
        vec![path.clone()]
    );
    let read = FileObjectStore::new(fs.clone());
    let back = ready(read.get(&path)).expect("get");
    assert_eq!(back, bytes);
    assert_eq!(sst::decode_rows("r3", back).expect("decode"), rows);
    ready(read.delete(&path)).expect("delete");
    ready(read.delete(&path)).expect("deleting twice is fine");
    assert!(matches!(
        ready(read.get(&path)),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        ready(read.list("data/9/")).expect("list"),
        Vec::<String>::new()
    );
}

#[test]
fn object_paths_that_escape_or_hide_are_refused() {
    let (_temp, fs) = root();
    let store = FileObjectStore::new(fs);
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "data/../../x",
        "data//x",
        "data/x.tmp",
    ] {
        assert!(
            matches!(
                ready(store.put(bad, Bytes::from_static(b"x"))),
                Err(StoreError::Io { .. })
            ),
            "{bad:?} should be refused"
        );
    }
}
