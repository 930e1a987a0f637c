//! TCP sockets as the kernel lists them through sock_diag netlink (what `ss`
//! reads). A state filter makes the kernel walk only the tables that state
//! lives in: listeners come from the listening hash, so a host with 130,000
//! established or TIME_WAIT sockets costs nothing extra.
use std::{collections::HashMap, fs::File, io, path::Path};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// Listening TCP sockets (IPv4 and IPv6) of one network namespace: inode ->
/// local port. `netns` names the namespace (`/proc/PID/ns/net`); None: ours.
pub fn listeners(netns: Option<&Path>) -> io::Result<HashMap<u64, u16>> {
    let Some(netns) = netns else { return listeners_here() };
    let netns = File::open(netns)?;
    // A netlink socket belongs to the namespace it was created in; setns
    // moves only the calling thread, so a short-lived one does the asking.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(&netns)?;
                listeners_here()
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

fn listeners_here() -> io::Result<HashMap<u64, u16>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut found = HashMap::new();
    for (family, any) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
        dump(&socket, family, any, StateFlags::LISTEN, |inode, port| {
            found.insert(inode, port);
        })?;
    }
    Ok(found)
}

/// One dump request; `each(inode, local port)` for every socket in `states`.
fn dump(
    socket: &Socket,
    family: u8,
    socket_id: SocketId,
    states: StateFlags,
    mut each: impl FnMut(u64, u16),
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
                    each(u64::from(response.header.inode), response.header.socket_id.source_port);
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
}
