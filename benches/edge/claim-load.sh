#!/usr/bin/env bash
# Durable claims per second through cti-edge as a TCP balancer brings them:
# every connection opens with a PROXY v2 header from a different synthetic
# client address, then TLS, then GET /claim (cti-edge/examples/claim_load.rs).
# A 2xx means committed; the tool checks the store's count afterwards.
# Then an HTTP/2 balancer: a few connections, many claims in flight on each,
# each claim from another client named in X-Forwarded-For; then the store's
# own rate (benches/claims.rs: 256 threads claiming through the C ABI, a new
# database), and the last line compares the two:
#   h2_claims: edge=X/s store=Y/s ratio=Z
#   benches/edge/claim-load.sh [seconds=10] [connections=64] [h2_connections=2] [h2_streams=128]
# Loopback only. EDGE_BIN runs another build of cti-edge (e.g. to compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/edge/tools.sh
secs=${1:-10}
conns=${2:-64}
h2_conns=${3:-2}
h2_streams=${4:-128}
target_dir=${CARGO_TARGET_DIR:-target}
# A failed build stops the script (set -e): never benchmark a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge --example claim_load
cargo bench --locked --quiet --no-run --bench claims
edge_bin=${EDGE_BIN:-$target_dir/release/cti-edge}
load_bin=$target_dir/release/examples/claim_load

work=$(mktemp -d)
cleanup() { [[ -f $work/edge.pid ]] && kill "$(cat "$work/edge.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# 240.0.0.1: the HTTP/2 balancer's PROXY source (claim_load's BALANCER).
launch_edge --listen 127.0.0.1:0 --db "$work/load.db" --proxy-from 127.0.0.1 --trusted-proxy 240.0.0.1 \
  --claims-per-minute 0 --net24-claims-per-minute 0
addr=$edge_addr

echo "== a new TLS connection (new synthetic client) per claim"
"$load_bin" --target "$addr" --connections "$conns" --seconds "$secs" --per-connection 1 --first-source 0
echo
echo "== 100 claims per keep-alive connection (same client, rotating nicknames)"
"$load_bin" --target "$addr" --connections "$conns" --seconds "$secs" --per-connection 100 --first-source 100000000
echo
echo "== HTTP/2 balancer: $h2_conns connections, $h2_streams claims in flight on each"
"$load_bin" --target "$addr" --connections "$h2_conns" --seconds "$secs" --h2-streams "$h2_streams" --first-source 200000000 \
  | tee "$work/h2.txt"
echo
echo "== the store alone (cargo bench --bench claims, new database)"
cargo bench --locked --quiet --bench claims -- --stored 0 --measure 200000 --callers 256 | tee "$work/store.txt"
edge_rate=$(sed -n 's/^acknowledged claims: [0-9]* (\([0-9]*\)\/s).*/\1/p' "$work/h2.txt")
store_rate=$(awk '/durable claims\/s/ {print $(NF-5)}' "$work/store.txt")
[[ -n $edge_rate && -n $store_rate ]] || { echo "claim-load.sh: a tool gave no figure" >&2; exit 1; }
echo "h2_claims: edge=${edge_rate}/s store=${store_rate}/s ratio=$(python3 -c "print(f'{$edge_rate / $store_rate:.2f}')")"
