#!/bin/bash
# coredns-check-corefile CORE_FILE READY_PORT [BINARY]
#
# Does CoreDNS start, and report ready, with this Corefile? It runs as the coredns user in a
# network namespace of its own: it cannot clash with the serving instance's ports and answers
# no one. Exit 0 when ready within 10 s; otherwise print CoreDNS's own messages and exit 1.
set -euo pipefail
corefile=$1 ready_port=$2 binary=${3:-/usr/local/bin/coredns}
[ -r "$corefile" ] || { echo "no Corefile at $corefile" >&2; exit 1; }
exec unshare --net -- bash -c '
  set -u
  ip link set lo up
  log=$(mktemp)
  setpriv --reuid=coredns --regid=coredns --clear-groups \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
    "$3" -conf "$1" >"$log" 2>&1 &
  pid=$!
  status=1
  for attempt in $(seq 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$2/ready" 2>/dev/null; then status=0; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$status" != 0 ]; then
    echo "CoreDNS does not start with $1:" >&2
    grep -v "^\s*$" "$log" | tail -n 20 >&2
  fi
  rm -f "$log"
  exit "$status"
' check "$corefile" "$ready_port" "$binary"
