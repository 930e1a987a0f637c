//! Numbers the columns print: durations and byte counts, short and unit-bearing.
use std::time::Duration;

/// Short, unit-bearing durations: 61us, 3.120ms, 2.500s.
pub struct Short(pub Duration);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0.as_micros();
        if us < 1_000 {
            write!(f, "{us}us")
        } else if us < 1_000_000 {
            write!(f, "{}.{:03}ms", us / 1_000, us % 1_000)
        } else {
            write!(f, "{}.{:03}s", us / 1_000_000, us / 1_000 % 1_000)
        }
    }
}

/// Durations in at most 5 characters, two or three digits kept (never
/// rounded up): 61us, 3.1ms, 250ms, 2.5s, 42s, 12m, 5h, 3d.
pub struct Brief(pub Duration);

impl std::fmt::Display for Brief {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0.as_micros();
        let secs = self.0.as_secs();
        match us {
            0..1_000 => write!(f, "{us}us"),
            1_000..10_000 => write!(f, "{}.{}ms", us / 1_000, us / 100 % 10),
            10_000..1_000_000 => write!(f, "{}ms", us / 1_000),
            1_000_000..10_000_000 => write!(f, "{}.{}s", secs, us / 100_000 % 10),
            _ if secs < 100 => write!(f, "{secs}s"),
            _ if secs < 100 * 60 => write!(f, "{}m", secs / 60),
            _ if secs < 100 * 3600 => write!(f, "{}h", secs / 3600),
            _ => write!(f, "{}d", secs / 86_400),
        }
    }
}

/// Byte counts in at most 5 characters, binary units, never rounded up:
/// 999, 1023, 3.6K, 512K, 1.2M, 40G.
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 < 1024 {
            return write!(f, "{}", self.0);
        }
        let mut tenths = u128::from(self.0) * 10 / 1024;
        for unit in ["K", "M", "G", "T", "P"] {
            if tenths < 100 {
                return write!(f, "{}.{}{unit}", tenths / 10, tenths % 10);
            }
            if tenths < 10_240 {
                return write!(f, "{}{unit}", tenths / 10);
            }
            tenths /= 1024;
        }
        write!(f, "{}E", tenths / 10)
    }
}
