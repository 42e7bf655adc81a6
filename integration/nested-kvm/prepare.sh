#!/usr/bin/env bash
# Prepare the nested KVM lane (see ../../docs/design.md, "The nested KVM lane"): Debian's generic
# kernel for the L1 guest, Debian's cloud kernel for L2 guests, and the two initramfs images.
# Everything comes from Debian packages (downloaded with apt-get, unpacked, never installed).
# Output: target/nested-kvm/{l1-vmlinuz,l1-initrd.cpio.gz,l2-vmlinuz,l2-initrd.cpio.gz,modules-*}.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/target/nested-kvm"
mkdir -p "$out/debs"
cd "$out/debs"
# The kernel ABI the meta packages point at (e.g. linux-image-6.1.0-57-amd64).
l1pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
l2pkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1)
[ -n "$l1pkg" ] && [ -n "$l2pkg" ] || { echo "nested-kvm: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
for p in "$l1pkg" "$l2pkg"; do
  ls "$p"_*.deb >/dev/null 2>&1 || apt-get download "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
  if [ ! -d "$out/$p" ]; then
    rm -rf "$out/$p.tmp" && mkdir -p "$out/$p.tmp" && dpkg-deb -x "$p"_*.deb "$out/$p.tmp"
    depmod -b "$out/$p.tmp" "${p#linux-image-}"
    mv "$out/$p.tmp" "$out/$p"
  fi
done
# busybox-static is unpacked, not installed (it conflicts with the busybox package).
ls busybox-static_*.deb >/dev/null 2>&1 || apt-get download busybox-static 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
if [ ! -x "$out/busybox-static/bin/busybox" ]; then
  rm -rf "$out/busybox-static" && dpkg-deb -x busybox-static_*.deb "$out/busybox-static"
fi
l1ver="${l1pkg#linux-image-}"; l2ver="${l2pkg#linux-image-}"
ln -sfn "$out/$l1pkg/lib/modules/$l1ver" "$out/modules-l1"
ln -sfn "$out/$l2pkg/lib/modules/$l2ver" "$out/modules-l2"
cp "$out/$l1pkg/boot/vmlinuz-$l1ver" "$out/l1-vmlinuz"
cp "$out/$l2pkg/boot/vmlinuz-$l2ver" "$out/l2-vmlinuz"

# An initramfs: busybox-static, the init script given, and the modules named (with their
# dependencies, in load order, as /modules.order).
mkinitrd() {
  local modroot="$1" init="$2" dest="$3"; shift 3
  local d; d="$(mktemp -d)"
  mkdir -p "$d/bin" "$d/lib/mod" "$d/proc" "$d/sys" "$d/dev" "$d/host" "$d/tmp"
  cp "$out/busybox-static/bin/busybox" "$d/bin/busybox"
  cp "$init" "$d/init"; chmod +x "$d/init"
  : > "$d/modules.order"
  local seen=" "
  add() {
    local rel="$1" dep
    case "$seen" in *" $rel "*) return;; esac
    for dep in $(sed -n "s|^$rel: *||p" "$modroot/modules.dep"); do add "$dep"; done
    seen="$seen$rel "
    cp "$modroot/$rel" "$d/lib/mod/"
    basename "$rel" >> "$d/modules.order"
  }
  local m rel
  for m in "$@"; do
    rel=$(grep -E "(^|/)$m\.ko:" "$modroot/modules.dep" | cut -d: -f1 | head -1)
    [ -n "$rel" ] || { echo "nested-kvm: no module $m in $modroot" >&2; exit 1; }
    add "$rel"
  done
  (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) > "$dest.tmp"
  mv "$dest.tmp" "$dest"
  rm -rf "$d"
}
here="$root/integration/nested-kvm"
mkinitrd "$out/modules-l1" "$here/l1-init.sh" "$out/l1-initrd.cpio.gz" \
  irqbypass kvm ccp kvm-amd netfs fscache 9pnet virtio virtio_ring virtio_pci 9pnet_virtio 9p
mkinitrd "$out/modules-l2" "$here/l2-init.sh" "$out/l2-initrd.cpio.gz"
ls -l "$out"/l1-* "$out"/l2-*
