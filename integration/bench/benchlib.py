"""Helpers shared by the benchmarks of integration/bench/ (imported from the script's folder)."""

import os
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    """`VmRSS` of process `pid`, MiB (0 when it is gone)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_file(path, secs=60):
    """The stripped contents of `path` once it exists and is not empty (e.g. a daemon's
    `http.addr`); exits the benchmark after `secs` seconds."""
    deadline = time.time() + secs
    while time.time() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        time.sleep(0.05)
    raise SystemExit(f"{path} did not appear")
