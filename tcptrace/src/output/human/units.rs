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
#[derive(Clone, Copy)]
pub struct Brief(pub Duration);

impl Brief {
    /// Whole units, maybe a tenth, and the unit.
    fn parts(self) -> (u64, Option<u64>, &'static str) {
        let us = u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX);
        let secs = self.0.as_secs();
        match us {
            0..1_000 => (us, None, "us"),
            1_000..10_000 => (us / 1_000, Some(us / 100 % 10), "ms"),
            10_000..1_000_000 => (us / 1_000, None, "ms"),
            1_000_000..10_000_000 => (secs, Some(us / 100_000 % 10), "s"),
            _ if secs < 100 => (secs, None, "s"),
            _ if secs < 100 * 60 => (secs / 60, None, "m"),
            _ if secs < 100 * 3600 => (secs / 3600, None, "h"),
            _ => (secs / 86_400, None, "d"),
        }
    }
}

/// Byte counts in at most 5 characters, binary units, never rounded up:
/// 999, 1023, 3.6K, 512K, 1.2M, 40G.
#[derive(Clone, Copy)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Whole units, maybe a tenth, and the unit.
    fn parts(self) -> (u64, Option<u64>, &'static str) {
        if self.0 < 1024 {
            return (self.0, None, "");
        }
        let mut tenths = u128::from(self.0) * 10 / 1024;
        for unit in ["K", "M", "G", "T", "P"] {
            if tenths < 100 {
                return ((tenths / 10) as u64, Some((tenths % 10) as u64), unit);
            }
            if tenths < 10_240 {
                return ((tenths / 10) as u64, None, unit);
            }
            tenths /= 1024;
        }
        ((tenths / 10) as u64, None, "E")
    }
}

/// Writes `whole[.tenth]unit` without the formatting machinery: these are on
/// most lines of the default view.
fn write_parts(out: &mut impl std::fmt::Write, (whole, tenth, unit): (u64, Option<u64>, &str)) -> std::fmt::Result {
    let mut digits = itoa::Buffer::new();
    out.write_str(digits.format(whole))?;
    if let Some(tenth) = tenth {
        out.write_char('.')?;
        out.write_str(digits.format(tenth))?;
    }
    out.write_str(unit)
}

impl std::fmt::Display for Brief {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_parts(f, self.parts())
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_parts(f, self.parts())
    }
}

impl super::telling::Fact for Brief {
    fn push_to(&self, out: &mut String) {
        let _ = write_parts(out, self.parts());
    }
}

impl super::telling::Fact for Bytes {
    fn push_to(&self, out: &mut String) {
        let _ = write_parts(out, self.parts());
    }
}
