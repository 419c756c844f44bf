//! Time for the core: madsim's virtual clock.

use std::sync::Arc;
use std::time::Duration;

use flush_core::ports::Clock;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::World;

pub struct SimClock {
    world: Arc<World>,
}

impl SimClock {
    pub fn new(world: Arc<World>) -> Self {
        SimClock { world }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.world.now_ms()
    }

    fn sleep(&self, duration_ms: u64) -> BoxFuture<'static, ()> {
        super::sleep(Duration::from_millis(duration_ms)).boxed()
    }
}
