"""Real TCP peers for tcptrace's kernel tests, in the style of the seed primer's
Python socket client. Each prints one line when it has done its part, so the
test knows what happened without guessing.

  peer.py server HOST PORT COUNT   accept COUNT connections; per connection read
                                   REQUEST bytes, answer RESPONSE bytes, wait for
                                   the client's FIN (or RST), then close
  peer.py client HOST PORT [wait] [linger0]
                                   connect; print the local port the kernel chose;
                                   with `wait`, read a line from stdin first; send
                                   REQUEST, read RESPONSE, close (with `linger0`:
                                   SO_LINGER 0, so the close is a RST)
  peer.py forking HOST PORT COMM   a pre-fork server (sshd, apache): accept one
                                   connection, fork a worker named COMM that
                                   prints "worker PID", answers REQUEST with
                                   RESPONSE, waits for the client's FIN and
                                   closes once the listener has closed its
                                   copy, which it does at once; then waits
  peer.py attempt HOST PORT        a blocking connect; prints "connected" or the
                                   errno name it failed with
  peer.py churn HOST PORT COUNT    COUNT connections, one after the other, to a
                                   server of its own (a thread); each sends
                                   REQUEST, reads RESPONSE and closes; prints
                                   "done"
  peer.py hold HOST PORT COUNT     COUNT idle connections to a listener of its
                                   own, both ends held; prints "held COUNT",
                                   then closes them all at once (by exiting)
                                   when stdin closes
  peer.py rawsyn SPORT DPORT       a bare SYN from 127.0.0.1:SPORT to
                                   127.0.0.1:DPORT through a raw socket (the
                                   seed's scapy SYN, without scapy): no socket
                                   owns SPORT, so nobody completes the handshake
  peer.py talk connect|accept HOST PORT STEP...
                                   one connection, scripted: `connect` prints
                                   the local port the kernel chose, `accept`
                                   prints "listening" and takes one connection;
                                   then the steps run in order (see TALK_STEPS)
                                   and it prints "done SENT RECEIVED", the data
                                   bytes that send() and recv() moved

Set PEER_COMM to give the process that command name (PR_SET_NAME) first.
"""
import ctypes
import errno
import fcntl
import os
import resource
import socket
import struct
import sys
import termios
import time
import threading

REQUEST = 100
RESPONSE = 1000


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def server(host, port, count):
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host == "::":
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind((host, port))
    listener.listen(16)
    print("listening", flush=True)
    for _ in range(count):
        conn, _ = listener.accept()
        try:
            read_exactly(conn, REQUEST)
            conn.sendall(b"r" * RESPONSE)
            while conn.recv(4096):
                pass
        except ConnectionResetError:
            pass
        conn.close()
    listener.close()


def client(host, port, options):
    conn = socket.create_connection((host, port), timeout=30)
    print(conn.getsockname()[1], flush=True)
    if "wait" in options:
        sys.stdin.readline()
    conn.sendall(b"q" * REQUEST)
    read_exactly(conn, RESPONSE)
    if "linger0" in options:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


TALK_STEPS = """
  send:N    send N bytes
  recv:N    read exactly N bytes (fails on an early end; 0 reads nothing)
  eof       read until the peer's FIN or RST (fails on data)
  shut      shutdown(SHUT_WR): our FIN goes out, reading goes on
  drained   wait until the peer acknowledged all we sent (SIOCOUTQ is 0)
  ack       send the ACK the kernel may be holding back (TCP_QUICKACK)
  linger0   SO_LINGER 0: close() will abort with a RST
  wait      read a line from stdin
  say:WORD  print WORD
  close     close the socket
  backlog   (accept's first step only) leave the connection in the
            listener's backlog until a line comes on stdin, then accept
"""


def talk(role, host, port, steps):
    if role == "connect":
        conn = socket.create_connection((host, port), timeout=30)
        print(conn.getsockname()[1], flush=True)
    else:
        listener = socket.socket(family_of(host), socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1)
        print("listening", flush=True)
        if steps[:1] == ["backlog"]:
            sys.stdin.readline()
            steps = steps[1:]
        conn, _ = listener.accept()
        listener.close()
        conn.settimeout(30)
    sent = received = 0
    for step in steps:
        name, _, arg = step.partition(":")
        if name == "send":
            # send() of nothing would still report a RST that already came.
            if int(arg):
                conn.sendall(b"d" * int(arg))
            sent += int(arg)
        elif name == "recv":
            data = read_exactly(conn, int(arg))
            received += len(data)
            if len(data) != int(arg):
                sys.exit(f"recv:{arg} got {len(data)} bytes")
        elif name == "eof":
            try:
                data = conn.recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                sys.exit(f"eof: got {len(data)} more bytes")
        elif name == "shut":
            conn.shutdown(socket.SHUT_WR)
        elif name == "drained":
            deadline = time.monotonic() + 30
            while struct.unpack("i", fcntl.ioctl(conn, termios.TIOCOUTQ, b"\0" * 4))[0]:
                if time.monotonic() > deadline:
                    sys.exit("drained: the peer never acknowledged everything")
                time.sleep(0.005)
        elif name == "ack":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        elif name == "linger0":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif name == "wait":
            sys.stdin.readline()
        elif name == "say":
            print(arg, flush=True)
        elif name == "close":
            conn.close()
        else:
            sys.exit(f"unknown step {step}")
    print(f"done {sent} {received}", flush=True)
def churn(host, port, count):
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)

    def serve():
        for _ in range(count):
            conn, _ = listener.accept()
            read_exactly(conn, REQUEST)
            conn.sendall(b"r" * RESPONSE)
            while conn.recv(4096):
                pass
            conn.close()

    server = threading.Thread(target=serve)
    server.start()
    for _ in range(count):
        conn = socket.create_connection((host, port), timeout=30)
        conn.sendall(b"q" * REQUEST)
        read_exactly(conn, RESPONSE)
        conn.close()
    server.join()
    listener.close()
    print("done", flush=True)


def hold(host, port, count):
    # Both ends of every connection are fds: up to the hard limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)
    held = []
    for _ in range(count):
        held.append(socket.create_connection((host, port), timeout=30))
        held.append(listener.accept()[0])
    print(f"held {count}", flush=True)
    sys.stdin.read()
    # Exiting closes every fd at once, as a proxy restart does.
    os._exit(0)


def set_comm(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)


def forking(host, port, worker_comm):
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(16)
    print("listening", flush=True)
    conn, _ = listener.accept()
    # The worker closes only after the listener has closed its copy: else the
    # listener's close could be the last one (a slow parent, as under QEMU),
    # and the teardown would be the listener's.
    parent_closed, closed_signal = os.pipe()
    worker = os.fork()
    if worker == 0:
        listener.close()
        os.close(closed_signal)
        set_comm(worker_comm)
        print(f"worker {os.getpid()}", flush=True)
        read_exactly(conn, REQUEST)
        conn.sendall(b"r" * RESPONSE)
        while conn.recv(4096):
            pass
        os.read(parent_closed, 1)
        conn.close()
        os._exit(0)
    os.close(parent_closed)
    conn.close()
    os.write(closed_signal, b"x")
    listener.close()
    _, status = os.waitpid(worker, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


def attempt(host, port):
    conn = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        conn.connect((host, port))
        print("connected", flush=True)
    except OSError as error:
        print(errno.errorcode.get(error.errno, str(error.errno)), flush=True)
    finally:
        conn.close()


def pending(host, port):
    """A non-blocking connect() left in flight until stdin says to give up."""
    conn = socket.socket(family_of(host), socket.SOCK_STREAM)
    conn.setblocking(False)
    try:
        conn.connect((host, port))
    except BlockingIOError:
        pass
    print("pending", flush=True)
    sys.stdin.readline()
    conn.close()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def rawsyn(sport, dport):
    addr = socket.inet_aton("127.0.0.1")
    syn = 0x02
    header = struct.pack("!HHLLBBHHH", sport, dport, 12345, 0, 5 << 4, syn, 65535, 0, 0)
    pseudo = struct.pack("!4s4sBBH", addr, addr, 0, socket.IPPROTO_TCP, len(header))
    header = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(header), 0, 0, 64, socket.IPPROTO_TCP, 0, addr, addr)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(ip + header, ("127.0.0.1", 0))
    print("sent", flush=True)


if __name__ == "__main__":
    if os.environ.get("PEER_COMM"):
        # Names this process (comm) as the environment asks, for --comm tests.
        set_comm(os.environ["PEER_COMM"])
    mode = sys.argv[1]
    if mode == "rawsyn":
        rawsyn(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    if mode == "talk":
        talk(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
        sys.exit(0)
    host, port = sys.argv[2], int(sys.argv[3])
    if mode == "server":
        server(host, port, int(sys.argv[4]))
    elif mode == "client":
        client(host, port, sys.argv[4:])
    elif mode == "churn":
        churn(host, port, int(sys.argv[4]))
    elif mode == "forking":
        forking(host, port, sys.argv[4])
    elif mode == "hold":
        hold(host, port, int(sys.argv[4]))
    elif mode == "attempt":
        attempt(host, port)
    elif mode == "pending":
        pending(host, port)
    else:
        sys.exit(f"unknown mode {mode}")
