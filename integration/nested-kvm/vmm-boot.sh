#!/bin/sh
# Inside L1: boot the L2 cloud kernel with cloudlet's own VMM (`cloudlet vmm-worker`) on
# /dev/kvm and check that the guest reached init: its console says so, the boot timer fired,
# and the guest ended by resetting (reboot=k). Usage: vmm-boot.sh CLOUDLET_BIN
set -eu
bin="$1"
out="$(cd "$(dirname "$0")/../.." && pwd)/target/nested-kvm"
console=/tmp/l2-console.log
report=/tmp/l2-report.json
cmdline="console=ttyS0 reboot=k panic=-1 acpi=off pci=off nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd l2.exit=reboot"
timeout 300 "$bin" vmm-worker --kernel "$out/l2-vmlinuz" --initrd "$out/l2-initrd.cpio.gz" --memory 256 \
  --cmdline "$cmdline" --console-log "$console" 2> /tmp/l2-worker.log || { cat /tmp/l2-worker.log; exit 1; }
tail -1 /tmp/l2-worker.log > "$report"
echo "--- console (last lines)"; tail -5 "$console"
echo "--- report"; cat "$report"
grep -q "L2 INIT REACHED" "$console" || { echo "FAIL: the guest did not reach init"; exit 1; }
grep -q '"exit":"Reset"' "$report" || { echo "FAIL: the guest did not end with a reset"; exit 1; }
grep -q '"boot_timer_ms":[0-9]' "$report" || { echo "FAIL: no boot timer write"; exit 1; }
echo "PASS: cloudlet's VMM booted the guest to init"
