//! JSON Lines: one object per record, flushed per batch (records.rs has the
//! keys; the schema is schema/tcptrace.schema.json).
use std::io::{self, Write};

use serde::Serialize;

use super::records::{LineFormat, RecordWriter};

pub struct Json;

impl LineFormat for Json {
    fn write_line(out: &mut impl Write, record: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut *out, record).map_err(io::Error::from)?;
        out.write_all(b"\n")
    }
}

pub type JsonWriter<W> = RecordWriter<W, Json>;

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::Value;

    use super::*;
    use crate::{
        events::{ConnEvent, EventKind},
        output::{EventWriter, LossReason, samples},
        session::Summary,
    };

    fn render(events: &[ConnEvent]) -> String {
        let mut buf = Vec::new();
        let mut writer = JsonWriter::new(&mut buf);
        writer.start(&samples::run()).expect("start");
        for event in events {
            writer.event(event).expect("event");
        }
        writer.lost(SystemTime::UNIX_EPOCH, LossReason::RingBufferFull, 3, 5).expect("lost");
        writer.lost(SystemTime::UNIX_EPOCH, LossReason::OutputStalled, 7, 9).expect("lost");
        writer.stop(SystemTime::UNIX_EPOCH, &Summary { events: 11, lost: 5, ..Summary::default() }).expect("stop");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn story_snapshot() {
        insta::assert_snapshot!(render(&samples::all()));
    }

    fn schema() -> jsonschema::Validator {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/tcptrace.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema file")).expect("JSON");
        jsonschema::draft202012::options().should_validate_formats(true).build(&schema).expect("a valid schema")
    }

    /// Every record kind the writer prints validates against the schema the
    /// README names, so the two cannot drift apart.
    #[test]
    fn every_record_matches_the_schema() {
        let schema = schema();
        let text = render(&samples::all());
        let kinds: Vec<EventKind> = samples::story().iter().map(|e| e.kind).collect();
        assert!(EventKind::ALL.iter().all(|k| kinds.contains(k)), "the story shows every kind");
        let mut seen = Vec::new();
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).expect("JSON");
            let errors: Vec<String> = schema.iter_errors(&record).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{line}\n{errors:#?}");
            seen.push(record["event"].as_str().expect("event").to_owned());
        }
        assert_eq!(seen.first().map(String::as_str), Some("start"));
        assert_eq!(seen.last().map(String::as_str), Some("stop"));
        assert!(seen.iter().any(|kind| kind == "lost"));
    }

    /// The schema is strict: a key too many, one missing, or a wrong type fails.
    #[test]
    fn broken_records_fail_the_schema() {
        let schema = schema();
        let line = render(&samples::all()).lines().nth(1).expect("an event").to_owned();
        let good: Value = serde_json::from_str(&line).expect("JSON");
        assert!(schema.is_valid(&good), "{line}");
        let breakages: [fn(&mut serde_json::Map<String, Value>); 4] = [
            |record| drop(record.insert("surprise".into(), Value::from(1))),
            |record| drop(record.remove("conn_id")),
            |record| drop(record.insert("lport".into(), Value::from("80"))),
            |record| drop(record.insert("v".into(), Value::from(2))),
        ];
        for (i, breakage) in breakages.iter().enumerate() {
            let mut broken = good.clone();
            breakage(broken.as_object_mut().expect("object"));
            assert!(!schema.is_valid(&broken), "breakage {i} passed: {broken}");
        }
    }
}
