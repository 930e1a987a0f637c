//! Typed errors of the library; `main` adds context with anyhow.
use std::path::PathBuf;

/// Reading the kernel's BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read (kernel built without CONFIG_DEBUG_INFO_BTF?).
    #[error("cannot read kernel BTF at {}: {source} (tcptrace needs a kernel built with CONFIG_DEBUG_INFO_BTF)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The data does not start with the BTF magic number.
    #[error("kernel BTF has a bad magic number")]
    BadMagic,
    /// A section runs past the end of the data.
    #[error("kernel BTF is truncated")]
    Truncated,
    /// A type kind this reader does not know, from a newer kernel.
    #[error("kernel BTF has unknown type kind {0}")]
    UnknownKind(u32),
    /// The kernel has no such struct member.
    #[error("kernel BTF has no member {member} in struct {structure}")]
    MissingMember { structure: String, member: String },
    /// The kernel has no such enum value.
    #[error("kernel BTF has no value {name} in enum {enumeration}")]
    MissingEnumerator { enumeration: String, name: String },
    /// The member is a bitfield, which the programs cannot read by offset.
    #[error("struct {structure} member {member} is a bitfield")]
    Bitfield { structure: String, member: String },
}

/// Decoding one ring-buffer record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is not exactly one event long.
    #[error("event record of {0} bytes, expected {expected}", expected = tcptrace_common::EVENT_SIZE)]
    Size(usize),
    /// The event kind byte is not one the kernel side sends.
    #[error("unknown event kind {0}")]
    Kind(u8),
    /// The address family is neither AF_INET nor AF_INET6.
    #[error("unknown address family {0}")]
    Family(u8),
}

/// Loading and attaching the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither root nor the capabilities eBPF tracing needs.
    #[error("root privileges are required (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN): run tcptrace with sudo")]
    NotPrivileged,
    /// tracefs is not mounted and could not be mounted.
    #[error("tracefs is not mounted and mounting it on /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    /// The thread parsing the attach targets' BTF panicked.
    #[error("reading the kernel's BTF failed unexpectedly")]
    BtfThread,
    /// The thread creating the connection map panicked.
    #[error("creating the connection map failed unexpectedly")]
    ConnsThread,
    /// The connection map could not take the object's placeholder's place.
    #[error("cannot put the connection map in place: {0}")]
    ConnsSwap(std::io::Error),
    /// The thread listing the connections open at start panicked.
    #[error("listing the connections open at start failed unexpectedly")]
    SnapshotThread,
    /// A tracepoint's format file could not be read (kernel without it?).
    #[error("cannot read the format of tracepoint {name}: {source}")]
    Tracepoint { name: String, source: std::io::Error },
    /// A tracepoint's record differs from what the kernel programs read.
    #[error(
        "tracepoint {name} has field {field} at {found:?}, tcptrace reads it at offset {expected}: unsupported kernel"
    )]
    Layout { name: String, field: &'static str, expected: usize, found: Option<usize> },
    /// Member offsets could not be found in the kernel's BTF.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// The kernel refused the object or one of its maps.
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    /// No method could attach a hook tcptrace needs (or the one asked for).
    #[error("cannot attach {purpose}: {tried}")]
    Attach { purpose: &'static str, tried: String },
    /// A map the object must contain is missing or has the wrong type.
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    /// The object lacks a map the loader needs.
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
}

/// A tracing session.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Setting up the kernel side failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Writing events failed; `BrokenPipe` means the reader went away.
    #[error("writing events: {0}")]
    Output(#[source] std::io::Error),
    /// Waiting on the ring buffer or for signals failed.
    #[error("event loop: {0}")]
    Poll(#[source] std::io::Error),
    /// Reading the kernel's loss counters failed.
    #[error("reading kernel counters: {0}")]
    Counters(#[source] aya::maps::MapError),
    /// Giving up privileges after attaching failed.
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    /// The --metrics address cannot be listened on (in use, not this host's).
    #[error("--metrics {addr}: cannot listen there: {source}")]
    MetricsListen { addr: std::net::SocketAddr, source: std::io::Error },
}

/// Giving up privileges after attaching (privileges.rs). tcptrace stops
/// rather than run with more than it said it would keep.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// /proc/self/task could not be read to count threads.
    #[error("cannot drop privileges: counting threads in /proc/self/task: {0}")]
    Threads(#[source] std::io::Error),
    /// Capabilities belong to each thread; another thread would keep them.
    #[error("cannot drop privileges: {0} threads are running, and each holds its own capabilities")]
    Threaded(usize),
    /// A capability set could not be read or changed.
    #[error("cannot drop privileges: {what}: {source}")]
    Capabilities { what: &'static str, source: caps::errors::CapsError },
    /// prctl refused (no_new_privs, dumpable).
    #[error("cannot drop privileges: {what}: {source}")]
    Prctl { what: &'static str, source: nix::Error },
    /// setgroups, setresgid or setresuid refused (they take CAP_SETGID and CAP_SETUID).
    #[error("--user {name}: {step} failed: {source} (switching users takes CAP_SETUID and CAP_SETGID)")]
    SwitchUser { name: String, step: &'static str, source: nix::Error },
    /// The capabilities left differ from those meant to be kept.
    #[error("cannot drop privileges: still holding {0}")]
    StillHeld(String),
    /// The map used to learn whether lookups need CAP_BPF is missing.
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    /// Looking up that map failed other than for want of privilege.
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

impl RunError {
    /// The reader of our output went away (`tcptrace | head`): a normal end.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
