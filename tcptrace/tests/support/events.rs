//! tcptrace's JSON records: checked against the schema, and picked out by
//! namespace, port and connection.

use serde_json::Value;

/// A JSON record that must match schema/tcptrace.schema.json.
pub fn checked_record(line: &str) -> Value {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/tcptrace.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
        jsonschema::draft202012::options().should_validate_formats(true).build(&schema).expect("valid schema")
    });
    let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let errors: Vec<String> = schema.iter_errors(&record).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "record breaks the schema: {line}\n{errors:#?}");
    record
}

pub fn dump(events: &[Value]) -> String {
    events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

/// Events in namespace `netns` whose local or remote port is `port`.
pub fn of_port(events: &[Value], netns: u64, port: u16) -> Vec<&Value> {
    events.iter().filter(|e| e["netns"] == netns && (e["lport"] == port || e["rport"] == port)).collect()
}

/// How many events of `kind` namespace `netns` has on `port`.
pub fn count(events: &[Value], netns: u64, port: u16, kind: &str) -> usize {
    of_port(events, netns, port).iter().filter(|e| e["event"] == kind).count()
}

/// The first event matching `kind` with local port `lport`, if any.
pub fn find<'a>(events: &[&'a Value], kind: &str, lport: u16) -> Option<&'a Value> {
    events.iter().copied().find(|e| e["event"] == kind && e["lport"] == lport)
}

/// Every event of the connection one of whose events is `anchor`, in order.
pub fn connection<'a>(events: &[&'a Value], anchor: &Value) -> Vec<&'a Value> {
    events.iter().copied().filter(|e| e["conn_id"] == anchor["conn_id"]).collect()
}

/// (old_state, new_state) of the `state` events among `events`, in order.
pub fn transitions(events: &[&Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "state")
        .map(|e| (e["old_state"].as_str().unwrap_or("").to_owned(), e["new_state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}
