//! A busy host for the bench: tens of thousands of idle connections held open
//! beside the churn. A process may hold 20,000 fds here, so helper processes
//! (`xtask hold`, run inside the bench's namespace) each hold both ends of up
//! to PER_HELPER connections to a listener of their own (127.0.1.N, port
//! BASE_PORT + N); they report once all are established and keep them until
//! their stdin closes.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// Connections per helper: both ends are fds, 16,000 of the 20,000 allowed.
pub const PER_HELPER: usize = 8_000;
const BASE_PORT: u16 = 9000;

/// The helper: hold `connections` connections to `addr:port` (both ends), say
/// `held N` on stdout, wait for stdin to close.
pub fn run(connections: usize, addr: Ipv4Addr, port: u16) -> Result<()> {
    let listener = TcpListener::bind((addr, port)).with_context(|| format!("bind {addr}:{port}"))?;
    let mut held = Vec::with_capacity(2 * connections);
    for n in 0..connections {
        let client = TcpStream::connect((addr, port)).with_context(|| format!("connection {n} to {addr}:{port}"))?;
        let (server, _) = listener.accept().context("accept")?;
        held.extend([client, server]);
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "held {connections}")?;
    stdout.flush()?;
    // Until the bench closes our stdin (or ends).
    std::io::stdin().read_to_end(&mut Vec::new())?;
    drop(held);
    Ok(())
}

/// The helpers, from establishment to teardown (on drop).
pub struct Held {
    helpers: Vec<Child>,
}

impl Held {
    /// Starts enough helpers in `netns` for `connections` and waits until all
    /// are established.
    pub fn open(xtask: &Path, netns: &str, connections: usize) -> Result<Self> {
        let count = connections.div_ceil(PER_HELPER);
        let mut held = Self { helpers: Vec::with_capacity(count) };
        let mut reports = Vec::with_capacity(count);
        for helper in 0..count {
            let share = connections / count + usize::from(helper < connections % count);
            let host = u8::try_from(helper + 1).context("too many helpers")?;
            let port = BASE_PORT + u16::from(host);
            let mut child = Command::new("ip")
                .args(["netns", "exec", netns])
                .arg(xtask)
                .args(["hold", "--connections", &share.to_string(), "--port", &port.to_string()])
                .args(["--addr", &Ipv4Addr::new(127, 0, 1, host).to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("start a connection holder")?;
            reports.push(child.stdout.take().context("holder stdout")?);
            held.helpers.push(child);
        }
        // All helpers connect at once; then wait for each one's report.
        for stdout in reports {
            wait_held(stdout)?;
        }
        Ok(held)
    }
}

fn wait_held(stdout: ChildStdout) -> Result<()> {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("held ") {
        bail!("a connection holder failed (its error is above)");
    }
    Ok(())
}

impl Drop for Held {
    fn drop(&mut self) {
        for helper in &mut self.helpers {
            // Closing stdin tells it to let go; reaping it closes the connections.
            drop(helper.stdin.take());
        }
        for helper in &mut self.helpers {
            let _ = helper.wait();
        }
    }
}
