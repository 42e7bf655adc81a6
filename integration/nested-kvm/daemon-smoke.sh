#!/bin/sh
# Inside L1: run the whole site daemon (`cloudlet serve`, loopback HTTP, data dir on tmpfs) and
# prove its VPC network model with real traffic. An "internet" namespace sits beyond a site
# uplink namespace (as in integration/tests/common); through the API the script creates a VPC, a
# subnet, a security group that allows TCP 80, a network interface and an elastic IP (with a
# bandwidth cap) associated with it, then serves HTTP inside the interface's namespace and fetches
# it from the internet namespace through the EIP. It also checks the router's DHCP answer and the
# cap's tc HTB class. Prints `SMOKE OK` and exits 0, or prints the reason (and the daemon's log)
# and exits 1. Usage: daemon-smoke.sh CLOUDLET_BIN
set -u
bin="${1:?usage: daemon-smoke.sh CLOUDLET_BIN}"
start=$(date +%s)
tmp=$(mktemp -d /tmp/cloudlet-smoke.XXXXXX)
data="$tmp/data"
up=smoke-up
inet=smoke-inet
daemon=
httpd=
owned=

log() { echo "smoke: [$(($(date +%s) - start)) s] $*"; }
cleanup() {
  [ -n "$httpd" ] && kill "$httpd" 2>/dev/null
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon" 2>/dev/null
    i=0; while kill -0 "$daemon" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$daemon" 2>/dev/null
  fi
  for ns in $owned $up $inet; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
}
fail() {
  echo "SMOKE FAILED: $*"
  if [ -f "$data/daemon.log" ]; then echo "--- daemon log (last 40 lines)"; tail -40 "$data/daemon.log"; fi
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

# The site uplink (up0 = 198.51.100.1/24 in smoke-up) and the internet beyond it (inet0 =
# 198.51.100.2/24 in smoke-inet, routing the public block 203.0.113.0/28 to the uplink).
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
log "starting cloudlet serve"
CLOUDLET_LOG_LEVEL=info "$bin" serve --config "$tmp/config.toml" --data-dir "$data" --http 127.0.0.1:0 \
  --gateway off --s3 off --probe-interval 5 > "$data/daemon.log" 2>&1 &
daemon=$!
ready() {
  kill -0 "$daemon" 2>/dev/null || fail "the daemon exited early"
  [ -s "$data/http.addr" ] && [ -s "$data/admin.token" ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$(cat "$data/http.addr")/readyz")" = 200 ]
}
wait_for 120 "the daemon to be ready" ready
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
create /v1/vpcs '{"name": "smoke", "spec": {"cidr": "10.0.0.0/16"}}'
vpc_id=$(jq -r .id "$tmp/answer")
create /v1/subnets '{"name": "web", "spec": {"vpc": "smoke", "cidr": "10.0.1.0/24"}}'
create /v1/security-groups '{"name": "http", "spec": {"vpc": "smoke", "ingress": [{"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}]}}'
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
[ "$(api GET /v1/vpcs/smoke)" = 200 ] || fail "GET the VPC: $(cat "$tmp/answer")"
router=$(basename "$(jq -r '.status.netns // empty' "$tmp/answer")")
[ -n "$router" ] && owned="$owned $router"
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
ip netns exec "$ns" busybox httpd -f -p 81 -h "$tmp/www" &
closed=$!
sleep 0.5
got=$(ip netns exec $inet curl -s --max-time 3 "http://$eip:81/index.html")
kill "$closed" 2>/dev/null
[ -z "$got" ] || fail "TCP 81 answered through the EIP although the security group opens only 80"

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

grep -Eq 'ERROR|panicked' "$data/daemon.log" && { echo "--- errors in the daemon log"; grep -E 'ERROR|panicked' "$data/daemon.log" | head -20; }
cleanup
echo "SMOKE OK ($(($(date +%s) - start)) s)"
exit 0
