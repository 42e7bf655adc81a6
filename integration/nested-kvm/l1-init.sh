#!/bin/busybox sh
# /init of the L1 guest: load KVM (AMD SVM, emulated by QEMU's TCG) and the 9p stack, mount the
# host's root read-only at /host, give it writable /run, /tmp and /var/tmp, then run the command
# named by `l1.cmd=` on the kernel command line (a path under the host root) inside it, print its
# exit code as `L1 EXIT <code>`, and power off.
#
# The host runs another kernel, so the host root has no modules for this one. `l1.modules=` names
# (as a path in the host root) the unpacked, depmod'ed module tree of this kernel; it is bound on
# /lib/modules/$(uname -r) both here (the kernel's autoload runs this initramfs's busybox modprobe)
# and in the host root (through an overlay of its /lib with a tmpfs upper layer), and the modules
# the site daemon's network model uses are loaded up front.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
  insmod "/lib/mod/$m" 2>/dev/null || echo "L1: insmod $m failed"
done < /modules.order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host || echo "L1: mounting the host share failed"
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }

# Kernel modules.
ver=$(uname -r)
mods=$(arg l1.modules)
if [ -n "$mods" ] && [ -f "/host$mods/modules.dep" ]; then
  mkdir -p "/lib/modules/$ver" && mount --bind "/host$mods" "/lib/modules/$ver"
  echo /bin/modprobe > /proc/sys/kernel/modprobe
  # The host root's /lib (often a symlink to usr/lib) gets a writable overlay to hold the tree.
  lib=/host/lib
  l=$(readlink "$lib") && case "$l" in /*) lib="/host$l" ;; *) lib="/host/$l" ;; esac
  mkdir -p /ovl && mount -t tmpfs -o mode=0755 ovl /ovl && mkdir -p /ovl/upper/modules /ovl/work
  if modprobe overlay && mount -t overlay -o "lowerdir=$lib,upperdir=/ovl/upper,workdir=/ovl/work" overlay "$lib"; then
    mkdir -p "$lib/modules/$ver" && mount --bind "/host$mods" "$lib/modules/$ver"
  else
    echo "L1: no overlay on the host's /lib: /lib/modules/$ver is missing in the chroot"
  fi
  # Netfilter (nf_tables with NAT, conntrack, fib, numgen, hash), links (veth, tun, bridge),
  # shaping (HTB, u32) and overlayfs. The kernel autoloads most of these on first use; loading
  # them here makes a missing one visible at once.
  for m in nf_tables nft_chain_nat nf_nat nf_conntrack nft_ct nft_nat nft_masq nft_fib_inet nft_fib_ipv4 \
    nft_numgen nft_hash nft_reject_inet nft_limit veth tun bridge sch_htb cls_u32 af_packet; do
    modprobe "$m" 2>/dev/null || echo "L1: modprobe $m failed"
  done
else
  echo "L1: no module tree for $ver (l1.modules=$mods): only the initramfs's modules are loaded"
fi

# The checkout (`l1.keep=`, from run-l1.sh) stays visible even when it lives under one of the
# directories the tmpfs mounts below hide (a CI checkout in /tmp, say).
keep=$(sed -n 's/.*l1\.keep=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$keep" ]; then mkdir -p /keep && mount --bind "/host$keep" /keep; fi
for d in run tmp var/tmp; do mount -t tmpfs tmpfs "/host/$d"; done
if [ -n "$keep" ] && [ ! -d "/host$keep/integration" ]; then
  mkdir -p "/host$keep" && mount --bind /keep "/host$keep" || echo "L1: keeping $keep visible failed"
fi
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs -o mode=1777 shm /dev/shm
# What udev would add to devtmpfs (`nft -f /dev/stdin`, as the nftables crate runs it, needs it).
ln -sfn /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sfn "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || echo "L1: mounting cgroup2 failed"
for d in proc sys dev; do mount -o rbind "/$d" "/host/$d"; done
ip link set lo up
[ -c /dev/kvm ] && echo "L1: /dev/kvm is ready" || echo "L1: no /dev/kvm"
cmd=$(arg l1.cmd | sed 's/%20/ /g')
code=0
if [ -n "$cmd" ]; then
  chroot /host /bin/sh -c "cd / && $cmd"
  code=$?
fi
echo "L1 EXIT $code"
poweroff -f
