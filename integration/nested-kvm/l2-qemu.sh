#!/bin/sh
# Inside L1: boot the L2 cloud kernel with QEMU on /dev/kvm (the reference the VMM is compared
# with), and check that it reached init.
set -eu
out="$(dirname "$0")/../../target/nested-kvm"
log=/tmp/l2.log
timeout 300 qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -M microvm -nodefaults -no-user-config \
  -serial stdio -display none -no-reboot \
  -kernel "$out/l2-vmlinuz" -initrd "$out/l2-initrd.cpio.gz" -append "console=ttyS0 panic=-1 quiet" > "$log" 2>&1 || true
cat "$log"
grep -q "L2 INIT REACHED" "$log"
