//! The time column, written digit by digit: it is on every line, and
//! `write!` was a tenth of a line's cost.
use std::time::SystemTime;

use crate::{config::TimeFormat, output::calendar::civil_date};

/// The time column: time of day, date and time, or seconds since the start,
/// to the millisecond or the microsecond.
pub struct Stamp {
    pub time: SystemTime,
    pub format: TimeFormat,
    pub origin: SystemTime,
    pub micros: bool,
}

impl Stamp {
    pub fn write(&self, out: &mut String) {
        let since = match self.format {
            TimeFormat::SinceStart => self.time.duration_since(self.origin),
            _ => self.time.duration_since(SystemTime::UNIX_EPOCH),
        };
        // Events that raced the start (hooks attach one by one) count from 0.
        let since = since.unwrap_or_default();
        let secs = since.as_secs();
        let (day, time) = (secs / 86_400, secs % 86_400);
        match self.format {
            TimeFormat::TimeOfDay => push_clock(out, time),
            TimeFormat::DateTime => {
                let (year, month, day) = civil_date(day);
                push_padded(out, year, 4);
                out.push('-');
                push_padded(out, month, 2);
                out.push('-');
                push_padded(out, day, 2);
                out.push(' ');
                push_clock(out, time);
            }
            TimeFormat::SinceStart => push_padded(out, secs, 1),
        }
        out.push('.');
        match self.micros {
            true => push_padded(out, since.subsec_micros().into(), 6),
            false => push_padded(out, since.subsec_millis().into(), 3),
        }
    }
}

/// `HH:MM:SS` of the `seconds`th second of a day.
fn push_clock(out: &mut String, seconds: u64) {
    push_padded(out, seconds / 3600, 2);
    out.push(':');
    push_padded(out, seconds / 60 % 60, 2);
    out.push(':');
    push_padded(out, seconds % 60, 2);
}

/// `number` in decimal, zero-padded to `width` digits (a wider number keeps all its digits).
fn push_padded(out: &mut String, number: u64, width: usize) {
    const ZEROS: &str = "0000000000000000";
    let mut digits = itoa::Buffer::new();
    let text = digits.format(number);
    out.push_str(&ZEROS[..width.saturating_sub(text.len()).min(ZEROS.len())]);
    out.push_str(text);
}
