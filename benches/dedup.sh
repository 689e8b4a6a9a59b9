#!/usr/bin/env bash
# What dedup costs per request: the same gateway build three times, in front
# of the same upstream (an nginx answering 200 in its own process), side by
# side on loopback:
#
#   plain    verifying `rye`, no dedup
#   memory   the same route with `[routes.dedup]`, state in memory
#   redis    the same with `[server.state] redis_url` on a local redis-server
#            (no persistence), started by this script
#
# Every request carries a fresh event id (`x-rye-event-id`, which rye reads
# before the body's `id`; the signature covers the body only), so each one is
# claimed, forwarded and marked delivered: the whole dedup path, never the
# cheap duplicate answer. Rounds alternate the contestants. Prints the median
# over rounds of req/s, p50, p99, the gateway's CPU per request and, for
# redis, Redis's own CPU per request; then the gateways' RSS.
#
# Run with:  benches/dedup.sh [seconds-per-round] [connections] [rounds]
# Needs:     nginx-light, wrk, openssl, curl, redis-server (installed with
#            apt-get when missing and running as root).
# Env:       THREADS (gateway threads = nginx workers, default 2),
#            WRK_THREADS (default 1), BODY_BYTES (default 1024),
#            HOOKGATE_BIN (a prebuilt binary to measure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
load_args "$@"
contestants="plain memory redis"

need_packages nginx:nginx-light wrk:wrk openssl:openssl curl:curl redis-server:redis-server

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)

rye_body "$body_bytes" > "$work/body"
sig=$(body_signature)

up_port=$(free_port); redis_port=$(free_port)
nginx_start up "$threads" "" "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\n\"; } }"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
pids+=("$redis_pid")

declare -A port pid
for name in $contestants; do
  port[$name]=$(free_port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = %s\naccess_log = "off"\n' "${port[$name]}" "$threads"
    [ "$name" = redis ] && printf '[server.state]\nredis_url = "redis://127.0.0.1:%s"\n' "$redis_port"
    printf '[[routes]]\nname = "load"\npath = "/hook"\nupstream = "http://127.0.0.1:%s/hook"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
      "$up_port" "$secret"
    [ "$name" = plain ] || printf '[routes.dedup]\nttl_secs = 3600\n'
  } > "$work/$name.toml"
  RUST_LOG=warn "$bin" run --config "$work/$name.toml" >/dev/null 2>"$work/$name.log" &
  pid[$name]=$!
  pids+=("$!")
done
wait_port "$up_port"; wait_port "$redis_port"
for name in $contestants; do wait_port "${port[$name]}"; done

# A fresh event id per request: RUN (set per run) + wrk thread + counter.
cat > "$work/post.lua" <<LUA
$(post_lua "$sig")
local threads, counter, prefix = 0, 0, ""
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = (os.getenv("RUN") or "run") .. "-" .. tostring(tid) .. "-"
end
function request()
  counter = counter + 1
  wrk.headers["x-rye-event-id"] = prefix .. counter
  return wrk.format()
end
LUA

# Sanity: signed and new passes; the same event again is a duplicate on the
# dedup gateways (and only there).
for name in $contestants; do
  url="http://127.0.0.1:${port[$name]}/hook"
  for try in 1 2; do
    got=$(curl -s "$url" -H "x-rye-signature: v0=$sig" -H 'x-rye-event-id: sanity' \
      -H 'Content-Type: application/json' --data-binary "@$work/body")
    want='ok'
    [ "$try" = 2 ] && [ "$name" != plain ] && want='{"status":"duplicate"}'
    [ "$got" = "$want" ] || { echo "$name: sanity try $try expected $want, got $got" >&2; exit 1; }
  done
done

round() { # name round
  local name=$1 url before after r_before r_after
  url="http://127.0.0.1:${port[$name]}/hook"
  RUN="$name-$2-warm" wrk -t"$wrk_threads" -c"$connections" -d2s -s "$work/post.lua" "$url" >/dev/null
  before=$(cpu_ticks "${pid[$name]}"); r_before=$(cpu_ticks "$redis_pid")
  RUN="$name-$2" wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$url" > "$work/$name.$2.wrk"
  after=$(cpu_ticks "${pid[$name]}"); r_after=$(cpu_ticks "$redis_pid")
  if grep -q 'Non-2xx\|Socket errors' "$work/$name.$2.wrk"; then
    echo "$name: errors under load:" >&2; cat "$work/$name.$2.wrk" >&2; exit 1
  fi
  printf '%s %s\n' "$(wrk_figures "$work/$name.$2.wrk" $(( after - before )))" \
    "$(wrk_figures "$work/$name.$2.wrk" $(( r_after - r_before )) | awk '{ print $4 }')" >> "$work/$name.rows"
}
for r in $(seq 1 "$rounds"); do
  for name in $contestants; do round "$name" "$r"; done
done

printf '%d x %d s, %d connections, %d wrk threads, %d gateway threads, %d-byte signed POSTs, a fresh event id each\n' \
  "$rounds" "$duration" "$connections" "$wrk_threads" "$threads" "$body_bytes"
printf '%-8s %10s %9s %9s %16s %16s %9s   (medians of %d rounds)\n' \
  "" "req/s" "p50 ms" "p99 ms" "gateway us/req" "redis us/req" "RSS MiB" "$rounds"
for name in $contestants; do
  read -r rps p50 p99 cpu rcpu < <(median_row "$work/$name.rows")
  [ "$name" = redis ] || rcpu=0
  printf '%-8s %10.0f %9.2f %9.2f %16.1f %16.1f %9.1f\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$rcpu" \
    "$(awk -v k="$(rss_kib "${pid[$name]}")" 'BEGIN { print k / 1024 }')"
done
echo "redis-server RSS: $(awk -v k="$(rss_kib "$redis_pid")" 'BEGIN { printf "%.1f", k / 1024 }') MiB, keys: $(redis-cli -p "$redis_port" dbsize)"
