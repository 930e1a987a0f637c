//! tcptrace's own scheduling priority. Its threads drain the kernel's ring
//! buffer at whatever pace the scheduler gives them; when many busy processes
//! share the CPUs (a dozen processes opening, then closing, 96,000
//! connections at once), tcptrace at the default weight fell behind and a
//! 16 MiB ring overflowed, while at nice -10 a 4 MiB one did not (README,
//! Performance). Linux keeps a nice value per thread and a new thread
//! inherits its creator's, so this runs before any thread starts.
use std::io;

/// What became of the nice value asked for.
#[derive(Debug)]
pub enum Outcome {
    Raised {
        from: i32,
        to: i32,
    },
    /// Started at this priority or a higher one: left as it is.
    AlreadyAtLeast(i32),
    /// The kernel refused (no CAP_SYS_NICE, or RLIMIT_NICE below it).
    Refused {
        kept: i32,
        error: io::Error,
    },
}

/// Raises the calling thread (and so every thread it starts) to `nice`,
/// never lowering it.
pub fn raise_to(nice: i32) -> Outcome {
    let current = current();
    if current <= nice {
        return Outcome::AlreadyAtLeast(current);
    }
    // SAFETY: plain syscall on the calling thread (who = 0).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } == 0 {
        Outcome::Raised { from: current, to: nice }
    } else {
        Outcome::Refused { kept: current, error: io::Error::last_os_error() }
    }
}

/// The calling thread's nice value. getpriority(2) for the calling thread
/// cannot fail, so its -1 is always a nice value, never an error.
fn current() -> i32 {
    // SAFETY: plain syscall on the calling thread (who = 0).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_lowers_a_priority() {
        // On a thread of its own: the test harness's threads keep theirs.
        let outcome = std::thread::spawn(|| raise_to(19)).join().expect("thread");
        assert!(matches!(outcome, Outcome::AlreadyAtLeast(nice) if nice <= 19), "{outcome:?}");
    }

    #[test]
    fn raises_or_says_why_not() {
        let (outcome, after) = std::thread::spawn(|| {
            let outcome = raise_to(-5);
            (outcome, current())
        })
        .join()
        .expect("thread");
        match outcome {
            Outcome::Raised { to, .. } => assert_eq!((to, after), (-5, -5)),
            Outcome::AlreadyAtLeast(nice) => assert!(nice <= -5 && after == nice),
            Outcome::Refused { kept, error } => {
                assert_eq!(kept, after);
                assert_eq!(error.raw_os_error(), Some(libc::EACCES), "{error}");
            }
        }
    }
}
