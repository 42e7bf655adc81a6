#!/usr/bin/env python3
"""How fast the portal takes in a site's outbox backlog, on SQLite and on PostgreSQL (issue 16).

For each store: a real portal and a real site on loopback; the site joins, then the portal is
killed and the site writes N changes (API token creations: one event and one audit record
each) while it is away. The portal starts again; the clock runs from the moment the site's link
is back until the portal's cursors in both streams reach the site's newest records. The rate is records committed per
second (events and audit records). PostgreSQL is a throwaway cluster (initdb into a temporary
directory, a postmaster on a free loopback port, run as the `postgres` user).

Peer, in the same run: PostgreSQL's own bulk load, `psql \\copy` of the same number of rows of
the same size into a table of the same shape: the store's ceiling on this machine. The ratio is
the portal's rate over the peer's.

Needs root (PostgreSQL runs as its own user). Usage: python3 integration/bench/portal_ingest.py [N]
(default 20,000); writes integration/bench/results/portal_ingest.json.
"""

import glob
import http.client
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLOUDLET_BIN", os.path.join(ROOT, "target/release/cloudlet"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
PGBIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1] if glob.glob("/usr/lib/postgresql/*/bin") else None


class Conn:
    """One keep-alive HTTP connection with a bearer token."""

    def __init__(self, addr, token):
        host, port = addr.rsplit(":", 1)
        self.c = http.client.HTTPConnection(host, int(port), timeout=60)
        self.token = token

    def call(self, method, path, body=None):
        headers = {"authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        self.c.request(method, path, body=data, headers=headers)
        r = self.c.getresponse()
        out = r.read()
        try:
            return r.status, json.loads(out)
        except ValueError:
            return r.status, out


class Postgres:
    def __init__(self, tmp):
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        os.chown(self.dir, self.uid, self.gid)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.run([f"{PGBIN}/initdb", "-A", "trust", "-U", "cloudlet", "-E", "UTF8", "-D", self.data], check=True)
        log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [f"{PGBIN}/postgres", "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"],
            stdout=log, stderr=log, preexec_fn=self.demote, env={"LC_ALL": "C"})
        for _ in range(600):
            if subprocess.run([f"{PGBIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("PostgreSQL did not start")

    def demote(self):
        os.setgid(self.gid)
        os.setuid(self.uid)

    def run(self, args, **kw):
        return subprocess.run(args, preexec_fn=self.demote, env={"LC_ALL": "C"}, cwd=self.dir, stdout=subprocess.DEVNULL, **kw)

    def url(self):
        return f"postgres://cloudlet@127.0.0.1:{self.port}/postgres"

    def copy_rate(self, rows, body_len):
        """Rows per second of `\\copy` into a table shaped like the portal's records."""
        psql = [f"{PGBIN}/psql", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cloudlet", "postgres"]
        subprocess.run(psql + ["-c", "CREATE TABLE peer (site TEXT, stream TEXT, seq BIGINT, time TEXT, body TEXT, PRIMARY KEY (site, stream, seq))"], check=True, stdout=subprocess.DEVNULL)
        path = os.path.join(self.dir, "rows.tsv")
        with open(path, "w") as f:
            for i in range(rows):
                f.write(f"bench\tevents\t{i}\t2026-12-04T00:00:00.000Z\t{'x' * body_len}\n")
        t0 = time.perf_counter()
        subprocess.run(psql + ["-c", f"\\copy peer FROM '{path}'"], check=True, stdout=subprocess.DEVNULL)
        return rows / (time.perf_counter() - t0)

    def stop(self):
        self.proc.send_signal(3)  # SIGQUIT: immediate shutdown
        self.proc.wait()


def position(portal, stream):
    st, b = portal.call("GET", "/v1/sites/bench")
    s = b["status"].get("streams", {}).get(stream, {}) if st == 200 else {}
    return s.get("cursor", 0), s.get("latest", 0)


def measure(tmp, store_args, label):
    pdir, sdir = os.path.join(tmp, f"portal-{label}"), os.path.join(tmp, f"site-{label}")
    os.makedirs(pdir)
    os.makedirs(sdir)
    log = open(os.path.join(tmp, f"log-{label}"), "w")
    http_port, link_port = free_port(), free_port()
    pcmd = [BIN, "portal", "--data-dir", pdir, "--http", f"127.0.0.1:{http_port}", "--link", f"127.0.0.1:{link_port}"] + store_args
    portal = subprocess.Popen(pcmd, stdout=log, stderr=log)
    site = subprocess.Popen([BIN, "serve", "--data-dir", sdir, "--http", "127.0.0.1:0"], stdout=log, stderr=log)
    try:
        p_tok = wait_file(os.path.join(pdir, "admin.token"))
        wait_file(os.path.join(pdir, "http.addr"))
        s_http, s_tok = wait_file(os.path.join(sdir, "http.addr")), wait_file(os.path.join(sdir, "admin.token"))
        s = Conn(s_http, s_tok)
        for _ in range(600):
            try:
                if s.call("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                s = Conn(s_http, s_tok)
            time.sleep(0.1)
        p = Conn(f"127.0.0.1:{http_port}", p_tok)
        st, b = p.call("POST", "/v1/join-tokens", {"name": "bench"})
        assert st == 201, b
        st, b = s.call("POST", "/v1/site/join", {"portal": f"https://127.0.0.1:{link_port}", "token": b["token"]})
        assert st == 200, b
        while p.call("GET", "/v1/sites/bench")[1]["status"]["phase"] != "Connected":
            time.sleep(0.1)
        portal.kill()
        portal.wait()
        for i in range(N):
            st, b = s.call("POST", "/v1/tokens", {"name": f"b{i}", "spec": {"role": "viewer"}})
            assert st == 201, b
        _, ev = s.call("GET", "/v1/events?limit=1")
        _, au = s.call("GET", "/v1/audit?limit=1")
        want_audit = au["items"][0]["id"]
        portal = subprocess.Popen(pcmd, stdout=log, stderr=log)
        # The clock starts when the site's link is back (its back-off is not the store's cost).
        p, t0, start = None, None, (0, 0)
        while True:
            try:
                p = p or Conn(f"127.0.0.1:{http_port}", p_tok)
                st, b = p.call("GET", "/v1/sites/bench")
                if t0 is None and st == 200 and b["status"]["phase"] == "Connected":
                    t0 = time.perf_counter()
                    start = (position(p, "events")[0], position(p, "audit")[0])
                (ec, el), (ac, _) = position(p, "events"), position(p, "audit")
                if t0 is not None and el and ec >= el and ac >= want_audit:
                    break
            except (OSError, http.client.HTTPException):
                p = None
            time.sleep(0.005)
        secs = time.perf_counter() - t0
        records = ec + ac - start[0] - start[1]
        _, rec = p.call("GET", "/v1/sites/bench/events?after=0&limit=1")
        body_len = len(json.dumps(rec["items"][0]["record"])) if rec["items"] else 200
        return {"records": records, "seconds": secs, "rate": records / secs, "body_len": body_len}
    finally:
        for proc in (portal, site):
            proc.kill()
            proc.wait()


def main():
    if os.geteuid() != 0 or PGBIN is None:
        raise SystemExit("needs root and Debian postgresql (packaging/install-deps.sh)")
    tmp = tempfile.mkdtemp(prefix="portal-ingest-")
    os.chmod(tmp, 0o711)  # the postgres user passes through to its own directory
    pg = Postgres(tmp)
    try:
        lite = measure(tmp, [], "sqlite")
        post = measure(tmp, ["--database", pg.url()], "pg")
        peer = pg.copy_rate(post["records"], post["body_len"])
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    r = {"n_changes": N, "sqlite": lite, "postgresql": post, "peer_copy_rows_per_s": peer, "ratio_to_copy": post["rate"] / peer}
    print("| store | records | drain (s) | records/s |")
    print("|---|---|---|---|")
    for name, m in (("SQLite (embedded)", lite), ("PostgreSQL", post)):
        print(f"| {name} | {m['records']} | {m['seconds']:.2f} | {m['rate']:,.0f} |")
    print(f"peer: psql \\copy of {post['records']} rows of {post['body_len']} B: {peer:,.0f} rows/s; portal on PostgreSQL / peer = {r['ratio_to_copy']:.2f}")
    os.makedirs(os.path.join(ROOT, "integration/bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "integration/bench/results/portal_ingest.json"), "w") as f:
        json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
