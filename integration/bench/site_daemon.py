#!/usr/bin/env python3
"""Benchmark of the site daemon against a peer, etcd (Debian etcd-server), in one run.

Both are durable control-plane stores with an HTTP API that fsync every write (cloudlet: SQLite WAL
with synchronous=FULL; etcd: its WAL). For each we measure, from a second process:

  - idle RSS and PSS 8 s after the start (fresh data dir), and RSS with 10,000 stored resources;
  - create latency (one sequential keep-alive client, 10,000 creates, p50/p99);
  - GET one item (wrk, 2 threads, 10 connections, 10 s, p50/p99, requests/s);
  - list all 10,000 items (wrk, 1 thread, 1 connection, 10 s, p50/p99).

cloudlet stores tokens (a full resource envelope, ~400 bytes of JSON each); etcd stores keys with
values of the same JSON. Prints a Markdown table with cloudlet/etcd ratios and writes JSON to
integration/bench/results/site_daemon.json. Usage: python3 integration/bench/site_daemon.py [N]
"""

import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import rss_mib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
WRK_SECS = int(os.environ.get("WRK_SECS", "10"))


def idle_mem_mib(pid, started):
    """RSS and PSS (MiB, from /proc/PID/smaps_rollup) once `started` is 8 s in the past."""
    time.sleep(max(0.0, started + 8 - time.time()))
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Pss"):
                got[k] = int(v.split()[0]) / 1024
    return got.get("Rss", 0.0), got.get("Pss", 0.0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(host, port, path, method="GET", body=None, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request(method, path, body=body)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{host}:{port}{path} not ready")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url, threads, conns, headers=(), script=None):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{WRK_SECS}s", "--latency", "--timeout", "10s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    lat = {}
    for q, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[q] = float(val) * UNITS[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses from {url}:\n{out}")
    return {"p50_ms": lat["50"], "p99_ms": lat["99"], "rps": rps}


def post_script(path, body, dirpath, name):
    p = os.path.join(dirpath, name)
    with open(p, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
    return p


def run_cloudlet(tmp):
    data = os.path.join(tmp, "cloudlet")
    os.makedirs(data)
    log = open(os.path.join(tmp, "cloudlet.log"), "w")
    started = time.time()
    proc = subprocess.Popen([BIN, "serve", "--data-dir", data, "--http", "127.0.0.1:0"], stdout=log, stderr=log)
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(data, "http.addr")):
        if time.time() > deadline:
            raise SystemExit("cloudlet did not start")
        time.sleep(0.05)
    host, port = open(os.path.join(data, "http.addr")).read().strip().rsplit(":", 1)
    port = int(port)
    wait_http(host, port, "/readyz")
    token = open(os.path.join(data, "admin.token")).read().strip()
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    rss, pss = idle_mem_mib(proc.pid, started)
    r = {"idle_rss_mib": rss, "idle_pss_mib": pss}
    conn = http.client.HTTPConnection(host, port)
    lat = []
    for i in range(N):
        body = json.dumps({"name": f"t{i}", "labels": {"bench": "yes"}, "spec": {"role": "viewer"}})
        t0 = time.perf_counter()
        conn.request("POST", "/v1/tokens", body=body, headers=auth)
        resp = conn.getresponse()
        resp.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if resp.status != 201:
            raise SystemExit(f"create failed: {resp.status}")
    sample = json.dumps(json.loads(_get(conn, "/v1/tokens/t0", auth)))
    r["create_p50_ms"], r["create_p99_ms"] = pct(lat, 50), pct(lat, 99)
    hdr = [f"Authorization: Bearer {token}"]
    r["get"] = wrk(f"http://{host}:{port}/v1/tokens/t{N // 2}", 2, 10, hdr)
    r["list"] = wrk(f"http://{host}:{port}/v1/tokens", 1, 1, hdr)
    # A new connection: the daemon closes keep-alive connections idle for 20 s (the header
    # read timeout), and this one sat idle through the wrk runs.
    listed = json.loads(_get(http.client.HTTPConnection(host, port), "/v1/tokens", auth))
    r["list_items"] = len(listed["items"])
    r["rss_loaded_mib"] = rss_mib(proc.pid)
    proc.terminate()
    proc.wait(20)
    return r, sample


def _get(conn, path, headers):
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    return resp.read()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def run_etcd(tmp, sample):
    data = os.path.join(tmp, "etcd")
    port, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "etcd.log"), "w")
    started = time.time()
    proc = subprocess.Popen(
        ["etcd", "--data-dir", data, "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--name", "default"],
        stdout=log, stderr=log)
    wait_http("127.0.0.1", port, "/health")
    rss, pss = idle_mem_mib(proc.pid, started)
    r = {"idle_rss_mib": rss, "idle_pss_mib": pss}
    conn = http.client.HTTPConnection("127.0.0.1", port)
    lat = []
    for i in range(N):
        body = json.dumps({"key": b64(f"/tokens/t{i}"), "value": b64(sample)})
        t0 = time.perf_counter()
        conn.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise SystemExit(f"etcd put failed: {resp.status}")
    r["create_p50_ms"], r["create_p99_ms"] = pct(lat, 50), pct(lat, 99)
    get = post_script("/v3/kv/range", json.dumps({"key": b64(f"/tokens/t{N // 2}")}), tmp, "etcd_get.lua")
    r["get"] = wrk(f"{url}/v3/kv/range", 2, 10, script=get)
    lst = post_script("/v3/kv/range", json.dumps({"key": b64("/tokens/"), "range_end": b64("/tokens0")}), tmp, "etcd_list.lua")
    r["list"] = wrk(f"{url}/v3/kv/range", 1, 1, script=lst)
    conn.request("POST", "/v3/kv/range", body=json.dumps({"key": b64("/tokens/"), "range_end": b64("/tokens0"), "count_only": True}))
    r["list_items"] = int(json.loads(conn.getresponse().read()).get("count", 0))
    r["rss_loaded_mib"] = rss_mib(proc.pid)
    proc.terminate()
    proc.wait(20)
    return r


def main():
    for tool in ("wrk", "etcd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: run packaging/install-deps.sh")
    tmp = tempfile.mkdtemp(prefix="cloudlet-bench-")
    try:
        c, sample = run_cloudlet(tmp)
        e = run_etcd(tmp, sample)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        ("idle RSS, 8 s after start (MiB)", c["idle_rss_mib"], e["idle_rss_mib"]),
        ("idle PSS, 8 s after start (MiB)", c["idle_pss_mib"], e["idle_pss_mib"]),
        (f"RSS with {N} resources (MiB)", c["rss_loaded_mib"], e["rss_loaded_mib"]),
        ("create p50 (ms)", c["create_p50_ms"], e["create_p50_ms"]),
        ("create p99 (ms)", c["create_p99_ms"], e["create_p99_ms"]),
        ("GET one p50 (ms)", c["get"]["p50_ms"], e["get"]["p50_ms"]),
        ("GET one p99 (ms)", c["get"]["p99_ms"], e["get"]["p99_ms"]),
        ("GET one (req/s)", c["get"]["rps"], e["get"]["rps"]),
        (f"list all {N} p50 (ms)", c["list"]["p50_ms"], e["list"]["p50_ms"]),
        (f"list all {N} p99 (ms)", c["list"]["p99_ms"], e["list"]["p99_ms"]),
    ]
    print(f"| measure | cloudlet | etcd | cloudlet/etcd |")
    print(f"|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b if b else float('nan'):.2f} |")
    print(f"(listed items: cloudlet {c['list_items']}, etcd {e['list_items']})")
    os.makedirs(os.path.join(ROOT, "integration/bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "integration/bench/results/site_daemon.json"), "w") as f:
        json.dump({"n": N, "cloudlet": c, "etcd": e}, f, indent=2)


if __name__ == "__main__":
    main()
