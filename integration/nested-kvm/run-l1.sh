#!/usr/bin/env bash
# Boot the L1 guest (QEMU software emulation with emulated AMD SVM, Debian's generic kernel) and
# run COMMAND (a shell command line without spaces in paths; run inside the host's root, mounted
# read-only over 9p, with writable /run, /tmp and /var/tmp, and this kernel's modules under
# /lib/modules) in it. Prints the L1 console; exits with the command's exit code (as L1 reports
# it), or 124 when L1 did not finish in TIMEOUT seconds (default 900). Needs prepare.sh first.
# L1 has one vCPU unless L1_CPUS says otherwise: with two (multi-threaded TCG on a 2-core host)
# L1 froze with soft lockups in about one run in three under load; with one it never did. Its
# console goes to L1_LOG (default: a new file under target/nested-kvm/, so runs may overlap).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/target/nested-kvm"
cmd="${1:?usage: run-l1.sh COMMAND}"
log="${L1_LOG:-$(mktemp "$out/l1-console.XXXXXX.log")}"
# The kernel command line splits at spaces: pass the command as one word (spaces as %20).
enc="${cmd// /%20}"
# L1's kernel modules, as a path in the host root (the L1 guest mounts that root over 9p).
mods="$(readlink -f "$out/modules-l1")"
timeout "${TIMEOUT:-900}" qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC,+svm,+npt -M pc -m "${L1_MEM:-2048}" -smp "${L1_CPUS:-1}" \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -kernel "$out/l1-vmlinuz" -initrd "$out/l1-initrd.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet l1.modules=$mods l1.keep=$root l1.cmd=$enc" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  > "$log" 2>&1
rc=$?
console=$(grep -v "TCG doesn't support requested feature" "$log")
[ -n "${L1_LOG:-}" ] || rm -f "$log"
printf '%s\n' "$console"
[ "$rc" = 124 ] && { echo "nested-kvm: L1 did not finish in ${TIMEOUT:-900} s" >&2; exit 124; }
code=$(printf '%s\n' "$console" | sed -n 's/^L1 EXIT \([0-9]*\).*/\1/p' | tail -1)
[ -n "$code" ] || { echo "nested-kvm: L1 ended without reporting an exit code" >&2; exit 1; }
exit "$code"
