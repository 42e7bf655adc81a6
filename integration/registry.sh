#!/usr/bin/env bash
# Start or stop a throwaway Docker Registry v2 (Debian's docker-registry package) on 127.0.0.1,
# for the image-pull tests. `start` picks a free port, writes DIR/config.yml, keeps blobs under
# DIR/storage, logs to DIR/registry.log, and writes DIR/registry.pid and DIR/addr (127.0.0.1:PORT).
# It returns once GET /v2/ answers. With --htpasswd USER:PASS the registry demands HTTP basic auth
# (bcrypt htpasswd file made by apache2-utils' `htpasswd -B`). `stop` ends it by its pid file.
# Usage: integration/registry.sh start DIR [--htpasswd USER:PASS] | stop DIR
set -euo pipefail
usage() { echo "usage: $0 start DIR [--htpasswd USER:PASS] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1"; mkdir -p "$2"; DIR="$(realpath "$2")"; shift 2
PIDFILE="$DIR/registry.pid"

# True if the pid file names a live docker-registry process (not a recycled pid).
running() {
  [ -f "$PIDFILE" ] && grep -qa docker-registry "/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null
}

case "$cmd" in
start)
  creds=""
  if [ $# -gt 0 ]; then
    [ $# -eq 2 ] && [ "$1" = --htpasswd ] && [[ "$2" == ?*:?* ]] || usage
    creds="$2"
  fi
  if running; then echo "registry already running at $(cat "$DIR/addr")"; exit 0; fi
  command -v docker-registry >/dev/null || { echo "$0: docker-registry is not installed" >&2; exit 1; }
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  addr="127.0.0.1:$port"
  mkdir -p "$DIR/storage"
  auth=""
  if [ -n "$creds" ]; then
    command -v htpasswd >/dev/null || { echo "$0: htpasswd (apache2-utils) is not installed" >&2; exit 1; }
    htpasswd -Bbc "$DIR/htpasswd" "${creds%%:*}" "${creds#*:}" 2>/dev/null
    auth="auth:
  htpasswd:
    realm: cloudlet-test
    path: $DIR/htpasswd"
  fi
  cat > "$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
http:
  addr: $addr
  secret: cloudlet-test-only
$auth
EOF
  # setsid: its own session, so the caller's Ctrl-C or job control does not reach it.
  setsid docker-registry serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  echo "$addr" > "$DIR/addr"
  curl_auth=(); [ -z "$creds" ] || curl_auth=(-u "$creds")
  for _ in $(seq 1 100); do   # 100 x 0.2 s = 20 s
    code="$(curl -s -o /dev/null -w '%{http_code}' "${curl_auth[@]}" "http://$addr/v2/" || true)"
    if [ "$code" = 200 ]; then echo "registry running at $addr (pid $(cat "$PIDFILE"))"; exit 0; fi
    running || break
    sleep 0.2
  done
  echo "$0: registry did not answer 200 on http://$addr/v2/ (last: ${code:-none}); log:" >&2
  cat "$DIR/registry.log" >&2
  ! running || kill "$(cat "$PIDFILE")"
  rm -f "$PIDFILE" "$DIR/addr"
  exit 1
  ;;
stop)
  [ $# -eq 0 ] || usage
  if running; then
    pid="$(cat "$PIDFILE")"
    kill "$pid"
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
    ! running || kill -9 "$pid"
    echo "registry (pid $pid) stopped"
  else
    echo "registry not running"
  fi
  rm -f "$PIDFILE" "$DIR/addr"
  ;;
*) usage ;;
esac
