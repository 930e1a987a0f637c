//! The command line as a user meets it: help, version, bad input, no root.
use std::process::{Command, Output};

fn tcptrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcptrace")).args(args).output().expect("run tcptrace")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_flag() {
    let out = tcptrace(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--output", "--states", "--pid", "--port", "--count", "--metrics", "--version"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// The human view's flags say what they do: the time columns in UTC, quiet
/// keeping the losses.
#[test]
fn help_explains_the_human_view() {
    let out = tcptrace(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "-T, --timestamp",
        "-t, --time-since-start",
        "-q, --quiet",
        "-w, --wide",
        "in UTC",
        "seconds since tracing started",
        "Losses, warnings and errors still go to stderr",
        "fit 120 characters",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
    let short = String::from_utf8_lossy(&tcptrace(&["-h"]).stdout).into_owned();
    assert!(short.contains("-T, --timestamp") && short.contains("-q, --quiet"), "{short}");
}

/// One time column at a time, and only for people: JSON and logfmt always
/// carry RFC 3339 UTC.
#[test]
fn time_columns_are_for_the_human_view() {
    let out = tcptrace(&["-t", "-T"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
    for (args, flag) in [
        (&["-o", "json", "-T"][..], "--timestamp"),
        (&["-o", "logfmt", "--time-since-start"][..], "--time-since-start"),
    ] {
        let out = tcptrace(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "tcptrace: {flag} sets the human output's time column: JSON and logfmt always carry `ts` in RFC 3339 UTC\n"
            )
        );
    }
}

#[test]
fn version() {
    let out = tcptrace(&["--version"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("tcptrace {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_arguments_fail_with_clap_errors() {
    for (args, needle) in [
        (&["--frobnicate"][..], "unexpected argument"),
        (&["-o", "xml"][..], "invalid value"),
        (&["-p", "abc"][..], "invalid value"),
        (&["-P", "70000"][..], "invalid value"),
        (&["--max-sockets", "10"][..], "a number of sockets from 1024 to 67108864"),
        (&["--ring-buffer", "3"][..], "a power of two from 1 to 1024"),
        (&["--nice", "-21"][..], "a nice value from -20 to 19"),
        (&["--nice", "high"][..], "a nice value from -20 to 19"),
    ] {
        let out = tcptrace(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn meaningless_values_get_one_line_errors() {
    for (args, message) in [
        (&["-p", "0"][..], "tcptrace: --pid 0 matches no process: pids start at 1\n"),
        (&["-P", "0"][..], "tcptrace: --port 0 matches no connection: ports start at 1\n"),
        (&["-n", "0"][..], "tcptrace: --count 0 would print nothing: give a count of at least 1\n"),
        (&["-L", "0"][..], "tcptrace: --lport 0 matches no connection: ports start at 1\n"),
        (&["-u", "no-such-user-x"][..], "tcptrace: --uid no-such-user-x: no such user\n"),
        (&["--user", "no-such-user-x"][..], "tcptrace: --user no-such-user-x: no such user\n"),
        (
            &["--netns", "no-such-ns-x"][..],
            "tcptrace: --netns no-such-ns-x: no such network namespace (/run/netns/no-such-ns-x: No such file or directory (os error 2))\n",
        ),
    ] {
        let out = tcptrace(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), message);
    }
}

#[test]
fn a_bad_network_is_a_usage_error() {
    let out = tcptrace(&["--addr", "10.0.0.0/33"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value '10.0.0.0/33' for '--addr <CIDR>': not an address or CIDR"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_metrics_address_is_a_usage_error() {
    for bad in ["localhost:9100", ":9100", "70000", "127.0.0.1"] {
        let out = tcptrace(&["--metrics", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let expected = format!("invalid value '{bad}' for '--metrics <ADDR>': not IP:PORT or a port");
        assert!(stderr(&out).contains(&expected), "{bad}: {}", stderr(&out));
    }
}

/// The address is taken before anything is loaded: a busy one fails in one
/// line naming it, root or not.
#[test]
fn a_busy_metrics_address_fails_in_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let out = tcptrace(&["--metrics", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("tcptrace: --metrics {addr}: cannot listen there: Address already in use (os error 98)\n")
    );
}

/// Run as `nobody`, tcptrace says in one line what it needs and fails.
#[test]
fn without_root_says_what_is_needed() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let out = tcptrace(&[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("root privileges are required"), "{}", stderr(&out));
        return;
    }
    // The build tree may sit where nobody cannot reach it: run a copy from /tmp.
    let dir = std::env::temp_dir().join(format!("tcptrace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("tcptrace");
    std::fs::copy(env!("CARGO_BIN_EXE_tcptrace"), &copy).expect("copy binary");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&copy)
        .output()
        .expect("setpriv (util-linux)");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "tcptrace: root privileges are required (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN): run tcptrace with sudo\n"
    );
}
