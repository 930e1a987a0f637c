//! logfmt (Heroku, Loki's `| logfmt`): the JSON records' keys and values as
//! `key=value` pairs, one record a line. Values are bare when they can be,
//! else double-quoted with `\"`, `\\` and control characters escaped; null
//! prints as `null`, as go-logfmt does. Nested values flatten into dotted
//! keys (`hooks.0.method=...`).
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::records::{LineFormat, RecordWriter};

pub struct Logfmt;

impl LineFormat for Logfmt {
    fn write_line(out: &mut impl Write, record: &impl Serialize) -> io::Result<()> {
        let value = serde_json::to_value(record).map_err(io::Error::from)?;
        let mut line = String::with_capacity(512);
        flatten(&mut line, "", &value);
        line.push('\n');
        out.write_all(line.trim_start().as_bytes())
    }
}

pub type LogfmtWriter<W> = RecordWriter<W, Logfmt>;

/// Appends ` key=value` for every leaf of `value`, keys joined with dots.
fn flatten(line: &mut String, prefix: &str, value: &Value) {
    let key = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
    match value {
        Value::Object(map) => map.iter().for_each(|(name, value)| flatten(line, &key(name), value)),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, value)| flatten(line, &key(&i.to_string()), value))
        }
        Value::String(text) => {
            line.push(' ');
            line.push_str(prefix);
            line.push('=');
            push_value(line, text);
        }
        other => {
            line.push(' ');
            line.push_str(prefix);
            line.push('=');
            line.push_str(&other.to_string());
        }
    }
}

/// Bare if it has no space, `=`, quote, backslash or control character, and
/// is not empty; otherwise quoted and escaped.
fn push_value(line: &mut String, text: &str) {
    let bare =
        !text.is_empty() && !text.chars().any(|c| c <= ' ' || c == '=' || c == '"' || c == '\\' || c == '\u{7f}');
    if bare {
        line.push_str(text);
        return;
    }
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => line.push_str(&format!("\\u{:04x}", c as u32)),
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{
        output::{EventWriter, LossReason, samples},
        session::Summary,
    };

    fn render() -> String {
        let mut buf = Vec::new();
        let mut writer = LogfmtWriter::new(&mut buf);
        writer.start(&samples::run()).expect("start");
        for event in &samples::all() {
            writer.event(event).expect("event");
        }
        writer.lost(SystemTime::UNIX_EPOCH, LossReason::OutputStalled, 3, 5).expect("lost");
        writer.stop(SystemTime::UNIX_EPOCH, &Summary { events: 11, ..Summary::default() }).expect("stop");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn story_snapshot() {
        insta::assert_snapshot!(render());
    }

    /// Every line parses back, the logfmt way, into the JSON record's keys and values.
    #[test]
    fn parses_back_into_the_json_keys() {
        for line in render().lines() {
            let pairs = parse(line);
            assert!(pairs.first().is_some_and(|(k, v)| k == "v" && v == "1"), "{line}");
            assert!(pairs.iter().any(|(k, _)| k == "severity"), "{line}");
        }
        let established = render().lines().nth(2).map(parse).expect("line");
        let get = |key: &str| established.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(get("event").as_deref(), Some("established"));
        assert_eq!(
            get("cgroup").as_deref(),
            Some("/system.slice/docker-3f4b1c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c.scope")
        );
        let start = render().lines().next().map(parse).expect("start");
        assert!(start.contains(&("hooks.0.purpose".into(), "state changes".into())), "{start:?}");
        assert!(start.contains(&("hooks.1.method".into(), "null".into())), "{start:?}");
    }

    #[test]
    fn quotes_what_must_be_quoted() {
        let mut line = String::new();
        for text in ["plain", "two words", "", "a=b", "say \"hi\"", "back\\slash", "new\nline"] {
            line.push(' ');
            push_value(&mut line, text);
        }
        assert_eq!(line, r#" plain "two words" "" "a=b" "say \"hi\"" "back\\slash" "new\nline""#);
    }

    /// A logfmt reader as Loki's parser reads: key=value, value bare or quoted.
    fn parse(line: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            if key.is_empty() {
                return pairs;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(other) => value.push(other),
                            None => break,
                        },
                        c => value.push(c),
                    }
                }
            } else {
                value = chars.by_ref().take_while(|&c| c != ' ').collect();
            }
            pairs.push((key, value));
        }
    }
}
