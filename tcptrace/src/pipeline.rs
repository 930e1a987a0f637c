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
use tcptrace_common::{ListenerKey, Owner as KernelOwner};

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
    predating: foldhash::HashMap<u64, (Option<Owner>, Direction)>,
    /// The snapshot is still being taken: nothing is written until its lines,
    /// which come first, are in.
    awaiting_snapshot: bool,
    /// The user's filters, for events that came without an owner while the
    /// snapshot was pending: the kernel side left the owner filters to us.
    filters: Filters,
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
            predating: foldhash::HashMap::default(),
            awaiting_snapshot: false,
            filters: Filters::default(),
        }
    }

    /// Holds every event until the snapshot is adopted.
    pub fn await_snapshot(&mut self) {
        self.awaiting_snapshot = true;
    }

    /// The connections open at start: each a `snapshot` event (those the
    /// user's filters admit), and what it knows for their later events,
    /// those already held included; and the owners of the listeners open
    /// at start, if walked with the snapshot's dumps (loader.rs): connections
    /// they got meanwhile were born without one.
    pub fn adopt(&mut self, snapshot: &Snapshot, listeners: &HashMap<ListenerKey, KernelOwner>, filters: &Filters) {
        self.awaiting_snapshot = false;
        self.filters = filters.clone();
        let printed = self.printed.contains(EventKind::Snapshot);
        self.predating.reserve(snapshot.len());
        // Made one at a time straight into the queue: a busy host's tens of
        // thousands of lines are not copied through a list on the way.
        let Self { decoder, resolver, services, predating, held, .. } = self;
        let lines = snapshot.events(decoder).filter_map(|mut event| {
            predating.insert(event.conn_id, (event.owner, event.direction));
            (printed && filters.admits(&event)).then(|| {
                enrich(resolver, services, &mut event);
                event
            })
        });
        hold_batch(held, lines, snapshot.len());
        let mut held = std::mem::take(&mut self.held);
        // A listener gone before the walk (closed, or its process exited)
        // had its connections accepted by then: their accept, held too,
        // names the owner.
        let acceptors: HashMap<u64, Owner> = held
            .iter()
            .filter(|event| event.kind == EventKind::Accept)
            .filter_map(|event| Some((event.conn_id, event.owner?)))
            .collect();
        held.retain_mut(|event| {
            if event.kind == EventKind::Snapshot {
                return true;
            }
            let ownerless = event.owner.is_none();
            if ownerless && event.direction == Direction::Inbound {
                self.own_by_listener(event, listeners, &acceptors);
            }
            if ownerless || event.direction == Direction::Unknown {
                self.recall(event);
                self.enrich(event);
            }
            !ownerless || self.filters.admits(event)
        });
        self.held = held;
    }

    /// A passive connection born before its listener's owner reached the
    /// kernel side: that owner (or its acceptor's), for this event and
    /// (through `predating`) the connection's later ones, until its
    /// acceptor takes it over.
    fn own_by_listener(
        &mut self,
        event: &ConnEvent,
        listeners: &HashMap<ListenerKey, KernelOwner>,
        acceptors: &HashMap<u64, Owner>,
    ) {
        let listener = event.netns.and_then(|netns| {
            listeners.get(&ListenerKey { netns, port: event.local.port(), _pad: 0 }).map(Owner::from)
        });
        if let Some(owner) = listener.or_else(|| acceptors.get(&event.conn_id).copied()) {
            self.predating.entry(event.conn_id).or_insert((Some(owner), Direction::Inbound));
        }
    }

    /// The owner's identity and the service name.
    fn enrich(&mut self, event: &mut ConnEvent) {
        enrich(&mut self.resolver, &self.services, event);
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
                    let ownerless = event.owner.is_none();
                    if !self.predating.is_empty() {
                        self.recall(&mut event);
                    }
                    // One the kernel side let past the owner filters just
                    // before the snapshot was adopted (emit.rs).
                    if ownerless && !self.filters.admits(&event) {
                        continue;
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

/// The owner's identity and the service name.
fn enrich(resolver: &mut Resolver, services: &Services, event: &mut ConnEvent) {
    if let Some(owner) = &event.owner {
        event.identity = resolver.identify(owner);
    }
    event.service = services.of(event);
}

/// Into `held` as `Pipeline::hold` would put each of `batch` (oldest first,
/// about `expected` of them), in one pass. The snapshot's lines, all stamped
/// with tracing's start, go in front of every event held while its dumps
/// ran: one at a time, each shifted all of those, and with 60,000 lines
/// behind a busy host's churn the reader stalled for seconds (`bench --busy
/// 30000` lost 200,000 of 660,000 events).
fn hold_batch(held: &mut VecDeque<ConnEvent>, batch: impl IntoIterator<Item = ConnEvent>, expected: usize) {
    let mut earlier = std::mem::take(held).into_iter().peekable();
    held.reserve(earlier.len() + expected);
    for event in batch {
        while let Some(before) = earlier.next_if(|before| before.time <= event.time) {
            held.push_back(before);
        }
        held.push_back(event);
    }
    held.extend(earlier);
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

    /// A batch lands where one `hold` at a time would put each of its
    /// events: after the held ones not later, before the later ones, in order.
    #[test]
    fn holds_a_batch_as_one_at_a_time() {
        let new = || Pipeline::new(Decoder::new(Duration::ZERO, Vec::new()), EventSet::of(EventKind::ALL), None);
        let base = story().remove(0);
        let at = |ms: u64, pid: u32| ConnEvent {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            owner: base.owner.map(|owner| Owner { pid, ..owner }),
            ..base.clone()
        };
        let held = [at(5, 1), at(10, 2), at(10, 3), at(20, 4), at(30, 5)];
        let batch = [at(10, 6), at(10, 7), at(25, 8)];
        let (mut one_by_one, mut batched) = (new(), new());
        for event in &held {
            one_by_one.hold(event.clone());
            batched.hold(event.clone());
        }
        for event in &batch {
            one_by_one.hold(event.clone());
        }
        hold_batch(&mut batched.held, batch.clone(), batch.len());
        let order = |pipeline: &Pipeline| pipeline.held.iter().map(|e| e.owner.map(|o| o.pid)).collect::<Vec<_>>();
        assert_eq!(order(&batched), order(&one_by_one));
        assert_eq!(order(&batched), [1, 2, 3, 6, 7, 4, 8, 5].map(Some));
    }
}
