#!/usr/bin/env python3
"""Serverless functions benchmark (issue 5): `python3 integration/bench/functions.py`.

In one run, on this machine, the same hello-world component (images/functions/hello, built by
images/functions/build.sh into target/functions/hello.wasm):
- served by cloudlet's gateway (`cloudlet serve --gateway`, release build, the function deployed
  through the REST API with max_concurrency 256);
- served by `wasmtime serve -O pooling-allocator=y -S cli=y` (wasmtime-cli 48.0.8 from crates.io, the same
  wasmtime version cloudlet embeds; WASMTIME_BIN or `wasmtime` on PATH).
Load: wrk (Debian), CONNS connections (default 100), 2 threads, DURATION seconds (default 10),
after a 2 s warm-up; requests per second and p99 latency (wrk --latency).

Also, cloudlet only:
- cold start: the first request to a function just deployed, its artifact already in the disk
  cache (the component was deployed before under another name), timed by the client over a
  kept-alive connection; COLD_RUNS runs (default 20), median and max;
- memory per deployed idle function: the daemon's RSS (VmRSS) after deploying IDLE_FNS
  (default 200) distinct components (hello with a custom section making each one unique, so each
  is compiled, cached and loaded on its own) minus before, divided by the count.
Prints a Markdown table; asserts nothing.
"""

import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import free_port, wait_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
WASMTIME = os.environ.get("WASMTIME_BIN") or shutil.which("wasmtime")
HELLO = os.path.join(ROOT, "target/functions/hello.wasm")
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "100"))
COLD_RUNS = int(os.environ.get("COLD_RUNS", "20"))
IDLE_FNS = int(os.environ.get("IDLE_FNS", "200"))


def wait_http(url, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def wrk(url):
    subprocess.run(["wrk", "-t2", f"-c{CONNS}", "-d2s", url], capture_output=True, check=True)
    out = subprocess.run(["wrk", "-t2", f"-c{CONNS}", f"-d{DURATION}s", "--latency", url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0, errors.group(0) if errors else ""


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def unique_component(wasm, i):
    """The component with one more custom section (id 0) at the end: still valid, but another
    SHA-256, so it is compiled and loaded as a function of its own."""
    name = b"cloudlet-bench"
    payload = bytes([len(name)]) + name + f"copy {i}".encode()
    size, n = [], len(payload)
    while True:
        b = n & 0x7F
        n >>= 7
        size.append(b | (0x80 if n else 0))
        if not n:
            break
    return wasm + b"\x00" + bytes(size) + payload


class Cloudlet:
    def __init__(self, work):
        self.dir = os.path.join(work, "cloudlet")
        os.makedirs(self.dir)
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", self.dir, "--http", "127.0.0.1:0", "--gateway", "127.0.0.1:0"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "cloudlet.log"), "w"))
        self.api = wait_file(os.path.join(self.dir, "http.addr"))
        self.gateway = wait_file(os.path.join(self.dir, "gateway.addr"))
        self.token = wait_file(os.path.join(self.dir, "admin.token"))
        wait_http(f"http://{self.api}/readyz")

    def deploy(self, name, wasm, route, concurrency=256):
        c = http.client.HTTPConnection(self.api, timeout=60)
        c.request("POST", f"/v1/functions/deploy?name={name}&route={route}&max_concurrency={concurrency}&project=default", body=wasm,
                  headers={"authorization": f"Bearer {self.token}", "content-type": "application/wasm"})
        r = c.getresponse()
        body = r.read()
        if r.status != 201:
            raise SystemExit(f"deploy {name}: {r.status} {body!r}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def cold_starts(cl, wasm):
    """First-request latency of freshly deployed functions whose artifact is cached."""
    cl.deploy("cold-seed", wasm, "/cold-seed")
    times = []
    host, port = cl.gateway.rsplit(":", 1)
    for i in range(COLD_RUNS):
        cl.deploy(f"cold-{i}", wasm, f"/cold-{i}")
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.connect()
        t = time.perf_counter()
        c.request("GET", f"/cold-{i}")
        r = c.getresponse()
        r.read()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, r.status
        # The same connection, a warm request, for comparison.
        c.close()
    warm = []
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(COLD_RUNS):
        t = time.perf_counter()
        c.request("GET", "/cold-0")
        c.getresponse().read()
        warm.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times), statistics.median(warm)


def idle_memory(cl, wasm):
    time.sleep(1)
    before = rss_kib(cl.proc.pid)
    for i in range(IDLE_FNS):
        cl.deploy(f"idle-{i}", unique_component(wasm, i), f"/idle-{i}")
    time.sleep(1)
    after = rss_kib(cl.proc.pid)
    # Each answers (they are real, loaded functions).
    host, port = cl.gateway.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", f"/idle-{IDLE_FNS - 1}")
    assert c.getresponse().status == 200
    return before, after, (after - before) / IDLE_FNS


def main():
    if not os.path.exists(HELLO):
        subprocess.run(["bash", os.path.join(ROOT, "images/functions/build.sh")], check=True)
    if not WASMTIME:
        raise SystemExit("wasmtime not found: cargo install wasmtime-cli@48.0.8 --locked, or set WASMTIME_BIN")
    wasm = open(HELLO, "rb").read()
    work = tempfile.mkdtemp(prefix="bench-functions-")
    rows = []
    try:
        cl = Cloudlet(work)
        try:
            cl.deploy("hello", wasm, "/")
            wait_http(f"http://{cl.gateway}/")
            c_rps, c_p99, c_bad, c_err = wrk(f"http://{cl.gateway}/")
            cold_med, cold_max, warm_med = cold_starts(cl, wasm)
            before, after, per_fn = idle_memory(cl, wasm)
        finally:
            cl.stop()
        port = free_port()
        ws = subprocess.Popen([WASMTIME, "serve", "-O", "pooling-allocator=y", "-S", "cli=y", "--addr", f"127.0.0.1:{port}", HELLO],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/")
            w_rps, w_p99, w_bad, w_err = wrk(f"http://127.0.0.1:{port}/")
        finally:
            ws.terminate()
            ws.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nhello world, wrk -t2 -c{CONNS} -d{DURATION}s, one run on this machine\n")
    print("| measure | cloudlet gateway | wasmtime serve | ratio |")
    print("|---|---|---|---|")
    print(f"| requests/s | {c_rps:,.0f} | {w_rps:,.0f} | {c_rps / w_rps:.2f} |")
    print(f"| p99 latency, ms | {c_p99:.2f} | {w_p99:.2f} | {c_p99 / w_p99:.2f} |")
    print(f"| non-2xx answers | {c_bad} | {w_bad} | |")
    if c_err or w_err:
        print(f"\nsocket errors: cloudlet {c_err or 'none'}; wasmtime {w_err or 'none'}")
    print(f"\ncold start (first request after deploy, artifact cached), {COLD_RUNS} runs: median {cold_med:.2f} ms, max {cold_max:.2f} ms; "
          f"a warm request on a kept-alive connection: median {warm_med:.2f} ms")
    print(f"memory per idle function: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB for {IDLE_FNS} distinct functions = "
          f"{per_fn:.0f} KiB each")
    print(json.dumps({"cloudlet_rps": c_rps, "wasmtime_rps": w_rps, "cloudlet_p99_ms": c_p99, "wasmtime_p99_ms": w_p99,
                      "cold_median_ms": cold_med, "cold_max_ms": cold_max, "warm_median_ms": warm_med, "idle_kib_per_fn": per_fn}))


if __name__ == "__main__":
    sys.exit(main())
