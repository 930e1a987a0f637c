//! Least privilege: once the programs are attached and the listeners seeded,
//! tcptrace gives up what only starting needed.
//!
//! Reading the ring buffer is reading memory already mapped; reading the
//! loss counters is a map lookup on an fd tcptrace holds; detaching is
//! closing fds. None of it needs a capability on Linux 5.19 and later, so
//! every capability goes: effective, permitted, inheritable, ambient and the
//! bounding set. Linux 5.8 to 5.18 with `kernel.unprivileged_bpf_disabled`
//! set refuse every bpf() command, even on fds already open, to a process
//! without CAP_BPF; there CAP_BPF alone is kept, so losses are still counted.
//! Which case applies is found by trying the lookup without it, not by
//! comparing kernel versions (distributions backport).
//!
//! Nothing read at event time needs a capability today. A later feature that
//! reads /proc/PID/exe of connection owners at event time would need
//! CAP_SYS_PTRACE (the kernel's ptrace read check guards it; /proc/PID/cgroup,
//! comm and cmdline need none) and must add it to what is kept here, knowing
//! that CAP_SYS_PTRACE also lets a process attach to any other one.
use std::collections::HashSet;

use aya::maps::{MapError, PerCpuArray};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};
use tcptrace_common::counter;

use crate::{error::PrivilegeError, loader::Tracer};

/// The user to become after attaching (`--user`), resolved at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// What the process holds after [`drop_after_attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities still held (effective and permitted): none, or CAP_BPF
    /// where the kernel needs it for map lookups.
    pub kept: CapsHashSet,
    /// Whether the bounding set could be emptied (it takes CAP_SETPCAP).
    pub bounding_emptied: bool,
    pub user: Option<RunAs>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kept: Vec<String> = self.kept.iter().map(ToString::to_string).collect();
        kept.sort();
        if kept.is_empty() {
            write!(f, "dropped every capability")?;
        } else {
            write!(f, "dropped every capability but {} (owners' executables", kept.join(", "))?;
            if self.kept.contains(&Capability::CAP_BPF) {
                write!(f, "; this kernel's map lookups")?;
            }
            write!(f, ")")?;
        }
        if !self.bounding_emptied {
            write!(f, " (bounding set kept: no CAP_SETPCAP)")?;
        }
        write!(f, "; no_new_privs")?;
        match &self.user {
            Some(user) => write!(f, "; running as {} (uid {}, gid {})", user.name, user.uid, user.gid),
            None => Ok(()),
        }
    }
}

/// Gives up every capability the running tracer does not need, sets
/// no_new_privs and makes the process undumpable (no other process of its
/// user can ptrace it or take its BPF fds), and becomes `user` if given.
/// The tracer's fds stay open: they are what it reads from.
pub fn drop_after_attach(tracer: &Tracer, user: Option<&RunAs>) -> Result<Dropped, PrivilegeError> {
    only_thread()?;
    // Naming an owner's executable reads /proc/PID/exe at event time: a
    // ptrace-mode check that other users' processes (and root's, holding
    // more capabilities than we will) pass only with CAP_SYS_PTRACE.
    let mut kept = HashSet::from([Capability::CAP_SYS_PTRACE]);
    if lookups_need_cap_bpf(tracer)? {
        kept.insert(Capability::CAP_BPF);
    }

    caps::clear(None, CapSet::Ambient).map_err(caps_error("clearing the ambient set"))?;
    let bounding = caps::read(None, CapSet::Bounding).map_err(caps_error("reading the bounding set"))?;
    let bounding_emptied = if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in bounding.difference(&kept) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(caps_error("dropping from the bounding set"))?;
        }
        true
    } else {
        // no_new_privs, set below, keeps an execve from regaining anything,
        // so the bounding set left as it is gives nothing back.
        log::info!("capability bounding set left as it is: emptying it takes CAP_SETPCAP");
        bounding.is_subset(&kept)
    };

    if let Some(user) = user {
        switch_user(user, !kept.is_empty())?;
    }
    // Effective first: it must stay a subset of permitted.
    caps::set(None, CapSet::Effective, &kept).map_err(caps_error("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(caps_error("setting the permitted set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_error("clearing the inheritable set"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|source| PrivilegeError::Prctl { what: "PR_SET_DUMPABLE", source })?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|source| PrivilegeError::Prctl { what: "PR_SET_NO_NEW_PRIVS", source })?;

    let permitted = caps::read(None, CapSet::Permitted).map_err(caps_error("reading the permitted set"))?;
    if permitted != kept {
        return Err(PrivilegeError::StillHeld(format!("{permitted:?}")));
    }
    Ok(Dropped { kept, bounding_emptied, user: user.cloned() })
}

/// Capabilities, no_new_privs and keep-caps belong to each thread, so no
/// other may be running. The start-up threads (BTF, sock_diag) are joined by
/// now, but a joined thread leaves /proc/self/task a moment after join
/// returns: allow it that moment.
fn only_thread() -> Result<(), PrivilegeError> {
    let started = std::time::Instant::now();
    loop {
        let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count).map_err(PrivilegeError::Threads)?;
        if threads == 1 {
            return Ok(());
        }
        if started.elapsed() > std::time::Duration::from_millis(500) {
            return Err(PrivilegeError::Threaded(threads));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether reading the loss counters, a bpf() map lookup on an fd we hold,
/// fails without CAP_BPF (Linux before 5.19 with unprivileged_bpf_disabled).
/// Tried with an empty effective set, which is then restored.
fn lookups_need_cap_bpf(tracer: &Tracer) -> Result<bool, PrivilegeError> {
    const NAME: &str = "COUNTERS";
    let map = tracer.ebpf.map(NAME).ok_or(PrivilegeError::MissingMap(NAME))?;
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(map).map_err(|source| PrivilegeError::Map { name: NAME, source })?;
    let effective = caps::read(None, CapSet::Effective).map_err(caps_error("reading the effective set"))?;
    caps::clear(None, CapSet::Effective).map_err(caps_error("clearing the effective set"))?;
    let lookup = counters.get(&counter::LOST_EVENTS, 0);
    caps::set(None, CapSet::Effective, &effective).map_err(caps_error("restoring the effective set"))?;
    match lookup {
        Ok(_) => Ok(false),
        Err(MapError::SyscallError(error)) if error.io_error.raw_os_error() == Some(libc::EPERM) => Ok(true),
        Err(source) => Err(PrivilegeError::Map { name: NAME, source }),
    }
}

/// No supplementary groups, then the user's group, then the user. With
/// `keep_caps`, permitted capabilities survive the change of uid (the
/// effective set is emptied by it and set again by the caller).
fn switch_user(user: &RunAs, keep_caps: bool) -> Result<(), PrivilegeError> {
    let failed =
        |step: &'static str| move |source| PrivilegeError::SwitchUser { name: user.name.clone(), step, source };
    if keep_caps {
        caps::securebits::set_keepcaps(true).map_err(caps_error("setting keep-caps"))?;
    }
    nix::unistd::setgroups(&[]).map_err(failed("setgroups"))?;
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    nix::unistd::setresgid(gid, gid, gid).map_err(failed("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(failed("setresuid"))?;
    if keep_caps {
        caps::securebits::set_keepcaps(false).map_err(caps_error("clearing keep-caps"))?;
    }
    Ok(())
}

fn caps_error(what: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivilegeError {
    move |source| PrivilegeError::Capabilities { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_was_kept() {
        let nobody = RunAs { name: "nobody".into(), uid: 65534, gid: 65534 };
        let dropped = Dropped { kept: HashSet::new(), bounding_emptied: true, user: Some(nobody) };
        assert_eq!(
            dropped.to_string(),
            "dropped every capability; no_new_privs; running as nobody (uid 65534, gid 65534)"
        );
        let old_kernel = Dropped {
            kept: HashSet::from([Capability::CAP_BPF, Capability::CAP_SYS_PTRACE]),
            bounding_emptied: false,
            user: None,
        };
        assert_eq!(
            old_kernel.to_string(),
            "dropped every capability but CAP_BPF, CAP_SYS_PTRACE (owners' executables; this kernel's map lookups) \
             (bounding set kept: no CAP_SETPCAP); no_new_privs"
        );
    }
}
