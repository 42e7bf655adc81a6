#!/usr/bin/env python3
"""Latency the portal's link adds to a site API call, in one run (issue 16, first figure).

Starts a real portal (`cloudlet portal`) and a real site (`cloudlet serve`) on loopback, joins
the site, waits for its link, then makes N sequential GET /v1/site calls on one keep-alive
connection each way: directly to the site, and through the portal
(`/v1/sites/{site}/api/site`: the portal's admin API, then HTTP/2 over the site's outbound
link). Prints p50/p99 of both and the difference, and the portal's RSS with one site linked;
writes integration/bench/results/portal_link.json. The issue's peer (rathole carrying the same
tunnels) and the many-site simulator are not part of this first figure.

Usage: python3 integration/bench/portal_link.py [N]   (default 2,000)
"""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import rss_mib, wait_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000


def call(addr, method, path, token, body=None):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = r.read()
    c.close()
    try:
        return r.status, json.loads(out)
    except ValueError:
        return r.status, out


def timed_gets(addr, path, token, n):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", path, headers={"authorization": f"Bearer {token}"})
        r = c.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, r.status
    c.close()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]


def main():
    tmp = tempfile.mkdtemp(prefix="portal-bench-")
    pdir, sdir = os.path.join(tmp, "portal"), os.path.join(tmp, "site")
    os.makedirs(pdir)
    os.makedirs(sdir)
    log = open(os.path.join(tmp, "log"), "w")
    portal = subprocess.Popen([BIN, "portal", "--data-dir", pdir, "--http", "127.0.0.1:0", "--link", "127.0.0.1:0"], stdout=log, stderr=log)
    site = subprocess.Popen([BIN, "serve", "--data-dir", sdir, "--http", "127.0.0.1:0"], stdout=log, stderr=log)
    try:
        p_http = wait_file(os.path.join(pdir, "http.addr")).strip()
        p_link = wait_file(os.path.join(pdir, "link.addr")).strip()
        s_http = wait_file(os.path.join(sdir, "http.addr")).strip()
        p_tok = wait_file(os.path.join(pdir, "admin.token")).strip()
        s_tok = wait_file(os.path.join(sdir, "admin.token")).strip()
        for _ in range(600):
            try:
                if call(s_http, "GET", "/readyz", s_tok)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        st, b = call(p_http, "POST", "/v1/join-tokens", p_tok, {"name": "bench"})
        assert st == 201, b
        st, b = call(s_http, "POST", "/v1/site/join", s_tok, {"portal": f"https://{p_link}", "token": b["token"]})
        assert st == 200, b
        for _ in range(300):
            if call(p_http, "GET", "/v1/sites/bench", p_tok)[1]["status"]["phase"] == "Connected":
                break
            time.sleep(0.1)
        timed_gets(s_http, "/v1/site", s_tok, 200)  # warm both paths
        timed_gets(p_http, "/v1/sites/bench/api/site", p_tok, 200)
        d50, d99 = timed_gets(s_http, "/v1/site", s_tok, N)
        p50, p99 = timed_gets(p_http, "/v1/sites/bench/api/site", p_tok, N)
        r = {
            "n": N,
            "direct_p50_ms": d50,
            "direct_p99_ms": d99,
            "proxied_p50_ms": p50,
            "proxied_p99_ms": p99,
            "added_p50_ms": p50 - d50,
            "added_p99_ms": p99 - d99,
            "portal_rss_mib_one_site": rss_mib(portal.pid),
        }
        print("| measure | direct to the site | through the portal's link | added |")
        print("|---|---|---|---|")
        print(f"| GET /v1/site p50 (ms) | {d50:.3f} | {p50:.3f} | {p50 - d50:.3f} |")
        print(f"| GET /v1/site p99 (ms) | {d99:.3f} | {p99:.3f} | {p99 - d99:.3f} |")
        print(f"portal RSS with one linked site: {r['portal_rss_mib_one_site']:.1f} MiB ({N} calls each way)")
        os.makedirs(os.path.join(ROOT, "integration/bench/results"), exist_ok=True)
        with open(os.path.join(ROOT, "integration/bench/results/portal_link.json"), "w") as f:
            json.dump(r, f, indent=2)
    finally:
        for p in (portal, site):
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
