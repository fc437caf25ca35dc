#!/usr/bin/env bash
# Upgrades under load. wrk keeps TLS keep-alive connections busy with GET /api/ip
# (a read that needs the store), and the claim load tool (cti-edge/examples/claim_load.rs)
# brings claims as a balancer would (PROXY v2 from 127.0.0.2, a new TLS connection and a
# new address per claim), while:
#   phase 1: the core is swapped 10 times (POST /admin/core, two real copies of the
#            release library patched to other releases, in turn);
#   phase 2: the binary is re-exec'd 3 times (POST /admin/reexec).
#   benches/edge/upgrade.sh [seconds=30]     (split between the two phases)
# The last line is exactly:
#   upgrade: swaps=N reexecs=N requests=N errors=N acked=N stored=N dropped_connections=N max_pause_ms=X
# requests: wrk's and the claim tool's; errors: requests without a 2xx answer (wrk's
# non-2xx, read/write/timeout errors; refused or failed claims); acked: claims answered
# 2xx; stored: new addresses in the store (read back through the edge); dropped: wrk's
# socket errors and the claim tool's failed connections; max_pause_ms: the longest a
# client waited for an answer (the claim tool counts connecting, which is where a
# re-exec's pause shows). Fails unless errors=0, dropped=0 and acked=stored.
# Installs wrk from Debian if missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
phase=$(((secs + 1) / 2))
((phase >= 4)) || { echo "upgrade.sh: give at least 8 seconds" >&2; exit 2; }
. benches/edge/tools.sh
need_tools wrk=wrk curl=curl python3=python3
# A failed build stops the script (set -e): never benchmark a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge --example claim_load
target_dir=${CARGO_TARGET_DIR:-target}
edge_bin=$target_dir/release/cti-edge
load_bin=$target_dir/release/examples/claim_load

work=$(mktemp -d)
cleanup() {
  for f in "$work"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# Two real cores of other releases: the linked library with its release marker patched.
core=$(ldd "$edge_bin" | awk '/libcti_core/ {print $3}')
[[ -f $core ]] || { echo "upgrade.sh: no libcti_core beside $edge_bin" >&2; exit 1; }
python3 - "$core" "$work" <<'PY'
import re, sys
lib, work = sys.argv[1], sys.argv[2]
data = open(lib, "rb").read()
m = re.search(rb"CTI_CORE_RELEASE=([0-9.]+)\0", data)
release = m.group(1)
for n, last in enumerate((b"8", b"9")):
    other = release[:-1] + last
    open(f"{work}/core{n}.so", "wb").write(data.replace(m.group(0), b"CTI_CORE_RELEASE=" + other + b"\0"))
PY

"$edge_bin" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --db "$work/up.db" --proxy-from 127.0.0.2 \
  --claims-per-minute 0 --net24-claims-per-minute 0 --max-per-source 100000 --log-json \
  >"$work/edge.out" 2>"$work/edge.err" &
echo $! >"$work/edge.pid"
for _ in $(seq 100); do grep -q metrics: "$work/edge.out" 2>/dev/null && grep -q https "$work/edge.out" && break; sleep 0.1; done
addr=$(grep -o 'https://[^/]*' "$work/edge.out" | head -1 | sed 's|https://||')
admin=$(grep -o 'http://[^/]*' "$work/edge.out" | head -1)
[[ -n $addr && -n $admin ]] || { cat "$work/edge.err"; exit 1; }

swaps=0 reexecs=0 server_hold_ms=0
json() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }
max() { python3 -c 'import sys; print(max(float(x) for x in sys.argv[1:]))' "$@"; }

swap() {
  local lib=$work/core$((swaps % 2)).so answer
  answer=$(curl -s -XPOST --data "$lib" "$admin/admin/core")
  [[ $(json result <<<"$answer") == swapped ]] || { echo "swap refused: $answer" >&2; return 1; }
  server_hold_ms=$(max "$server_hold_ms" "$(json paused_ms <<<"$answer")")
  swaps=$((swaps + 1))
}

reexec() {
  local answer
  answer=$(curl -s -XPOST "$admin/admin/reexec")
  [[ $(json result <<<"$answer") == reexeced ]] || { echo "re-exec failed: $answer" >&2; return 1; }
  json pid <<<"$answer" >"$work/edge.pid"
  server_hold_ms=$(max "$server_hold_ms" "$(json paused_ms <<<"$answer")")
  reexecs=$((reexecs + 1))
}

requests=0 errors=0 acked=0 stored=0 dropped=0 max_pause=0
# run_phase NAME COUNT ACTION FIRST_SOURCE: both loads for $phase seconds, ACTION COUNT times.
run_phase() {
  local name=$1 count=$2 action=$3 first=$4
  server_hold_ms=0
  wrk -t2 -c32 -d"${phase}s" "https://$addr/api/ip" >"$work/wrk-$name.txt" 2>&1 &
  local wrk_pid=$!
  "$load_bin" --target "$addr" --bind 127.0.0.2 --connections 16 --seconds "$phase" \
    --per-connection 1 --first-source "$first" >"$work/load-$name.txt" 2>&1 &
  local load_pid=$!
  sleep 1
  local gap
  gap=$(python3 -c "print(max(0.05, ($phase - 2.5) / $count))")
  for _ in $(seq "$count"); do "$action"; sleep "$gap"; done
  wait "$wrk_pid"
  wait "$load_pid" || true
  local w=$work/wrk-$name.txt l=$work/load-$name.txt
  local w_req w_non2xx w_connect w_rw w_max l_acked l_refused l_failed l_stored l_max l_first
  w_req=$(awk '/requests in/ {print $1}' "$w")
  w_non2xx=$(awk '/Non-2xx/ {print $NF}' "$w"); w_non2xx=${w_non2xx:-0}
  w_connect=$(sed -n 's/.*Socket errors: connect \([0-9]*\),.*/\1/p' "$w"); w_connect=${w_connect:-0}
  w_rw=$(sed -n 's/.*Socket errors: connect [0-9]*, read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3/p' "$w" \
    | awk '{print $1 + $2 + $3}'); w_rw=${w_rw:-0}
  w_max=$(awk '$1 == "Latency" {v = $4; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
    print (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : (u == "m" ? v * 60000 : v)))}' "$w")
  l_acked=$(sed -n 's/^acknowledged claims: \([0-9]*\).*/\1/p' "$l")
  l_refused=$(sed -n 's/.*refused: \([0-9]*\).*/\1/p' "$l")
  l_failed=$(sed -n 's/.*failed connections: \([0-9]*\).*/\1/p' "$l")
  l_stored=$(sed -n 's/.*after (+\([0-9]*\)).*/\1/p' "$l")
  l_max=$(sed -n 's/^claim latency ms: .* max \([0-9.]*\).*/\1/p' "$l")
  l_first=$(sed -n 's/^longest wait for a first answer ms (connecting included): \([0-9.]*\).*/\1/p' "$l")
  if [[ -z $w_req || -z $l_acked || -z $l_stored ]]; then
    echo "== $name: a load tool gave no figures"; cat "$w" "$l"; exit 1
  fi
  local pause
  pause=$(max "$w_max" "$l_max" "$l_first")
  printf '%-8s %s x%-3s wrk: %s requests, max latency %s ms; claims: %s acked, %s stored, longest first answer %s ms; server held requests up to %s ms\n' \
    "$name" "$action" "$count" "$w_req" "$w_max" "$l_acked" "$l_stored" "$l_first" "$server_hold_ms"
  printf '%-8s errors: wrk non-2xx %s, connect %s, read/write/timeout %s; claims refused %s, failed connections %s\n' \
    "$name" "$w_non2xx" "$w_connect" "$w_rw" "$l_refused" "$l_failed"
  grep -m3 'connection failed' "$l" | sed "s/^/$name   /" || true
  requests=$((requests + w_req + l_acked + l_refused + l_failed))
  errors=$((errors + w_non2xx + w_rw + w_connect + l_refused + l_failed))
  dropped=$((dropped + w_connect + w_rw + l_failed))
  acked=$((acked + l_acked))
  stored=$((stored + l_stored))
  max_pause=$(max "$max_pause" "$pause")
}

run_phase swaps 10 swap 0
run_phase reexecs 3 reexec 100000000

line="upgrade: swaps=$swaps reexecs=$reexecs requests=$requests errors=$errors acked=$acked stored=$stored dropped_connections=$dropped max_pause_ms=$max_pause"
ok=1
((errors == 0 && dropped == 0 && acked == stored && swaps == 10 && reexecs == 3)) || ok=0
((ok)) || { echo "edge log (last lines):"; tail -5 "$work/edge.err"; }
echo "$line"
((ok))
