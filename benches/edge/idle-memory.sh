#!/usr/bin/env bash
# Memory per idle keep-alive TLS connection: nginx (one worker, TLS 1.3, the
# same P-256 certificate) against cti-edge. N connections each make one
# request (HTTP/1.1, then HTTP/2 in a second round) and stay open; the
# server's RSS growth over its warmed-up baseline, divided by N, is the
# figure. Prints, for each protocol:
#   per-connection bytes: nginx X cti-edge Y ratio Z
#   benches/edge/idle-memory.sh [connections=2000]
# Installs nginx from Debian if missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-2000}
. benches/edge/tools.sh
need_tools nginx=nginx openssl=openssl
# A failed build stops the script (set -e): never measure a stale binary.
cargo build --release --locked -p cti-edge --bin cti-edge --example idle_connections
target_dir=${CARGO_TARGET_DIR:-target}
edge_bin=${EDGE_BIN:-$target_dir/release/cti-edge}
tool=$target_dir/release/examples/idle_connections
ulimit -n $((conns * 2 + 1024)) 2>/dev/null || true

work=$(mktemp -d)
cleanup() {
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  [[ -f $work/edge.pid ]] && kill "$(cat "$work/edge.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Fresh servers for each protocol, so that memory freed by one round does
# not hide the next round's growth.
start_nginx() {
  nginx_port=$(free_port)
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $((conns * 2 + 1024));
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections $((conns + 256)); }
http {
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    location = /api/ip { default_type application/json; return 200 '{"ip":"\$remote_addr"}'; }
  }
}
CONF
  rm -f "$work/nginx.pid"
  nginx -c "$work/nginx.conf"
  for _ in $(seq 50); do [[ -s $work/nginx.pid ]] && break; sleep 0.1; done
  nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
}

start_edge() {
  rm -f "$work/edge.db"*
  # Caps and timeouts out of the way: this measures holding connections.
  launch_edge --listen 127.0.0.1:0 --db "$work/edge.db" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --max-connections $((conns * 2)) --max-per-source $((conns * 2)) --max-per-network $((conns * 2)) \
    --request-timeout 600 --idle-timeout 600 --max-connection-age 3600
}

stop_servers() {
  kill "$(cat "$work/nginx.pid")" "$(cat "$work/edge.pid")"
  wait "$(cat "$work/edge.pid")" 2>/dev/null || true
  for _ in $(seq 50); do [[ -e $work/nginx.pid ]] || break; sleep 0.1; done
}

rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

# Holds `count` connections to `target` with `alpn` and prints the RSS growth of `pid`.
growth() {
  local pid=$1 target=$2 alpn=$3 count=$4
  # Warm up (allocator arenas, session caches), then take the baseline.
  "$tool" --target "$target" --alpn "$alpn" --connections 64 </dev/null >/dev/null
  sleep 1
  local before after
  before=$(rss "$pid")
  mkfifo "$work/hold"
  "$tool" --target "$target" --alpn "$alpn" --connections "$count" <"$work/hold" >"$work/tool.out" &
  local tool_pid=$!
  exec 3>"$work/hold"
  for _ in $(seq 600); do grep -q ready "$work/tool.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "ready $count" "$work/tool.out" || { echo "not all connections opened" >&2; exit 1; }
  sleep 2
  after=$(rss "$pid")
  exec 3>&-
  wait "$tool_pid"
  grep -q "closed by the server while held: 0" "$work/tool.out" || { cat "$work/tool.out" >&2; exit 1; }
  rm -f "$work/hold"
  echo $(((after - before) / count))
}

for alpn in http/1.1 h2; do
  start_nginx
  start_edge
  n=$(growth "$nginx_worker" "127.0.0.1:$nginx_port" "$alpn" "$conns")
  e=$(growth "$(cat "$work/edge.pid")" "$edge_addr" "$alpn" "$conns")
  stop_servers
  printf '%-9s per-connection bytes: nginx %d cti-edge %d ratio %.2f\n' "$alpn" "$n" "$e" "$(echo "$e / $n" | bc -l)"
done
