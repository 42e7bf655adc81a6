#!/bin/busybox sh
# /init of the smallest L2 guest: say it reached init (with the uptime and the CPUs the kernel
# reports), then leave by the way `l2.exit=` names: `reboot` (a reset: the ACPI reset register
# or, with reboot=k, the i8042 pulse), `poweroff` (ACPI S5 through the sleep control register)
# or, by default, power off too. Used to prove that KVM inside L1 boots Debian's stock cloud
# kernel, and that cloudlet's VMM sees both ways out.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The boot timer: one byte, 123, written to MMIO address 0xd0000000 (cloudlet's VMM
# timestamps it; Debian's kernels have /dev/mem but no /dev/port).
devmem 0xd0000000 8 123 || echo "L2: the boot timer write failed"
echo "L2 INIT REACHED uptime=$(cut -d' ' -f1 /proc/uptime) cpus=$(grep -c ^processor /proc/cpuinfo)"
[ -d /sys/firmware/acpi/tables ] && echo "L2 ACPI TABLES $(ls /sys/firmware/acpi/tables | tr '\n' ' ')"
if grep -q 'l2.exit=reboot' /proc/cmdline; then reboot -f; fi
poweroff -f
