#!/usr/bin/env bash
# Build the bootable `debian-12` microVM image from Debian packages alone (no internet, no root,
# no loop mounts): Debian's stock cloud kernel, a busybox-static initramfs that loads the virtio
# modules of that kernel package, and a busybox ext4 root filesystem.
#
#   images/vm/build.sh [OUTDIR]        (default: target/vm-images/debian-12)
#
# OUTDIR receives vmlinuz, initrd.img, rootfs.ext4, image.json (what `cloudlet image import`
# reads) and SHA256SUMS. The kernel and busybox-static packages come from
# integration/nested-kvm/prepare.sh (apt-get download + dpkg-deb -x, never installed), which is
# run when its output (target/nested-kvm/) is missing. Timestamps come from SOURCE_DATE_EPOCH
# (default: the kernel image's mtime in its package), so rebuilding gives the same bytes.
# Guest behaviour: see images/vm/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/vm-images/debian-12}"
nk="$root/target/nested-kvm"
name=debian-12
cmdline="console=ttyS0 reboot=k panic=-1 root=/dev/vda rw i8042.noaux i8042.nomux i8042.dumbkbd"
# Modules of the initramfs (their dependencies are added from modules.dep): the virtio-mmio
# transport (devices found in ACPI as LNRO0005), disk and NIC drivers, and the ACPI power
# button with the evdev interface busybox acpid reads. virtio_pci (~110 KiB) makes the same
# image boot on PC machines too (QEMU -M pc/q35 with virtio-blk-pci/virtio-net-pci).
modules=(virtio_mmio virtio_pci virtio_blk virtio_net button evdev)
rootfs_size=64M

die() { echo "images/vm: $*" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin" # mke2fs and debugfs, for non-root builders
for tool in cpio gzip mke2fs debugfs sha256sum find sort touch stat readlink sed cmp; do
  case "$tool" in
  cpio | gzip | sed) pkg=$tool ;;
  mke2fs | debugfs) pkg=e2fsprogs ;;
  find) pkg=findutils ;;
  cmp) pkg=diffutils ;;
  *) pkg=coreutils ;;
  esac
  command -v "$tool" >/dev/null 2>&1 || die "missing tool '$tool' (Debian package $pkg: apt-get install $pkg)"
done
# mke2fs -d (populate from a directory) needs e2fsprogs >= 1.43.
e2ver=$(mke2fs -V 2>&1 | sed -n 's/^mke2fs \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
read -r e2maj e2min <<<"${e2ver:-0 0}"
{ [ "$e2maj" -gt 1 ] || { [ "$e2maj" -eq 1 ] && [ "$e2min" -ge 43 ]; }; } ||
  die "mke2fs ${e2maj}.${e2min} has no -d; e2fsprogs >= 1.43 is needed"
# Without root, file owners in the ext4 image would be the builder's: run mke2fs under fakeroot.
asroot=()
if [ "$(id -u)" != 0 ]; then
  command -v fakeroot >/dev/null 2>&1 || die "building as non-root needs fakeroot (apt-get install fakeroot)"
  asroot=(fakeroot --)
fi

if [ ! -e "$nk/modules-l2/modules.dep" ] || [ ! -x "$nk/busybox-static/bin/busybox" ]; then
  echo "images/vm: $nk is missing; running integration/nested-kvm/prepare.sh" >&2
  "$root/integration/nested-kvm/prepare.sh" >&2 || die "integration/nested-kvm/prepare.sh failed (apt-get update? network to the Debian mirror?)"
fi
moddir="$(readlink -f "$nk/modules-l2")"
kver="$(basename "$moddir")"
vmlinuz="${moddir%/lib/modules/*}/boot/vmlinuz-$kver"
busybox="$nk/busybox-static/bin/busybox"
[ -f "$vmlinuz" ] || die "no kernel image $vmlinuz (rerun integration/nested-kvm/prepare.sh)"
[ -f "$moddir/modules.dep" ] || die "no $moddir/modules.dep"
"$busybox" true 2>/dev/null || die "$busybox does not run on this host"
epoch="${SOURCE_DATE_EPOCH:-$(stat -c %Y "$vmlinuz")}"

mkdir -p "$out"
work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp() { find "$1" -exec touch -h -d "@$epoch" {} +; }

# --- initrd.img: busybox, /init, the modules (dependencies first, as /modules.order) ---
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/tmp" "$ird/newroot"
cp "$busybox" "$ird/bin/busybox"
cp "$here/initrd-init.sh" "$ird/init"
chmod 755 "$ird/bin/busybox" "$ird/init"
: >"$ird/modules.order"
seen=" "
add_module() {
  local rel="$1" dep
  case "$seen" in *" $rel "*) return ;; esac
  seen="$seen$rel "
  for dep in $(sed -n "s|^$rel: *||p" "$moddir/modules.dep"); do add_module "$dep"; done
  [ -f "$moddir/$rel" ] || die "module file $moddir/$rel is missing"
  cp "$moddir/$rel" "$ird/lib/modules/"
  chmod 644 "$ird/lib/modules/$(basename "$rel")"
  basename "$rel" >>"$ird/modules.order"
}
for m in "${modules[@]}"; do
  rel=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1 | head -1)
  [ -n "$rel" ] || die "kernel $kver has no module $m"
  case "$rel" in *.ko) ;; *) die "module $rel is compressed; insmod in the initramfs needs plain .ko" ;; esac
  add_module "$rel"
done
stamp "$ird"
(cd "$ird" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n >"$work/initrd.img"

# --- rootfs.ext4: busybox with its applet links, the files under rootfs/ ---
rfs="$work/rootfs"
mkdir -p "$rfs"
for d in bin sbin usr/bin usr/sbin etc/init.d dev proc sys run tmp root data www var/lib mnt; do
  mkdir -p "$rfs/$d"
done
cp "$busybox" "$rfs/bin/busybox"
"$busybox" --list-full | LC_ALL=C sort | while read -r applet; do
  case "$applet" in */*) ;; *) continue ;; esac # linuxrc: not for a root fs
  [ "$applet" = bin/busybox ] || [ -e "$rfs/$applet" ] || ln -s /bin/busybox "$rfs/$applet"
done
cp -R "$here/rootfs/." "$rfs/"
ln -s ../run/resolv.conf "$rfs/etc/resolv.conf"
ln -s ../proc/mounts "$rfs/etc/mtab"
ln -s ../run "$rfs/var/run"
ln -s ../run/log "$rfs/var/log"
ln -s ../tmp "$rfs/var/tmp"
find "$rfs" -type d -exec chmod 755 {} +
find "$rfs" -type f -exec chmod 644 {} +
chmod 755 "$rfs/bin/busybox" "$rfs/etc/init.d/rcS" "$rfs/etc/init.d/rcK" \
  "$rfs/usr/share/udhcpc/default.script" "$rfs/etc/acpi/PWRF/00000080"
chmod 700 "$rfs/root"
chmod 1777 "$rfs/tmp"
stamp "$rfs"
# A stable file system UUID and directory hash seed (from the inputs), for identical rebuilds.
seed=$(printf '%s\n' "$name" "$kver" "$(sha256sum <"$busybox")" | sha256sum | cut -c1-32)
uuid="${seed:0:8}-${seed:8:4}-4${seed:13:3}-a${seed:17:3}-${seed:20:12}"
rm -f "$work/rootfs.ext4"
E2FSPROGS_FAKE_TIME="$epoch" MKE2FS_CONFIG="$here/mke2fs.conf" "${asroot[@]}" \
  mke2fs -q -F -t ext4 -T default -b 4096 -I 256 -m 1 -L "$name-root" -U "$uuid" \
  -E "root_owner=0:0,hash_seed=$uuid" -d "$rfs" "$work/rootfs.ext4" "$rootfs_size" >/dev/null ||
  die "mke2fs failed"
# mke2fs -d copies each file's ctime (the time of this build): set them all to $epoch.
(cd "$rfs" && find . | LC_ALL=C sort | sed "s|^\.||; s|^\$|/|; s|.*|sif \"&\" ctime @$epoch|") >"$work/ctime.debugfs"
E2FSPROGS_FAKE_TIME="$epoch" debugfs -w -f "$work/ctime.debugfs" "$work/rootfs.ext4" >/dev/null 2>"$work/debugfs.err" ||
  die "debugfs failed: $(cat "$work/debugfs.err")"
# debugfs exits 0 even when a command fails; anything but its banner is an error.
! grep -v '^debugfs [0-9]' "$work/debugfs.err" >&2 || die "debugfs could not set the times in rootfs.ext4"

# --- vmlinuz, image.json, SHA256SUMS ---
cp "$vmlinuz" "$work/vmlinuz"
cat >"$work/image.json" <<EOF
{"name":"$name","os":"linux","arch":"x86_64","kernel":"vmlinuz","initrd":"initrd.img","rootfs":"rootfs.ext4","cmdline":"$cmdline","kernel_version":"$kver"}
EOF
(cd "$work" && sha256sum vmlinuz initrd.img rootfs.ext4 image.json >SHA256SUMS)

# Publish: a file is replaced only when its bytes changed (one rename each), SHA256SUMS last.
for f in vmlinuz initrd.img rootfs.ext4 image.json SHA256SUMS; do
  if [ -f "$out/$f" ] && cmp -s "$work/$f" "$out/$f"; then continue; fi
  touch -d "@$epoch" "$work/$f"
  mv -f "$work/$f" "$out/$f"
done
echo "images/vm: built $name (kernel $kver, modules: $(tr '\n' ' ' <"$ird/modules.order")) in $out"
(cd "$out" && ls -l vmlinuz initrd.img rootfs.ext4 image.json SHA256SUMS)
