#!/bin/busybox sh
# /init of the debian-12 image's initramfs (built by images/vm/build.sh).
#
# Loads the virtio modules of Debian's cloud kernel (listed, dependencies first, in
# /modules.order), waits a bounded time for the root disk named by `root=` (default /dev/vda;
# also LABEL=... or UUID=...), mounts it (`rootfstype=`, default ext4, built into the kernel;
# `ro`/`rw`, `rootflags=`) and switch_roots into its init (`init=`, default /sbin/init).
# `rootwait=SECONDS` overrides the 10 s wait. On any failure it prints a line starting with
# "CLOUDLET INITRD FAILED" on the console and powers the machine off: it never hangs.
/bin/busybox mkdir -p /proc /sys /dev /tmp /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
	echo "CLOUDLET INITRD FAILED: $*; powering off"
	sync
	poweroff -f
	# poweroff -f only returns if the machine has no way to power off (no ACPI S5):
	# reset instead (reboot=k, panic=-1), and as the very last resort let the kernel panic.
	sleep 1
	reboot -f
	exit 1
}

root=/dev/vda fstype=ext4 flags='' mode=ro init=/sbin/init wait=10 quiet=''
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	root=*) root="${arg#root=}" ;;
	rootfstype=*) fstype="${arg#rootfstype=}" ;;
	rootflags=*) flags="${arg#rootflags=}" ;;
	rootwait=*) wait="${arg#rootwait=}" ;;
	init=*) init="${arg#init=}" ;;
	ro) mode=ro ;;
	rw) mode=rw ;;
	quiet) quiet=1 ;;
	esac
done
case "$wait" in '' | *[!0-9]*) wait=10 ;; esac
say() { [ -n "$quiet" ] || echo "cloudlet initrd: $*"; }

while read -r mod; do
	[ -n "$mod" ] || continue
	# A module that fails (e.g. the hardware is absent) is reported, not fatal: the root
	# disk check below is what decides.
	insmod "/lib/modules/$mod" || echo "cloudlet initrd: insmod $mod failed"
done </modules.order
say "modules loaded: $(tr '\n' ' ' </modules.order)"

# The root disk: virtio-mmio devices are probed from ACPI (LNRO0005) when virtio_mmio
# loads, and devtmpfs creates the node when virtio_blk binds; wait up to $wait s for it.
dev=
tries=$((wait * 10))
while [ "$tries" -gt 0 ]; do
	case "$root" in
	LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
	*) [ -b "$root" ] && dev="$root" ;;
	esac
	[ -n "$dev" ] && break
	tries=$((tries - 1))
	usleep 100000
done
[ -n "$dev" ] || fail "root disk $root did not appear within ${wait}s (virtio-blk devices: $(ls /sys/bus/virtio/devices 2>/dev/null | tr '\n' ' '))"

opts="$mode"
[ -n "$flags" ] && opts="$opts,$flags"
mount -t "$fstype" -o "$opts" "$dev" /newroot || fail "cannot mount $dev ($fstype, $opts) on /newroot"
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "$dev has no $init"
say "root $dev mounted ($fstype, $opts), switching to $init"

mkdir -p /newroot/dev /newroot/proc /newroot/sys 2>/dev/null
mount --move /dev /newroot/dev || mount -t devtmpfs devtmpfs /newroot/dev
umount /sys
umount /proc
exec switch_root /newroot "$init" || fail "switch_root to $init failed"
