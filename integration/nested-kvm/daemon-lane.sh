#!/bin/sh
# Inside L1: run the whole site daemon (`cloudlet serve`, loopback HTTP, data dir on tmpfs) and
# prove its VPC network model and its instances with real traffic. An "internet" namespace sits
# beyond a site uplink namespace (as in integration/tests/common).
# 1. Network: through the API, a VPC, a subnet, a security group that allows TCP 80, a network
#    interface and an elastic IP (with a bandwidth cap); HTTP served inside the interface's
#    namespace is fetched from the internet namespace through the EIP; TCP 81 stays closed; the
#    router's DHCP answer and the cap's tc HTB class are checked.
# 2. Instances: the debian-12 image (images/vm/build.sh) is imported with the CLI, and an instance
#    with a data volume is created in the same subnet. Asserted: the guest reaches init (boot timer
#    and console), gets its address from the VPC's DHCP server, answers HTTP through an EIP from
#    the internet namespace, counts its boots on the volume (1); a graceful stop ends it within the
#    stop timeout with the guest's own shutdown; after a start the volume's count is 2; after a
#    `kill -9` of the daemon and a restart the same worker is adopted and still answers; after a
#    simulated host reboot (daemon and worker killed, namespaces and taps gone) the instance comes
#    back by itself; delete leaves no worker.
# Prints `LANE OK` and exits 0, or prints the reason (and the daemon's log) and exits 1.
# Usage: daemon-lane.sh CLOUDLET_BIN [IMAGE_DIR]
#   bash integration/nested-kvm/run-l1.sh "sh $PWD/integration/nested-kvm/daemon-lane.sh $PWD/target/release/cloudlet"
# (L1 has one vCPU: see run-l1.sh.)
set -u
bin="${1:?usage: daemon-lane.sh CLOUDLET_BIN [IMAGE_DIR]}"
image="${2:-$(cd "$(dirname "$0")/../.." && pwd)/target/vm-images/debian-12}"
start=$(date +%s)
tmp=$(mktemp -d /tmp/cloudlet-lane.XXXXXX)
data="$tmp/data"
up=lane-up
inet=lane-inet
daemon=
httpd=
owned=

log() { echo "lane: [$(($(date +%s) - start)) s] $*"; }
cleanup() {
  [ -n "$httpd" ] && kill "$httpd" 2>/dev/null
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon" 2>/dev/null
    i=0; while kill -0 "$daemon" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$daemon" 2>/dev/null
  fi
  pkill -KILL -f "vmm-worker --spec $data" 2>/dev/null
  for ns in $owned $up $inet; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
}
fail() {
  echo "LANE FAILED: $*"
  if [ -f "$data/daemon.log" ]; then echo "--- daemon log (last 40 lines)"; tail -40 "$data/daemon.log"; fi
  # What the instance looked like, its guest's last words and the workers alive.
  if [ -n "${addr:-}" ] && [ -n "${token:-}" ]; then
    echo "--- GET /v1/instances/vm1"
    curl -s --max-time 5 -H "authorization: Bearer $token" "http://$addr/v1/instances/vm1" | head -c 3000; echo
  fi
  if [ -n "${clog:-}" ] && [ -f "$clog" ]; then echo "--- guest console (last 15 lines)"; tail -15 "$clog"; fi
  echo "--- workers"; ps -eo pid,stat,etime,args | grep "[v]mm-worker" | head -5
  # Again last: a log viewer that shows only the tail still shows why.
  echo "LANE FAILED: $*"
  cleanup
  exit 1
}
trap 'fail "interrupted"' INT TERM
# wait_for SECONDS WHAT COMMAND...: run COMMAND every 0.5 s until it succeeds; fail after SECONDS.
wait_for() {
  secs=$1 what=$2; shift 2
  end=$(($(date +%s) + secs))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after $secs s waiting for $what"
    sleep 0.5
  done
}
for t in ip nft tc curl jq busybox; do command -v "$t" >/dev/null || fail "no $t in PATH"; done
[ -x "$bin" ] || fail "no cloudlet binary at $bin"

# The site uplink (up0 = 198.51.100.1/24 in lane-up) and the internet beyond it (inet0 =
# 198.51.100.2/24 in lane-inet, routing the public block 203.0.113.0/28 to the uplink).
ip netns add $up && ip netns add $inet || fail "cannot create network namespaces"
ip -n $up link add up0 type veth peer name inet0 netns $inet || fail "cannot create a veth pair"
ip -n $up addr add 198.51.100.1/24 dev up0 && ip -n $up link set up0 up && ip -n $up link set lo up &&
  ip -n $inet addr add 198.51.100.2/24 dev inet0 && ip -n $inet link set inet0 up && ip -n $inet link set lo up &&
  ip -n $inet route add 203.0.113.0/28 via 198.51.100.1 || fail "cannot address the uplink"

mkdir -p "$data"
cat > "$tmp/config.toml" <<EOF
[reconcile]
resync_seconds = 5
[network]
uplink_netns = "$up"
uplink = "up0"
public_cidr = "203.0.113.0/28"
EOF
start_daemon() {
  log "starting cloudlet serve"
  rm -f "$data/http.addr"
  CLOUDLET_LOG_LEVEL=info "$bin" serve --config "$tmp/config.toml" --data-dir "$data" --http 127.0.0.1:0 \
    --gateway off --s3 off --probe-interval 5 >> "$data/daemon.log" 2>&1 &
  daemon=$!
  wait_for 120 "the daemon to be ready" ready
}
ready() {
  kill -0 "$daemon" 2>/dev/null || fail "the daemon exited early"
  [ -s "$data/http.addr" ] && [ -s "$data/admin.token" ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$(cat "$data/http.addr")/readyz")" = 200 ]
}
start_daemon
addr=$(cat "$data/http.addr")
token=$(cat "$data/admin.token")
log "daemon ready on $addr"

# api METHOD PATH [JSON]: the answer's body in $tmp/answer, its status on stdout.
api() {
  if [ $# -ge 3 ]; then set -- "$1" "$2" -H "content-type: application/json" --data "$3"; fi
  m=$1 p=$2; shift 2
  curl -s -o "$tmp/answer" -w '%{http_code}' --max-time 30 -X "$m" -H "authorization: Bearer $token" "$@" "http://$addr$p"
}
create() {
  st=$(api POST "$1" "$2")
  [ "$st" = 201 ] || fail "POST $1 answered $st: $(cat "$tmp/answer")"
}
create /v1/vpcs '{"name": "lane", "spec": {"cidr": "10.0.0.0/16"}}'
vpc_id=$(jq -r .id "$tmp/answer")
create /v1/subnets '{"name": "web", "spec": {"vpc": "lane", "cidr": "10.0.1.0/24"}}'
create /v1/security-groups '{"name": "http", "spec": {"vpc": "lane", "ingress": [{"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}]}}'
create /v1/network-interfaces '{"name": "web1", "spec": {"subnet": "web", "security_groups": ["http"]}}'
create /v1/eips '{"name": "e1", "spec": {"network_interface": "web1", "bandwidth_mbps": 50}}'
eip=$(jq -r .spec.public_ip "$tmp/answer")
[ "$eip" = 203.0.113.1 ] || fail "the EIP is $eip, not the pool's first address 203.0.113.1"

eni_ready() {
  [ "$(api GET /v1/network-interfaces/web1)" = 200 ] && [ "$(jq -r .status.phase "$tmp/answer")" = Ready ]
}
wait_for 60 "the network interface to be Ready" eni_ready
netns=$(jq -r .status.netns "$tmp/answer")
private_ip=$(jq -r .spec.private_ip "$tmp/answer")
ns=$(basename "$netns")
owned="$ns"
vpc_ready() { [ "$(api GET /v1/vpcs/lane)" = 200 ] && [ -n "$(jq -r '.status.netns // empty' "$tmp/answer")" ]; }
wait_for 30 "the VPC to report its router namespace" vpc_ready
router=$(basename "$(jq -r .status.netns "$tmp/answer")")
owned="$owned $router"
log "network interface Ready: $private_ip in $ns (router $router)"

# A web server in the interface's namespace.
mkdir -p "$tmp/www" && echo "hello from $private_ip" > "$tmp/www/index.html"
ip netns exec "$ns" busybox httpd -f -p 80 -h "$tmp/www" &
httpd=$!
# The internet reaches it only through the EIP.
through_eip() { [ "$(ip netns exec $inet curl -s --max-time 3 "http://$eip/index.html")" = "hello from $private_ip" ]; }
wait_for 60 "an HTTP answer through the EIP $eip from the internet namespace" through_eip
log "the internet namespace got the page through $eip"
# A port the security group does not open stays closed.
# (The router itself reaches it: its own traffic does not cross the forward hook.)
ip netns exec "$ns" busybox httpd -f -p 81 -h "$tmp/www" &
closed=$!
port81() { ip netns exec "$router" curl -s --max-time 3 -o /dev/null "http://$private_ip:81/index.html"; }
wait_for 10 "the server on port 81 to answer the router" port81
got=$(ip netns exec $inet curl -s --max-time 3 "http://$eip:81/index.html")
kill "$closed" 2>/dev/null
[ -z "$got" ] || fail "TCP 81 answered through the EIP although the security group opens only 80"
log "TCP 81 stays closed from the internet namespace"

# DHCP: the router offers the interface's own address on its port.
cat > "$tmp/udhcpc.sh" <<EOF
#!/bin/sh
[ "\$1" = bound ] && echo "\$ip" > "$tmp/lease"
exit 0
EOF
chmod +x "$tmp/udhcpc.sh"
ip netns exec "$ns" busybox udhcpc -i eth0 -f -q -n -t 5 -T 1 -s "$tmp/udhcpc.sh" > "$tmp/udhcpc.log" 2>&1 ||
  fail "no DHCP lease: $(cat "$tmp/udhcpc.log")"
[ "$(cat "$tmp/lease" 2>/dev/null)" = "$private_ip" ] || fail "DHCP leased '$(cat "$tmp/lease" 2>/dev/null)', not $private_ip"
log "DHCP leased $private_ip"

# The bandwidth cap: an HTB class on the router's transit port (clr + 12 hex of sha256(vpc id)).
transit="clr$(printf %s "$vpc_id" | sha256sum | cut -c1-12)"
capped() { tc -n "$router" class show dev "$transit" 2>/dev/null | grep -q 'htb.*rate 50Mbit'; }
wait_for 30 "the 50 Mbit/s HTB class on $transit in $router" capped
log "HTB cap in place on $transit"

# ---- 2. Instances on cloudlet's VMM, in the same VPC.
[ -f "$image/image.json" ] || fail "no VM image at $image (run images/vm/build.sh)"
export CLOUDLET_REMOTE="http://$addr" CLOUDLET_TOKEN="$token"
# The import's upload goes through curl: the CLI's own upload (`cloudlet image import --vm`, tested
# on the host) segfaulted inside L1 under TCG, so it is not what this lane tests.
tar -C "$image" -cf "$tmp/image.tar" . || fail "cannot tar $image"
st=$(curl -s -o "$tmp/answer" -w '%{http_code}' --max-time 300 -X POST -H "authorization: Bearer $token" \
  -H "content-type: application/x-tar" --data-binary "@$tmp/image.tar" "http://$addr/v1/images/import-vm?name=debian-12")
[ "$st" = 201 ] || fail "the VM image import answered $st: $(cat "$tmp/answer")"
rm -f "$tmp/image.tar"
create /v1/volumes '{"name": "data1", "spec": {"size_mib": 64}}'
"$bin" instance create vm1 --image debian-12 --vcpus 1 --memory 256 --subnet web --sg http --volume data1 \
  --stop-timeout 60 > "$tmp/cli.out" 2>&1 || fail "instance create: $(cat "$tmp/cli.out")"
inst() { api GET /v1/instances/vm1 > /dev/null && jq -r "$1" "$tmp/answer"; }
phase_is() { [ "$(inst .status.phase)" = "$1" ]; }
wait_for 120 "vm1 to be Running" phase_is Running
vm_ip=$(inst .status.private_ip)
clog=$(inst .status.console_log)
pid=$(inst .status.pid)
log "vm1 Running (worker pid $pid), private IP $vm_ip"
# The worker runs confined: seccomp filter mode, no capabilities, no_new_privs, its own cgroup.
wait_for 60 "the worker's seccomp filter" grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status"
grep -q '^CapEff:[[:space:]]*0000000000000000' "/proc/$pid/status" || fail "the worker keeps capabilities: $(grep Cap "/proc/$pid/status")"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "the worker lacks no_new_privs"
grep -q "cloudlet/$(inst .id)" "/proc/$pid/cgroup" || fail "the worker is not in its cgroup: $(cat "/proc/$pid/cgroup")"
log "worker $pid confined: seccomp, no capabilities, no_new_privs, cgroup $(inst .status.cgroup)"
wait_for 240 "the guest to reach init" grep -q "CLOUDLET GUEST INIT REACHED" "$clog"
wait_for 120 "the guest to get $vm_ip from the VPC's DHCP server" grep -q "CLOUDLET GUEST IP $vm_ip" "$clog"
log "the guest reached init and got $vm_ip by DHCP"
create /v1/eips '{"name": "e2", "spec": {"network_interface": "vm1-eth0"}}'
eip2=$(jq -r .spec.public_ip "$tmp/answer")
vm_get() { ip netns exec $inet curl -s --max-time 3 "http://$eip2$1"; }
vm_hello() { vm_get / | grep -q "hello from"; }
wait_for 120 "the guest's HTTP answer through the EIP $eip2" vm_hello
boots=$(vm_get /boots)
[ "$boots" = 1 ] || fail "/boots is '$boots' after the first boot, not 1"
bt=$(inst .status.boot_timer_ms)
[ "$bt" != null ] || fail "no boot timer in the instance's status"
log "the internet namespace got the guest's page through $eip2; /boots = 1; boot timer $bt ms"

# Graceful stop: Ctrl-Alt-Del, the guest's own shutdown, within the stop timeout (60 s).
t0=$(date +%s)
"$bin" instance stop vm1 > "$tmp/cli.out" 2>&1 || fail "instance stop: $(cat "$tmp/cli.out")"
wait_for 90 "vm1 to be Stopped" phase_is Stopped
took=$(($(date +%s) - t0))
reason=$(inst .status.exit_reason)
[ "$reason" = stopped ] || fail "the stop ended as '$reason', not a graceful 'stopped'"
[ "$took" -lt 60 ] || fail "the graceful stop took $took s, beyond the 60 s stop timeout"
grep -q "CLOUDLET GUEST SHUTDOWN" "$clog" || fail "the guest's shutdown did not run"
log "graceful stop in $took s (exit $reason)"

# Start again: the volume kept the count.
"$bin" instance start vm1 > "$tmp/cli.out" 2>&1 || fail "instance start: $(cat "$tmp/cli.out")"
wait_for 120 "vm1 to be Running again" phase_is Running
boots_is_2() { [ "$(vm_get /boots)" = 2 ]; }
wait_for 300 "/boots = 2 through the EIP after the restart" boots_is_2
log "after stop and start /boots = 2: the volume kept its data"

# A daemon killed with -9 and started again adopts the running worker.
pid=$(inst .status.pid)
kill -KILL "$daemon"; wait "$daemon" 2>/dev/null
start_daemon
addr=$(cat "$data/http.addr"); export CLOUDLET_REMOTE="http://$addr"
sleep 3
[ "$(inst .status.pid)" = "$pid" ] || fail "after the daemon's restart the worker pid is $(inst .status.pid), not $pid"
kill -0 "$pid" 2>/dev/null || fail "the worker $pid died with the daemon"
workers=$(pgrep -fc "vmm-worker --spec" || true)
[ "$workers" = 1 ] || fail "$workers workers run after the daemon's restart, not 1"
vm_hello || fail "the guest stopped answering through the EIP after the daemon's restart"
log "the restarted daemon adopted worker $pid; the guest still answers"

# A host reboot, simulated: the daemon and the worker die at once, and the kernel state goes with
# them (every namespace this lane's daemon made, with the router's tap). The daemon starts again:
# the instance comes back on its own (restart policy on-failure: the worker was lost), with one
# worker, its tap, DHCP and EIP, and the volume's count goes on.
kill -KILL "$daemon" "$pid"; wait "$daemon" 2>/dev/null
for n in $(ip netns list | awk '{print $1}' | grep -E '^cl[ve]-'); do ip netns del "$n"; done
start_daemon
addr=$(cat "$data/http.addr"); export CLOUDLET_REMOTE="http://$addr"
new_pid() { p2=$(inst .status.pid); [ "$(inst .status.phase)" = Running ] && [ -n "$p2" ] && [ "$p2" != null ] && [ "$p2" != "$pid" ]; }
wait_for 120 "vm1 to run again after the simulated reboot" new_pid
pid=$(inst .status.pid)
boots_is_3() { [ "$(vm_get /boots)" = 3 ]; }
wait_for 300 "/boots = 3 through the EIP after the simulated reboot" boots_is_3
workers=$(pgrep -fc "vmm-worker --spec" || true)
[ "$workers" = 1 ] || fail "$workers workers run after the simulated reboot, not 1"
log "after a simulated host reboot vm1 came back by itself (worker $pid, /boots = 3)"

# An associated EIP keeps the instance's interface, and so the instance, from being deleted
# (409); disassociated, it stays allocated, and the delete goes through.
st=$(api DELETE /v1/instances/vm1)
[ "$st" = 409 ] || fail "deleting an instance whose interface holds an EIP answered $st, not 409"
st=$(api PATCH /v1/eips/e2 '{"spec": {"network_interface": null}}')
[ "$st" = 200 ] || fail "disassociating the EIP answered $st: $(cat "$tmp/answer")"
"$bin" instance delete vm1 > "$tmp/cli.out" 2>&1 || fail "instance delete: $(cat "$tmp/cli.out")"
gone() { [ "$(api GET /v1/instances/vm1)" = 404 ] && ! kill -0 "$pid" 2>/dev/null; }
wait_for 120 "vm1 and its worker to be gone" gone
log "vm1 deleted; no worker left"

if grep -Eq 'WARN|ERROR|panicked' "$data/daemon.log"; then
  echo "--- warnings in the daemon log (first 10)"; grep -E 'WARN|ERROR|panicked' "$data/daemon.log" | head -10
fi
cleanup
echo "LANE OK ($(($(date +%s) - start)) s)"
exit 0
