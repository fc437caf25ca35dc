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
