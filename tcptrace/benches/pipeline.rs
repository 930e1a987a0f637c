//! Per-event userspace cost: decoding a ring-buffer record and writing it in
//! each format. `cargo bench -p tcptrace --bench pipeline`.
use std::{
    hint::black_box,
    io::{self, Write},
    time::Duration,
};

use tcptrace::{
    config::{OutputFormat, TimeFormat},
    events::Decoder,
    output::{self, EventWriter, View},
};
use tcptrace_common::{EVENT_SIZE, Event, direction, family, flags, kind, side, tcp_state};

fn main() {
    divan::main();
}

/// Takes every byte and keeps none. io::Sink would skip formatting entirely.
struct Discard;

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(black_box(buf).len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn record(event_kind: u8) -> Vec<u8> {
    let mut comm = [0; 16];
    comm[..7].copy_from_slice(b"python3");
    let mut addr = [0; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    let event = Event {
        ts_ns: 5_000_000_000,
        start_ns: 4_999_000_000,
        sock_addr: 0xffff_8880_1234_5678,
        bytes_acked: 102,
        bytes_received: 1001,
        saddr: addr,
        daddr: addr,
        tgid: 4242,
        uid: 1000,
        netns: 4026531840,
        handshake_us: 61,
        segs_out: 6,
        segs_in: 5,
        srtt_us: 30,
        sport: 45678,
        dport: 8000,
        comm,
        family: family::INET,
        kind: event_kind,
        old_state: tcp_state::FIN_WAIT2,
        new_state: tcp_state::CLOSE,
        direction: direction::OUTBOUND,
        flags: flags::OWNER_KNOWN | flags::START_KNOWN | flags::ESTABLISHED | flags::FIN_ACKED,
        closed_by: side::LOCAL,
        ..Event::default()
    };
    // SAFETY: Event is repr(C) plain old data without implicit padding.
    unsafe { std::slice::from_raw_parts((&event as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
}

const KINDS: [u8; 3] = [kind::CONNECT, kind::ESTABLISHED, kind::CLOSE];

#[divan::bench(args = KINDS)]
fn decode(bencher: divan::Bencher, event_kind: u8) {
    let decoder = Decoder::new(Duration::from_secs(1_700_000_000), Vec::new());
    let bytes = record(event_kind);
    bencher.bench_local(|| decoder.decode(black_box(&bytes)));
}

fn write(bencher: divan::Bencher, format: OutputFormat, event_kind: u8) {
    let decoder = Decoder::new(Duration::from_secs(1_700_000_000), Vec::new());
    let Ok(event) = decoder.decode(&record(event_kind)) else { return };
    let mut writer: Box<dyn EventWriter> =
        output::writer(format, Discard, View { own_netns: 0, wide: false, time: TimeFormat::TimeOfDay });
    bencher.bench_local(|| writer.event(black_box(&event)));
}

#[divan::bench(args = KINDS)]
fn human(bencher: divan::Bencher, event_kind: u8) {
    write(bencher, OutputFormat::Human, event_kind);
}

#[divan::bench(args = KINDS)]
fn json(bencher: divan::Bencher, event_kind: u8) {
    write(bencher, OutputFormat::Json, event_kind);
}
