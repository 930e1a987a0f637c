//! The writer thread against real pipes and sockets whose readers stall.
use std::{io::Read, os::fd::AsRawFd, time::Duration};

use serde_json::Value;

use super::*;
use crate::output::{JsonWriter, samples::story};

/// A JSON gate writing to a real pipe whose reader the test holds.
fn gate(capacity: usize) -> (Gate<'static>, io::PipeReader) {
    let (reader, writer) = io::pipe().expect("pipe");
    (gate_to(writer, capacity), reader)
}

fn gate_to(out: impl Write + AsFd + Send + 'static, capacity: usize) -> Gate<'static> {
    let (sink, backlog) = spawn(out, capacity).expect("spawn");
    Gate::new(Box::new(JsonWriter::new(sink)), backlog)
}

/// Offers `count` events to a gate whose reader never reads, gives up
/// after 200 ms, and returns how many finish counted as never written.
fn stall_and_finish(gate: &mut Gate<'_>, count: u64) -> u64 {
    let event = &story()[0];
    for _ in 0..count {
        gate.event(event).expect("event");
    }
    gate.finish(Instant::now() + Duration::from_millis(200)).expect("finish")
}

/// Bytes waiting to be read from `fd`.
fn queued_bytes(fd: &impl AsFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through a pointer to a live one.
    let ok = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(ok, 0, "FIONREAD");
    queued as usize
}

/// Reads what `reader` holds, then checks it is whole lines, exactly the
/// events finish did not count as unwritten, and that nothing more comes
/// once finish has given up (the process would have exited).
fn assert_exact(reader: &mut (impl Read + AsFd), offered: u64, unwritten: u64, gate: Gate<'_>) {
    let mut held = vec![0; queued_bytes(reader)];
    reader.read_exact(&mut held).expect("read");
    assert_eq!(held.last(), Some(&b'\n'), "the reader gets whole lines");
    assert_eq!(json_lines(&held).len() as u64 + unwritten, offered);
    drop(gate);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(queued_bytes(reader), 0, "what finish counted as unwritten stays so");
}

/// Every line of `bytes`, each of which must be whole JSON.
fn json_lines(bytes: &[u8]) -> Vec<Value> {
    let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    lines.map(|l| serde_json::from_slice(l).expect("whole JSON lines")).collect()
}

#[test]
fn events_go_out_whole_and_in_order() {
    let (mut gate, mut reader) = gate(BACKLOG_BYTES);
    let events = story();
    for event in &events {
        gate.event(event).expect("event");
    }
    assert_eq!(gate.finish(Instant::now() + Duration::from_secs(10)).expect("finish"), 0);
    drop(gate);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("read");
    let out = json_lines(&out);
    let kinds: Vec<&str> = out.iter().filter_map(|v| v["event"].as_str()).collect();
    let expected: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, expected);
}

/// A reader that stops: events beyond the pipe and the backlog are dropped
/// and counted without ever blocking; when it reads again, a `lost` record
/// sits exactly at the gap.
#[test]
fn a_stalled_reader_costs_events_not_time() {
    let (mut gate, mut reader) = gate(64 << 10);
    let event = &story()[0];
    let mut offered = 0u64;
    while gate.stalled() == 0 {
        gate.event(event).expect("event");
        gate.flush().expect("flush");
        offered += 1;
        assert!(offered < 100_000, "the backlog never filled");
    }
    for _ in 0..9 {
        gate.event(event).expect("event");
    }
    assert_eq!(gate.stalled(), 10);
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("read");
        out
    });
    while gate.backlog.is_full() {
        std::thread::sleep(Duration::from_millis(1));
    }
    gate.event(event).expect("event after the gap");
    assert_eq!(gate.finish(Instant::now() + Duration::from_secs(10)).expect("finish"), 0);
    drop(gate);
    let out = reading.join().expect("reader");
    let out = json_lines(&out);
    let gap = out.iter().position(|v| v["event"] == "lost").expect("a lost record");
    assert_eq!((out[gap]["reason"].as_str(), out[gap]["count"].as_u64()), (Some("output_stalled"), Some(10)));
    assert_eq!(gap as u64, offered - 1, "every event before the gap arrived");
    assert_eq!(out.len(), gap + 2, "one event after the gap");
}

#[test]
fn finish_gives_up_on_a_reader_that_never_returns() {
    let (mut gate, _reader) = gate(BACKLOG_BYTES);
    let event = &story()[0];
    // More than the pipe holds, less than the backlog.
    for _ in 0..1000 {
        gate.event(event).expect("event");
    }
    let unwritten = gate.finish(Instant::now() + Duration::from_millis(200)).expect("finish");
    assert!(unwritten > 0 && unwritten < 1000, "{unwritten}");
}

/// What a stalled pipe holds is whole lines, and exactly the events that
/// finish did not count as unwritten.
#[test]
fn a_stalled_pipe_holds_whole_lines_and_counts_are_exact() {
    let (mut gate, mut reader) = gate(BACKLOG_BYTES);
    let unwritten = stall_and_finish(&mut gate, 1000);
    assert!(unwritten > 0, "the pipe took everything");
    assert_exact(&mut reader, 1000, unwritten, gate);
}

/// The same for a socket (journald's stream): no line counted as unwritten
/// is on its way when finish gives up.
#[test]
fn a_stalled_socket_holds_whole_lines_and_counts_are_exact() {
    let (mut reader, writer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut gate = gate_to(writer, BACKLOG_BYTES);
    let unwritten = stall_and_finish(&mut gate, 5000);
    assert!(unwritten > 0, "the socket took everything");
    assert_exact(&mut reader, 5000, unwritten, gate);
}

#[test]
fn a_reader_that_went_away_is_a_broken_pipe() {
    let (mut gate, reader) = gate(BACKLOG_BYTES);
    drop(reader);
    gate.event(&story()[0]).expect("queued before the thread notices");
    gate.flush().expect("queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.check().is_ok() {
        assert!(Instant::now() < deadline, "the write never failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = gate.flush().expect_err("the reader is gone");
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}
