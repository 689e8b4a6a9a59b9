#!/usr/bin/env bash
# Memory per client connection: the gateway's resident memory with N idle
# client connections (connected, never sending a byte), and its peak resident
# memory while 1,000 keep-alive clients send signed 1 KiB POSTs.
#
# Run with:  benches/conns.sh [idle-connections] [busy-clients] [seconds]
# Needs:     nginx-light, wrk, python3, openssl, curl (installed with apt-get
#            when missing and running as root); a file descriptor limit above
#            the connection counts (the script raises its soft limit).
# Env:       THREADS (gateway threads, default 2), HOOKGATE_BIN.
set -euo pipefail

idle=${1:-10000}
busy=${2:-1000}
duration=${3:-10}
threads=${THREADS:-2}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
need_packages nginx:nginx-light wrk:wrk python3:python3 openssl:openssl curl:curl
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $(( idle + busy + 100 )) ] || { echo "the file descriptor limit $(ulimit -n) is too low for $idle connections" >&2; exit 1; }

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)
rye_body 1024 > "$work/body"
sig=$(body_signature)

up_port=$(free_port); gw_port=$(free_port)
nginx_start up 1 "" "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\n\"; } }"
printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = %s\naccess_log = "off"\n[[routes]]\nname = "load"\npath = "/hook"\nupstream = "http://127.0.0.1:%s/hook"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
  "$gw_port" "$threads" "$up_port" "$secret" > "$work/hookgate.toml"
# Starts a fresh gateway; its pid in $gw.
start_gateway() {
  RUST_LOG=warn "$bin" run --config "$work/hookgate.toml" >/dev/null 2>>"$work/hookgate.log" &
  gw=$!
  pids+=("$gw")
  wait_port "$up_port"; wait_port "$gw_port"
  expect_status "http://127.0.0.1:$gw_port/hook" "v0=$sig" 200 hookgate
}
start_gateway

# Opens N connections, reports once all are open, then holds them until killed.
cat > "$work/idle.py" <<'PY'
import asyncio, sys
async def main(port, n):
    held = []
    for _ in range(n):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    print("open", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
PY

before=$(rss_kib "$gw")
python3 "$work/idle.py" "$gw_port" "$idle" > "$work/idle.out" &
holder=$!
pids+=("$holder")
for _ in $(seq 1 600); do grep -q open "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
grep -q open "$work/idle.out" || { echo "could not open $idle connections" >&2; exit 1; }
sleep 2
with_idle=$(rss_kib "$gw")
open_now=$(ls "/proc/$gw/fd" | wc -l)
kill "$holder" "$gw"; wait "$holder" "$gw" 2>/dev/null || true
start_gateway

post_lua "$sig" > "$work/post.lua"
wrk -t2 -c"$busy" -d"${duration}s" -s "$work/post.lua" "http://127.0.0.1:$gw_port/hook" > "$work/wrk.out"
peak=$(awk '/^VmHWM/ { print $2 }' "/proc/$gw/status")
grep -q 'Non-2xx' "$work/wrk.out" && { echo "errors under load:" >&2; cat "$work/wrk.out" >&2; exit 1; }

printf 'gateway RSS at rest:                     %8d KiB\n' "$before"
printf 'with %d idle connections (%d fds):   %8d KiB, %.1f KiB per connection\n' \
  "$idle" "$open_now" "$with_idle" "$(echo "$with_idle $before $idle" | awk '{ print ($1 - $2) / $3 }')"
printf 'peak with %d keep-alive clients (%ds): %8d KiB (%s req/s, %s)\n' \
  "$busy" "$duration" "$peak" "$(awk '/^Requests\/sec/ { print $2 }' "$work/wrk.out")" \
  "$(grep -o "Socket errors.*" "$work/wrk.out" || echo "no socket errors")"
