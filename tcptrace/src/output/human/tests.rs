//! The columns, pinned by snapshots, and the 120-column promise.
use std::time::Duration;

use super::{
    units::{Brief, Bytes, Short},
    *,
};
use crate::output::samples;

/// The sample story and the hard cases, as `view` prints them.
fn render(wide: bool, time: TimeFormat) -> String {
    let mut buf = Vec::new();
    let mut writer = HumanWriter::new(&mut buf, View { own_netns: samples::OWN_NETNS, wide, time });
    writer.start(&samples::run_at(samples::started())).expect("header");
    for event in samples::story().iter().chain(&samples::hard_cases()) {
        writer.event(event).expect("event");
    }
    String::from_utf8(buf).expect("utf8")
}

#[test]
fn story_snapshot() {
    insta::assert_snapshot!(render(false, TimeFormat::TimeOfDay));
}

#[test]
fn story_with_dates_snapshot() {
    insta::assert_snapshot!(render(false, TimeFormat::DateTime));
}

#[test]
fn story_since_start_snapshot() {
    insta::assert_snapshot!(render(false, TimeFormat::SinceStart));
}

#[test]
fn wide_story_snapshot() {
    insta::assert_snapshot!(render(true, TimeFormat::TimeOfDay));
}

#[test]
fn wide_story_with_dates_snapshot() {
    insta::assert_snapshot!(render(true, TimeFormat::DateTime));
}

#[test]
fn wide_story_since_start_snapshot() {
    insta::assert_snapshot!(render(true, TimeFormat::SinceStart));
}

/// Every default line fits, whatever the time column, and every column
/// starts where the header says.
#[test]
fn default_lines_fit_and_align() {
    for time in [TimeFormat::TimeOfDay, TimeFormat::DateTime, TimeFormat::SinceStart] {
        let text = render(false, time);
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        // PID is right-aligned: its column starts where EVENT's padding ends.
        let columns: Vec<usize> = ["EVENT", "USER", "COMM", "LOCAL", "REMOTE", "DETAIL"]
            .iter()
            .map(|name| header.find(&format!(" {name}")).expect("column") + 1)
            .collect();
        for line in lines {
            let chars: Vec<char> = line.chars().collect();
            assert!(chars.len() <= LINE_WIDTH, "{time:?}: {} characters:\n{line}", chars.len());
            for &at in &columns {
                if at < chars.len() {
                    assert!(
                        chars[at - 1] == ' ' && chars[at] != ' ',
                        "{time:?}: a column does not start at {at}:\n{header}\n{line}"
                    );
                }
            }
        }
    }
}

/// The worst IPv4 case fills every column and still tells the close's
/// main facts: how it ended (a received RST: the remote end), its
/// lifetime and the bytes each way.
#[test]
fn the_widest_ipv4_close_keeps_its_main_facts() {
    let text = render(false, TimeFormat::TimeOfDay);
    let worst = " close   4194304 postgre+ kube-contro+ 255.255.255.255:65535 255.255.255.254:65535 ";
    let line = text.lines().find(|line| line.contains(worst)).expect("the widest close");
    assert!(line.ends_with(" rst_rcvd 4.2s 114G/941M"), "{line}");
}

#[test]
fn clipping() {
    // A column after others, cut and padded in place.
    let column = |text: &str, width: usize, cut: Cut| {
        let mut line = format!("12:00 {text}");
        end_column(&mut line, 6, width, cut);
        line.split_off(6)
    };
    assert_eq!(column("kube-controller", 12, Cut::Clip), "kube-contro+");
    assert_eq!(column("kube-contröller", 12, Cut::Clip), "kube-contrö+");
    assert_eq!(column("curl", 12, Cut::Clip), "curl        ");
    assert_eq!(column("kube-controller", 12, Cut::Never), "kube-controller");
    assert_eq!(column("[2001:db8:85a3::8a2e:370:7334]:443", 21, Cut::Address), "[2001:db8:85a3:+]:443");
    assert_eq!(column("255.255.255.255:65535", 21, Cut::Address), "255.255.255.255:65535");
    assert_eq!(column("127.0.0.1:afs3-fileserver", 21, Cut::Address), "127.0.0.1:afs3-files+");
    let mut facts = telling::Facts::default();
    for fact in ["local fin", "4.2s", "1.2M/3.4K", "fin"] {
        facts.add(Some(fact));
    }
    facts.add(None::<&str>);
    let tellings: &[telling::Telling] = &[&[0, 4, 1, 2], &[0, 1], &[3]];
    let fitting = |room, suffix| {
        let mut out = String::new();
        facts.write_fitting(&mut out, tellings, suffix, room);
        out
    };
    assert_eq!(fitting(24, None), " local fin 4.2s 1.2M/3.4K");
    assert_eq!(fitting(23, None), " local fin 4.2s");
    assert_eq!(fitting(3, None), " fin");
    assert_eq!(fitting(2, None), " f+");
    assert_eq!(fitting(23, Some("netns:7")), " local fin 4.2s netns:7");
    assert_eq!(fitting(21, Some("netns:7")), " local fin 4.2s");
}

#[test]
fn dates() {
    let day = |text: &str| humantime::parse_rfc3339(text).expect("date");
    for text in ["2024-02-29T23:59:59.999Z", "2026-12-01T10:22:18.123Z", "2100-03-01T00:00:00.000Z"] {
        let stamp = Stamp { time: day(text), format: TimeFormat::DateTime, origin: day(text), micros: false };
        let mut written = String::new();
        stamp.write(&mut written);
        assert_eq!(written, text.replace('T', " ").replace('Z', ""));
    }
}

#[test]
fn short_durations() {
    assert_eq!(Short(Duration::from_micros(61)).to_string(), "61us");
    assert_eq!(Short(Duration::from_micros(3120)).to_string(), "3.120ms");
    assert_eq!(Short(Duration::from_millis(2500)).to_string(), "2.500s");
}

#[test]
fn brief_durations_and_bytes() {
    let brief = |us| Brief(Duration::from_micros(us)).to_string();
    let cases = [
        (61, "61us"),
        (999, "999us"),
        (3_199, "3.1ms"),
        (250_000, "250ms"),
        (2_590_000, "2.5s"),
        (42_000_000, "42s"),
        (750_000_000, "12m"),
        (18_000_000_000, "5h"),
        (400_000_000_000, "4d"),
    ];
    for (us, text) in cases {
        assert_eq!(brief(us), text);
    }
    let bytes = |n| Bytes(n).to_string();
    let cases = [
        (0, "0"),
        (1023, "1023"),
        (1024, "1.0K"),
        (3_700, "3.6K"),
        (524_288, "512K"),
        (1_048_575, "1023K"),
        (1_300_000, "1.2M"),
        (40 << 30, "40G"),
    ];
    for (n, text) in cases {
        assert_eq!(bytes(n), text);
    }
    assert!((0..64).all(|shift| Bytes((1u64 << shift) - 1).to_string().len() <= 5));
}
