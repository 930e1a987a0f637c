//! The metrics a sample run produces, and the endpoint over real HTTP.
use std::sync::Arc;

use super::{Endpoint, Metrics};
use crate::{attach::HookReport, output::samples, programs::Programs, session::Summary};

fn hooks() -> Vec<HookReport> {
    let hook = |purpose, method: Option<&str>| HookReport {
        purpose,
        method: method.map(str::to_owned),
        refused: Vec::new(),
        net: None,
        programs: Vec::new(),
    };
    vec![
        hook("state changes", Some("tracepoint sock:inet_sock_set_state")),
        hook("accept owner", Some("fexit inet_csk_accept")),
        hook("close owner", None),
    ]
}

fn story_metrics() -> Metrics {
    let metrics = Metrics::new(&hooks(), Programs::default());
    for event in samples::story() {
        metrics.observe(&event);
    }
    metrics
}

/// The value of the one sample line `series` (name and labels, as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[track_caller]
fn assert_series(text: &str, series: &str, expected: f64) {
    assert_eq!(value(text, series), Some(expected), "{series} in:\n{text}");
}

#[test]
fn events_count_by_kind_direction_reason_and_errno() {
    let text = story_metrics().encode().expect("encode");
    for (kind, count) in [
        ("connect", 1.0),
        ("accept", 1.0),
        ("established", 2.0),
        ("close", 3.0),
        ("failed", 1.0),
        ("state", 1.0),
        ("retransmit", 1.0),
        ("reset", 1.0),
    ] {
        assert_series(&text, &format!("tcptrace_events_total{{kind=\"{kind}\"}}"), count);
    }
    assert_series(&text, r#"tcptrace_connections_total{direction="outbound"}"#, 1.0);
    assert_series(&text, r#"tcptrace_connections_total{direction="inbound"}"#, 1.0);
    assert_series(&text, r#"tcptrace_failures_total{reason="refused",errno="ECONNREFUSED"}"#, 1.0);
    assert_series(&text, r#"tcptrace_resets_total{direction="sent"}"#, 1.0);
    assert_series(&text, r#"tcptrace_resets_total{direction="received"}"#, 0.0);
    assert_series(&text, "tcptrace_retransmits_total", 1.0);
    assert!(text.contains("# TYPE tcptrace_events_total counter\n"), "{text}");
}

#[test]
fn histograms_of_handshakes_and_lifetimes_in_seconds() {
    let text = story_metrics().encode().expect("encode");
    assert!(text.contains("# TYPE tcptrace_handshake_seconds histogram\n"), "{text}");
    // The client's handshake took 61 us, the server's 22 us.
    assert_series(&text, r#"tcptrace_handshake_seconds_count{direction="outbound"}"#, 1.0);
    assert_series(&text, r#"tcptrace_handshake_seconds_sum{direction="outbound"}"#, 61e-6);
    assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="outbound",le="5e-05"}"#, 0.0);
    assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="outbound",le="0.0001"}"#, 1.0);
    assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="inbound",le="5e-05"}"#, 1.0);
    assert_series(&text, r#"tcptrace_handshake_seconds_bucket{direction="inbound",le="+Inf"}"#, 1.0);
    // Two closes lived 3.05 and 3.12 ms; the third predates tracing and has no lifetime.
    assert_series(&text, "tcptrace_connection_lifetime_seconds_count", 2.0);
    assert_series(&text, r#"tcptrace_connection_lifetime_seconds_bucket{le="0.001"}"#, 0.0);
    assert_series(&text, r#"tcptrace_connection_lifetime_seconds_bucket{le="0.01"}"#, 2.0);
}

#[test]
fn series_exist_before_the_first_event() {
    let text = Metrics::new(&[], Programs::default()).encode().expect("encode");
    assert_series(&text, r#"tcptrace_events_total{kind="close"}"#, 0.0);
    assert_series(&text, r#"tcptrace_connections_total{direction="inbound"}"#, 0.0);
    assert_series(&text, r#"tcptrace_handshake_seconds_count{direction="outbound"}"#, 0.0);
    assert_series(&text, r#"tcptrace_resets_total{direction="received"}"#, 0.0);
    assert_series(&text, "tcptrace_lost_events_total", 0.0);
    assert!(!text.contains("bpf_run"), "no programs, no run time: {text}");
}

#[test]
fn losses_follow_the_summary_and_never_go_back() {
    let metrics = Metrics::new(&[], Programs::default());
    let summary =
        Summary { lost: 3, untracked: 2, filtered: 40, map_update_failures: 1, malformed: 5, ..Summary::default() };
    metrics.record_totals(&summary);
    metrics.record_totals(&Summary { lost: 7, ..summary });
    metrics.record_totals(&Summary { lost: 6, ..summary });
    let text = metrics.encode().expect("encode");
    assert_series(&text, "tcptrace_lost_events_total", 7.0);
    assert_series(&text, "tcptrace_untracked_connections_total", 2.0);
    assert_series(&text, "tcptrace_filtered_events_total", 40.0);
    assert_series(&text, "tcptrace_map_update_failures_total", 1.0);
    assert_series(&text, "tcptrace_malformed_records_total", 5.0);
}

#[test]
fn hooks_as_info_gauges() {
    let text = story_metrics().encode().expect("encode");
    assert!(text.contains("# TYPE tcptrace_hook_info gauge\n"), "{text}");
    let hook = |labels: &str| value(&text, &format!("tcptrace_hook_info{{{labels}}}"));
    assert_eq!(hook(r#"hook="state changes",method="tracepoint",target="sock:inet_sock_set_state""#), Some(1.0));
    assert_eq!(hook(r#"hook="accept owner",method="fexit",target="inet_csk_accept""#), Some(1.0));
    assert_eq!(hook(r#"hook="close owner",method="none",target="""#), Some(1.0));
}

/// The endpoint over real HTTP: /metrics in the text format, nothing else.
#[tokio::test(flavor = "current_thread")]
async fn endpoint_serves_metrics_only() {
    let endpoint = Endpoint::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = endpoint.local_addr().expect("bound");
    endpoint.serve(Arc::new(story_metrics()));
    let fetch = move |method: &'static str, path: &'static str| {
        tokio::task::spawn_blocking(move || {
            let agent =
                ureq::Agent::new_with_config(ureq::config::Config::builder().http_status_as_error(false).build());
            let url = format!("http://{addr}{path}");
            let mut response = match method {
                "POST" => agent.post(&url).send_empty(),
                _ => agent.get(&url).call(),
            }
            .expect("HTTP");
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
            (response.status().as_u16(), content_type, response.body_mut().read_to_string().expect("body"))
        })
    };
    let (status, content_type, body) = fetch("GET", "/metrics").await.expect("join");
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_series(&body, r#"tcptrace_failures_total{reason="refused",errno="ECONNREFUSED"}"#, 1.0);
    assert_eq!(fetch("GET", "/").await.expect("join").0, 404);
    assert_eq!(fetch("POST", "/metrics").await.expect("join").0, 405);
}
