//! Offline checks of what deploy/ ships: the systemd unit passes
//! `systemd-analyze verify` (and its security review stays under a ceiling),
//! and, as unit tests, the Kubernetes DaemonSet has the shape, arguments,
//! capabilities and mounts tcptrace needs. Neither needs a cluster nor a
//! running systemd.
use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    setup,
    shell::{found, output, run, workspace_root},
};

const UNIT: &str = "deploy/tcptrace.service";
/// The path the unit starts tcptrace from.
const UNIT_BINARY: &str = "/usr/local/bin/tcptrace";
/// `systemd-analyze security` scores exposure from 0.0 (locked down) to 10.0,
/// and takes the ceiling in tenths; the unit scores 3.0 with systemd 252. A
/// change that loosens it fails here.
const EXPOSURE_CEILING: &str = "30";

/// `systemd-analyze verify` on a copy of the unit whose ExecStart names the
/// release binary (verify insists the binary exists; the host stays as it
/// is), then its offline security review against [`EXPOSURE_CEILING`].
pub fn verify_systemd_unit() -> Result<()> {
    if !found("systemd-analyze") {
        setup::packages(&["systemd"])?;
    }
    let root = workspace_root();
    let binary = root.join("target/release/tcptrace");
    ensure!(binary.exists(), "{} is missing: cargo build --release -p tcptrace", binary.display());
    let unit = fs::read_to_string(root.join(UNIT)).with_context(|| format!("read {UNIT}"))?;
    let exec = format!("ExecStart={UNIT_BINARY} ");
    ensure!(unit.contains(&exec), "{UNIT} must start {UNIT_BINARY}");
    let dir = root.join("target/systemd-verify");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let copy = dir.join("tcptrace.service");
    fs::write(&copy, unit.replace(&exec, &format!("ExecStart={} ", binary.display())))
        .with_context(|| format!("write {}", copy.display()))?;
    // verify exits 0 on unknown keys and bad values, which it only prints.
    eprintln!("xtask: systemd-analyze verify {}", copy.display());
    let verify = Command::new("systemd-analyze").arg("verify").arg(&copy).output().context("systemd-analyze verify")?;
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    let about_unit: Vec<&str> = said.lines().filter(|line| line.contains("tcptrace.service")).collect();
    ensure!(verify.status.success() && about_unit.is_empty(), "systemd-analyze verify {UNIT}: {}", said.trim());
    run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", &format!("--threshold={EXPOSURE_CEILING}")])
        .arg(&copy)
        .stdout(std::process::Stdio::null()))?;
    let score = output(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&copy));
    let score = score.as_deref().and_then(|text| text.lines().last()).unwrap_or_default().to_owned();
    eprintln!("xtask: {UNIT}: systemd-analyze verify passed; {}", score.trim());
    Ok(())
}

/// Runs the unit for real: this machine's PID 1 is not systemd (`systemctl`
/// cannot operate), so a systemd-nspawn container boots the host's own /usr
/// (a tmpfs root, private network, the host's kernel) with the unit and the
/// release binary bound in, and its systemd starts the unit. Checks that
/// tcptrace gets ready under the unit's sandbox (system call filter,
/// capability bounding set, no_new_privs), holds no capability afterwards,
/// reports a connection made in the container to the journal as JSON, and
/// stops cleanly.
pub fn run_unit_in_container() -> Result<()> {
    setup::packages(&["systemd-container"])?;
    let root = workspace_root();
    let release = root.join("target/release");
    ensure!(release.join("tcptrace").exists(), "build tcptrace in release mode first");
    let log = root.join("target/systemd-verify/nspawn.log");
    fs::create_dir_all(root.join("target/systemd-verify")).context("create target/systemd-verify")?;
    let mut nspawn = Command::new("systemd-nspawn");
    nspawn
        .args(["--quiet", "--directory=/", "--volatile=yes", "--register=no", "--keep-unit", "--private-network"])
        .arg(format!("--machine=tcptrace-check-{}", std::process::id()))
        // What a host gives its services: the unit bounds them to what it lists.
        // CAP_SYS_RAWIO lets the container's systemd mount tracefs, as a host's does.
        .args([
            "--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_SYS_RAWIO",
            "--system-call-filter=bpf perf_event_open",
        ])
        .arg(format!("--bind-ro={}:/usr/local/bin", release.display()))
        .arg(format!("--bind-ro={}:/etc/systemd/system/tcptrace.service", root.join(UNIT).display()))
        .args(["--console=pipe", "--boot"]);
    eprintln!("xtask: booting the host's systemd in a container (systemd-nspawn) to run {UNIT}");
    let file = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let mut child = nspawn
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start systemd-nspawn")?;
    let result = Container::find(child.id()).and_then(|container| {
        let checked = container.check_unit();
        let _ = container.exec(&["systemctl", "poweroff"]);
        checked
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    result.with_context(|| format!("running {UNIT} under systemd in a container (console: {})", log.display()))
}

/// Connections the unit check makes, 6 events each (connect, accept, two
/// established, two close): more lines than journald lets a unit log in 30 s
/// by default (10,000, scaled up with free disk space: about 33,000 here).
const CONNECTIONS: usize = 10_000;

/// A booted container, entered with nsenter through its init's pid.
struct Container {
    init: u32,
}

impl Container {
    /// Waits for the container's init (nspawn's child) and its manager.
    fn find(nspawn: u32) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let children = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).unwrap_or_default();
            if let Some(init) = children.split_whitespace().next().and_then(|pid| pid.parse().ok()) {
                let container = Self { init };
                // Its manager answers once booting is under way; the unit's
                // start job waits for what it is ordered after.
                let state = container.exec(&["systemctl", "is-system-running"]).unwrap_or_default();
                if ["starting", "running", "degraded"].contains(&state.as_str()) {
                    return Ok(container);
                }
            }
            ensure!(Instant::now() < deadline, "the container's systemd never came up");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// stdout of `command` run inside, whatever its exit status.
    fn exec(&self, command: &[&str]) -> Result<String> {
        let out = Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a"])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .context("cannot run nsenter")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// tcptrace's lines (by the unit's SyslogIdentifier) and systemd's about
    /// the unit (its failures).
    fn journal(&self) -> Result<String> {
        self.exec(&[
            "journalctl",
            "--output=cat",
            "--no-pager",
            "SYSLOG_IDENTIFIER=tcptrace",
            "+",
            "UNIT=tcptrace.service",
        ])
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let journal = self.journal()?;
            if done(&journal) {
                return Ok(journal);
            }
            ensure!(Instant::now() < deadline, "no {what} in the journal:\n{journal}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn check_unit(&self) -> Result<()> {
        self.exec(&["systemctl", "start", "tcptrace.service"])?;
        let ready = "tcptrace: ready";
        let journal = self.wait_for("ready line", |j| j.contains(ready) || j.contains("Failed with result"))?;
        ensure!(journal.contains(ready), "tcptrace failed under the unit:\n{journal}");
        let pid = self.exec(&["systemctl", "show", "--property=MainPID", "--value", "tcptrace.service"])?;
        let status = self.exec(&["cat", &format!("/proc/{pid}/status")])?;
        // CAP_SYS_PTRACE alone (bit 19): tcptrace keeps it to name owners'
        // executables (tcptrace/src/privileges.rs).
        const SYS_PTRACE_ONLY: &str = "0000000000080000";
        for (key, want) in
            [("CapEff", SYS_PTRACE_ONLY), ("CapPrm", SYS_PTRACE_ONLY), ("NoNewPrivs", "1"), ("Seccomp", "2")]
        {
            let got = status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).map(str::trim);
            ensure!(got == Some(want), "tcptrace under the unit: {key} is {got:?}, expected {want}\n{status}");
        }
        // Connections inside the container's own network namespace: more
        // events than journald lets a unit log in 30 s by default, so a unit
        // that leaves its rate limit on loses some here.
        let churn = format!(
            "import socket\ns = socket.create_server(('127.0.0.1', 0), backlog=512)\n\
             for _ in range({CONNECTIONS}):\n    c = socket.create_connection(s.getsockname())\n    \
             a, _ = s.accept()\n    c.close()\n    a.close()"
        );
        self.exec(&["python3", "-c", &churn])?;
        // SIGTERM: tcptrace prints what the kernel queued, then its summary.
        self.exec(&["systemctl", "stop", "tcptrace.service"])?;
        let result =
            self.exec(&["systemctl", "show", "--property=Result", "--property=ExecMainStatus", "tcptrace.service"])?;
        ensure!(result.contains("Result=success") && result.contains("ExecMainStatus=0"), "stopping: {result}");
        // Every event tcptrace printed reached the journal: as many JSON event
        // lines as its closing summary counts (journald may still be catching
        // up). Events dropped while journald stalled are counted as lost.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (summary, lines) = loop {
            let summary = self.exec(&["sh", "-c", "journalctl -o cat --no-pager -t tcptrace | grep ' events, '"])?;
            // Connection events carry a conn_id; start, lost and stop records do not.
            let lines = self.exec(&["sh", "-c", "journalctl -o cat --no-pager -t tcptrace | grep -c '\"conn_id\"'"])?;
            let printed = summary.strip_prefix("tcptrace: ").and_then(|s| s.split_once(' ')).map(|(n, _)| n);
            if printed.is_some_and(|printed| printed == lines) {
                break (summary, lines);
            }
            if Instant::now() > deadline {
                let all = self.exec(&["journalctl", "--output=short-precise", "--no-pager", "--lines=40"])?;
                bail!("the journal has {lines} events, tcptrace's summary says {summary:?}; its last lines:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let ours =
            self.exec(&["sh", "-c", "journalctl -o cat --no-pager -t tcptrace | grep -c '\"comm\":\"python3\"'"])?;
        ensure!(ours.parse::<usize>().unwrap_or(0) >= 2 * CONNECTIONS, "only {ours} events of the connections made");
        eprintln!(
            "xtask: {UNIT} ran under systemd: ready, only CAP_SYS_PTRACE kept, seccomp on, all {lines} events in the journal; {summary}"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::Parser;
    use serde::Deserialize;
    use serde_norway::Value;

    use super::*;
    use crate::{
        docs::cli::{Cli, OutputArg},
        image,
    };

    /// What tcptrace needs to start, the same in every deployment: load and
    /// attach (BPF, PERFMON, NET_ADMIN), enter network namespaces for sock_diag
    /// and mount tracefs (SYS_ADMIN), read other users' /proc/PID/fd for listener
    /// owners (SYS_PTRACE, DAC_READ_SEARCH), empty its bounding set after
    /// attaching (SETPCAP). It drops them all once attached.
    const START_CAPABILITIES: &[&str] =
        &["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "SETPCAP"];
    /// Its priority (--nice): the DaemonSet grants SYS_NICE; the unit sets
    /// Nice= instead, as the capability would raise its exposure score.
    const NICE_CAPABILITY: &str = "SYS_NICE";
    /// Added where tcptrace is run with --user.
    const USER_CAPABILITIES: &[&str] = &["SETUID", "SETGID"];

    fn manifests() -> Vec<Value> {
        let text = fs::read_to_string(workspace_root().join("deploy/kubernetes/tcptrace.yaml")).expect("manifest");
        serde_norway::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).expect("YAML")).collect()
    }

    fn daemonset() -> Value {
        let docs = manifests();
        docs.into_iter().find(|doc| doc["kind"] == "DaemonSet").expect("a DaemonSet")
    }

    fn strings(value: &Value) -> Vec<String> {
        value.as_sequence().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    #[test]
    fn every_document_is_a_kubernetes_object() {
        for doc in manifests() {
            for field in ["apiVersion", "kind", "metadata"] {
                assert!(!doc[field].is_null(), "{field} missing: {doc:?}");
            }
            assert!(doc["metadata"]["name"].is_string(), "{doc:?}");
        }
    }

    #[test]
    fn daemonset_selects_its_own_pods() {
        let ds = daemonset();
        assert_eq!(ds["apiVersion"], "apps/v1");
        assert_eq!(ds["metadata"]["namespace"], "tcptrace");
        let selector = ds["spec"]["selector"]["matchLabels"].as_mapping().expect("matchLabels");
        let labels = ds["spec"]["template"]["metadata"]["labels"].as_mapping().expect("pod labels");
        assert!(!selector.is_empty());
        for (key, value) in selector {
            assert_eq!(labels.get(key), Some(value), "pod labels lack {key:?}");
        }
    }

    #[test]
    fn daemonset_sees_the_host() {
        let pod = &daemonset()["spec"]["template"]["spec"];
        // hostPID: /proc is the host's (listener owners, --netns by pid);
        // hostNetwork: sock_diag answers for the host's namespace.
        assert_eq!(pod["hostPID"], true);
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["automountServiceAccountToken"], false, "tcptrace never talks to the API server");
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1);
        let mounts: Vec<(String, bool)> = containers[0]["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .map(|m| (m["mountPath"].as_str().expect("mountPath").to_owned(), m["readOnly"] == true))
            .collect();
        let volumes = pod["volumes"].as_sequence().expect("volumes");
        for path in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/run/netns"] {
            assert!(mounts.contains(&(path.to_owned(), true)), "{path} not mounted read-only: {mounts:?}");
            let mount = containers[0]["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|m| m["mountPath"] == path)
                .expect("mount");
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("volume of mount");
            assert_eq!(volume["hostPath"]["path"], path, "{path} comes from the host's {path}");
        }
    }

    #[test]
    fn container_runs_tcptrace_as_json_with_the_capabilities_it_needs() {
        let pod = &daemonset()["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let command = strings(&container["command"]);
        let args = strings(&container["args"]);
        assert_eq!(command, [image::BINARY], "the binary's path in the image");
        // The arguments are tcptrace's own: parsed by its CLI definition.
        let cli = Cli::try_parse_from(command.iter().chain(&args)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(cli.output, OutputArg::Json, "JSON Lines on stdout for the node's log agent");
        assert!(cli.count.is_none(), "a DaemonSet runs until stopped");
        if let Some(user) = &cli.user {
            assert!(image::PASSWD.lines().any(|l| l.starts_with(&format!("{user}:"))), "{user} not in the image");
        }

        let security = &container["securityContext"];
        assert_eq!(security["privileged"], false, "capabilities, not privileged");
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["runAsUser"], 0, "starts as root; --user switches after attaching");
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        let added: BTreeSet<String> = strings(&security["capabilities"]["add"]).into_iter().collect();
        let mut needed: BTreeSet<String> = START_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
        needed.insert(NICE_CAPABILITY.to_owned());
        if cli.user.is_some() {
            needed.extend(USER_CAPABILITIES.iter().map(|c| (*c).to_owned()));
        }
        assert_eq!(added, needed, "exactly what starting needs");
    }

    /// The unit and the DaemonSet grant the same start-up capabilities.
    #[test]
    fn systemd_unit_bounds_what_starting_needs() {
        let unit = fs::read_to_string(workspace_root().join(UNIT)).expect("unit");
        let setting = |key: &str| {
            unit.lines().find_map(|line| line.strip_prefix(&format!("{key}="))).map(str::trim).map(str::to_owned)
        };
        let bounding: BTreeSet<String> = setting("CapabilityBoundingSet")
            .expect("CapabilityBoundingSet")
            .split_whitespace()
            .map(|cap| cap.trim_start_matches("CAP_").to_owned())
            .collect();
        let needed: BTreeSet<String> = START_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(bounding, needed);
        assert_eq!(setting("Nice").as_deref(), Some("-10"), "tcptrace's default --nice, set by systemd");
        assert_eq!(setting("ExecStart").as_deref(), Some("/usr/local/bin/tcptrace -o json"));
        assert_eq!(setting("StandardOutput").as_deref(), Some("journal"));
        assert_eq!(setting("NoNewPrivileges").as_deref(), Some("yes"));
        assert_eq!(setting("PrivateNetwork"), None, "sock_diag needs the host's network namespace");
        assert_eq!(setting("PrivateUsers"), None, "a user namespace would void the capabilities");
    }
}
