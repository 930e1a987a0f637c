//! What each kind of event says after the columns: in the default view the
//! fullest telling that fits, in the wide view all of it.
use std::fmt::Write as _;

use super::{
    short_state,
    units::{Brief, Bytes, Short},
};
use crate::{
    events::{ConnEvent, Detail, Direction, EventKind},
    lifecycle::{CloseFacts, CloseKind},
};

/// The default view's detail of each kind, as it may be told: the fullest
/// first, then shorter ones that keep the most useful facts.
pub fn short_details(event: &ConnEvent) -> Vec<String> {
    let age = event.age.map(|age| Brief(age).to_string());
    let join = |facts: &[Option<&str>]| facts.iter().flatten().copied().collect::<Vec<_>>().join(" ");
    match &event.detail {
        Detail::None if event.kind == EventKind::Snapshot => {
            let state = short_state(event.state);
            let direction = (event.direction != Direction::Unknown).then(|| event.direction.name());
            vec![join(&[direction, Some(state), Some("at start")]), join(&[Some(state), Some("at start")])]
        }
        Detail::None => vec![String::new()],
        Detail::Established { handshake } => {
            let handshake = handshake.map(|handshake| Brief(handshake).to_string());
            let direction = Some(event.direction.name());
            vec![join(&[direction, handshake.as_deref()]), join(&[direction])]
        }
        Detail::Close(facts) => close_details(facts, age.as_deref()),
        Detail::Failed { reason, error } => {
            // The errno mostly repeats the reason: it goes first.
            let (reason, error) = (Some(reason.name()), error.map(|error| error.to_string()));
            vec![join(&[reason, age.as_deref(), error.as_deref()]), join(&[reason, age.as_deref()]), join(&[reason])]
        }
        Detail::State { old } => {
            let new = short_state(event.state);
            vec![format!("{} -> {new}", short_state(*old)), format!("-> {new}")]
        }
        Detail::Retransmit => vec![format!("in {}", short_state(event.state)), short_state(event.state).to_owned()],
        Detail::Reset { sent: true, reason } => vec![join(&[Some("sent"), reason.as_deref()])],
        Detail::Reset { sent: false, .. } => vec!["received".to_owned()],
    }
}

/// A close, from the fullest telling to the shortest: who ended it and how,
/// its lifetime, bytes out/in, then the error, retransmissions and smoothed
/// RTT. Who ended it goes before the bytes do (an RST's direction tells).
fn close_details(facts: &CloseFacts, age: Option<&str>) -> Vec<String> {
    let how = match facts.kind {
        CloseKind::Fin => "fin",
        CloseKind::RstSent => "rst_sent",
        CloseKind::RstReceived => "rst_rcvd",
        CloseKind::Timeout => "timeout",
    };
    let who_how = match facts.closed_by {
        Some(side) => format!("{} {how}", side.name()),
        None => how.to_owned(),
    };
    let bytes = format!("{}/{}", Bytes(facts.bytes_sent), Bytes(facts.bytes_received));
    let error = facts.error.map(|error| error.to_string());
    let retransmits = (facts.retransmits > 0).then(|| format!("{}retx", facts.retransmits));
    let rtt = format!("rtt {}", Brief(facts.srtt));
    let join = |facts: &[Option<&str>]| facts.iter().flatten().copied().collect::<Vec<_>>().join(" ");
    let (who_how, how, bytes) = (Some(who_how.as_str()), Some(how), Some(bytes.as_str()));
    vec![
        join(&[who_how, age, bytes, error.as_deref(), retransmits.as_deref(), Some(&rtt)]),
        join(&[who_how, age, bytes, error.as_deref(), retransmits.as_deref()]),
        join(&[who_how, age, bytes, error.as_deref()]),
        join(&[who_how, age, bytes]),
        join(&[how, age, bytes]),
        join(&[who_how, age]),
        join(&[who_how]),
        join(&[how]),
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
