//! Byte counts. Every connection here is scripted on both ends (peer.py
//! talk), so the test knows how many data bytes each end sent and received,
//! and each way of ending puts the FINs and RSTs in a different order: the
//! close events must report those exact numbers on both ends.

use serde_json::Value;

use crate::support::{Netns, Tracer, connection, port, require_root, transitions};

/// How a scripted connection ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// The client reads the answer and closes; the server closes on its FIN.
    ClientFin,
    /// The server answers and closes at once, its FIN right behind the data
    /// (an HTTP/1.0 server). With `ack_first` the client's ACK of that FIN
    /// goes out before the client closes, so the server's orphaned socket
    /// hands over to a TIME_WAIT mini-socket in FIN_WAIT2, and the client's
    /// FIN never reaches the socket whose counters tcptrace reads; without it
    /// the ACK rides on the client's FIN.
    ServerFin { ack_first: bool },
    /// The client reads the answer and aborts (SO_LINGER 0) once everything
    /// either way is acknowledged.
    ClientRst,
    /// The server answers and aborts once everything is acknowledged.
    ServerRst,
}

impl Ending {
    /// peer.py talk steps for (server, client). The server starts once the
    /// test tells it the client's connect() returned: a server with nothing
    /// to read could otherwise abort before, and connect() fail ECONNRESET.
    fn scripts(self, request: u64, response: u64) -> (String, String) {
        let (server, client) = match self {
            Self::ClientFin => ("wait recv:Q send:A eof close", "send:Q recv:A close"),
            Self::ServerFin { ack_first: true } => ("wait recv:Q send:A close", "send:Q recv:A eof ack close"),
            Self::ServerFin { ack_first: false } => ("wait recv:Q send:A close", "send:Q recv:A eof close"),
            Self::ClientRst => ("wait recv:Q send:A eof close", "send:Q recv:A drained ack linger0 close"),
            Self::ServerRst => ("wait recv:Q send:A drained ack linger0 close", "send:Q recv:A eof close"),
        };
        let fill = |steps: &str| steps.replace('Q', &request.to_string()).replace('A', &response.to_string());
        (fill(server), fill(client))
    }

    /// (closed_by, close_kind) of the client's close event, then the server's.
    fn expected(self) -> [(&'static str, &'static str); 2] {
        match self {
            Self::ClientFin => [("local", "fin"), ("remote", "fin")],
            Self::ServerFin { .. } => [("remote", "fin"), ("local", "fin")],
            Self::ClientRst => [("local", "rst_sent"), ("remote", "rst_received")],
            Self::ServerRst => [("remote", "rst_received"), ("local", "rst_sent")],
        }
    }
}

/// (request, response) sizes: the HTTP/1.0 exchange (18 bytes in, a
/// reply out), nothing one way, then sizes from a fixed-seed xorshift, from a
/// few bytes to a few hundred kilobytes (many segments, data still in flight
/// at the close).
fn sizes(seed: u64) -> Vec<(u64, u64)> {
    let mut state = seed;
    let mut size = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let limit = [64, 4_000, 300_000][(state % 3) as usize];
        (state >> 8) % limit
    };
    let mut list = vec![(18, 1000), (0, 777), (1234, 0)];
    list.extend((0..3).map(|_| (size(), size())));
    list
}

/// The close events of the connection between the client's `client_port`
/// and the server's `port`, among the events printed from index `from` on
/// (a later connection may reuse a 4-tuple in TIME_WAIT): (client's, server's).
fn closes(tracer: &Tracer, ns: &Netns, port: u16, client_port: u16, from: usize) -> (Value, Value) {
    let end = |lport: u16, rport: u16| {
        move |e: &Value| e["event"] == "close" && e["netns"] == ns.inode && e["lport"] == lport && e["rport"] == rport
    };
    let (client, server) = (end(client_port, port), end(port, client_port));
    let events = tracer.wait_for("both ends to close", |ev| {
        let new = &ev[from.min(ev.len())..];
        new.iter().any(&client) && new.iter().any(&server)
    });
    let new = &events[from..];
    let find = |matches: &dyn Fn(&Value) -> bool| new.iter().find(|e| matches(e)).cloned().expect("close event");
    (find(&client), find(&server))
}

/// One end's bytes are what its process sent and received, and what the
/// other end received and sent.
fn assert_exact_bytes(what: &str, request: u64, response: u64, client: &Value, server: &Value) {
    let counts = |e: &Value| (e["bytes_sent"].as_u64(), e["bytes_received"].as_u64());
    assert_eq!(
        (counts(client), counts(server)),
        ((Some(request), Some(response)), (Some(response), Some(request))),
        "{what}: {request} B request, {response} B response, as (sent, received) of client then server\n{client}\n{server}"
    );
}

/// (closed_by, close_kind) of a close event.
fn how(close: &Value) -> (&str, &str) {
    (close["closed_by"].as_str().unwrap_or("?"), close["close_kind"].as_str().unwrap_or("?"))
}

/// Runs each (request, response) pair as one connection ending `ending`
/// (`ending_of` picks it per connection) and checks both close events.
fn exact_bytes(seed: u64, ending_of: impl Fn(usize) -> Ending) {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-e", "close", "-P", &port.to_string()]);
    for (i, (request, response)) in sizes(seed).into_iter().enumerate() {
        let ending = ending_of(i);
        let what = format!("{ending:?}");
        let (server_steps, client_steps) = ending.scripts(request, response);
        let from = tracer.events().len();
        let mut server = ns.talk_server(port, &server_steps);
        let (mut client, client_port) = ns.talk_client(port, &client_steps);
        server.send_line();
        assert_eq!(client.done(), (request, response), "{what}: what the client moved");
        assert_eq!(server.done(), (response, request), "{what}: what the server moved");
        let (client_close, server_close) = closes(&tracer, &ns, port, client_port, from);
        assert_exact_bytes(&what, request, response, &client_close, &server_close);
        assert_eq!(
            [how(&client_close), how(&server_close)],
            ending.expected(),
            "{what}\n{client_close}\n{server_close}"
        );
    }
    tracer.stop();
}

#[test]
fn bytes_are_exact_when_the_client_closes_first() {
    exact_bytes(1, |_| Ending::ClientFin);
}

#[test]
fn bytes_are_exact_when_the_server_closes_first_with_data_in_flight() {
    exact_bytes(2, |i| Ending::ServerFin { ack_first: i % 2 == 0 });
}

#[test]
fn bytes_are_exact_when_either_end_aborts_with_so_linger_zero() {
    exact_bytes(3, |i| if i % 2 == 0 { Ending::ClientRst } else { Ending::ServerRst });
}

/// Both ends send their FIN before either arrives: nftables drops FINs until
/// both processes have shut down their sending side, then the retransmitted
/// FINs cross. The first to arrive finds its receiver in FIN_WAIT1 (CLOSING).
#[test]
fn bytes_are_exact_in_a_simultaneous_close() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let tracer = Tracer::start(&["-e", "close,state", "-P", &port.to_string()]);
    for (request, response) in [(300, 5000), (0, 1)] {
        ns.drop_on_arrival("hold_fins", "tcp flags & fin == fin");
        let from = tracer.events().len();
        let steps = |first, then| format!("{first}:{request} {then}:{response} drained shut say:shut eof close");
        let mut server = ns.talk_server(port, &steps("recv", "send"));
        let (mut client, client_port) = ns.talk_client(port, &steps("send", "recv"));
        assert_eq!((server.line(), client.line()), ("shut".to_owned(), "shut".to_owned()));
        ns.exec(&["nft", "delete table inet hold_fins"]);
        assert_eq!(client.done(), (request, response));
        assert_eq!(server.done(), (response, request));
        let (client_close, server_close) = closes(&tracer, &ns, port, client_port, from);
        assert_exact_bytes("simultaneous close", request, response, &client_close, &server_close);
        let events = tracer.events();
        let ours: Vec<&Value> = events[from..].iter().collect();
        let client_states = transitions(&connection(&ours, &client_close));
        let server_states = transitions(&connection(&ours, &server_close));
        let active_close = ("ESTABLISHED".to_owned(), "FIN_WAIT1".to_owned());
        let closing = ("FIN_WAIT1".to_owned(), "CLOSING".to_owned());
        assert!(
            client_states.contains(&active_close)
                && server_states.contains(&active_close)
                && (client_states.contains(&closing) || server_states.contains(&closing)),
            "not a simultaneous close: client {client_states:?}, server {server_states:?}"
        );
        for close in [&client_close, &server_close] {
            assert_eq!((&close["closed_by"], &close["close_kind"]), (&Value::from("local"), &Value::from("fin")));
        }
    }
    tracer.stop();
}

/// The client's FIN is lost and the server, its own FIN acknowledged, aborts:
/// the client's socket goes from LAST_ACK to CLOSE on the RST, its FIN never
/// acknowledged (so not counted), while the server's FIN was.
#[test]
fn bytes_are_exact_when_a_rst_answers_our_fin() {
    require_root();
    let ns = Netns::new();
    let port = port();
    let (request, response) = (100, 2000);
    let tracer = Tracer::start(&["-e", "close,state", "-P", &port.to_string()]);
    let mut server = ns.talk_server(port, &format!("recv:{request} send:{response} drained shut wait linger0 close"));
    let (mut client, client_port) =
        ns.talk_client(port, &format!("send:{request} recv:{response} drained eof ack say:eof wait close"));
    assert_eq!(client.line(), "eof");
    ns.drop_on_arrival("lose_fin", &format!("tcp dport {port} tcp flags & fin == fin"));
    client.send_line();
    assert_eq!(client.done(), (request, response));
    server.send_line();
    assert_eq!(server.done(), (response, request));
    let (client_close, server_close) = closes(&tracer, &ns, port, client_port, 0);
    assert_exact_bytes("RST in LAST_ACK", request, response, &client_close, &server_close);
    let events = tracer.events();
    let ours: Vec<&Value> = events.iter().collect();
    let client_states = transitions(&connection(&ours, &client_close));
    assert_eq!(client_states.last(), Some(&("LAST_ACK".to_owned(), "CLOSE".to_owned())), "{client_states:?}");
    assert_eq!(how(&client_close), ("remote", "rst_received"), "{client_close}");
    assert_eq!(server_close["closed_by"], "local", "{server_close}");
    tracer.stop();
}
