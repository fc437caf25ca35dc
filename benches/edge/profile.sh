#!/usr/bin/env bash
# Where cti-edge spends its time under each load of vs-nginx.sh: the edge
# (release build, line tables) serves GET /api/ip while `perf record -g`
# samples it (cpu-clock, DWARF call graphs). For each load it writes, under
# the output directory, the perf data, the hottest symbols by self time, by
# time including callees, and a summary by area (kernel, crypto, rustls,
# hyper/h2, tokio, allocator, cti, ...), which it also prints.
#   benches/edge/profile.sh [seconds=8] [loads...]   (default: all four)
#   loads: h1_keepalive h1_new_connection h2 h2_short
# PROFILE_OUT (default target/profile) keeps the results; EDGE_BIN profiles
# another build. Installs linux-perf, wrk, h2load (nghttp2-client) from
# Debian if missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}
shift || true
loads=("$@")
((${#loads[@]})) || loads=(h1_keepalive h1_new_connection h2 h2_short)
((secs >= 4)) || { echo "profile.sh: give at least 4 seconds" >&2; exit 2; }

. benches/edge/tools.sh
need_tools perf=linux-perf wrk=wrk h2load=nghttp2-client openssl=openssl
# A failed build stops the script (set -e): never profile a stale binary.
cargo build --release --locked --quiet -p cti-edge --bin cti-edge
edge_bin=${EDGE_BIN:-${CARGO_TARGET_DIR:-target}/release/cti-edge}
out=${PROFILE_OUT:-${CARGO_TARGET_DIR:-target}/profile}
mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d)
cleanup() {
  [[ -f $work/edge.pid ]] && kill "$(cat "$work/edge.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The same edge options as vs-nginx.sh.
launch_edge --listen 127.0.0.1:0 --db "$work/edge.db" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --max-connections 100000 --max-per-source 100000 --max-per-network 100000
url=${edge_url}api/ip

# The load runs a second longer than the recording on each side.
load() {
  local d=$((secs + 2))
  case $1 in
    h1_keepalive) wrk -t2 -c64 -d"${d}s" "$url" ;;
    h1_new_connection) wrk -t2 -c64 -d"${d}s" -H "Connection: close" "$url" ;;
    h2) h2load -t2 -c16 -m32 -D"$d" "$url" ;;
    h2_short)
      local end=$((SECONDS + d))
      while ((SECONDS < end)); do h2load -t2 -c500 -m10 -n5000 "$url"; done
      ;;
    *) echo "profile.sh: no load $1" >&2; return 2 ;;
  esac
}

# Self time by area: the symbol's crate or library decides.
areas() {
  python3 -c '
import re, sys
rules = [
    ("kernel", lambda d, s: d.startswith("[kernel")),
    ("crypto (ring)", lambda d, s: re.search(r"ring_core|ring::|aes|gcm|p256|nistz|sha256|sha512|x25519|fiat|chacha|poly1305|bn_|limbs_", s)),
    ("rustls", lambda d, s: "rustls" in s),
    ("hyper/h2/http", lambda d, s: re.search(r"\b(hyper|h2|http|hyper_util|httparse)::", s)),
    ("tokio", lambda d, s: "tokio::" in s),
    ("allocator", lambda d, s: re.search(r"malloc|free|realloc|calloc|_int_|tcache|arena|sysmalloc|alloc::alloc|__rust_alloc|__rust_dealloc|__rdl_", s)),
    ("memcpy/memset", lambda d, s: re.search(r"mem(cpy|move|set|cmp)", s)),
    ("cti", lambda d, s: re.search(r"cti_(server|edge|ffi|core)|libcti_core", s + d)),
    ("tracing", lambda d, s: "tracing" in s),
    ("other libc", lambda d, s: d.startswith("libc")),
]
total = {}
for line in sys.stdin:
    m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    area = next((name for name, f in rules if f(dso, sym)), "other")
    total[area] = total.get(area, 0) + pct
for area, pct in sorted(total.items(), key=lambda kv: -kv[1]):
    print(f"  {pct:5.1f}%  {area}")
'
}

for name in "${loads[@]}"; do
  load "$name" >"$out/$name.load.txt" 2>&1 &
  load_pid=$!
  sleep 1
  perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$(cat "$work/edge.pid")" \
    -o "$out/$name.perf.data" -- sleep "$secs" 2>"$out/$name.perf.err" || { cat "$out/$name.perf.err"; exit 1; }
  wait "$load_pid"
  perf report -i "$out/$name.perf.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.05 \
    2>/dev/null >"$out/$name.self.txt"
  perf report -i "$out/$name.perf.data" --children --sort sym --stdio -g none --percent-limit 2 \
    2>/dev/null >"$out/$name.children.txt"
  echo "== $name: self time by area ($out/$name.self.txt, .children.txt)"
  areas <"$out/$name.self.txt"
  echo "   hottest symbols:"
  grep -E '^ +[0-9]' "$out/$name.self.txt" | head -12 | cut -c1-150
done
