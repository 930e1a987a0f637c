//! tracefs: mounted if missing, and the record layouts of the tracepoints the
//! kernel programs read, checked against what the programs assume.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use tcptrace_common::tracepoint::{TupleLayout, send_reset, set_state, sk, sk_skb, sock_length, synack, sys_exit};

use crate::error::LoadError;

const MOUNT_POINT: &str = "/sys/kernel/tracing";
const DEBUGFS_MOUNT: &str = "/sys/kernel/debug/tracing";

/// The tracefs root, mounting it first if no one has (some systems boot without it).
pub fn root() -> Result<PathBuf, LoadError> {
    for dir in [MOUNT_POINT, DEBUGFS_MOUNT] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let source = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(PathBuf::from(MOUNT_POINT)) } else { Err(LoadError::Tracefs(std::io::Error::last_os_error())) }
}

/// A record's fields: (name, offset, size), and its print format.
#[derive(Debug, Default)]
pub struct Format {
    fields: Vec<(String, usize, usize)>,
    print: String,
}

impl Format {
    pub fn read(root: &Path, category: &str, event: &str) -> Result<Self, LoadError> {
        let path = root.join("events").join(category).join(event).join("format");
        let text = fs::read_to_string(&path)
            .map_err(|source| LoadError::Tracepoint { name: format!("{category}:{event}"), source })?;
        Ok(Self::parse(&text))
    }

    /// Lines like `field:__u16 sport; offset:24; size:2; signed:0;` (tab separated).
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.trim().split(';').map(str::trim);
                let declaration = parts.next()?.strip_prefix("field:")?;
                let name = declaration.rsplit(' ').next()?.split('[').next()?.to_owned();
                let offset = parts.next()?.strip_prefix("offset:")?.parse().ok()?;
                let size = parts.next()?.strip_prefix("size:")?.parse().ok()?;
                Some((name, offset, size))
            })
            .collect();
        let print = text.lines().find_map(|line| line.strip_prefix("print fmt:")).unwrap_or_default().to_owned();
        Self { fields, print }
    }

    /// The names `__print_symbolic(REC->FIELD, { 0, "NAME" }, ...)` gives a
    /// field's values, indexed by value (gaps empty).
    pub fn symbols(&self, field: &str) -> Vec<Arc<str>> {
        let marker = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print.find(&marker) else { return Vec::new() };
        let mut names: Vec<Arc<str>> = Vec::new();
        for entry in self.print[start + marker.len()..].split('{').skip(1) {
            let Some((value, rest)) = entry.split_once(',') else { break };
            let Ok(value) = value.trim().parse::<usize>() else { break };
            let Some(name) = rest.split('"').nth(1) else { break };
            if value > 4096 {
                break;
            }
            if names.len() <= value {
                names.resize(value + 1, Arc::from(""));
            }
            names[value] = Arc::from(name);
            if rest.trim_start().split('"').nth(2).is_some_and(|tail| tail.trim_start().starts_with("})")) {
                break;
            }
        }
        names
    }

    fn field(&self, name: &str) -> Option<(usize, usize)> {
        self.fields.iter().find(|(n, ..)| n == name).map(|&(_, offset, size)| (offset, size))
    }

    fn has_all(&self, expected: &[(&'static str, usize)]) -> bool {
        self.mismatch(expected).is_none()
    }

    fn mismatch(&self, expected: &[(&'static str, usize)]) -> Option<(&'static str, usize, Option<usize>)> {
        expected.iter().find_map(|&(name, offset)| {
            let found = self.field(name).map(|(o, _)| o);
            (found != Some(offset)).then_some((name, offset, found))
        })
    }
}

fn with_tuple(fields: &[(&'static str, usize)], tuple: &TupleLayout) -> Vec<(&'static str, usize)> {
    fields.iter().copied().chain(tuple.fields()).collect()
}

/// The kernel's names for `enum sk_rst_reason` (empty before 6.10).
pub fn reset_reasons(root: &Path) -> Vec<Arc<str>> {
    Format::read(root, "tcp", "tcp_send_reset").map(|format| format.symbols("reason")).unwrap_or_default()
}

/// Which layout tcp:tcp_send_reset has on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResetLayout {
    /// Before 6.10: ports and addresses as fields, no reason.
    Fields,
    /// Since 6.10: a reason and sockaddr images.
    WithReason,
}

/// Checks every record the programs read; returns the tcp_send_reset layout.
pub fn check_layouts(root: &Path) -> Result<SendResetLayout, LoadError> {
    let expect = |category: &str, event: &str, fields: &[(&'static str, usize)]| -> Result<(), LoadError> {
        let format = Format::read(root, category, event)?;
        match format.mismatch(fields) {
            None => Ok(()),
            Some((field, expected, found)) => {
                Err(LoadError::Layout { name: format!("{category}:{event}"), field, expected, found })
            }
        }
    };
    expect(
        "sock",
        "inet_sock_set_state",
        &with_tuple(
            &[("skaddr", set_state::SKADDR), ("oldstate", set_state::OLDSTATE), ("newstate", set_state::NEWSTATE)],
            &set_state::TUPLE,
        ),
    )?;
    expect("sock", "inet_sock_set_state", &[("protocol", set_state::PROTOCOL)])?;
    let sk_skb_fields = with_tuple(&[("skaddr", sk_skb::SKADDR), ("state", sk_skb::STATE)], &sk_skb::TUPLE);
    expect("tcp", "tcp_retransmit_skb", &sk_skb_fields)?;
    expect(
        "tcp",
        "tcp_retransmit_synack",
        &with_tuple(&[("skaddr", synack::SKADDR), ("req", synack::REQ)], &synack::TUPLE),
    )?;
    expect("tcp", "tcp_receive_reset", &with_tuple(&[("skaddr", sk::SKADDR)], &sk::TUPLE))?;
    expect("tcp", "tcp_destroy_sock", &[("skaddr", sk::SKADDR)])?;
    // Linux 6.3+; without them that hook is simply not attached.
    for event in ["sock_send_length", "sock_recv_length"] {
        if root.join("events/sock").join(event).exists() {
            expect("sock", event, &[("sk", sock_length::SK), ("protocol", sock_length::PROTOCOL)])?;
        }
    }
    for exit in ["sys_exit_connect", "sys_exit_accept4", "sys_exit_accept"] {
        expect("syscalls", exit, &[("ret", sys_exit::RET)])?;
    }
    let send_reset_format = Format::read(root, "tcp", "tcp_send_reset")?;
    let with_reason = [
        ("skbaddr", send_reset::SKBADDR),
        ("skaddr", send_reset::SKADDR),
        ("state", send_reset::STATE),
        ("reason", send_reset::REASON),
        ("saddr", send_reset::SADDR),
        ("daddr", send_reset::DADDR),
    ];
    if send_reset_format.has_all(&with_reason) {
        return Ok(SendResetLayout::WithReason);
    }
    expect("tcp", "tcp_send_reset", &with_tuple(&[("skbaddr", sk_skb::SKBADDR)], &sk_skb::TUPLE))?;
    expect("tcp", "tcp_send_reset", &sk_skb_fields)?;
    Ok(SendResetLayout::Fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET_STATE: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"";

    #[test]
    fn parses_fields_with_arrays_and_pointers() {
        let format = Format::parse(SET_STATE);
        assert_eq!(format.field("skaddr"), Some((8, 8)));
        assert_eq!(format.field("oldstate"), Some((16, 4)));
        assert_eq!(format.field("saddr_v6"), Some((40, 16)));
        assert_eq!(format.field("common_type"), Some((0, 2)));
        assert_eq!(format.field("print"), None);
    }

    #[test]
    fn reads_symbolic_names() {
        let text = "format:\n\tfield:int reason;\toffset:28;\tsize:4;\tsigned:0;\n\nprint fmt: \"reason=%s\", __print_symbolic(REC->state, { 1, \"A\" }), __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" }, { 3, \"TCP_RFC7323_PAWS\" }), REC->x";
        let names = Format::parse(text).symbols("reason");
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["NOT_SPECIFIED", "NO_SOCKET", "", "TCP_RFC7323_PAWS"]);
        assert!(Format::parse(text).symbols("absent").is_empty());
    }

    #[test]
    fn reports_the_first_mismatch() {
        let format = Format::parse(SET_STATE);
        assert_eq!(format.mismatch(&[("skaddr", 8), ("oldstate", 16)]), None);
        assert_eq!(format.mismatch(&[("skaddr", 8), ("oldstate", 20)]), Some(("oldstate", 20, Some(16))));
        assert_eq!(format.mismatch(&[("missing", 4)]), Some(("missing", 4, None)));
    }
}
