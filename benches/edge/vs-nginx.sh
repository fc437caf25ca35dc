#!/usr/bin/env bash
# cti-edge against nginx (2 workers, TLS 1.3, the same P-256 certificate),
# both answering GET /api/ip on this machine, under the same loads:
#   h1_keepalive       wrk -t2 -c64, HTTP/1.1 keep-alive
#   h1_new_connection  wrk -t2 -c64 with Connection: close: a new TLS
#                      connection (full handshake) per request
#   h2                 h2load -t2 -c16 -m32, HTTP/2, 32 streams in flight
#                      on each of 16 connections
#   h2_short           h2load -t2, HTTP/2 over many short connections (10
#                      requests each, 10 in flight; runs of 500 connections)
# Each load runs ROUNDS times, alternating nginx and cti-edge; the medians
# are compared. Prints each round, the medians with their spread, the
# server's CPU time per request (its processes' user + system time: steadier
# than the rate when other work shares the machine), the load average, and
# ends with exactly one line:
#   ratios: h1_keepalive=X h1_new_connection=Y h2=Z      (cti-edge / nginx)
#   benches/edge/vs-nginx.sh [seconds=10] [rounds=3]
# Installs nginx, wrk, h2load (nghttp2-client) from Debian if missing.
# Loopback only. EDGE_BIN runs another build of cti-edge (e.g. to compare).
set -euo pipefail
# A failing load inside $(...) stops the script too.
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
secs=${1:-10}
rounds=${2:-3}
conns=64

. benches/edge/tools.sh
need_tools nginx=nginx wrk=wrk h2load=nghttp2-client openssl=openssl bc=bc
# A failed build stops the script (set -e): never benchmark a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge
edge_bin=${EDGE_BIN:-${CARGO_TARGET_DIR:-target}/release/cti-edge}
ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d)
cleanup() {
  for f in "$work"/nginx.pid "$work"/edge.pid; do
    [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 65536;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    location = /api/ip { default_type application/json; return 200 '{"ip":"\$remote_addr"}'; }
  }
}
CONF
nginx -c "$work/nginx.conf"

# Caps out of the way: every connection comes from 127.0.0.1.
launch_edge --listen 127.0.0.1:0 --db "$work/edge.db" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --max-connections 100000 --max-per-source 100000 --max-per-network 100000
url() { if [[ $1 == nginx ]]; then echo "https://127.0.0.1:$nginx_port/api/ip"; else echo "${edge_url}api/ip"; fi; }

# Requests per second of one load against one server, and requests made.
wrk_rate() {
  wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/ requests in / {n = $1} /Requests\/sec/ {r = $2} END {print r, n}'
}
h2_rate() {
  local out
  out=$(h2load "$@")
  # Every request must have succeeded, or the rate means nothing.
  grep -q 'requests: .* 0 failed, 0 errored' <<<"$out" || { echo "$out" >&2; exit 1; }
  awk '/^finished in/ {r = $4} /^requests:/ {n = $2} END {print r, n}' <<<"$out"
}
# h2load makes each client's connection once: short connections are many
# runs of 500 connections with 10 requests each, for `secs` seconds.
h2_short() {
  local start now requests=0
  start=$(date +%s.%N)
  while :; do
    h2_rate -t2 -c500 -m10 -n5000 "$1" >/dev/null
    requests=$((requests + 5000))
    now=$(date +%s.%N)
    (($(echo "$now - $start >= $secs" | bc))) && break
  done
  echo "$(echo "$requests / ($now - $start)" | bc -l) $requests"
}
# CPU time (clock ticks) of the server's processes: nginx's workers, or the edge.
server_pids() { if [[ $1 == nginx ]]; then pgrep -P "$(cat "$work/nginx.pid")"; else cat "$work/edge.pid"; fi; }
ticks() { local t=0 p; for p in $(server_pids "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
hz=$(getconf CLK_TCK)
# Prints the rate, the requests, and the server's CPU microseconds per
# request (from h2load's warm-up's end for h2).
measure() {
  local load=$1 server=$2 target before out rate n
  target=$(url "$2")
  if [[ $load == h2 ]]; then (sleep 1; ticks "$server" >"$work/ticks") & else ticks "$server" >"$work/ticks"; fi
  out=$(run_load "$load" "$target")
  wait
  read -r rate n <<<"$out"
  [[ ${n:-0} -gt 0 ]] || { echo "vs-nginx.sh: no requests counted for $load against $server" >&2; exit 1; }
  before=$(cat "$work/ticks")
  echo "$rate $n $(echo "($(ticks "$server") - $before) * 1000000 / $hz / $n" | bc -l)"
}
run_load() {
  local load=$1 target=$2
  case $load in
    h1_keepalive) wrk_rate "$target" ;;
    h1_new_connection) wrk_rate -H "Connection: close" "$target" ;;
    h2) h2_rate -t2 -c16 -m32 -D"$secs" --warm-up-time=1 "$target" ;;
    h2_short) h2_short "$target" ;;
  esac
}

loads=(h1_keepalive h1_new_connection h2 h2_short)
declare -A results cpu
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for load in "${loads[@]}"; do
    for server in nginx cti; do
      out=$(measure "$load" "$server")
      read -r r n us <<<"$out"
      results[$load.$server]+="$r "
      cpu[$load.$server]+="$us "
      printf 'round %d %-18s %-6s %10.0f req/s %7.1f us CPU/request  (load %s)\n' \
        "$round" "$load" "$server" "$r" "$us" "$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.0f-%.0f", lo, hi}'; }
printf '\n%-18s %10s %15s %10s %15s %7s %20s\n' "GET /api/ip, TLS" "nginx" "(min-max)" "cti-edge" "(min-max)" "ratio" \
  "CPU us/req nginx cti"
ratios=""
for load in "${loads[@]}"; do
  n=$(median "${results[$load.nginx]}")
  e=$(median "${results[$load.cti]}")
  ratio=$(printf '%.2f' "$(echo "$e / $n" | bc -l)")
  printf '%-18s %10.0f %15s %10.0f %15s %7s %10.1f %9.1f\n' "$load" "$n" "($(spread "${results[$load.nginx]}"))" \
    "$e" "($(spread "${results[$load.cti]}"))" "$ratio" "$(median "${cpu[$load.nginx]}")" "$(median "${cpu[$load.cti]}")"
  [[ $load == h2_short ]] || ratios+=" $load=$ratio"
done
echo "ratios:$ratios"
