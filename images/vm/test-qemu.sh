#!/usr/bin/env bash
# Boot the debian-12 image (images/vm/build.sh) with QEMU in software emulation (TCG), without
# cloudlet's VMM, and check what the image promises:
#   1. microvm (ACPI, virtio-mmio as LNRO0005), fresh data disk: init reached, DHCP address,
#      HTTP `/` and `/boots` (= 1) through a host port; ACPI power button (system_powerdown)
#      -> graceful power-off: /data unmounted cleanly, QEMU exits.
#   2. microvm, same disks: `/boots` = 2; `poweroff` typed on the console shell -> clean stop.
#   3. microvm, same disks: SIGINT to init (what the kernel sends for Ctrl-Alt-Del) -> clean
#      power-off; then `reboot` typed on the console -> the machine resets (QEMU -no-reboot exits).
#   4. PC machine (i8042 keyboard, virtio-pci): `sendkey ctrl-alt-delete` -> clean power-off.
#      (QEMU microvm cannot do this: its ACPI is hardware-reduced, so Linux has no legacy IRQ 1
#      for an i8042 and the driver's probe fails with -EINVAL.)
#   5. microvm, data disk without a file system: reported, boot continues, `/boots` = 0.
#   6. microvm, no root disk: the initramfs reports it and powers off (no hang).
# Every QEMU runs under `timeout`; all are killed on exit. Exits non-zero on any failure.
#   images/vm/test-qemu.sh [IMAGE_DIR]      (default: build into target/vm-images/debian-12)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ $# -ge 1 ]; then
  img="$1"
else
  img="$root/target/vm-images/debian-12"
  "$here/build.sh" "$img" >/dev/null
fi
for f in vmlinuz initrd.img rootfs.ext4 image.json; do
  [ -f "$img/$f" ] || { echo "test-qemu: $img/$f is missing (run images/vm/build.sh)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin:/sbin" # mkfs.ext4, dumpe2fs, e2fsck for non-root users
for tool in qemu-system-x86_64 curl mkfs.ext4 dumpe2fs e2fsck timeout; do
  command -v "$tool" >/dev/null 2>&1 || { echo "test-qemu: missing tool $tool" >&2; exit 1; }
done
(cd "$img" && sha256sum -c --quiet SHA256SUMS) || { echo "test-qemu: SHA256SUMS mismatch in $img" >&2; exit 1; }
cmdline=$(sed -n 's/.*"cmdline":"\([^"]*\)".*/\1/p' "$img/image.json")
[ -n "$cmdline" ] || { echo "test-qemu: no cmdline in $img/image.json" >&2; exit 1; }
# TCG only: under host load the kernel's TSC calibration against the PIT can fail, and the
# kernel then stalls before init (seen 2 boots in 6 on a busy 2-core host). Under TCG the
# guest TSC runs at the host's rate, so tell the kernel that rate (no effect on the image).
host_mhz=$(sed -n 's/^cpu MHz[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p' /proc/cpuinfo | head -1)
[ -n "$host_mhz" ] && cmdline="$cmdline tsc_early_khz=$((host_mhz * 1000))"

work="$(mktemp -d /tmp/cloudlet-vm-test.XXXXXX)"
vm_pid=
name=
cleanup() {
  local rc=$?
  if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
    kill "$vm_pid" 2>/dev/null || true
    wait "$vm_pid" 2>/dev/null || true
  fi
  if [ "$rc" = 0 ]; then rm -rf "$work"; else echo "test-qemu: logs kept in $work" >&2; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL [$name]: $*" >&2
  [ -f "$work/$name.console" ] && { echo "--- console of $name (last 40 lines) ---" >&2; tail -n 40 "$work/$name.console" >&2; }
  [ -s "$work/$name.qemu" ] && { echo "--- qemu stderr ---" >&2; cat "$work/$name.qemu" >&2; }
  exit 1
}
pass() { echo "ok [$name] $*"; }

# A loopback TCP port nothing listens on (bash /dev/tcp: no nc or socat needed).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

# start_vm NAME MACHINE(microvm|pc) ROOT_IMG|- DATA_IMG|-: boots in the background.
start_vm() {
  name="$1"
  local machine="$2" rootimg="$3" dataimg="$4" dev args=()
  http_port=$(free_port); mon_port=$(free_port); con_port=$(free_port)
  log="$work/$name.console"
  : >"$log"
  if [ "$machine" = microvm ]; then
    args+=(-M "microvm,acpi=on"); dev=device
  else
    args+=(-M pc); dev=pci
  fi
  [ "$rootimg" = - ] || args+=(-drive "id=root,file=$rootimg,format=raw,if=none" -device "virtio-blk-$dev,drive=root")
  [ "$dataimg" = - ] || args+=(-drive "id=data,file=$dataimg,format=raw,if=none" -device "virtio-blk-$dev,drive=data")
  args+=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$http_port-:80" -device "virtio-net-$dev,netdev=n0")
  t_start=$(date +%s.%N)
  timeout -k 5 180 qemu-system-x86_64 "${args[@]}" -accel tcg -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -no-reboot \
    -chardev "socket,id=con,host=127.0.0.1,port=$con_port,server=on,wait=off,logfile=$log" \
    -serial chardev:con -monitor "tcp:127.0.0.1:$mon_port,server=on,wait=off" \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$cmdline" \
    </dev/null >"$work/$name.qemu" 2>&1 &
  vm_pid=$!
}

# wait_console REGEX SECONDS: until the console log matches (fails if QEMU exits first).
wait_console() {
  local re="$1" n=$(($2 * 10))
  while [ "$n" -gt 0 ]; do
    grep -Eq "$re" "$log" && return 0
    kill -0 "$vm_pid" 2>/dev/null || { grep -Eq "$re" "$log" && return 0; fail "QEMU exited before the console showed /$re/"; }
    sleep 0.1
    n=$((n - 1))
  done
  fail "no /$re/ on the console within $2 s"
}

# wait_exit SECONDS: until QEMU exits by itself; its status must be 0.
wait_exit() {
  local n=$(($1 * 10)) rc=0
  while kill -0 "$vm_pid" 2>/dev/null; do
    [ "$n" -gt 0 ] || fail "QEMU still running $1 s after the stop request"
    sleep 0.1
    n=$((n - 1))
  done
  wait "$vm_pid" || rc=$?
  vm_pid=
  [ "$rc" = 0 ] || fail "QEMU exited with status $rc"
}

# Send one line to the HMP monitor / the serial console over their loopback sockets.
send_line() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || fail "cannot connect to 127.0.0.1:$1"
  printf '%s\n' "$2" >&3
  sleep 0.5
  exec 3>&-
}
monitor() { send_line "$mon_port" "$1"; }
console() { send_line "$con_port" "$1"; }

# http PATH EXPECTED: GET through the forwarded port (httpd starts right after READY).
http() {
  local body n=50
  while [ "$n" -gt 0 ]; do
    if body=$(curl -fsS -m 5 "http://127.0.0.1:$http_port$1" 2>/dev/null); then
      [ "$body" = "$2" ] || fail "GET $1 returned '$body', expected '$2'"
      pass "GET $1 -> '$body'"
      return 0
    fi
    sleep 0.2
    n=$((n - 1))
  done
  fail "GET $1 got no answer"
}

# booted EXPECTED_BOOTS: the console contract of a normal boot, then HTTP.
booted() {
  wait_console 'CLOUDLET GUEST INIT REACHED' 60
  local t_init; t_init=$(date +%s.%N)
  wait_console 'CLOUDLET GUEST READY' 60
  grep -Eq 'CLOUDLET GUEST IP [0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' "$log" || fail "no DHCP address on the console"
  local up ip
  up=$(sed -n 's/.*CLOUDLET GUEST INIT REACHED uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
  ip=$(sed -n 's/.*CLOUDLET GUEST IP \([0-9.]*\).*/\1/p' "$log" | head -1)
  pass "init reached: $(awk -v a="$t_start" -v b="$t_init" 'BEGIN{printf "%.2f", b-a}') s after QEMU start (guest uptime ${up} s), IP $ip"
  if [ "$1" != 0 ]; then
    grep -q "CLOUDLET GUEST BOOTS $1\$" <(tr -d '\r' <"$log") || fail "console does not say CLOUDLET GUEST BOOTS $1"
  fi
  http / "hello from debian-12"
  http /boots "$1"
}

# stopped_cleanly DISK...: the shutdown script ran and the disks need no journal recovery.
stopped_cleanly() {
  grep -q 'CLOUDLET GUEST SHUTDOWN done' "$log" || fail "the shutdown script did not finish"
  local d
  for d in "$@"; do
    dumpe2fs -h "$d" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery' && fail "$(basename "$d") was not unmounted cleanly"
    e2fsck -fn "$d" >/dev/null 2>&1 || fail "e2fsck found errors on $(basename "$d")"
  done
  pass "stopped cleanly ($(for d in "$@"; do basename "$d"; done | tr '\n' ' '| sed 's/ $//') clean)"
}

rootimg="$work/root.img"
dataimg="$work/data.img"
cp --sparse=always "$img/rootfs.ext4" "$rootimg"
truncate -s 64M "$dataimg"
mkfs.ext4 -q -F -L data "$dataimg"

# 1. First boot, ACPI power button.
start_vm 1-microvm-powerbutton microvm "$rootimg" "$dataimg"
booted 1
monitor system_powerdown
wait_exit 60
grep -q 'CLOUDLET GUEST POWER BUTTON' "$log" || fail "acpid did not run the power button action"
grep -q 'CLOUDLET GUEST DATA unmounted' "$log" || fail "/data was not unmounted"
grep -q 'reboot: Power down' "$log" || fail "the kernel did not power down"
stopped_cleanly "$rootimg" "$dataimg"

# 2. Second boot with the same disks; poweroff from inside the guest.
start_vm 2-microvm-poweroff microvm "$rootimg" "$dataimg"
booted 2
console poweroff
wait_exit 60
grep -q 'reboot: Power down' "$log" || fail "the kernel did not power down"
stopped_cleanly "$rootimg" "$dataimg"

# 3. Ctrl-Alt-Del as init sees it (SIGINT), then reboot from inside the guest.
start_vm 3-microvm-sigint-reboot microvm "$rootimg" "$dataimg"
booted 3
console 'kill -INT 1'
wait_exit 60
grep -q 'reboot: Power down' "$log" || fail "SIGINT to init did not power down"
stopped_cleanly "$rootimg" "$dataimg"
start_vm 3b-microvm-reboot microvm "$rootimg" "$dataimg"
booted 4
console reboot
wait_exit 60
grep -q 'reboot: Restarting system' "$log" || fail "the kernel did not restart"
stopped_cleanly "$rootimg" "$dataimg"

# 4. A real Ctrl-Alt-Del through an i8042 (PC machine, virtio-pci devices).
start_vm 4-pc-ctrl-alt-del pc "$rootimg" "$dataimg"
booted 5
grep -q 'serio: i8042 KBD port' "$log" || fail "no i8042 keyboard"
monitor 'sendkey ctrl-alt-delete'
wait_exit 60
grep -q 'reboot: Power down' "$log" || fail "Ctrl-Alt-Del did not power down"
stopped_cleanly "$rootimg" "$dataimg"

# 5. A data disk with no file system.
blank="$work/blank.img"
truncate -s 16M "$blank"
start_vm 5-microvm-blank-data microvm "$rootimg" "$blank"
booted 0
grep -q 'CLOUDLET GUEST DATA /dev/vdb has no ext4 filesystem' "$log" || fail "the blank data disk was not reported"
pass "blank data disk reported"
monitor system_powerdown
wait_exit 60
stopped_cleanly "$rootimg"

# 6. No root disk: the initramfs gives up after its bounded wait and powers off.
start_vm 6-microvm-no-root microvm - -
wait_console 'CLOUDLET INITRD FAILED: root disk /dev/vda did not appear' 60
wait_exit 30
pass "initramfs reported the missing root disk and powered off"

echo "test-qemu: all checks passed"
