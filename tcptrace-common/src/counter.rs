//! Indexes of the kernel's per-CPU `COUNTERS` array.

/// Events dropped because the ring buffer was full.
pub const LOST_EVENTS: u32 = 0;
/// Connections not tracked because the connection map was full.
pub const CONN_MAP_FULL: u32 = 1;
/// Events the user's filters kept out of the ring buffer.
pub const FILTERED: u32 = 2;
/// Kernel map updates that failed (a full map, no memory).
pub const MAP_UPDATE_FAILED: u32 = 3;
/// Closes sent when the socket was freed: the state hook's run for the
/// way into CLOSE was skipped by the kernel.
pub const CLOSE_AT_DESTROY: u32 = 4;
/// accept() returned a descriptor whose socket the accept hook could not
/// reach: wrong kernel struct offsets, or another thread closed it at once.
pub const ACCEPT_UNRESOLVED: u32 = 5;
/// Number of counters.
pub const COUNT: u32 = 6;
