#!/usr/bin/env python3
"""microVM benchmark (issue 7): `python3 integration/bench/vmm_boot.py [CLOUDLET_BIN]`.

Runs the nested KVM lane's L1 guest (integration/nested-kvm/run-l1.sh; prepare.sh first) and,
inside it, on L1's real /dev/kvm, boots the same guest (Debian's stock cloud kernel and the
lane's L2 initramfs, 256 MiB, one vCPU, console on ttyS0, the same kernel command line) RUNS
times (default 20) with each of, interleaved round by round so that load hits all alike:
- cloudlet's VMM (`cloudlet vmm-worker --spec`, confined as the daemon runs it);
- QEMU `-M microvm` (Debian qemu-system-x86, ACPI on), `-nodefaults`, no network or disk;
- QEMU `-M pc`.
Measures, all taken inside L1 by this script (one clock, one emulation):
1. start to init: from the process's start to the guest's `L2 INIT REACHED` console line
   (for cloudlet, also its own boot timer: the guest's MMIO write, timestamped by the VMM);
2. VMM memory overhead: the process's resident memory outside the guest RAM mapping
   (`/proc/PID/smaps`: every mapping's Rss except guest RAM's, the one of 256 MiB or more), sampled when
   the guest reaches init, and its private part (Private_Clean + Private_Dirty: pages no other
   process maps; inside L1 nothing else maps the cloudlet binary, so its touched text counts as
   private there, while on a site it is shared with the daemon and the other workers);
3. control socket ready: from the process's start to the first answer on its control socket
   (cloudlet: a `status` request; QEMU: the QMP greeting on `-qmp unix:`).
Measure 3 is also taken natively on this host (not in L1), RUNS times each, for cloudlet's worker
and QEMU microvm (`-accel tcg` here, as this host's KVM cannot run the guest; the socket comes
up before any guest code runs either way); the process is killed once it answers.
The guest powers off by itself (ACPI S5 on all three). A run that does not reach init in 120 s
is dropped and counted. Everything inside L1 is 10-50x slower than native (TCG), so only the
ratios carry over. Prints a Markdown table and the raw JSON; asserts nothing.
"""

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/cloudlet"))
RUNS = int(os.environ.get("RUNS", "20"))

INNER = r'''
import json, os, socket, subprocess, sys, threading, time
out, bin, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
k, rd = f"{out}/l2-vmlinuz", f"{out}/l2-initrd.cpio.gz"
MIB = 256
cmdline = "console=ttyS0 reboot=k panic=-1 nomodule quiet 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd l2.exit=poweroff"
work = "/tmp/vmm-bench"
os.makedirs(work, exist_ok=True)
spec = {"id": "bench", "kernel": k, "initrd": rd, "cmdline": cmdline, "vcpus": 1, "memory_mib": MIB,
        "control_socket": f"{work}/cloudlet.sock", "exit_record": f"{work}/exit.json", "echo": True,
        "confinement": {"seccomp": True}}
json.dump(spec, open(f"{work}/spec.json", "w"))
def qemu(machine, sock):
    return ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-M", machine, "-m", str(MIB), "-smp", "1", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", k, "-initrd", rd,
            "-append", cmdline, "-qmp", f"unix:{sock},server=on,wait=off"]
peers = {
    "cloudlet": ([bin, "vmm-worker", "--spec", f"{work}/spec.json"], f"{work}/cloudlet.sock", b'{"op":"status"}\n'),
    "qemu-microvm": (qemu("microvm", f"{work}/microvm.sock"), f"{work}/microvm.sock", None),
    "qemu-pc": (qemu("pc", f"{work}/pc.sock"), f"{work}/pc.sock", None),
}
def overhead_kib(pid):
    """(Rss, Private_Clean + Private_Dirty) of every mapping but guest RAM, KiB. Guest RAM is
    the mapping at least as large as the guest's memory (the kernel may merge a neighbouring
    anonymous mapping of a few KiB into it, so it is not always exactly that size)."""
    rss = private = 0
    guest = MIB * 1024
    skip = False
    try:
        for line in open(f"/proc/{pid}/smaps"):
            f = line.split()
            if len(f) < 2:
                continue
            if f[0] == "Size:":
                skip = int(f[1]) >= guest
            elif skip:
                continue
            elif f[0] == "Rss:":
                rss += int(f[1])
            elif f[0] in ("Private_Clean:", "Private_Dirty:"):
                private += int(f[1])
    except OSError:
        return None
    return rss, private
def socket_ready(path, req, t0, res):
    while time.monotonic() - t0 < 30:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            if req:
                s.sendall(req)
            if s.recv(1):
                res.append((time.monotonic() - t0) * 1000)
                s.close()
                return
        except OSError:
            pass
        time.sleep(0.0005)
res = {n: {"init_ms": [], "boot_timer_ms": [], "overhead_kib": [], "private_kib": [], "socket_ms": [], "dropped": 0} for n in peers}
for r in range(runs):
    for name, (argv, sock, req) in peers.items():
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        t0 = time.monotonic()
        errf = open(f"{work}/{name}.err", "w+")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL)
        sres = []
        st = threading.Thread(target=socket_ready, args=(sock, req, t0, sres), daemon=True)
        st.start()
        guard = threading.Timer(120, p.kill)
        guard.start()
        seen = None
        for line in p.stdout:
            if b"L2 INIT REACHED" in line and seen is None:
                seen = (time.monotonic() - t0) * 1000
                ov = overhead_kib(p.pid)
                if ov is not None:
                    res[name]["overhead_kib"].append(ov[0])
                    res[name]["private_kib"].append(ov[1])
        try:
            p.wait(timeout=130)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=30)
        errf.seek(0)
        err = errf.read()
        errf.close()
        guard.cancel()
        st.join(timeout=1)
        if seen is None:
            res[name]["dropped"] += 1
            print(f"dropped: {name} run {r}: {err[-300:]}", file=sys.stderr, flush=True)
            continue
        res[name]["init_ms"].append(seen)
        res[name]["socket_ms"] += sres
        for l in err.splitlines():
            if l.startswith("{") and "boot_timer_ms" in l:
                t = json.loads(l).get("boot_timer_ms")
                if t is not None:
                    res[name]["boot_timer_ms"].append(t)
    print(f"round {r + 1}/{runs} done", file=sys.stderr, flush=True)
print("BENCH " + json.dumps(res))
'''


def native_socket_ready(out):
    """Measure 3 on this host: start to first answer, ms, for cloudlet and QEMU microvm."""
    import socket
    import tempfile
    import time
    work = tempfile.mkdtemp(prefix="vmm-bench-")
    k, rd = f"{out}/l2-vmlinuz", f"{out}/l2-initrd.cpio.gz"
    spec = {"id": "bench", "kernel": k, "initrd": rd, "cmdline": "console=ttyS0", "vcpus": 1, "memory_mib": 256,
            "control_socket": f"{work}/c.sock", "confinement": {"seccomp": True}}
    with open(f"{work}/spec.json", "w") as f:
        json.dump(spec, f)
    peers = {
        "cloudlet": ([BIN, "vmm-worker", "--spec", f"{work}/spec.json"], f"{work}/c.sock", b'{"op":"status"}\n'),
        "qemu-microvm": (["qemu-system-x86_64", "-accel", "tcg", "-M", "microvm", "-m", "256", "-nodefaults", "-no-user-config",
                          "-display", "none", "-kernel", k, "-initrd", rd, "-qmp", f"unix:{work}/q.sock,server=on,wait=off"],
                         f"{work}/q.sock", None),
    }
    res = {n: [] for n in peers}
    for _ in range(RUNS):
        for name, (argv, sock, req) in peers.items():
            if os.path.exists(sock):
                os.unlink(sock)
            t0 = time.monotonic()
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            while time.monotonic() - t0 < 10:
                try:
                    c = socket.socket(socket.AF_UNIX)
                    c.connect(sock)
                    if req:
                        c.sendall(req)
                    if c.recv(1):
                        res[name].append((time.monotonic() - t0) * 1000)
                        break
                except OSError:
                    time.sleep(0.0002)
                finally:
                    c.close()
            p.kill()
            p.wait()
    return res


def main():
    out = os.path.join(ROOT, "target/nested-kvm")
    native = native_socket_ready(out)
    script = os.path.join(out, "bench-inner.py")
    with open(script, "w") as f:
        f.write(INNER)
    cmd = f"python3 {script} {out} {BIN} {RUNS}"
    env = dict(os.environ, TIMEOUT=os.environ.get("TIMEOUT", "5400"))
    p = subprocess.run(["bash", os.path.join(ROOT, "integration/nested-kvm/run-l1.sh"), cmd], capture_output=True, text=True, env=env)
    line = next((l for l in p.stdout.splitlines() if l.startswith("BENCH ")), None)
    if not line:
        print(p.stdout[-3000:], p.stderr[-2000:])
        raise SystemExit("the benchmark did not report")
    res = json.loads(line[6:])

    def med(v):
        return statistics.median(v) if v else float("nan")

    def cell(v, unit=""):
        return f"{med(v):,.1f}{unit} ({min(v):,.1f}-{max(v):,.1f})" if v else "-"

    c = med(res["cloudlet"]["init_ms"])
    print(f"\ninside L1 (TCG + nested KVM), {RUNS} boots each, median (min-max)\n")
    print("| VMM | start to init, ms | ratio to cloudlet | boot timer, ms | overhead RSS, KiB | of it private, KiB | control socket ready, ms | dropped |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ["cloudlet", "qemu-microvm", "qemu-pc"]:
        r = res[name]
        ratio = med(r["init_ms"]) / c if r["init_ms"] else float("nan")
        print(f"| {name} | {cell(r['init_ms'])} | {ratio:.2f} | {cell(r['boot_timer_ms'])} | {cell(r['overhead_kib'])} | {cell(r['private_kib'])} | {cell(r['socket_ms'])} | {r['dropped']} |")
    print(f"\ncontrol socket ready natively on this host, {RUNS} starts each, median (min-max) ms\n")
    print("| VMM | start to first answer, ms | ratio to cloudlet |")
    print("|---|---|---|")
    nc = med(native["cloudlet"])
    for name, v in native.items():
        print(f"| {name} | {cell(v)} | {med(v) / nc:.2f} |")
    print("\n" + json.dumps({"nested": res, "native_socket_ms": native}))


if __name__ == "__main__":
    main()
