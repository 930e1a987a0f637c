//! From ring-buffer records to written events: decode, enrich (the owner's
//! identity, the service name), put back in kernel-time order, write.
//!
//! Each CPU's records reach the ring in the order they happened, but two
//! CPUs' records interleave by when they were committed, not by their
//! timestamps (a RST sent on one CPU can land before the connect another CPU
//! stamped earlier). So events wait here, in timestamp order, until they are
//! `HOLD` old, and only then are written: a record committed later than that
//! after its timestamp does not occur (the programs stamp and commit in one
//! run). Each goes into its place as it arrives, near the end since the
//! interleaving is slight, rather than the queue being sorted before each
//! write (which moved every held event: a tenth of tcptrace's time under churn).
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};

use crate::{
    config::EventSet,
    events::{ConnEvent, Decoder, Direction, EventKind, Owner},
    filters::Filters,
    identity::Resolver,
    metrics::Metrics,
    output::EventWriter,
    services::Services,
    session::Summary,
    snapshot::Snapshot,
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
    /// Decoded, not yet written, oldest first.
    held: VecDeque<ConnEvent>,
    /// What the snapshot knew of connections the kernel saw open before it
    /// attached (owner, which end we are), by conn_id, until they end.
    predating: HashMap<u64, (Option<Owner>, Direction)>,
    /// The snapshot is still being taken: nothing is written until its lines,
    /// which come first, are in.
    awaiting_snapshot: bool,
}

impl Pipeline {
    pub fn new(decoder: Decoder, printed: EventSet, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            decoder,
            printed,
            metrics,
            resolver: Resolver::new(),
            services: Services::from_host(),
            held: VecDeque::new(),
            predating: HashMap::new(),
            awaiting_snapshot: false,
        }
    }

    /// Holds every event until the snapshot is adopted.
    pub fn await_snapshot(&mut self) {
        self.awaiting_snapshot = true;
    }

    /// The connections open at start: each a `snapshot` event (those the
    /// user's filters admit), and what it knows for their later events,
    /// those already held included.
    pub fn adopt(&mut self, snapshot: &Snapshot, filters: &Filters) {
        self.awaiting_snapshot = false;
        for mut event in snapshot.events(&self.decoder) {
            self.predating.insert(event.conn_id, (event.owner, event.direction));
            if self.printed.contains(EventKind::Snapshot) && filters.admits(&event) {
                self.enrich(&mut event);
                self.hold(event);
            }
        }
        let mut held = std::mem::take(&mut self.held);
        for event in held.iter_mut().filter(|event| event.kind != EventKind::Snapshot) {
            if event.owner.is_none() || event.direction == Direction::Unknown {
                self.recall(event);
                self.enrich(event);
            }
        }
        self.held = held;
    }

    /// The owner's identity and the service name.
    fn enrich(&mut self, event: &mut ConnEvent) {
        if let Some(owner) = &event.owner {
            event.identity = self.resolver.identify(owner);
        }
        event.service = self.services.of(event);
    }

    /// A connection the kernel first saw already open knows no owner or
    /// direction: the snapshot may.
    fn recall(&mut self, event: &mut ConnEvent) {
        let ending = matches!(event.kind, EventKind::Close | EventKind::Failed);
        let known =
            if ending { self.predating.remove(&event.conn_id) } else { self.predating.get(&event.conn_id).copied() };
        let Some((owner, direction)) = known else { return };
        if event.owner.is_none() {
            event.owner = owner;
        }
        if event.direction == Direction::Unknown {
            event.direction = direction;
        }
    }

    /// Takes every record waiting in `ring`; returns how many there were.
    pub fn take(&mut self, ring: &mut RingBuf<MapData>, summary: &mut Summary) -> u64 {
        let mut records = 0;
        while let Some(record) = ring.next() {
            records += 1;
            match self.decoder.decode(&record) {
                Ok(mut event) => {
                    if !self.predating.is_empty() {
                        self.recall(&mut event);
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics.observe(&event);
                    }
                    if !self.printed.contains(event.kind) {
                        continue;
                    }
                    self.enrich(&mut event);
                    self.hold(event);
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
        if self.held.is_empty() || self.awaiting_snapshot {
            return Ok(());
        }
        let cutoff = SystemTime::now() - HOLD;
        let mut wrote = false;
        while summary.events < limit {
            let Some(event) = self.held.pop_front_if(|event| all || event.time <= cutoff) else { break };
            writer.event(&event)?;
            summary.events += 1;
            wrote = true;
        }
        if wrote { writer.flush() } else { Ok(()) }
    }

    /// Into the queue after every event not later than it: events with one
    /// timestamp keep their ring order.
    fn hold(&mut self, event: ConnEvent) {
        let later = self.held.iter().rev().take_while(|held| held.time > event.time).count();
        self.held.insert(self.held.len() - later, event);
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
        for event in events {
            pipeline.hold(event);
        }
        let young = story().remove(0);
        pipeline.hold(ConnEvent { time: SystemTime::now(), ..young });
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
