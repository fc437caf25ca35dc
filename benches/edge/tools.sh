# Sourced by the bench scripts: installs, from Debian, the package of each
# command that is missing. Arguments are COMMAND=PACKAGE pairs.
#   need_tools wrk=wrk h2load=nghttp2-client
need_tools() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
  done
  if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Starts "$edge_bin" with the given arguments (its output in $work/edge.out
# and .err, its pid in $work/edge.pid) and waits for the HTTPS address it
# prints: sets edge_url (https://HOST:PORT/) and edge_addr (HOST:PORT). Ends
# the script with the edge's errors if none comes within 10 s.
launch_edge() {
  "$edge_bin" "$@" >"$work/edge.out" 2>"$work/edge.err" &
  echo $! >"$work/edge.pid"
  for _ in $(seq 100); do grep -q https "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
  edge_url=$(grep -o 'https://[^ ]*' "$work/edge.out" | head -1 || true)
  [[ -n $edge_url ]] || { cat "$work/edge.err"; exit 1; }
  edge_addr=${edge_url#https://}
  edge_addr=${edge_addr%%/*}
}
