//! Network namespaces of the tests' own, so each test sees only its
//! connections and can drop packets without touching the host.

use std::{
    os::unix::fs::MetadataExt,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

/// A network namespace with loopback up, removed on drop.
pub struct Netns {
    pub name: String,
    pub inode: u64,
}

impl Netns {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // One at a time: the first `ip netns add` on a machine mounts
        // /run/netns over itself, and a second one racing it can leave its
        // name on the directory underneath, where the inode read below is
        // not the namespace's (seen in the fresh VMs, tests in parallel).
        static CREATING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("tcptrace-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        let inode = std::fs::metadata(format!("/run/netns/{name}")).expect("netns file").ino();
        Self { name, inode }
    }

    /// Drops arriving packets that match `nft_match` (nftables table `table`),
    /// as a lossy path would: the sender saw them leave, so it retransmits.
    /// Dropping on output instead only gives the sender EPERM.
    pub fn drop_on_arrival(&self, table: &str, nft_match: &str) {
        self.exec(&["nft", &format!("add table inet {table}")]);
        self.exec(&["nft", &format!("add chain inet {table} in {{ type filter hook input priority 0; }}")]);
        self.exec(&["nft", &format!("add rule inet {table} in {nft_match} drop")]);
    }

    /// Runs a command inside the namespace (nft, sysctl, tc) and requires success.
    pub fn exec(&self, command: &[&str]) {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(command));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A port no other test uses at the same time.
pub fn port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Namespaces are per test, so only tests sharing one could collide.
    20000 + NEXT.fetch_add(1, Ordering::Relaxed) as u16
}
