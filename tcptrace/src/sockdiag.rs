//! TCP sockets as the kernel lists them through sock_diag netlink (what `ss`
//! reads). A state filter makes the kernel walk only the tables that state
//! lives in: listeners come from the listening hash, so a host with 130,000
//! established or TIME_WAIT sockets costs nothing extra.
use std::{collections::HashMap, fs::File, io, net::SocketAddr, path::Path};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

/// Listening TCP sockets (IPv4 and IPv6) of one network namespace: inode ->
/// local port. `netns` names the namespace (`/proc/PID/ns/net`); None: ours.
pub fn listeners(netns: Option<&Path>) -> io::Result<HashMap<u64, u16>> {
    listening(&open(netns)?)
}

/// The listeners of `socket`'s network namespace: inode -> local port.
pub fn listening(socket: &Socket) -> io::Result<HashMap<u64, u16>> {
    let mut found = HashMap::new();
    dump_all(socket, StateFlags::LISTEN, |socket| {
        found.insert(socket.inode, socket.local.port());
    })?;
    Ok(found)
}

/// One TCP socket as sock_diag lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSocket {
    pub inode: u64,
    /// `sk_cookie`: asking for it makes the kernel assign one, the one our
    /// kernel programs get (or read) on the socket's next event.
    pub cookie: u64,
    /// Kernel numbering (`tcp_state`).
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The states of a connection some process may still hold: not listeners,
/// not half-open requests, not TIME_WAIT (no socket left to hold).
fn open_states() -> StateFlags {
    StateFlags::ESTABLISHED
        | StateFlags::SYN_SENT
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING
}

/// A sock_diag socket of the network namespace `netns` (None: ours). It
/// lists that namespace's sockets from any thread, with no capability: open
/// them while we can still enter namespaces, dump them later.
pub fn open(netns: Option<&Path>) -> io::Result<Socket> {
    in_netns(netns, open_here)
}

/// The open connections of `socket`'s network namespace, and its
/// listeners (inode -> port): to tell which end of a connection is the
/// server's, and which process listens where.
pub fn connections(socket: &Socket) -> io::Result<(Vec<OpenSocket>, HashMap<u64, u16>)> {
    let (mut open, mut listening) = (Vec::new(), HashMap::new());
    dump_all(socket, open_states() | StateFlags::LISTEN, |socket| {
        if socket.state == LISTEN {
            listening.insert(socket.inode, socket.local.port());
        } else {
            open.push(socket);
        }
    })?;
    Ok((open, listening))
}

const LISTEN: u8 = 10;

/// Runs `ask` in the network namespace `netns` (None: ours).
fn in_netns<T: Send>(netns: Option<&Path>, ask: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let Some(netns) = netns else { return ask() };
    let netns = File::open(netns)?;
    // A netlink socket belongs to the namespace it was created in; setns
    // moves only the calling thread, so a short-lived one does the asking.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(&netns)?;
                ask()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sock_diag thread panicked")))
    })
}

fn enter_netns(netns: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; CLONE_NEWNET changes only this thread.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_here() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Every IPv4 and IPv6 TCP socket of `socket`'s namespace in `states`.
fn dump_all(socket: &Socket, states: StateFlags, mut each: impl FnMut(OpenSocket)) -> io::Result<()> {
    for (family, any) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
        dump(socket, family, any, states.clone(), &mut each)?;
    }
    Ok(())
}

/// One dump request; `each` for every socket in `states`.
fn dump(
    socket: &Socket,
    family: u8,
    socket_id: SocketId,
    states: StateFlags,
    each: &mut impl FnMut(OpenSocket),
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let request = InetRequest { family, protocol: IPPROTO_TCP, extensions: ExtensionFlags::empty(), states, socket_id };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let mut buffer = Vec::with_capacity(64 * 1024);
    loop {
        buffer.clear();
        let size = socket.recv(&mut buffer, 0)?;
        let mut at = 0;
        while at < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[at..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let header = &response.header;
                    let id = &header.socket_id;
                    let cookie = &id.cookie;
                    // Two native-endian u32 halves, low first (sock_diag_save_cookie).
                    let half = |at: usize| {
                        u64::from(u32::from_ne_bytes([cookie[at], cookie[at + 1], cookie[at + 2], cookie[at + 3]]))
                    };
                    each(OpenSocket {
                        inode: u64::from(header.inode),
                        cookie: half(0) | half(4) << 32,
                        state: header.state,
                        local: SocketAddr::new(id.source_address, id.source_port),
                        remote: SocketAddr::new(id.destination_address, id.destination_port),
                    });
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(error) => return Err(error.to_io()),
                _ => {}
            }
            let length = message.header.length as usize;
            if length == 0 {
                break;
            }
            at += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real kernel, no privileges needed: a listener we open must be listed.
    #[test]
    fn lists_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listeners(None).expect("sock_diag");
        assert!(found.values().any(|&p| p == port), "port {port} not in {found:?}");
    }

    /// Both ends of a connection we make, each with its own cookie, and our
    /// listener's port among the listening ones.
    #[test]
    fn lists_our_own_connection_with_cookies() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(server).expect("connect");
        let (_accepted, _) = listener.accept().expect("accept");
        let (open, listening) = connections(&open(None).expect("socket")).expect("sock_diag");
        assert!(listening.values().any(|&port| port == server.port()));
        let ends: Vec<&OpenSocket> =
            open.iter().filter(|s| s.local == server || s.local == client.local_addr().expect("addr")).collect();
        assert_eq!(ends.len(), 2, "{open:?}");
        assert!(ends.iter().all(|s| s.cookie != 0 && s.inode != 0 && s.state == 1), "{ends:?}");
        assert_ne!(ends[0].cookie, ends[1].cookie);
    }
}
