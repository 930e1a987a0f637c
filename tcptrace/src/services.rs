//! Service names of well-known TCP ports, from /etc/services (as `ss` and
//! `netstat` name them), with a built-in table of the common ones for hosts
//! and images without the file.
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _};

use crate::events::{ConnEvent, Direction};

/// The ports people watch most, by their /etc/services names.
const BUILT_IN: &[(u16, &str)] = &[
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "domain"),
    (80, "http"),
    (110, "pop3"),
    (143, "imap"),
    (389, "ldap"),
    (443, "https"),
    (465, "submissions"),
    (587, "submission"),
    (636, "ldaps"),
    (993, "imaps"),
    (995, "pop3s"),
    (1433, "ms-sql-s"),
    (2049, "nfs"),
    (3306, "mysql"),
    (5432, "postgresql"),
    (5672, "amqp"),
    (6379, "redis"),
    (6443, "sun-sr-https"),
    (8080, "http-alt"),
    (9042, "cql"),
    (11211, "memcache"),
    (27017, "mongodb"),
];

pub struct Services {
    by_port: HashMap<u16, Arc<str>>,
}

impl Services {
    /// /etc/services' TCP entries, over the built-in table.
    pub fn from_host() -> Self {
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(etc_services: &str) -> Self {
        let mut by_port: HashMap<u16, Arc<str>> =
            BUILT_IN.iter().map(|&(port, name)| (port, Arc::from(name))).collect();
        let mut from_file = HashMap::<u16, Arc<str>>::new();
        for line in etc_services.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else { continue };
            let Some((port, "tcp")) = port_proto.split_once('/') else { continue };
            if let Ok(port) = port.parse::<u16>() {
                // The first name of a port is its canonical one.
                from_file.entry(port).or_insert_with(|| Arc::from(name));
            }
        }
        by_port.extend(from_file);
        Self { by_port }
    }

    pub fn name(&self, port: u16) -> Option<&Arc<str>> {
        self.by_port.get(&port)
    }

    /// The server side's port and its name: the local port of a connection
    /// we accepted, the remote one of a connection we opened; for one that
    /// predates tracing, the side that has a name (the lower port if both).
    pub fn of(&self, event: &ConnEvent) -> Option<(u16, Arc<str>)> {
        let (local, remote) = (event.local.port(), event.remote.port());
        let named = |port: u16| self.name(port).map(|name| (port, Arc::clone(name)));
        match event.direction {
            Direction::Inbound => named(local),
            Direction::Outbound => named(remote),
            Direction::Unknown => match (named(local), named(remote)) {
                (Some(l), Some(r)) => Some(if l.0 <= r.0 { l } else { r }),
                (l, r) => l.or(r),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_win_and_the_table_fills_in() {
        let services = Services::parse("http 80/tcp www # web\nhttp 80/udp\ncustom 7777/tcp\nudponly 9999/udp\n");
        assert_eq!(services.name(80).map(|n| &**n), Some("http"));
        assert_eq!(services.name(7777).map(|n| &**n), Some("custom"));
        assert_eq!(services.name(9999), None);
        assert_eq!(services.name(22).map(|n| &**n), Some("ssh"), "built in when the file lacks it");
    }

    #[test]
    fn the_server_side_names_the_service() {
        let services = Services::parse("");
        let mut events = crate::output::samples::story();
        let outbound = events.remove(0); // curl -> :8000
        assert!(services.of(&outbound).is_none());
        let mut inbound = events.remove(0); // python3 on :8000
        inbound.local.set_port(80);
        assert_eq!(services.of(&inbound).map(|(port, name)| (port, name.to_string())), Some((80, "http".into())));
    }
}
