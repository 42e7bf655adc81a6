#!/bin/busybox sh
# /init of the smallest L2 guest: say it reached init (with the uptime the kernel reports), then
# power off. Used to prove that KVM inside L1 boots Debian's stock cloud kernel.
/bin/busybox --install -s /bin
mount -t proc proc /proc
echo "L2 INIT REACHED uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
