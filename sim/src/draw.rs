//! What a client asks for next, drawn from its own RNG stream.
//!
//! Shared by the simulated clients (`actors`) and `flushsim bench`'s direct
//! clients, so that for one plan both issue the same requests in the same
//! order: the overhead ratio compares like with like. The order of the draws
//! is part of every trace hash; change it only together with the snapshots.

use std::sync::Arc;

use flush_core::ids::RegionId;
use flush_core::request::Request;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::plan::Workload;
use crate::script::Step;

/// Builds one kind of request for a region and a fresh schema version.
type MakeRequest = fn(RegionId, u64) -> Request;

/// One of `regions`, uniformly (region 1 if there are none).
pub fn region(rng: &mut ChaCha8Rng, regions: &[RegionId]) -> RegionId {
    let index = rng.gen_range(0..regions.len().max(1));
    regions.get(index).copied().unwrap_or(RegionId(1))
}

/// The workload's series names (`host-N`), made once: every row of a
/// client's writes shares one of them instead of formatting its own.
#[derive(Clone, Debug)]
pub struct SeriesNames {
    count: u32,
    names: Vec<Arc<str>>,
}

impl SeriesNames {
    pub fn new(workload: &Workload) -> Self {
        let count = workload.series.max(1);
        let names = (0..count).map(|n| Arc::from(format!("host-{n}"))).collect();
        SeriesNames { count, names }
    }

    /// One name, uniformly. Drawn as a `u32` below the count, as when each
    /// row formatted its own name: the draw is part of every trace hash.
    fn pick(&self, rng: &mut ChaCha8Rng) -> Arc<str> {
        self.names[rng.gen_range(0..self.count) as usize].clone()
    }
}

/// The series of each row of the next write: how many rows, then which
/// series each row belongs to.
pub fn write_series(
    rng: &mut ChaCha8Rng,
    workload: &Workload,
    names: &SeriesNames,
) -> Vec<Arc<str>> {
    let count = rng.gen_range(workload.rows_per_write_min..=workload.rows_per_write_max.max(1));
    series(rng, names, count)
}

/// The series of each of `count` rows (at least one).
pub fn series(rng: &mut ChaCha8Rng, names: &SeriesNames, count: u32) -> Vec<Arc<str>> {
    (0..count.max(1)).map(|_| names.pick(rng)).collect()
}

/// The field an alter to `schema_version` adds: a nullable column that
/// later writes of the client that saw the alter succeed set.
pub fn field_name(schema_version: u64) -> String {
    format!("f{schema_version}")
}

/// How each kind of non-write request is built, drawn or scripted.
const FLUSH: MakeRequest = |region_id, _| Request::Flush { region_id };
const ALTER: MakeRequest = |region_id, schema_version| Request::Alter {
    region_id,
    schema_version,
    add_field: Some(field_name(schema_version)),
};
const TRUNCATE: MakeRequest = |region_id, _| Request::Truncate { region_id };
const DROP: MakeRequest = |region_id, _| Request::Drop { region_id };
const CLOSE: MakeRequest = |region_id, _| Request::Close { region_id };
const DOWNGRADE: MakeRequest = |region_id, _| Request::Downgrade { region_id };

/// The requests issued beside one write: each kind of the workload's mix
/// with its per-mille chance, in a fixed order, each on a drawn region.
/// `next_schema_version` is asked once per request issued.
pub fn mixed_requests(
    rng: &mut ChaCha8Rng,
    workload: &Workload,
    regions: &[RegionId],
    mut next_schema_version: impl FnMut() -> u64,
) -> Vec<Request> {
    let mix = &workload.mix;
    let kinds: [(u32, MakeRequest); 6] = [
        (mix.flush, FLUSH),
        (mix.alter, ALTER),
        (mix.truncate, TRUNCATE),
        (mix.drop, DROP),
        (mix.close, CLOSE),
        (mix.downgrade, DOWNGRADE),
    ];
    let mut requests = Vec::new();
    for (per_mille, make) in kinds {
        if rng.gen_range(0..1000) < per_mille {
            let region_id = region(rng, regions);
            requests.push(make(region_id, next_schema_version()));
        }
    }
    requests
}

/// The request a scripted non-write step sends (`None` for a write or a
/// pause, which the client makes itself); an alter adds the field of a
/// fresh schema version from `next_schema_version`, as a drawn alter does.
pub fn scripted_request(step: &Step, next_schema_version: impl FnOnce() -> u64) -> Option<Request> {
    let region_id = RegionId(step.region()?);
    let (make, schema_version) = match *step {
        Step::Flush { .. } => (FLUSH, 0),
        // Only an alter takes a schema version from the run.
        Step::Alter { .. } => (ALTER, next_schema_version()),
        Step::Truncate { .. } => (TRUNCATE, 0),
        Step::Drop { .. } => (DROP, 0),
        Step::Close { .. } => (CLOSE, 0),
        Step::Downgrade { .. } => (DOWNGRADE, 0),
        Step::Write { .. } | Step::Think { .. } => return None,
    };
    Some(make(region_id, schema_version))
}
