//! peer.py, the Python TCP client and server, run inside a test's namespace:
//! the ways to start it, and the running process.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, channel},
    thread,
};

use super::{Netns, PATIENCE, wait_bounded};

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/peer.py")
}

/// peer.py's source, for a user who may not reach the build tree: given to
/// Python on its command line, so no copy is left behind.
fn peer_source() -> String {
    std::fs::read_to_string(peer_script()).expect("read peer.py")
}

impl Netns {
    /// Starts a peer.py mode inside the namespace. `ip netns exec` execs, so
    /// the child's pid is the Python process's pid.
    pub fn peer(&self, args: &[&str]) -> Peer {
        self.peer_via(&[], None, args)
    }

    /// A peer started through `wrapper` (e.g. setpriv, to run as another
    /// user), naming its own process `comm` (PR_SET_NAME) when given.
    pub fn peer_via(&self, wrapper: &[&str], comm: Option<&str>, args: &[&str]) -> Peer {
        self.peer_in(None, wrapper, comm, args)
    }

    /// As `peer_via`, the process first moved into the cgroup whose
    /// `cgroup.procs` file is given (before `ip netns exec`, which mounts a
    /// sysfs of the namespace's own, without the cgroup mounts).
    pub fn peer_in(&self, cgroup_procs: Option<&str>, wrapper: &[&str], comm: Option<&str>, args: &[&str]) -> Peer {
        let mut cmd = match cgroup_procs {
            Some(procs) => {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &format!("echo $$ > {procs} && exec \"$@\""), "sh", "ip"]);
                cmd
            }
            None => Command::new("ip"),
        };
        cmd.args(["netns", "exec", &self.name]).args(wrapper);
        if wrapper.is_empty() {
            cmd.arg("python3").arg(peer_script());
        } else {
            // Another user may not reach the build tree or a python3 under
            // root's home: the system's python3, given the source itself.
            cmd.args(["/usr/bin/python3", "-c"]).arg(peer_source());
        }
        cmd.args(args);
        if let Some(comm) = comm {
            cmd.env("PEER_COMM", comm);
        }
        Peer::spawn(cmd)
    }

    /// Starts a server for `count` connections and waits until it listens.
    pub fn server(&self, host: &str, port: u16, count: u32) -> Peer {
        let mut server = self.peer(&["server", host, &port.to_string(), &count.to_string()]);
        assert_eq!(server.line(), "listening");
        server
    }

    /// Runs one client to completion; returns its pid and local port.
    pub fn client(&self, host: &str, port: u16) -> (u32, u16) {
        self.client_with(host, port, &[])
    }

    /// A client with peer.py options (`linger0`); returns its pid and local port.
    pub fn client_with(&self, host: &str, port: u16, options: &[&str]) -> (u32, u16) {
        let port = port.to_string();
        let args: Vec<&str> = ["client", host, &port].into_iter().chain(options.iter().copied()).collect();
        let mut client = self.peer(&args);
        let local_port = client.line().parse().expect("client prints its local port");
        let pid = client.pid();
        assert!(client.wait().success(), "client failed");
        (pid, local_port)
    }

    /// peer.py talk accept: takes one connection on `port`, then runs `steps`
    /// (space-separated, see peer.py); returns once it listens.
    pub fn talk_server(&self, port: u16, steps: &str) -> Peer {
        let port = port.to_string();
        let args: Vec<&str> = ["talk", "accept", "127.0.0.1", &port].into_iter().chain(steps.split(' ')).collect();
        let mut server = self.peer(&args);
        assert_eq!(server.line(), "listening");
        server
    }

    /// peer.py talk connect: connects to `port`, then runs `steps`; returns
    /// once connected, with the local port the kernel chose.
    pub fn talk_client(&self, port: u16, steps: &str) -> (Peer, u16) {
        let port = port.to_string();
        let args: Vec<&str> = ["talk", "connect", "127.0.0.1", &port].into_iter().chain(steps.split(' ')).collect();
        let mut client = self.peer(&args);
        let local_port = client.line().parse().expect("client prints its local port");
        (client, local_port)
    }

    /// Makes `count` connections to a server of peer.py's own, one after the
    /// other, as fast as Python can; returns when all have closed.
    pub fn churn(&self, host: &str, port: u16, count: u32) {
        let mut churn = self.peer(&["churn", host, &port.to_string(), &count.to_string()]);
        assert_eq!(churn.line(), "done");
        assert!(churn.wait().success(), "churn failed");
    }
}

/// A child process whose stdout lines arrive on a channel.
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(mut cmd: Command) -> Self {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn line(&mut self) -> String {
        self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("peer {} printed nothing", self.pid()))
    }

    pub fn wait(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child)
    }

    /// Waits for a talking peer's last line, "done SENT RECEIVED", and its
    /// successful exit: the data bytes its send() and recv() calls moved.
    pub fn done(&mut self) -> (u64, u64) {
        let line = self.line();
        let counts: Vec<u64> =
            line.strip_prefix("done ").unwrap_or_default().split(' ').filter_map(|n| n.parse().ok()).collect();
        assert_eq!(counts.len(), 2, "peer {} said {line:?}, not done SENT RECEIVED", self.pid());
        assert!(self.wait().success(), "peer {} failed", self.pid());
        (counts[0], counts[1])
    }

    /// Ends the peer if it is still waiting (a server whose client never came).
    pub fn wait_or_kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes the peer's stdin (a `hold`ing peer lets go of everything).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Writes a line to the peer's stdin (a `wait`ing client goes on).
    pub fn send_line(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("write to peer");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
