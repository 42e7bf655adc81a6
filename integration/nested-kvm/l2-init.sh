#!/bin/busybox sh
# /init of the smallest L2 guest: say it reached init (with the uptime the kernel reports), then
# power off. Used to prove that KVM inside L1 boots Debian's stock cloud kernel.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
# The boot timer: one byte, 123, written to MMIO address 0xd0000000 (cloudlet's VMM
# timestamps it; Debian's kernels have /dev/mem but no /dev/port).
devmem 0xd0000000 8 123 || echo "L2: the boot timer write failed"
echo "L2 INIT REACHED uptime=$(cut -d' ' -f1 /proc/uptime)"
# Without ACPI the only way out is a reset (reboot=k: the i8042 pulse the VMM watches for).
if grep -q 'l2.exit=reboot' /proc/cmdline; then reboot -f; fi
poweroff -f
