#!/usr/bin/env python3
"""Object storage benchmark (issue 6): `python3 integration/bench/objects.py`.

In one run, on the same disk (both stores live under target/bench-objects/):
- cloudlet's S3 endpoint with its defaults (every object fdatasync'd before it is visible), and
  again with `[s3] fsync = false`;
- Garage (`garage` from crates.io, built by `cargo install garage --version 2.5.0` into
  target/garage when absent), single node, lmdb, its documented defaults (metadata_fsync and
  data_fsync off);
- the raw disk: `dd` of 2 GiB with `conv=fsync` (the physical write limit).
Before each store (and dd) the page cache is synced, writeback waited for and caches dropped, so
no store pays for the previous one's writes.

Load: 16 concurrent clients on presigned URLs (so client-side signing costs the same for both):
- PUT and GET of 4 KiB objects, ops/s: wrk (Debian), 16 connections, DURATION seconds each;
- PUT and GET throughput of 1 MiB and 64 MiB objects, MiB/s: 16 Python threads (http.client),
  each sending its share of objects; GETs read every byte.
Prints a Markdown table with the ratios; asserts nothing. Environment: CLOUDLET_BIN, GARAGE_BIN,
DURATION (default 10), STORES (default cloudlet,nofsync,garage: a subset runs without the table).
"""

import concurrent.futures
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import boto3
from botocore.config import Config

from benchlib import free_port, wait_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
WORK = os.path.join(ROOT, "target/bench-objects")
DURATION = int(os.environ.get("DURATION", "10"))
CLIENTS = 16
SMALL_KEYS = 20000


def settle():
    """Let the previous store's gigabytes reach the disk first: otherwise their writeback slows
    whichever store runs next (measured: 4 KiB PUTs fell from ~3,100 to ~1,100 ops/s)."""
    os.sync()
    deadline = time.time() + 120
    while time.time() < deadline:
        mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
        pending = int(mem["Dirty"].split()[0]) + int(mem["Writeback"].split()[0])
        if pending < 16 << 10:
            break
        time.sleep(0.5)
    if os.geteuid() == 0:
        open("/proc/sys/vm/drop_caches", "w").write("3\n")
    time.sleep(2)


def s3(endpoint, key, secret, region):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name=region, config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))


class Cloudlet:
    def __init__(self, fsync):
        self.name = "cloudlet" if fsync else "cloudlet (fsync off)"
        self.dir = os.path.join(WORK, "cloudlet-fsync" if fsync else "cloudlet-nofsync")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"[s3]\nfsync = {'true' if fsync else 'false'}\n")
        self.proc = subprocess.Popen([BIN, "serve", "--config", cfg, "--data-dir", os.path.join(self.dir, "data"), "--http", "127.0.0.1:0", "--s3", "127.0.0.1:0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CLOUDLET_LOG_LEVEL": "warn"})
        data = os.path.join(self.dir, "data")
        http_addr = wait_file(os.path.join(data, "http.addr"))
        self.endpoint = "http://" + wait_file(os.path.join(data, "s3.addr"))
        token = wait_file(os.path.join(data, "admin.token"))
        host, port = http_addr.rsplit(":", 1)
        for _ in range(100):
            try:
                c = http.client.HTTPConnection(host, int(port), timeout=10)
                c.request("POST", "/v1/access-keys", body=json.dumps({"name": "bench"}), headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
                r = c.getresponse()
                if r.status == 201:
                    k = json.loads(r.read())
                    break
            except OSError:
                pass
            time.sleep(0.1)
        self.client = s3(self.endpoint, k["access_key_id"], k["secret_access_key"], "us-east-1")
        self.client.create_bucket(Bucket="bench")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Garage:
    name = "Garage"

    def __init__(self):
        gbin = os.environ.get("GARAGE_BIN") or shutil.which("garage") or os.path.join(ROOT, "target/garage/bin/garage")
        if not os.path.exists(gbin):
            print("building garage 2.5.0 from crates.io (once; long on 2 cores)...", file=sys.stderr)
            subprocess.run(["cargo", "install", "garage", "--version", "2.5.0", "--locked", "--root", os.path.join(ROOT, "target/garage")], check=True)
        self.bin = gbin
        self.dir = os.path.join(WORK, "garage")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.cfg = os.path.join(self.dir, "garage.toml")
        rpc, api = free_port(), free_port()
        with open(self.cfg, "w") as f:
            f.write(f'''metadata_dir = "{self.dir}/meta"
data_dir = "{self.dir}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{os.urandom(32).hex()}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{api}"
root_domain = ".s3.garage.localhost"
''')
        self.log = open(os.path.join(WORK, "garage.log"), "w")
        self.proc = subprocess.Popen([gbin, "-c", self.cfg, "server"], stdout=self.log, stderr=self.log, env={**os.environ, "RUST_LOG": "warn"})
        try:
            self.setup(gbin, api)
        except BaseException:
            self.stop()
            raise

    def setup(self, gbin, api):
        node = None
        for _ in range(200):
            r = subprocess.run([gbin, "-c", self.cfg, "node", "id", "-q"], capture_output=True, text=True)
            if r.returncode == 0 and "@" in r.stdout:
                node = r.stdout.strip().split("@")[0]
                break
            time.sleep(0.1)
        assert node, "garage did not start"
        self.g("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.g("layout", "apply", "--version", "1")
        self.g("bucket", "create", "bench")
        out = self.g("key", "create", "bench-key")
        kid = re.search(r"Key ID:\s*(\S+)", out).group(1)
        sec = re.search(r"Secret key:\s*(\S+)", out).group(1)
        self.g("bucket", "allow", "--read", "--write", "--owner", "bench", "--key", "bench-key")
        self.endpoint = f"http://127.0.0.1:{api}"
        self.client = s3(self.endpoint, kid, sec, "garage")

    def g(self, *args):
        # The RPC layer answers before the node's handlers are registered ("No handler"): retry.
        deadline = time.time() + 120
        while True:
            r = subprocess.run([self.bin, "-c", self.cfg, *args], capture_output=True, text=True)
            if r.returncode == 0 or "No handler" not in r.stderr or time.time() > deadline:
                break
            time.sleep(0.5)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


WRK_LUA = r'''
local urls = {}
local i = 0
local method = os.getenv("WRK_METHOD")
local body = nil
if method == "PUT" then body = string.rep("x", 4096) end
function init(args)
  for line in io.lines(os.getenv("WRK_URLS")) do urls[#urls + 1] = line end
  i = math.random(#urls)
end
function request()
  i = i % #urls + 1
  return wrk.format(method, urls[i], nil, body)
end
'''


def presign_paths(store, method, keys):
    op = "put_object" if method == "PUT" else "get_object"
    out = []
    for k in keys:
        u = urllib.parse.urlsplit(store.client.generate_presigned_url(op, Params={"Bucket": "bench", "Key": k}, ExpiresIn=3600))
        out.append(u.path + "?" + u.query)
    return out


def wrk_ops(store, method, paths):
    tmp = tempfile.mkdtemp()
    lua, urls = os.path.join(tmp, "s.lua"), os.path.join(tmp, "urls")
    open(lua, "w").write(WRK_LUA)
    open(urls, "w").write("\n".join(paths) + "\n")
    r = subprocess.run(["wrk", "-t2", f"-c{CLIENTS}", f"-d{DURATION}s", "--latency", "-s", lua, store.endpoint],
                       capture_output=True, text=True, env={**os.environ, "WRK_METHOD": method, "WRK_URLS": urls})
    shutil.rmtree(tmp)
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", r.stdout).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", r.stdout)
    if bad:
        print(f"{store.name} {method}: {bad.group(1)} non-2xx answers", file=sys.stderr)
        rps = float("nan")
    p99 = re.search(r"^\s*99%\s+(\S+)", r.stdout, re.M).group(1)
    return rps, p99


def transfer(store, size, count):
    """PUT then GET `count` objects of `size` bytes with 16 threads; MiB/s for each."""
    data = os.urandom(size)
    keys = [f"big-{size}-{i}" for i in range(count)]
    puts = presign_paths(store, "PUT", keys)
    gets = presign_paths(store, "GET", keys)
    host, port = urllib.parse.urlsplit(store.endpoint).netloc.split(":")

    def put(path):
        c = http.client.HTTPConnection(host, int(port), timeout=300)
        c.request("PUT", path, body=data, headers={"Content-Length": str(size)})
        r = c.getresponse()
        r.read()
        assert r.status == 200, (r.status, store.name)

    def get(path):
        c = http.client.HTTPConnection(host, int(port), timeout=300)
        c.request("GET", path)
        r = c.getresponse()
        buf = bytearray(1 << 20)
        n = 0
        while True:
            m = r.readinto(buf)
            if not m:
                break
            n += m
        assert r.status == 200 and n == size, (r.status, n, store.name)

    out = []
    for fn, paths in ((put, puts), (get, gets)):
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
            list(ex.map(fn, paths))
        out.append(size * count / (1 << 20) / (time.time() - t0))
    for k in keys:
        store.client.delete_object(Bucket="bench", Key=k)
    return out


def raw_disk():
    path = os.path.join(WORK, "dd.bin")
    r = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=2048", "conv=fsync"], capture_output=True, text=True)
    os.remove(path)
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", r.stderr)
    return int(m.group(1)) / (1 << 20) / float(m.group(2))


def measure(store):
    keys = [f"small/{i:06d}" for i in range(SMALL_KEYS)]
    res = {}
    res["put4k"] = wrk_ops(store, "PUT", presign_paths(store, "PUT", keys))
    # GETs read 2,000 objects written beforehand (the PUT phase may not have reached every key).
    readable = [f"read/{i:05d}" for i in range(2000)]
    blob = os.urandom(4096)
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
        list(ex.map(lambda k: store.client.put_object(Bucket="bench", Key=k, Body=blob), readable))
    res["get4k"] = wrk_ops(store, "GET", presign_paths(store, "GET", readable))
    res["1m"] = transfer(store, 1 << 20, 640)
    res["64m"] = transfer(store, 64 << 20, 32)
    return res


def main():
    os.makedirs(WORK, exist_ok=True)
    results = {}
    only = os.environ.get("STORES", "cloudlet,nofsync,garage").split(",")
    makers = {"cloudlet": lambda: Cloudlet(True), "nofsync": lambda: Cloudlet(False), "garage": Garage}
    for name in only:
        settle()
        s = makers[name]()
        try:
            results[s.name] = measure(s)
            print(s.name, json.dumps(results[s.name]), file=sys.stderr, flush=True)
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)
    if len(results) < 3:
        return
    settle()
    disk = raw_disk()
    c, n, g = results["cloudlet"], results["cloudlet (fsync off)"], results["Garage"]
    print(f"| measure (16 clients) | cloudlet | cloudlet, fsync off | Garage 2.5 | cloudlet / Garage |")
    print("|---|---|---|---|---|")
    for label, k in (("PUT 4 KiB, ops/s", "put4k"), ("GET 4 KiB, ops/s", "get4k")):
        print(f"| {label} (p99) | {c[k][0]:.0f} ({c[k][1]}) | {n[k][0]:.0f} ({n[k][1]}) | {g[k][0]:.0f} ({g[k][1]}) | {c[k][0] / g[k][0]:.2f} |")
    for label, k in (("1 MiB", "1m"), ("64 MiB", "64m")):
        for i, op in enumerate(("PUT", "GET")):
            print(f"| {op} {label}, MiB/s | {c[k][i]:.0f} | {n[k][i]:.0f} | {g[k][i]:.0f} | {c[k][i] / g[k][i]:.2f} |")
    print(f"\nraw disk (dd 2 GiB, conv=fsync): {disk:.0f} MiB/s; cloudlet 64 MiB PUT / raw disk = {c['64m'][0] / disk:.2f}")


if __name__ == "__main__":
    main()
