//! The `CONFIG` global: everything userspace fixes before the programs load.

use crate::KernelOffsets;

/// Settings fixed at load time (the `CONFIG` global, read-only in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadConfig {
    pub offsets: KernelOffsets,
    /// Bit `1 << kind` set: events of that kind are wanted.
    pub events: u32,
    /// Bits of `filter`: the filters in force. An event passes when it
    /// matches every filter in force (AND across kinds), and a filter when
    /// any of its values matches (OR within a kind).
    pub filters: u32,
    /// Non-zero: tcp:tcp_send_reset has the 6.10+ layout (reason, sockaddrs).
    pub send_reset_has_reason: u8,
    /// Non-zero: the verifier takes BPF's atomic exchange (Linux 5.12+), so
    /// the connect claim is a flag in the connection, not a map entry.
    pub atomic_xchg: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<LoadConfig>() == 35 * 4 + 12);

#[cfg(feature = "user")]
// SAFETY: plain old data, repr(C), every bit pattern valid, padding explicit.
unsafe impl aya::Pod for LoadConfig {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn load_config_has_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<KernelOffsets>(), 35 * 4);
        assert_eq!(offset_of!(LoadConfig, events), 35 * 4);
        assert_eq!(offset_of!(LoadConfig, filters), 35 * 4 + 4);
        assert_eq!(offset_of!(LoadConfig, _pad), 35 * 4 + 10);
    }
}
