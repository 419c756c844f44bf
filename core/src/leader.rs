//! A region's leader state: whether it takes writes. A leaf module, so
//! that errors can name a state without depending on the manifest that
//! records it.

/// The leader state of a region, as mito2 tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaderState {
    /// Accepts writes; flushes commit expecting this state.
    Writable,
    /// Being downgraded: no writes; a downgrade flush commits expecting this.
    Downgrading,
    /// Downgraded: a follower, read-only.
    Follower,
}
