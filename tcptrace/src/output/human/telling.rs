//! The default view's detail: facts formatted once, then the fullest telling
//! of them that fits the room left on the line. Nothing is joined that is not
//! printed, so a line costs no allocation once the buffers have grown.
use std::fmt::Write as _;

use crate::lifecycle::Errno;

/// The facts of one event's detail, each a span of one buffer.
#[derive(Default)]
pub struct Facts {
    text: String,
    /// Where each fact ends in `text`, and its length in characters; an absent fact is empty.
    facts: Vec<(usize, usize)>,
}

/// What a fact can be: text pushed straight onto the buffer, without the
/// formatting machinery (a fact is on most lines).
pub trait Fact {
    fn push_to(&self, out: &mut String);
}

impl Fact for &str {
    fn push_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Fact for Errno {
    fn push_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

/// A way to tell the detail: the indices of its facts, in order.
pub type Telling = &'static [usize];

impl Facts {
    pub fn clear(&mut self) {
        self.text.clear();
        self.facts.clear();
    }

    /// The next fact; `None` is absent, and tellings skip it.
    pub fn add(&mut self, fact: Option<impl Fact>) {
        self.add_with(|text| {
            if let Some(fact) = fact {
                fact.push_to(text);
            }
        });
    }

    /// The next fact, written by `build` (empty: absent).
    pub fn add_with(&mut self, build: impl FnOnce(&mut String)) {
        let start = self.text.len();
        build(&mut self.text);
        let chars = super::width_of(&self.text[start..]);
        self.facts.push((self.text.len(), chars));
    }

    fn get(&self, index: usize) -> (&str, usize) {
        let start = index.checked_sub(1).map_or(0, |before| self.facts[before].0);
        let (end, chars) = self.facts[index];
        (&self.text[start..end], chars)
    }

    /// The characters `telling` takes, its facts one space apart.
    fn width(&self, telling: Telling) -> usize {
        let present = telling.iter().map(|&index| self.get(index).1).filter(|&chars| chars > 0);
        present
            .fold(None, |width: Option<usize>, chars| Some(width.map_or(chars, |width| width + 1 + chars)))
            .unwrap_or(0)
    }

    fn write(&self, out: &mut String, telling: Telling) {
        let mut first = true;
        for (text, _) in telling.iter().map(|&index| self.get(index)).filter(|(text, _)| !text.is_empty()) {
            if !first {
                out.push(' ');
            }
            out.push_str(text);
            first = false;
        }
    }

    /// Writes, after a space, the first of `tellings` that fits in `room`
    /// characters (each tried first with `suffix`, another namespace, said
    /// where it fits), or the last one cut short with a `+`; nothing when it is empty.
    pub fn write_fitting(&self, out: &mut String, tellings: &[Telling], suffix: Option<&str>, room: usize) {
        let suffixed = |width: usize, suffix: &str| width + usize::from(width > 0) + super::width_of(suffix);
        let mut choice = None;
        'search: for &telling in tellings {
            let width = self.width(telling);
            for suffix in [suffix, None] {
                let total = suffix.map_or(width, |suffix| suffixed(width, suffix));
                if total <= room {
                    choice = Some((telling, suffix, total));
                    break 'search;
                }
            }
        }
        let Some((telling, suffix, total)) =
            choice.or_else(|| tellings.last().map(|&telling| (telling, None, self.width(telling))))
        else {
            return;
        };
        if total == 0 {
            return;
        }
        out.push(' ');
        let start = out.len();
        self.write(out, telling);
        if let Some(suffix) = suffix {
            if out.len() > start {
                out.push(' ');
            }
            out.push_str(suffix);
        }
        if total > room {
            let keep = out[start..].char_indices().nth(room.saturating_sub(1)).map_or(out.len(), |(at, _)| start + at);
            out.truncate(keep);
            out.push('+');
        }
    }
}
