//! Where the bench's CPU time goes: the host's idle share (/proc/stat), a
//! process's own user and system time (getrusage), another process's CPU
//! clock, and the run time of the eBPF programs a process holds.
use std::{
    collections::HashMap,
    io,
    os::fd::{FromRawFd, OwnedFd},
};

/// The all-CPU line of /proc/stat, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTimes {
    /// idle + iowait.
    idle: u64,
    /// Everything else, steal included (guest time is already inside user).
    busy: u64,
}

impl HostTimes {
    pub fn read() -> io::Result<Self> {
        let text = std::fs::read_to_string("/proc/stat")?;
        Self::parse(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))
    }

    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`.
    fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
        let ticks: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = ticks[..] else {
            return None;
        };
        Some(Self { idle: idle + iowait, busy: user + nice + system + irq + softirq + steal })
    }

    /// The share of all CPUs' time that was idle between `earlier` and `self`.
    pub fn idle_since(&self, earlier: &Self) -> Option<f64> {
        let idle = self.idle.checked_sub(earlier.idle)?;
        let total = idle + self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| idle as f64 / total as f64)
    }
}

/// User and system CPU seconds, all threads of this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub user_s: f64,
    pub system_s: f64,
}

impl Usage {
    pub fn own() -> Self {
        // SAFETY: getrusage fills the struct we pass and reads nothing else.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        Self::from(&usage)
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self { user_s: self.user_s - earlier.user_s, system_s: self.system_s - earlier.system_s }
    }
}

impl From<&libc::rusage> for Usage {
    fn from(usage: &libc::rusage) -> Self {
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Self { user_s: seconds(usage.ru_utime), system_s: seconds(usage.ru_stime) }
    }
}

/// CPU seconds another process has used so far, all its threads (living and
/// ended), to the nanosecond: its process CPU clock.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: both calls only write the out-parameters we pass.
    unsafe {
        let mut clock: libc::clockid_t = 0;
        if libc::clock_getcpuclockid(pid, &mut clock) != 0 {
            return None;
        }
        let mut now: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut now) != 0 {
            return None;
        }
        Some(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
    }
}

/// eBPF run-time statistics (`run_time_ns` in fdinfo) stay on while this is
/// held, and go off with it, even when the bench is killed: the kernel counts
/// the holders of BPF_ENABLE_STATS (and kernel.bpf_stats_enabled) together.
pub struct BpfStats(#[expect(dead_code, reason = "held for its close")] OwnedFd);

impl BpfStats {
    pub fn enable() -> io::Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        // union bpf_attr, enable_stats member: a single __u32 type.
        let attr: u32 = BPF_STATS_RUN_TIME;
        // SAFETY: the kernel reads size_of(attr) bytes of attr and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, &attr, size_of_val(&attr)) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
        // SAFETY: a fresh fd that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Total run time of the eBPF programs a process holds open, each program
/// counted once however many fds it has; None if it holds none.
pub fn bpf_run_time_ns(pid: u32) -> Option<u64> {
    let mut programs = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?.flatten() {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some((id, run_time_ns)) = program_run_time(&info) {
            programs.insert(id, run_time_ns);
        }
    }
    (!programs.is_empty()).then(|| programs.values().sum())
}

/// A program fd's id and run_time_ns; None for other fds (links also name a
/// prog_id, but carry no run time).
fn program_run_time(fdinfo: &str) -> Option<(u32, u64)> {
    let field = |name: &str| fdinfo.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    Some((field("prog_id:")?.parse().ok()?, field("run_time_ns:")?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  100 5 50 1000 20 3 7 4 9 0\ncpu0 50 2 25 500 10 1 3 2 4 0\nintr 1 2\n";
        let earlier = HostTimes::parse(text).expect("cpu line");
        assert_eq!(earlier, HostTimes { idle: 1020, busy: 169 });
        let later = HostTimes { idle: 1020 + 30, busy: 169 + 270 };
        assert_eq!(later.idle_since(&earlier), Some(0.1));
        assert_eq!(earlier.idle_since(&earlier), None);
        assert_eq!(HostTimes::parse("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(HostTimes::parse("cpu  1 2 3\n"), None);
        assert_eq!(HostTimes::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn reads_program_run_time_from_fdinfo() {
        let program = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t26\nprog_jited:\t1\n\
                       prog_tag:\t0123456789abcdef\nmemlock:\t4096\nprog_id:\t42\nrun_time_ns:\t123456\nrun_cnt:\t99\n\
                       recursion_misses:\t0\nverified_insns:\t300\n";
        assert_eq!(program_run_time(program), Some((42, 123_456)));
        let link =
            "pos:\t0\nflags:\t02000000\nlink_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\t0123\nprog_id:\t42\n";
        assert_eq!(program_run_time(link), None);
        assert_eq!(program_run_time("pos:\t0\nflags:\t02\n"), None);
    }
}
