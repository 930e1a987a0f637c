//! From ring-buffer records to written events: decode, enrich (the owner's
//! identity, the service name), put back in kernel-time order, write.
//!
//! Each CPU's records reach the ring in the order they happened, but two
//! CPUs' records interleave by when they were committed, not by their
//! timestamps (a RST sent on one CPU can land before the connect another CPU
//! stamped earlier). So events wait here until they are `HOLD` old, are
//! sorted, and only then written: a record committed later than that after
//! its timestamp does not occur (the programs stamp and commit in one run).
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};

use crate::{
    config::EventSet,
    events::{ConnEvent, Decoder},
    identity::Resolver,
    metrics::Metrics,
    output::EventWriter,
    services::Services,
    session::Summary,
};

/// How long an event waits for earlier ones from other CPUs.
pub const HOLD: Duration = Duration::from_millis(2);

pub struct Pipeline {
    decoder: Decoder,
    /// The kinds to print; with --metrics the kernel sends more, for counting.
    printed: EventSet,
    metrics: Option<Arc<Metrics>>,
    resolver: Resolver,
    services: Services,
    /// Decoded, not yet written; sorted when written.
    held: Vec<ConnEvent>,
}

impl Pipeline {
    pub fn new(decoder: Decoder, printed: EventSet, metrics: Option<Arc<Metrics>>) -> Self {
        Self { decoder, printed, metrics, resolver: Resolver::new(), services: Services::from_host(), held: Vec::new() }
    }

    /// Takes every record waiting in `ring`; returns how many there were.
    pub fn take(&mut self, ring: &mut RingBuf<MapData>, summary: &mut Summary) -> u64 {
        let mut records = 0;
        while let Some(record) = ring.next() {
            records += 1;
            match self.decoder.decode(&record) {
                Ok(mut event) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.observe(&event);
                    }
                    if !self.printed.contains(event.kind) {
                        continue;
                    }
                    if let Some(owner) = &event.owner {
                        event.identity = self.resolver.identify(owner);
                    }
                    event.service = self.services.of(&event);
                    self.held.push(event);
                }
                Err(error) => {
                    summary.malformed += 1;
                    log::warn!("skipping malformed event: {error}");
                }
            }
        }
        records
    }

    /// Writes, oldest first, the held events at least `HOLD` old (every one
    /// when `all`), up to `limit` events in all; flushes if it wrote any.
    pub fn write(
        &mut self,
        writer: &mut dyn EventWriter,
        summary: &mut Summary,
        limit: u64,
        all: bool,
    ) -> std::io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        // Stable: events with one timestamp keep their ring order.
        self.held.sort_by_key(|event| event.time);
        let cutoff = SystemTime::now() - HOLD;
        let ready = if all { self.held.len() } else { self.held.partition_point(|event| event.time <= cutoff) };
        let mut wrote = false;
        for event in self.held.drain(..ready) {
            if summary.events >= limit {
                break;
            }
            writer.event(&event)?;
            summary.events += 1;
            wrote = true;
        }
        if wrote { writer.flush() } else { Ok(()) }
    }

    /// Events wait to be written.
    pub fn holds_events(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::EventKind,
        output::{JsonWriter, samples::story},
    };

    #[test]
    fn writes_oldest_first_and_holds_the_young() {
        let mut pipeline = Pipeline::new(Decoder::new(Duration::ZERO, Vec::new()), EventSet::of(EventKind::ALL), None);
        let mut events = story();
        let newest = events.iter().map(|e| e.time).max().expect("events");
        events.reverse();
        pipeline.held = events;
        let young = story().remove(0);
        pipeline.held.push(ConnEvent { time: SystemTime::now(), ..young });
        let (mut out, mut summary) = (Vec::new(), Summary::default());
        pipeline.write(&mut JsonWriter::new(&mut out), &mut summary, u64::MAX, false).expect("write");
        let times: Vec<String> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON")["ts"].to_string())
            .collect();
        assert_eq!(times.len(), story().len(), "the young event waits");
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
        assert!(pipeline.holds_events() && pipeline.held[0].time > newest);
        pipeline.write(&mut JsonWriter::new(Vec::new()), &mut summary, u64::MAX, true).expect("write all");
        assert!(!pipeline.holds_events());
    }
}
