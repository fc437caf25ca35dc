#!/usr/bin/env bash
# cti-edge against nginx (TLS 1.3, the same certificate), both answering
# GET /api/ip on this machine, under the same wrk load: keep-alive, and a new
# TLS connection per request (Connection: close). Prints req/s and ratios.
#   benches/edge/vs-nginx.sh [seconds=10] [connections=64]
# Installs nginx and wrk from Debian if missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
for tool in nginx wrk openssl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx wrk openssl >/dev/null; }
done
# A failed build stops the script (set -e): never benchmark a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge
edge_bin=${CARGO_TARGET_DIR:-target}/release/cti-edge
work=$(mktemp -d)
cleanup() { kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    keepalive_requests 100000;
    location = /api/ip { default_type application/json; return 200 '{"ip":"\$remote_addr"}'; }
  }
}
CONF
nginx -c "$work/nginx.conf"

"$edge_bin" --listen 127.0.0.1:0 --db "$work/edge.db" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --max-per-source 100000 >"$work/edge.out" 2>/dev/null &
echo $! > "$work/edge.pid"
for _ in $(seq 50); do grep -q https "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
edge_url=$(grep -o 'https://[^ ]*' "$work/edge.out")

rate() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
nk=$(rate "https://127.0.0.1:$nginx_port/api/ip")
ek=$(rate "${edge_url}api/ip")
nc=$(rate -H "Connection: close" "https://127.0.0.1:$nginx_port/api/ip")
ec=$(rate -H "Connection: close" "${edge_url}api/ip")
printf '%-28s %12s %12s %8s\n' "GET /api/ip over TLS" "nginx" "cti-edge" "ratio"
printf '%-28s %12.0f %12.0f %8.2f\n' "keep-alive req/s" "$nk" "$ek" "$(echo "$ek / $nk" | bc -l)"
printf '%-28s %12.0f %12.0f %8.2f\n' "new connection req/s" "$nc" "$ec" "$(echo "$ec / $nc" | bc -l)"
