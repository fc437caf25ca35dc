#!/usr/bin/env bash
# Durable claims per second through cti-edge as a TCP balancer brings them:
# every connection opens with a PROXY v2 header from a different synthetic
# client address, then TLS, then GET /claim (cti-edge/examples/claim_load.rs).
# A 2xx means committed; the tool checks the store's count afterwards.
#   benches/edge/claim-load.sh [seconds=10] [connections=64]
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
target_dir=${CARGO_TARGET_DIR:-target}
# A failed build stops the script (set -e): never benchmark a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge --example claim_load
edge_bin=$target_dir/release/cti-edge
load_bin=$target_dir/release/examples/claim_load

work=$(mktemp -d)
cleanup() { [[ -f $work/edge.pid ]] && kill "$(cat "$work/edge.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$edge_bin" --listen 127.0.0.1:0 --db "$work/load.db" --proxy-from 127.0.0.1 \
  --claims-per-minute 0 --net24-claims-per-minute 0 >"$work/edge.out" 2>"$work/edge.err" &
echo $! >"$work/edge.pid"
for _ in $(seq 100); do grep -q https "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'https://[^/]*' "$work/edge.out" | sed 's|https://||')
[[ -n $addr ]] || { cat "$work/edge.err"; exit 1; }

echo "== a new TLS connection (new synthetic client) per claim"
"$load_bin" --target "$addr" --connections "$conns" --seconds "$secs" --per-connection 1 --first-source 0
echo
echo "== 100 claims per keep-alive connection (same client, rotating nicknames)"
"$load_bin" --target "$addr" --connections "$conns" --seconds "$secs" --per-connection 100 --first-source 100000000
