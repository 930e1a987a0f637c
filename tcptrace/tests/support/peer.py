"""Real TCP peers for tcptrace's kernel tests, in the style of the seed primer's
Python socket client. Each prints one line when it has done its part, so the
test knows what happened without sleeping.

  peer.py server HOST PORT COUNT   accept COUNT connections; per connection read
                                   REQUEST bytes, answer RESPONSE bytes, wait for
                                   the client's FIN, then close (client closes first)
  peer.py client HOST PORT         connect, send REQUEST, read RESPONSE, close;
                                   prints the local port the kernel chose
  peer.py refused HOST PORT        connect to a closed port; prints the errno name
"""
import errno
import socket
import sys

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
    listener.bind((host, port))
    listener.listen(16)
    print("listening", flush=True)
    for _ in range(count):
        conn, _ = listener.accept()
        read_exactly(conn, REQUEST)
        conn.sendall(b"r" * RESPONSE)
        while conn.recv(4096):
            pass
        conn.close()
    listener.close()


def client(host, port):
    conn = socket.create_connection((host, port), timeout=10)
    print(conn.getsockname()[1], flush=True)
    conn.sendall(b"q" * REQUEST)
    read_exactly(conn, RESPONSE)
    conn.close()


def refused(host, port):
    conn = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        conn.connect((host, port))
        print("connected", flush=True)
    except OSError as error:
        print(errno.errorcode.get(error.errno, str(error.errno)), flush=True)
    finally:
        conn.close()


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        server(host, port, int(sys.argv[4]))
    elif mode == "client":
        client(host, port)
    elif mode == "refused":
        refused(host, port)
    else:
        sys.exit(f"unknown mode {mode}")
