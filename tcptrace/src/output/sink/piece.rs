//! How much of a chunk one write takes, for each kind of output, so that a
//! write that could block is never made while the counts are at stake.
use std::{
    io::{self, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::FileTypeExt,
    },
};

/// How the writer thread hands a chunk to its output.
#[derive(Clone, Copy)]
pub(super) enum Piece {
    /// All of it in one blocking write: files, terminals.
    Whole,
    /// Into a pipe of `capacity` bytes: whole lines, and no more than the
    /// pipe takes at once once it has room, so no write ever blocks halfway.
    /// An empty pipe takes up to its capacity; otherwise a piece is at most
    /// PIPE_BUF bytes, which a pipe with room takes entirely (more system
    /// calls, but only while the reader lags).
    Pipe { capacity: usize },
    /// Into a socket (journald's stream, a collector's): whole lines, at most
    /// [`SOCKET_PIECE`] bytes per send(2) with MSG_DONTWAIT, which leaves the
    /// socket blocking for anyone sharing it.
    Socket,
}

/// A socket piece: one skb of a Unix stream socket (32 KiB of pages plus its
/// head), which the kernel queues entirely or not at all.
const SOCKET_PIECE: usize = 32 << 10;

impl Piece {
    pub(super) fn for_output(out: BorrowedFd<'_>) -> Self {
        let file = out.try_clone_to_owned().map(std::fs::File::from);
        let Ok(kind) = file.and_then(|file| file.metadata()).map(|meta| meta.file_type()) else { return Self::Whole };
        if kind.is_socket() {
            return Self::Socket;
        }
        if !kind.is_fifo() {
            return Self::Whole;
        }
        // SAFETY: F_GETPIPE_SZ reads nothing from us; a bad fd only fails.
        let capacity = unsafe { libc::fcntl(out.as_raw_fd(), libc::F_GETPIPE_SZ) };
        Self::Pipe { capacity: usize::try_from(capacity).unwrap_or(0).max(libc::PIPE_BUF) }
    }

    /// Whether a write, once poll(2) says there is room, never blocks: then
    /// it is made under the lock, and what went out is known exactly whenever
    /// [`Backlog::finish`] gives up. A reader that stalls and comes back,
    /// even after tcptrace has exited, finds no line cut short and no line
    /// that was counted as never written.
    pub(super) fn waits_for_room(self) -> bool {
        !matches!(self, Self::Whole)
    }

    /// How many bytes of `rest` the next write takes.
    fn of(self, rest: &[u8], out: BorrowedFd<'_>) -> usize {
        let limit = match self {
            Self::Whole => return rest.len(),
            Self::Pipe { capacity } if pipe_is_empty(out) => capacity,
            Self::Pipe { .. } => libc::PIPE_BUF,
            Self::Socket => SOCKET_PIECE,
        };
        let whole_lines = rest[..rest.len().min(limit)].iter().rposition(|&b| b == b'\n');
        // A line longer than the limit (none of tcptrace's) goes alone.
        let end = whole_lines.or_else(|| rest.iter().position(|&b| b == b'\n'));
        end.map_or(rest.len(), |i| i + 1)
    }

    /// Writes the next piece of `rest`; sockets without waiting (WouldBlock).
    pub(super) fn write(self, out: &mut (impl Write + AsFd), rest: &[u8]) -> io::Result<usize> {
        let fd = out.as_fd().as_raw_fd();
        let piece = &rest[..self.of(rest, out.as_fd())];
        if !matches!(self, Self::Socket) {
            return out.write(piece);
        }
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: send reads `piece.len()` bytes from a live slice.
        let sent = unsafe { libc::send(fd, piece.as_ptr().cast(), piece.len(), flags) };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}

/// Waits until `out` has room (or an error or hang-up, which the write reports).
pub(super) fn wait_for_room(out: BorrowedFd<'_>) -> io::Result<()> {
    let mut poll = libc::pollfd { fd: out.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    loop {
        // SAFETY: poll reads and writes one live pollfd.
        if unsafe { libc::poll(&mut poll, 1, -1) } >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn pipe_is_empty(pipe: BorrowedFd<'_>) -> bool {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through a pointer to a live one.
    let ok = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued) };
    ok == 0 && queued == 0
}
