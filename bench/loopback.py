"""What the network and HTTP benchmarks (bench/net/run.py,
bench/http/run.py) share: a free loopback address, and a server process
started and waited for until it listens.
"""
import socket
import subprocess
import time


def free_addr():
    """A loopback address with a port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def start_server(name, cmd, addr):
    """Starts `cmd` (quietly) and waits, for 30 s at most, until `addr`
    takes connections: the process. Exits naming `name` if it never does."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    host, port = addr.rsplit(":", 1)
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{name}'s server did not listen")
