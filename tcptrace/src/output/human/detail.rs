//! What each kind of event says after the columns: in the default view the
//! fullest telling that fits, in the wide view all of it.
use std::fmt::Write as _;

use super::{
    short_state,
    telling::{Fact as _, Facts, Telling},
    units::{Brief, Bytes, Short},
};
use crate::{
    events::{ConnEvent, Detail, Direction, EventKind},
    lifecycle::{CloseFacts, CloseKind},
};

/// The default view's detail of each kind, after a space: the fullest
/// telling that fits in `room` characters, then shorter ones that keep the
/// most useful facts. `suffix` (another namespace) is said where it fits.
pub fn write_short_detail(out: &mut String, event: &ConnEvent, room: usize, suffix: Option<&str>, facts: &mut Facts) {
    facts.clear();
    let age = event.age.map(Brief);
    let tellings: &[Telling] = match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => {
            facts.add((event.direction != Direction::Unknown).then(|| event.direction.name()));
            facts.add(Some(short_state(event.state)));
            facts.add(Some("at start"));
            &[&[0, 1, 2], &[1, 2]]
        }
        Detail::None => &[&[]],
        Detail::Established { handshake } => {
            facts.add(Some(event.direction.name()));
            facts.add(handshake.map(Brief));
            &[&[0, 1], &[0]]
        }
        Detail::Close(close) => close_facts(facts, close, age),
        Detail::Failed { reason, error } => {
            // The errno mostly repeats the reason: it goes first.
            facts.add(Some(reason.name()));
            facts.add(age);
            facts.add(*error);
            &[&[0, 1, 2], &[0, 1], &[0]]
        }
        Detail::State { old } => {
            facts.add(Some(short_state(*old)));
            facts.add(Some("->"));
            facts.add(Some(short_state(event.state)));
            &[&[0, 1, 2], &[1, 2]]
        }
        Detail::Retransmit => {
            facts.add(Some("in"));
            facts.add(Some(short_state(event.state)));
            &[&[0, 1], &[1]]
        }
        Detail::Reset { sent: true, reason } => {
            facts.add(Some("sent"));
            facts.add(reason.as_deref());
            &[&[0, 1]]
        }
        Detail::Reset { sent: false, .. } => {
            facts.add(Some("received"));
            &[&[0]]
        }
    };
    facts.write_fitting(out, tellings, suffix, room);
}

/// A close, from the fullest telling to the shortest: who ended it and how,
/// its lifetime, bytes out/in, then the error, retransmissions and smoothed
/// RTT. Who ended it goes before the bytes do (an RST's direction tells).
fn close_facts(facts: &mut Facts, close: &CloseFacts, age: Option<Brief>) -> &'static [Telling] {
    const WHO_HOW: usize = 0;
    const AGE: usize = 1;
    const BYTES: usize = 2;
    const ERROR: usize = 3;
    const RETRANSMITS: usize = 4;
    const RTT: usize = 5;
    const HOW: usize = 6;
    let how = match close.kind {
        CloseKind::Fin => "fin",
        CloseKind::RstSent => "rst_sent",
        CloseKind::RstReceived => "rst_rcvd",
        CloseKind::Timeout => "timeout",
    };
    facts.add_with(|text| {
        if let Some(side) = close.closed_by {
            text.push_str(side.name());
            text.push(' ');
        }
        text.push_str(how);
    });
    facts.add(age);
    facts.add_with(|text| {
        Bytes(close.bytes_sent).push_to(text);
        text.push('/');
        Bytes(close.bytes_received).push_to(text);
    });
    facts.add(close.error);
    facts.add_with(|text| {
        if close.retransmits > 0 {
            text.push_str(itoa::Buffer::new().format(close.retransmits));
            text.push_str("retx");
        }
    });
    facts.add_with(|text| {
        text.push_str("rtt ");
        Brief(close.srtt).push_to(text);
    });
    facts.add(Some(how));
    &[
        &[WHO_HOW, AGE, BYTES, ERROR, RETRANSMITS, RTT],
        &[WHO_HOW, AGE, BYTES, ERROR, RETRANSMITS],
        &[WHO_HOW, AGE, BYTES, ERROR],
        &[WHO_HOW, AGE, BYTES],
        &[HOW, AGE, BYTES],
        &[WHO_HOW, AGE],
        &[WHO_HOW],
        &[HOW],
    ]
}

/// Wide mode's detail: the kind's story in full.
pub fn write_detail(out: &mut String, event: &ConnEvent) {
    let _ = match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => match event.direction {
            Direction::Unknown => write!(out, "{}, open at start", event.state.name()),
            direction => write!(out, "{} {}, open at start", direction.name(), event.state.name()),
        },
        Detail::None => Ok(()),
        Detail::Established { handshake } => {
            let _ = write!(out, "{}", event.direction.name());
            match handshake {
                Some(handshake) => write!(out, ", handshake {}", Short(*handshake)),
                None => Ok(()),
            }
        }
        Detail::Close(facts) => {
            let _ = match event.age {
                Some(age) => write!(out, "after {}", Short(age)),
                None => write!(out, "(opened before tracing)"),
            };
            let who = facts.closed_by.map_or("?", |side| side.name());
            let _ = write!(
                out,
                ", {who} closed ({}), {} B out, {} B in, {} segs out, {} in, rtt {}",
                facts.kind.name(),
                facts.bytes_sent,
                facts.bytes_received,
                facts.segs_out,
                facts.segs_in,
                Short(facts.srtt)
            );
            if facts.retransmits > 0 {
                let _ = write!(out, ", {} retransmits", facts.retransmits);
            }
            match facts.error {
                Some(error) => write!(out, ", {error}"),
                None => Ok(()),
            }
        }
        Detail::Failed { reason, error } => {
            let _ = write!(out, "{}", reason.name());
            if let Some(error) = error {
                let _ = write!(out, " ({error})");
            }
            match event.age {
                Some(age) => write!(out, " after {}", Short(age)),
                None => Ok(()),
            }
        }
        Detail::State { old } => write!(out, "{} -> {}", old.name(), event.state.name()),
        Detail::Retransmit => write!(out, "in {}", event.state.name()),
        Detail::Reset { sent: true, reason } => match reason {
            Some(reason) => write!(out, "sent ({reason})"),
            None => write!(out, "sent"),
        },
        Detail::Reset { sent: false, .. } => write!(out, "received"),
    };
}
