//! The engine-wide write-buffer manager.
//!
//! Shared by every worker of an engine. It only counts bytes: `used` is the
//! memory held by every memtable, `active` the part still in mutable
//! memtables (not yet scheduled to be freed by a flush). From those two
//! numbers it decides when the engine should flush and when writes must
//! stall, with the seed's exact thresholds.
//!
//! Accounting mistakes are never silent: a free larger than what is held
//! returns [`BufferError`], saturates at zero and is counted in
//! [`WriteBufferManager::accounting_violations`], which the simulator's
//! `buffer_accounting` oracle requires to stay 0.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::BufferError;
use crate::ports::MemoryNotifier;
use crate::telemetry;

pub struct WriteBufferManager {
    global_size_bytes: usize,
    mutable_limit_bytes: usize,
    used_bytes: AtomicUsize,
    active_bytes: AtomicUsize,
    /// Flush jobs running anywhere in the engine; the stall rule needs it.
    flushes_running: AtomicUsize,
    /// Writes waiting for memory in any worker; the stall rule needs it.
    stalled_writes: AtomicUsize,
    accounting_violations: AtomicU64,
    notifier: Option<Arc<dyn MemoryNotifier>>,
}

impl std::fmt::Debug for WriteBufferManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBufferManager")
            .field("global_size_bytes", &self.global_size_bytes)
            .field("used_bytes", &self.used_bytes())
            .field("active_bytes", &self.active_bytes())
            .finish()
    }
}

impl WriteBufferManager {
    pub fn new(global_size_bytes: usize) -> Self {
        WriteBufferManager {
            global_size_bytes,
            mutable_limit_bytes: Self::mutable_limit_for(global_size_bytes),
            used_bytes: AtomicUsize::new(0),
            active_bytes: AtomicUsize::new(0),
            flushes_running: AtomicUsize::new(0),
            stalled_writes: AtomicUsize::new(0),
            accounting_violations: AtomicU64::new(0),
            notifier: None,
        }
    }

    /// Attaches the notifier told about every release of memory.
    pub fn with_notifier(mut self, notifier: Arc<dyn MemoryNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Half of the buffer is for mutable memtables.
    pub fn mutable_limit_for(global_size_bytes: usize) -> usize {
        global_size_bytes / 2
    }

    pub fn global_size_bytes(&self) -> usize {
        self.global_size_bytes
    }

    pub fn mutable_limit_bytes(&self) -> usize {
        self.mutable_limit_bytes
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn active_bytes(&self) -> usize {
        self.active_bytes.load(Ordering::Relaxed)
    }

    pub fn accounting_violations(&self) -> u64 {
        self.accounting_violations.load(Ordering::Relaxed)
    }

    /// True when the engine should flush a region: mutable memory over the
    /// mutable limit, or the whole buffer full while at least half of it is
    /// still mutable (flushing more would not help otherwise).
    pub fn should_flush_engine(&self) -> bool {
        let active = self.active_bytes();
        if active > self.mutable_limit_bytes {
            return true;
        }
        self.used_bytes() >= self.global_size_bytes && active >= self.global_size_bytes / 2
    }

    /// True when writes must wait for memory to be freed.
    pub fn should_stall(&self) -> bool {
        self.used_bytes() >= self.global_size_bytes
    }

    /// A memtable grew by `bytes`.
    pub fn reserve_mem(&self, bytes: usize) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.active_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A memtable of `bytes` is frozen and will be freed by a flush.
    pub fn schedule_free_mem(&self, bytes: usize) -> Result<(), BufferError> {
        checked_sub(&self.active_bytes, bytes).map_err(|active| {
            self.accounting_violations.fetch_add(1, Ordering::Relaxed);
            BufferError::ScheduleFreeUnderflow {
                requested: bytes,
                active,
            }
        })
    }

    /// A memtable of `bytes` is gone. Wakes stalled writers everywhere.
    pub fn free_mem(&self, bytes: usize) -> Result<(), BufferError> {
        let result = checked_sub(&self.used_bytes, bytes).map_err(|used| {
            self.accounting_violations.fetch_add(1, Ordering::Relaxed);
            BufferError::FreeUnderflow {
                requested: bytes,
                used,
            }
        });
        // Postcondition: mutable memory is part of used memory. A free that
        // breaks it (say, a double free) is a violation, reported, not a panic.
        if result.is_ok() && self.active_bytes() > self.used_bytes() {
            self.accounting_violations.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(notifier) = &self.notifier {
            notifier.memory_freed();
        }
        result
    }

    pub fn flush_started(&self) {
        self.flushes_running.fetch_add(1, Ordering::Relaxed);
    }

    pub fn flush_ended(&self) {
        if checked_sub(&self.flushes_running, 1).is_err() {
            self.accounting_violations.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn flushes_running(&self) -> usize {
        self.flushes_running.load(Ordering::Relaxed)
    }

    pub fn writes_stalled(&self, count: usize) {
        self.stalled_writes.fetch_add(count, Ordering::Relaxed);
        telemetry::writes_stalled(count);
    }

    pub fn writes_released(&self, count: usize) {
        if checked_sub(&self.stalled_writes, count).is_err() {
            self.accounting_violations.fetch_add(1, Ordering::Relaxed);
        }
        telemetry::writes_released(count);
    }

    /// Writes stalled in every worker of the engine.
    pub fn stalled_writes(&self) -> usize {
        self.stalled_writes.load(Ordering::Relaxed)
    }
}

/// Subtracts `amount` from `counter`, saturating at zero. On underflow returns
/// the value that was there.
fn checked_sub(counter: &AtomicUsize, amount: usize) -> Result<(), usize> {
    let mut underflow = None;
    // The closure always returns Some, so fetch_update cannot fail.
    let _ = counter.fetch_update(
        Ordering::Relaxed,
        Ordering::Relaxed,
        |current| match current.checked_sub(amount) {
            Some(left) => Some(left),
            None => {
                underflow = Some(current);
                Some(0)
            }
        },
    );
    match underflow {
        Some(current) => Err(current),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct CountingNotifier(AtomicUsize);

    impl MemoryNotifier for CountingNotifier {
        fn memory_freed(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn mutable_limit_is_half() {
        assert_eq!(4, WriteBufferManager::mutable_limit_for(8));
        assert_eq!(5, WriteBufferManager::mutable_limit_for(10));
        assert_eq!(32, WriteBufferManager::mutable_limit_for(64));
        assert_eq!(0, WriteBufferManager::mutable_limit_for(0));
        assert_eq!(0, WriteBufferManager::mutable_limit_for(1));
    }

    #[test]
    fn over_mutable_limit() {
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(400);
        assert!(!manager.should_flush_engine());
        assert!(!manager.should_stall());
        manager.reserve_mem(400);
        assert!(manager.should_flush_engine());
        manager.schedule_free_mem(400).unwrap();
        assert!(!manager.should_flush_engine());
        assert_eq!((800, 400), (manager.used_bytes(), manager.active_bytes()));
        manager.free_mem(400).unwrap();
        assert_eq!((400, 400), (manager.used_bytes(), manager.active_bytes()));
    }

    #[test]
    fn over_global_limit() {
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(1100);
        assert!(manager.should_stall());
        manager.schedule_free_mem(200).unwrap();
        assert!(manager.should_flush_engine());
        // used 1100 >= 1000 but active 450 < 500: holding back is right.
        manager.schedule_free_mem(450).unwrap();
        assert!(!manager.should_flush_engine());
        manager.reserve_mem(50);
        assert!(manager.should_flush_engine());
        manager.reserve_mem(100);
        assert!(manager.should_flush_engine());
    }

    #[test]
    fn exact_thresholds() {
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(500);
        // active == mutable limit is not over it.
        assert!(!manager.should_flush_engine());
        manager.reserve_mem(1);
        assert!(manager.should_flush_engine());
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(999);
        assert!(!manager.should_stall());
        manager.reserve_mem(1);
        assert!(manager.should_stall(), "used == size stalls");
        // used == size with active exactly size/2 flushes.
        manager.schedule_free_mem(500).unwrap();
        assert_eq!(manager.active_bytes(), 500);
        assert!(manager.should_flush_engine());
        manager.schedule_free_mem(1).unwrap();
        assert!(!manager.should_flush_engine());
    }

    #[test]
    fn size_zero_always_stalls_and_flushes_only_with_data() {
        let manager = WriteBufferManager::new(0);
        assert!(manager.should_stall());
        // used 0 >= 0 and active 0 >= 0.
        assert!(manager.should_flush_engine());
        manager.reserve_mem(1);
        assert!(manager.should_flush_engine());
    }

    #[test]
    fn notifier_fires_on_free_only() {
        let notifier = Arc::new(CountingNotifier::default());
        let manager = WriteBufferManager::new(1000).with_notifier(notifier.clone());
        manager.reserve_mem(500);
        manager.schedule_free_mem(500).unwrap();
        assert_eq!(notifier.0.load(Ordering::Relaxed), 0);
        manager.free_mem(500).unwrap();
        assert_eq!(notifier.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn free_underflow_is_reported_not_wrapped() {
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(10);
        manager.schedule_free_mem(10).unwrap();
        assert_eq!(
            manager.free_mem(11),
            Err(BufferError::FreeUnderflow {
                requested: 11,
                used: 10
            })
        );
        assert_eq!(manager.used_bytes(), 0);
        assert_eq!(manager.accounting_violations(), 1);
    }

    #[test]
    fn schedule_free_underflow_is_reported() {
        let manager = WriteBufferManager::new(1000);
        manager.reserve_mem(10);
        assert_eq!(
            manager.schedule_free_mem(20),
            Err(BufferError::ScheduleFreeUnderflow {
                requested: 20,
                active: 10
            })
        );
        assert_eq!(manager.active_bytes(), 0);
        assert_eq!(manager.used_bytes(), 10);
        assert_eq!(manager.accounting_violations(), 1);
    }

    #[test]
    fn flush_counter_underflow_is_a_violation() {
        let manager = WriteBufferManager::new(1000);
        manager.flush_started();
        assert_eq!(manager.flushes_running(), 1);
        manager.flush_ended();
        manager.flush_ended();
        assert_eq!(manager.flushes_running(), 0);
        assert_eq!(manager.accounting_violations(), 1);
    }
}
