#!/bin/busybox sh
# /init of the L1 guest: load KVM (AMD SVM, emulated by QEMU's TCG) and the 9p stack, mount the
# host's root read-only at /host, give it writable /run, /tmp and /var/tmp, then run the command
# named by `l1.cmd=` on the kernel command line (a path under the host root) inside it, print its
# exit code as `L1 EXIT <code>`, and power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
  insmod "/lib/mod/$m" 2>/dev/null || echo "L1: insmod $m failed"
done < /modules.order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host || echo "L1: mounting the host share failed"
for d in run tmp var/tmp; do mount -t tmpfs tmpfs "/host/$d"; done
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
[ -c /dev/kvm ] && echo "L1: /dev/kvm is ready" || echo "L1: no /dev/kvm"
cmd=$(sed -n 's/.*l1\.cmd=\([^ ]*\).*/\1/p' /proc/cmdline | sed 's/%20/ /g')
code=0
if [ -n "$cmd" ]; then
  chroot /host /bin/sh -c "cd / && $cmd"
  code=$?
fi
echo "L1 EXIT $code"
poweroff -f
