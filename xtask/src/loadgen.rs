//! Loopback connection churn for the benchmark: each client thread loops
//! connect, send 64 bytes, read the echo, close; server threads echo. Run it
//! inside a network namespace of its own (the bench does).
//!
//! The server closes first, so TIME_WAIT lands on the server's side, under its
//! listening port, instead of crowding the clients' ephemeral ports. When the
//! clients closed first, connect()'s search for a free port took about a fifth
//! of the generator's samples (`perf record -g`: __inet_hash_connect) and
//! bounded the rate; now it takes 1-2 %, and the CPUs are busy with TCP itself
//! (spreading the clients over 32 destination addresses changed nothing more).
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::cpu::{HostTimes, Usage};

const MESSAGE: [u8; 64] = [b'x'; 64];

/// Runs the churn for `seconds`; prints
/// `connections N seconds S user_s U system_s Y idle I` on stdout: the
/// generator's own CPU time and the host's idle share over the same window.
pub fn run(seconds: f64, clients: usize, port: u16) -> Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).context("bind the echo server")?;
    let addr = listener.local_addr()?;
    for _ in 0..clients {
        let listener = listener.try_clone()?;
        thread::spawn(move || serve(&listener));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let host_before = HostTimes::read().ok();
    let usage_before = Usage::own();
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || churn(addr, &stop))
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut connections = 0;
    for worker in workers {
        connections += worker.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let Usage { user_s, system_s } = Usage::own().since(&usage_before);
    // -1: the host's idle share could not be read.
    let idle = host_before.zip(HostTimes::read().ok()).and_then(|(before, after)| after.idle_since(&before));
    let idle = idle.unwrap_or(-1.0);
    #[expect(clippy::print_stdout, reason = "the bench parses this line")]
    {
        println!(
            "connections {connections} seconds {seconds:.3} user_s {user_s:.3} system_s {system_s:.3} idle {idle:.4}"
        );
    }
    Ok(())
}

fn serve(listener: &TcpListener) {
    let mut buf = [0; 64];
    while let Ok((mut conn, _)) = listener.accept() {
        // Echo, then close at once: the server closes first (dropping `conn`).
        let _ = conn.read_exact(&mut buf).and_then(|()| conn.write_all(&buf));
    }
}

/// One client's loop; connections made.
fn churn(addr: SocketAddr, stop: &AtomicBool) -> Result<u64> {
    let mut done = 0;
    let mut buf = [0; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut conn = TcpStream::connect(addr).context("connect")?;
        conn.set_nodelay(true)?;
        conn.write_all(&MESSAGE)?;
        conn.read_exact(&mut buf)?;
        // The server's FIN: read returns 0. Then close our end.
        let _fin = conn.read(&mut buf)?;
        done += 1;
    }
    Ok(done)
}
