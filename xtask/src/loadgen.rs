//! Loopback connection churn for the benchmark: each client thread loops
//! connect, send 64 bytes, read the echo, close; server threads echo. Run it
//! inside a network namespace of its own (the bench does).
use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

const MESSAGE: [u8; 64] = [b'x'; 64];

/// Runs the churn for `seconds`; prints `connections N seconds S` on stdout.
pub fn run(seconds: f64, clients: usize, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).context("bind the echo server")?;
    let addr = listener.local_addr()?;
    for _ in 0..clients {
        let listener = listener.try_clone()?;
        thread::spawn(move || serve(&listener));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || churn(addr, &stop))
        })
        .collect();
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut connections = 0;
    for worker in workers {
        connections += worker.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[expect(clippy::print_stdout, reason = "the bench parses this line")]
    {
        println!("connections {connections} seconds {elapsed:.3}");
    }
    Ok(())
}

fn serve(listener: &TcpListener) {
    let mut buf = [0; 64];
    while let Ok((mut conn, _)) = listener.accept() {
        if conn.read_exact(&mut buf).and_then(|()| conn.write_all(&buf)).is_err() {
            continue;
        }
        // Wait for the client's FIN, then close: the client closes first.
        let _ = conn.read(&mut buf);
    }
}

fn churn(addr: SocketAddr, stop: &AtomicBool) -> Result<u64> {
    let mut done = 0;
    let mut buf = [0; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut conn = TcpStream::connect(addr).context("connect")?;
        conn.set_nodelay(true)?;
        conn.write_all(&MESSAGE)?;
        conn.read_exact(&mut buf)?;
        conn.shutdown(Shutdown::Both)?;
        done += 1;
    }
    Ok(done)
}
