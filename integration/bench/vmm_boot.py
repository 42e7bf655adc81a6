#!/usr/bin/env python3
"""microVM boot benchmark (issue 7): `python3 integration/bench/vmm_boot.py [CLOUDLET_BIN]`.

Runs the nested KVM lane's L1 guest (integration/nested-kvm/run-l1.sh; prepare.sh first) and,
inside it, on L1's real /dev/kvm, boots the same guest (Debian's stock cloud kernel and the
lane's L2 initramfs, 256 MiB, one vCPU, console on ttyS0) RUNS times (default 10) with each of:
- cloudlet's VMM (`cloudlet vmm-worker`);
- QEMU `-M microvm` (Debian qemu-system-x86), `-nodefaults`, no network or disk;
- QEMU `-M pc`.
Measure: from the process's start to the guest's `L2 INIT REACHED` console line, timed inside L1
by the reader of the VMM's console (so the same clock and the same emulation for all three);
for cloudlet also its own boot timer (the guest's MMIO write). QEMU is stopped once the line
appears; cloudlet's guest resets itself. QEMU's machines keep their own ACPI tables (cloudlet
has none yet, so its guest runs with acpi=off); a run that does not reach init in 120 s is dropped. VMM
memory overhead and control-socket readiness are not measured yet. Prints a Markdown table;
asserts nothing.
Everything inside L1 is 10-50x slower than native (TCG), so only the ratios carry over.
"""

import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/cloudlet"))
RUNS = int(os.environ.get("RUNS", "10"))

INNER = r'''
import json, os, statistics, subprocess, sys, time
out, bin, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
k, rd = f"{out}/l2-vmlinuz", f"{out}/l2-initrd.cpio.gz"
cmdline = "console=ttyS0 reboot=k panic=-1 acpi=off pci=off nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd l2.exit=reboot quiet"
# QEMU's machines boot with their own ACPI tables, as they normally would.
qcmd = "console=ttyS0 panic=-1 nomodule quiet"
peers = {
    "cloudlet": [bin, "vmm-worker", "--kernel", k, "--initrd", rd, "--memory", "256", "--cmdline", cmdline, "--echo"],
    "qemu-microvm": ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-M", "microvm", "-m", "256", "-smp", "1", "-nodefaults",
                     "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", k, "-initrd", rd, "-append", qcmd],
    "qemu-pc": ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-M", "pc", "-m", "256", "-smp", "1", "-nodefaults",
                "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", k, "-initrd", rd, "-append", qcmd],
}
import threading
res = {}
for name, argv in peers.items():
    times, timers = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        guard = threading.Timer(120, p.kill)  # a boot that never reaches init is dropped
        guard.start()
        seen = None
        for line in p.stdout:
            if b"L2 INIT REACHED" in line and seen is None:
                seen = time.monotonic() - t0
                if name != "cloudlet":
                    # QEMU has no boot timer and, with acpi=off, no way out: stop it at init.
                    p.kill()
                    break
        if name == "cloudlet":
            err = p.stderr.read().decode(errors="replace")
        else:
            err = ""
        p.wait(timeout=300)
        guard.cancel()
        if seen is not None:
            times.append(seen * 1000)
        for l in err.splitlines():
            if l.startswith("{") and "boot_timer_ms" in l:
                t = json.loads(l).get("boot_timer_ms")
                if t is not None:
                    timers.append(t)
    res[name] = {"init_ms": times, "boot_timer_ms": timers}
print("BENCH " + json.dumps(res))
'''


def main():
    out = os.path.join(ROOT, "target/nested-kvm")
    script = os.path.join(out, "bench-inner.py")
    with open(script, "w") as f:
        f.write(INNER)
    cmd = f"python3 {script} {out} {BIN} {RUNS}"
    env = dict(os.environ, TIMEOUT=os.environ.get("TIMEOUT", "3000"))
    p = subprocess.run(["bash", os.path.join(ROOT, "integration/nested-kvm/run-l1.sh"), cmd], capture_output=True, text=True, env=env)
    line = next((l for l in p.stdout.splitlines() if l.startswith("BENCH ")), None)
    if not line:
        print(p.stdout[-3000:], p.stderr[-2000:])
        raise SystemExit("the benchmark did not report")
    import json
    res = json.loads(line[6:])
    med = lambda v: statistics.median(v) if v else float("nan")
    c = med(res["cloudlet"]["init_ms"])
    print(f"\nboot to init inside L1 (TCG + nested KVM), {RUNS} boots each, median (min-max) ms\n")
    print("| VMM | start to init | ratio to cloudlet | boot timer |")
    print("|---|---|---|---|")
    for name in ["cloudlet", "qemu-microvm", "qemu-pc"]:
        v = res[name]["init_ms"]
        bt = res[name]["boot_timer_ms"]
        rng = f"{min(v):,.0f}-{max(v):,.0f}" if v else "-"
        print(f"| {name} | {med(v):,.0f} ({rng}) | {med(v) / c:.2f} | {med(bt):,.0f} |" if bt else f"| {name} | {med(v):,.0f} ({rng}) | {med(v) / c:.2f} | - |")
    print("\n" + json.dumps(res))


if __name__ == "__main__":
    main()
