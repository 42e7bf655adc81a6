#!/bin/sh
# Inside L1: boot the L2 cloud kernel with cloudlet's own VMM (`cloudlet vmm-worker`, confined
# as the daemon runs it) on /dev/kvm, twice:
# 1. two vCPUs, leaving by a reboot: the guest reached init (its console says so, with 2 CPUs
#    and the ACPI tables), the boot timer fired, and the worker reports `reboot`;
# 2. one vCPU, leaving by a power-off (ACPI S5): the worker reports `poweroff`.
# Usage: vmm-boot.sh CLOUDLET_BIN
set -eu
bin="$1"
out="$(cd "$(dirname "$0")/../.." && pwd)/target/nested-kvm"
base="console=ttyS0 reboot=k panic=-1 nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd"
fail() { echo "FAIL: $*"; exit 1; }
boot() { # name vcpus exit
  console=/tmp/l2-$1.log
  rm -f "$console"
  timeout 300 "$bin" vmm-worker --kernel "$out/l2-vmlinuz" --initrd "$out/l2-initrd.cpio.gz" --memory 256 \
    --vcpus "$2" --confine --cmdline "$base l2.exit=$3" --console-log "$console" 2> /tmp/l2-$1-worker.log \
    || { cat /tmp/l2-$1-worker.log; fail "the worker failed ($1)"; }
  report=$(tail -1 /tmp/l2-$1-worker.log)
  echo "--- $1: console (last lines)"; tail -4 "$console"
  echo "--- $1: report"; echo "$report"
  grep -q "L2 INIT REACHED" "$console" || fail "the guest did not reach init ($1)"
  echo "$report" | grep -q '"boot_timer_ms":[0-9]' || fail "no boot timer write ($1)"
}
boot smp 2 reboot
grep -q "L2 INIT REACHED.* cpus=2" /tmp/l2-smp.log || fail "the guest did not see 2 CPUs"
grep -q "L2 ACPI TABLES.*APIC.*DSDT.*FACP" /tmp/l2-smp.log || fail "the guest did not see the ACPI tables"
echo "$report" | grep -q '"reason":"reboot"' || fail "the guest did not end with a reboot"
boot poweroff 1 poweroff
echo "$report" | grep -q '"reason":"poweroff"' || fail "the guest did not power off"
echo "PASS: cloudlet's VMM booted the guest to init (2 vCPUs, ACPI), saw a reboot and a power-off"
