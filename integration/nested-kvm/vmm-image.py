#!/usr/bin/env python3
"""Inside L1: run the debian-12 image (images/vm/build.sh) on cloudlet's VMM the way the daemon
does — `cloudlet vmm-worker --spec`, confined, a tap inherited as fd 3, a root disk and a data
disk on virtio-blk, the control socket — and assert real outcomes:

1. the guest reaches init (console line and boot timer), gets an address by DHCP over
   virtio-net (busybox udhcpd on the tap) and answers HTTP at it; `/boots` is 1, so it mounted
   the data disk and wrote to it;
2. the control socket answers `status` (running, boot timer set) and `shutdown` (Ctrl-Alt-Del)
   ends the guest gracefully: the worker's exit record says `stopped`, the console shows the
   guest's own shutdown, and the data disk's filesystem is clean (`e2fsck -fn`);
3. started again on the same disks, `/boots` is 2: the write persisted across stop and start;
   `kill` ends it at once with `killed`.

Usage: vmm-image.py CLOUDLET_BIN [IMAGE_DIR]. Exit status 0 only if every assertion holds.
"""

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1]
IMAGE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/vm-images/debian-12")
WORK = "/tmp/vmm-image"
TAP, HOST_IP, GUEST_IP = "cltap0", "10.77.0.1", "10.77.0.2"
MAC = "02:cc:00:00:00:02"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    for f in ("console.log", "worker.log"):
        p = os.path.join(WORK, f)
        if os.path.exists(p):
            print(f"--- {f} (tail)")
            print(open(p, errors="replace").read()[-3000:])
    sys.exit(1)


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def open_tap(name):
    """A tap opened as the daemon does: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), 0x0002 | 0x1000 | 0x4000)
    fcntl.ioctl(fd, 0x400454CA, ifr)  # TUNSETIFF
    return fd


def wait_for(what, pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    fail(f"timed out after {timeout} s waiting for {what}")


def console():
    try:
        return open(os.path.join(WORK, "console.log"), errors="replace").read()
    except FileNotFoundError:
        return ""


def control(req):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.path.join(WORK, "control.sock"))
    s.sendall((json.dumps(req) + "\n").encode())
    line = s.makefile().readline()
    s.close()
    return json.loads(line)


def http(path):
    try:
        with urllib.request.urlopen(f"http://{GUEST_IP}{path}", timeout=3) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def start(boot):
    """Start a worker with the tap as fd 3; returns the process."""
    img = json.load(open(os.path.join(IMAGE, "image.json")))
    spec = {
        "id": "lane-image",
        "kernel": os.path.join(IMAGE, img["kernel"]),
        "initrd": os.path.join(IMAGE, img["initrd"]),
        "cmdline": img["cmdline"],
        "vcpus": 2,
        "memory_mib": 256,
        "disks": [{"path": f"{WORK}/root.img"}, {"path": f"{WORK}/data.img"}],
        "nets": [{"tap_fd": 3, "mac": MAC}],
        "console_log": f"{WORK}/console.log",
        "control_socket": f"{WORK}/control.sock",
        "exit_record": f"{WORK}/exit.json",
        "confinement": {"seccomp": True},
    }
    with open(f"{WORK}/spec.json", "w") as f:
        json.dump(spec, f)
    for f in ("exit.json", "console.log"):
        if os.path.exists(f"{WORK}/{f}"):
            os.rename(f"{WORK}/{f}", f"{WORK}/{f}.{boot - 1}")
    tap = open_tap(TAP)
    sh("ip", "link", "set", TAP, "up")
    subprocess.run(["ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP], stderr=subprocess.DEVNULL)
    log = open(f"{WORK}/worker.log", "a")
    # The child gets the tap as fd 3 (dup2 before exec; pass_fds keeps 3 open and inheritable).
    p = subprocess.Popen([BIN, "vmm-worker", "--spec", f"{WORK}/spec.json"], stdout=log, stderr=log, pass_fds=(3,),
                         preexec_fn=lambda: os.dup2(tap, 3))
    os.close(tap)
    return p


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    shutil.copy(os.path.join(IMAGE, "rootfs.ext4"), f"{WORK}/root.img")
    with open(f"{WORK}/data.img", "wb") as f:
        f.truncate(64 << 20)
    sh("mkfs.ext4", "-q", "-F", f"{WORK}/data.img")
    # The tap is persistent only while a worker holds it; udhcpd serves it from the start.
    conf = f"{WORK}/udhcpd.conf"
    with open(conf, "w") as f:
        f.write(f"start {GUEST_IP}\nend {GUEST_IP}\ninterface {TAP}\nlease_file {WORK}/leases\n"
                f"option subnet 255.255.255.0\noption router {HOST_IP}\n")
    open(f"{WORK}/leases", "w").close()

    # The tap lives as long as its worker holds it, so udhcpd is started anew on each one.
    dhcpd = []

    def serve_dhcp():
        for d in dhcpd:
            d.kill()
        wait_for("the tap", lambda: os.path.exists(f"/sys/class/net/{TAP}"), 10)
        dhcpd.append(subprocess.Popen(["busybox", "udhcpd", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    # 1. First boot.
    p = start(1)
    serve_dhcp()
    try:
        wait_for("CLOUDLET GUEST INIT REACHED", lambda: "CLOUDLET GUEST INIT REACHED" in console() or p.poll() is not None, 120)
        if p.poll() is not None:
            fail(f"the worker ended early ({p.returncode})")
        wait_for(f"the guest's address {GUEST_IP}", lambda: f"CLOUDLET GUEST IP {GUEST_IP}" in console(), 90)
        wait_for("HTTP / from the guest", lambda: http("/"), 60)
        print("guest says:", http("/"), flush=True)
        boots = http("/boots")
        if boots != "1":
            fail(f"/boots is {boots!r} after the first boot, not '1'")
        st = control({"op": "status"})
        if not (st["ok"] and st["status"]["state"] == "running" and st["status"]["boot_timer_ms"]):
            fail(f"status: {st}")
        print(f"status: {st['status']}", flush=True)

        # 2. Graceful stop through the control socket (Ctrl-Alt-Del). The keyboard driver may
        # not be listening yet right after boot: the request is repeated, as the daemon does.
        t0 = time.monotonic()
        r = control({"op": "shutdown"})
        if not r["ok"]:
            fail(f"shutdown: {r}")
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("the guest did not stop within 60 s of Ctrl-Alt-Del")
        took = time.monotonic() - t0
        rec = json.load(open(f"{WORK}/exit.json"))
        if rec["reason"] != "stopped":
            fail(f"exit record after shutdown: {rec}")
        if "CLOUDLET GUEST SHUTDOWN" not in console():
            fail("the guest's shutdown script did not run")
        fsck = subprocess.run(["e2fsck", "-fn", f"{WORK}/data.img"], capture_output=True, text=True)
        if fsck.returncode != 0:
            fail(f"the data disk is not clean after a graceful stop: {fsck.stdout[-500:]}")
        print(f"graceful stop took {took:.1f} s; exit record {rec}", flush=True)

        # 3. Start again: the counter on the data disk persisted.
        p = start(2)
        serve_dhcp()
        wait_for("HTTP / after the restart", lambda: http("/") or (p.poll() is not None and fail("the worker ended early")), 180)
        boots = http("/boots")
        if boots != "2":
            fail(f"/boots is {boots!r} after the second boot, not '2'")
        r = control({"op": "kill"})
        p.wait(timeout=10)
        rec = json.load(open(f"{WORK}/exit.json"))
        if not r["ok"] or rec["reason"] != "killed":
            fail(f"kill: {r}, exit record {rec}")
    finally:
        for d in dhcpd:
            d.kill()
        if p.poll() is None:
            p.kill()
    print("PASS: the debian-12 image booted on cloudlet's VMM (virtio-blk root and data, virtio-net DHCP and HTTP),"
          " stopped gracefully and kept its data across stop and start", flush=True)


if __name__ == "__main__":
    main()
