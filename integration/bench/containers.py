#!/usr/bin/env python3
"""Container benchmark (issue 4), run as root: `python3 integration/bench/containers.py`.

In one run, on the same busybox-httpd image and the same OCI runtime spec:
1. cloudlet's start latency: from the API call (POST /v1/containers, image cached) to the
   container's process running (status `Running`, which the reconciler sets once the shim reports
   the process started), polled every 0.5 ms; RUNS runs, p50 and p99;
2. runc (Debian) on a bundle with the config.json cloudlet generated for the same container:
   `runc create` + `runc start` (to the process running), and the whole `create + start + delete`;
3. 200 idle containers (`sleep`): the daemon's RSS growth per container, and each shim's
   RSS and PSS (PSS shares the binary's pages among the shims).

Prints a Markdown table; asserts nothing. Environment: CLOUDLET_BIN (default
target/release/cloudlet), RUNS (default 100), IDLE (default 200), USERNS=0 (containers
without user namespaces).
"""

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
RUNS = int(os.environ.get("RUNS", "100"))
IDLE = int(os.environ.get("IDLE", "200"))


class Api:
    def __init__(self, addr, token):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.token = token

    def call(self, method, path, body=None, ctype="application/json"):
        headers = {"Authorization": "Bearer " + self.token}
        if body is not None:
            headers["Content-Type"] = ctype
            if ctype == "application/json":
                body = json.dumps(body)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The API closes connections left idle (the runc runs take longer): reconnect once.
            self.conn.close()
            self.conn.connect()
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data and r.getheader("content-type", "").startswith("application/json") else data)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait(what, check, timeout=60, every=0.0005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = check()
        if v:
            return v
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, cgroups, overlayfs)")
    images = os.path.join(os.path.dirname(BIN), "test-images")
    if not os.path.exists(os.path.join(images, "busybox-httpd.oci.tar")):
        subprocess.run(["bash", os.path.join(ROOT, "images/busybox-httpd/build.sh"), images], check=True)
    data = tempfile.mkdtemp(prefix="clbench-ctr-")
    log = open(os.path.join(data, "daemon.log"), "w")
    args = [BIN, "serve", "--data-dir", data, "--http", "127.0.0.1:0"]
    if os.environ.get("USERNS") == "0":
        # Containers without user namespaces, to see what they cost.
        conf = os.path.join(data, "bench.toml")
        open(conf, "w").write("[container]\nuser_namespaces = false\n")
        args += ["--config", conf]
    daemon = subprocess.Popen(args, stdout=log, stderr=log, env=dict(os.environ, CLOUDLET_LOG_LEVEL=os.environ.get("CLOUDLET_LOG_LEVEL", "info")))
    runc_root = tempfile.mkdtemp(prefix="clbench-runc-")
    try:
        addr = wait("the daemon", lambda: open(os.path.join(data, "http.addr")).read().strip() if os.path.exists(os.path.join(data, "http.addr")) else None, every=0.05)
        api = Api(addr, open(os.path.join(data, "admin.token")).read().strip())
        wait("readiness", lambda: api.call("GET", "/readyz")[0] == 200, every=0.05)
        with open(os.path.join(images, "busybox-httpd.oci.tar"), "rb") as f:
            st, img = api.call("POST", "/v1/images/import?name=bb", f.read(), "application/x-tar")
        assert st == 201, img
        spec = {"image": "bb", "command": ["/bin/sleep", "100000"], "stop_timeout_seconds": 0}

        def running(name):
            st, c = api.call("GET", f"/v1/containers/{name}")
            return c if st == 200 and c["status"].get("phase") == "Running" else None

        def gone(cid):
            return not os.path.exists(os.path.join(data, "containers", cid))

        # Warm-up: unpacks the image root once; keeps the generated config.json for runc.
        st, c = api.call("POST", "/v1/containers", {"name": "warm", "spec": spec})
        assert st == 201, c
        wait("warm-up", lambda: running("warm"))
        cfg = json.load(open(os.path.join(data, "containers", c["id"], "bundle", "config.json")))
        image_root = os.path.join(data, "images", "rootfs", os.listdir(os.path.join(data, "images", "rootfs"))[0])
        api.call("DELETE", "/v1/containers/warm")
        wait("warm-up deletion", lambda: gone(c["id"]), every=0.01)

        # 1. cloudlet: API call to process running.
        cl = []
        for i in range(RUNS):
            t0 = time.perf_counter()
            st, c = api.call("POST", "/v1/containers", {"name": f"b{i}", "spec": spec})
            assert st == 201, c
            wait("running", lambda: running(f"b{i}"))
            cl.append((time.perf_counter() - t0) * 1000)
            api.call("DELETE", f"/v1/containers/b{i}")
            wait("deletion", lambda: gone(c["id"]), every=0.005)

        # 2. runc on the same spec: the image root (read-only, shared), a new network namespace,
        #    its own cgroup, no cloudlet bind mounts, and no user namespace (joining cloudlet's
        #    would need its idmapped root; so runc does a little less work than cloudlet here).
        bundle = os.path.join(runc_root, "bundle")
        os.makedirs(bundle)
        etc = os.path.join(runc_root, "etc")
        os.makedirs(etc)
        for n in ("hosts", "hostname"):
            open(os.path.join(etc, n), "w").write("127.0.0.1 localhost\n" if n == "hosts" else "runc\n")
        cfg["root"] = {"path": image_root, "readonly": True}
        for m in cfg["mounts"]:
            if m["destination"] in ("/etc/hosts", "/etc/hostname"):
                m["source"] = os.path.join(etc, os.path.basename(m["destination"]))
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] not in ("network", "user")] + [{"type": "network"}]
        state = os.path.join(runc_root, "state")
        rc_start, rc_all = [], []
        for i in range(RUNS):
            cfg["linux"]["cgroupsPath"] = f"/clbench/runc-{i}"
            json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
            cid = f"clbench-{os.getpid()}-{i}"
            t0 = time.perf_counter()
            subprocess.run(["runc", "--root", state, "create", "--bundle", bundle, cid], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            subprocess.run(["runc", "--root", state, "start", cid], check=True)
            t1 = time.perf_counter()
            subprocess.run(["runc", "--root", state, "delete", "-f", cid], check=True)
            t2 = time.perf_counter()
            rc_start.append((t1 - t0) * 1000)
            rc_all.append((t2 - t0) * 1000)

        # 3. Idle containers.
        time.sleep(2)
        before = rss_kib(daemon.pid)
        t0 = time.perf_counter()
        for i in range(IDLE):
            st, c = api.call("POST", "/v1/containers", {"name": f"idle{i}", "spec": spec})
            assert st == 201, c
        wait("all idle containers running", lambda: sum(1 for i in range(IDLE) if running(f"idle{i}")) == IDLE, timeout=600, every=1)
        start_all = time.perf_counter() - t0
        time.sleep(3)
        after = rss_kib(daemon.pid)
        shims = []
        for d in os.listdir(os.path.join(data, "containers")):
            rec = json.load(open(os.path.join(data, "containers", d, "shim.json")))
            shims.append(rec["shim_pid"])
        shim_rss = statistics.mean(rss_kib(p) for p in shims)
        shim_pss = statistics.mean(pss_kib(p) for p in shims)
        for i in range(IDLE):
            api.call("DELETE", f"/v1/containers/idle{i}")
        wait("idle deletion", lambda: not os.listdir(os.path.join(data, "containers")), timeout=600, every=0.5)

        p50, p99 = pct(cl, 50), pct(cl, 99)
        r50, r99 = pct(rc_start, 50), pct(rc_start, 99)
        a50, a99 = pct(rc_all, 50), pct(rc_all, 99)
        print(f"\nContainers: {RUNS} starts each, {IDLE} idle containers\n")
        print("| measure | cloudlet | runc | cloudlet/runc |")
        print("|---|---|---|---|")
        print(f"| start p50 (ms): API call to process running vs runc create+start | {p50:.1f} | {r50:.1f} | {p50 / r50:.2f} |")
        print(f"| start p99 (ms) | {p99:.1f} | {r99:.1f} | {p99 / r99:.2f} |")
        print(f"| runc create+start+delete p50 / p99 (ms) | | {a50:.1f} / {a99:.1f} | |")
        print(f"| daemon RSS growth per idle container (KiB) | {(after - before) / IDLE:.1f} | | |")
        print(f"| shim RSS / PSS per container (KiB) | {shim_rss:.0f} / {shim_pss:.0f} | | |")
        print(f"| {IDLE} containers created to all Running (s) | {start_all:.1f} | | |")
        print(f"\ndaemon RSS: {before} KiB before, {after} KiB with {IDLE} containers")
    finally:
        daemon.kill()
        daemon.wait()
        for d in os.listdir(os.path.join(data, "containers")) if os.path.isdir(os.path.join(data, "containers")) else []:
            # The bind a container in a user namespace is set up through.
            subprocess.run(["umount", "-l", os.path.join("/run/cloudlet-containers", d)], stderr=subprocess.DEVNULL)
            try:
                rec = json.load(open(os.path.join(data, "containers", d, "shim.json")))
                for k in ("init_pid", "shim_pid"):
                    try:
                        os.kill(rec[k], 9)
                    except OSError:
                        pass
            except OSError:
                pass
        time.sleep(0.5)
        for line in open("/proc/self/mountinfo"):
            m = line.split()[4]
            if m.startswith(data):
                subprocess.run(["umount", "-l", m])
        subprocess.run(f"for d in /sys/fs/cgroup/*/clbench /sys/fs/cgroup/*/cloudlet; do find $d -mindepth 1 -depth -type d -exec rmdir {{}} \\; 2>/dev/null; done", shell=True)
        if os.environ.get("KEEP_LOG"):
            shutil.copy(os.path.join(data, "daemon.log"), os.environ["KEEP_LOG"])
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(runc_root, ignore_errors=True)


if __name__ == "__main__":
    main()
