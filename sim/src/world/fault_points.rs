//! Fault points inside the core (BUGGIFY sites): the world decides, per
//! call, whether the named operation fails.

use std::sync::Arc;

use flush_core::ids::RegionId;
use flush_core::ports::{FaultPoint, FaultPoints};

use super::World;
use crate::plan::FaultClass;

pub struct SimFaultPoints {
    world: Arc<World>,
}

impl SimFaultPoints {
    pub fn new(world: Arc<World>) -> Self {
        SimFaultPoints { world }
    }
}

impl FaultPoints for SimFaultPoints {
    fn should_fail(&self, point: FaultPoint, region_id: RegionId) -> bool {
        match point {
            FaultPoint::FreezeMemtable => {
                self.world
                    .inject(FaultClass::FreezeFailure, Some(region_id), "freeze")
            }
        }
    }
}
