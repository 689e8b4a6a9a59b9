#!/usr/bin/env bash
# What acknowledging after durability costs, and what group commit buys: the
# same gateway build twice, in front of the same upstream (an nginx answering
# 200 in its own process), on loopback:
#
#   sync     verifying `rye` and forwarding; the provider's answer is the app's
#   async    the same route with `delivery = "async"`: each request is fsynced
#            in the spool (the scratch directory, on the disk `TMPDIR` is on)
#            before its 202, and delivered to the nginx in the background
#
#   redis    the async route on the `redis` spool backend, on a redis-server
#            of its own with `appendonly yes` and `appendfsync always` (its
#            files in the scratch directory): each 202 waits for Redis's fsync
#
# async and redis run at 1 connection (every acknowledgement waits for an
# fsync of its own) and at `connections` (concurrent requests share fsyncs:
# group commit); sync at `connections`. Rounds alternate the contestants. Prints the median
# over rounds of acknowledgements/s, p50 and p99 acknowledgement latency and
# the gateway's CPU per request; then, after one more async round, how fast
# the deliverer drains the backlog it left.
#
# The drain mode measures the deliverer alone, both backends side by side:
# each backend's gateway has two async routes, at `concurrency` 16 and 64,
# into the same nginx upstream. The upstream holds every request behind a
# gate while a backlog is accepted (the deliverer's first `concurrency`
# attempts wait there; the rest stay queued, in the local store or in the
# Redis stream, of which the gateway has read `concurrency` more ahead), then
# the gate opens and the upstream answers everything at once. Deliveries/s
# is the backlog over the time from the opening to the last delivery the
# upstream answered (by its own clock). Rounds alternate the contestants;
# prints the medians, and redis's rate over local's.
#
# Run with:  benches/spool.sh [seconds-per-round] [connections] [rounds]
#            benches/spool.sh drain [backlog] [rounds]    (3000 and 3)
# Needs:     nginx-light, wrk, openssl, curl, redis-server, and for the drain
#            mode libnginx-mod-http-lua (installed with apt-get when missing
#            and running as root).
# Env:       THREADS (gateway threads = nginx workers, default 2),
#            WRK_THREADS (default 1; the drain mode fills with 1),
#            BODY_BYTES (default 1024), HOOKGATE_BIN (a prebuilt binary to
#            measure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"

# Starts a redis-server on `redis_port` that fsyncs every write before it
# answers, its files in the scratch directory.
start_redis() {
  redis_port=$(free_port)
  mkdir "$work/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync always --dir "$work/redis" >/dev/null 2>&1 &
  pids+=("$!")
}

# The drain mode (see above): `drain [backlog] [rounds]`.
drain_mode() {
  local backlog=${1:-3000} rounds=${2:-3}
  local threads=${THREADS:-2} body_bytes=${BODY_BYTES:-1024}
  local concurrencies="16 64" backends="local redis"
  need_packages nginx:nginx-light wrk:wrk openssl:openssl curl:curl redis-server:redis-server
  need_lua_module

  work=$(mktemp -d)
  trap 'cleanup_all' EXIT
  local bin
  bin=$(hookgate_bin)
  rye_body "$body_bytes" > "$work/body"
  local sig
  sig=$(body_signature)
  # Posts until `backlog` answers have come (a few more may be in flight).
  { post_lua "$sig"; cat <<LUA
local answered = 0
function response()
  answered = answered + 1
  if answered >= $backlog then wrk.thread:stop() end
end
LUA
  } > "$work/fill.lua"

  # The gate: requests wait while it is closed; `n` counts the answered ones
  # and `last` is when the last one was (nginx's clock, ms).
  local up_port
  up_port=$(free_port)
  nginx_start up "$threads" "load_module $ndk_module; load_module $lua_module;" "
  lua_shared_dict gate 1m;
  server {
    listen 127.0.0.1:$up_port;
    location = /gate/close { content_by_lua_block {
      local g = ngx.shared.gate
      g:set('open', false); g:set('n', 0); g:set('last', 0); ngx.say('closed')
    } }
    location = /gate/open { content_by_lua_block {
      local g = ngx.shared.gate
      ngx.update_time(); g:set('opened', ngx.now()); g:set('open', true); ngx.say('open')
    } }
    location = /gate/count { content_by_lua_block {
      local g = ngx.shared.gate
      ngx.say(g:get('n') or 0, ' ', g:get('opened') or 0, ' ', g:get('last') or 0)
    } }
    location / { content_by_lua_block {
      local g = ngx.shared.gate
      while not g:get('open') do ngx.sleep(0.002) end
      ngx.update_time(); g:set('last', ngx.now()); g:incr('n', 1, 0)
      ngx.say('ok')
    } }
  }"

  start_redis

  declare -A port admin
  local backend c
  for backend in $backends; do
    port[$backend]=$(free_port); admin[$backend]=$(free_port)
    {
      printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\nthreads = %s\naccess_log = "off"\n' \
        "${port[$backend]}" "${admin[$backend]}" "$threads"
      if [ "$backend" = redis ]; then
        printf '[server.state]\nredis_url = "redis://127.0.0.1:%s"\n[spool]\nbackend = "redis"\n' "$redis_port"
      else
        printf '[spool]\ndir = "%s/spool"\n' "$work"
      fi
      for c in $concurrencies; do
        printf '[[routes]]\nname = "c%s"\npath = "/c%s"\nupstream = "http://127.0.0.1:%s/hook"\ndelivery = "async"\n' "$c" "$c" "$up_port"
        printf 'upstream_timeout_ms = 120000\nverify = { scheme = "rye", secrets = ["%s"] }\n[routes.retry]\nconcurrency = %s\n' "$secret" "$c"
      done
    } > "$work/$backend.toml"
    RUST_LOG=warn "$bin" run --config "$work/$backend.toml" >/dev/null 2>"$work/$backend.log" &
    pids+=("$!")
  done
  wait_port "$up_port"; wait_port "$redis_port"
  for backend in $backends; do wait_port "${port[$backend]}"; wait_port "${admin[$backend]}"; done

  gate() { curl -s "127.0.0.1:$up_port/gate/$1"; }
  accepted() { # backend route
    curl -s "127.0.0.1:${admin[$1]}/metrics" |
      awk -v r="route=\"$2\"" '/^hookgate_requests_total/ && index($0, r) && /outcome="accepted"/ { n += $2 } END { print n + 0 }'
  }
  drain_round() { # backend concurrency
    local before n opened last waited=0
    gate close >/dev/null
    before=$(accepted "$1" "c$2")
    # wrk runs out its duration even once its thread has stopped.
    wrk -t1 -c32 -d120s -s "$work/fill.lua" "http://127.0.0.1:${port[$1]}/c$2" > "$work/fill.wrk" &
    local filler=$!
    until [ $(( $(accepted "$1" "c$2") - before )) -ge "$backlog" ]; do
      sleep 0.05; waited=$(( waited + 1 ))
      [ "$waited" -lt 2400 ] || { echo "$1 c$2: the backlog was not accepted within 120 s" >&2; exit 1; }
    done
    kill -INT "$filler"; wait "$filler" || true
    if grep -q 'Non-2xx\|Socket errors' "$work/fill.wrk"; then
      echo "$1 c$2: errors while filling:" >&2; cat "$work/fill.wrk" >&2; exit 1
    fi
    n=$(( $(accepted "$1" "c$2") - before )); waited=0
    gate open >/dev/null
    while read -r got opened last < <(gate count); [ "$got" -lt "$n" ]; do
      sleep 0.05; waited=$(( waited + 1 ))
      [ "$waited" -lt 2400 ] || { echo "$1 c$2: $got of $n delivered after 120 s" >&2; exit 1; }
    done
    [ "$got" -eq "$n" ] || { echo "$1 c$2: $got deliveries for $n accepted" >&2; exit 1; }
    awk -v n="$n" -v a="$opened" -v b="$last" 'BEGIN { printf "%.0f %d\n", n / (b - a), n }' >> "$work/$1-$2.rows"
    sleep 1 # the last results recorded
  }
  local r
  for r in $(seq 1 "$rounds"); do
    for c in $concurrencies; do
      for backend in $backends; do drain_round "$backend" "$c"; done
    done
  done

  printf 'a backlog of %d signed %d-byte POSTs per run, %d gateway threads, %d nginx workers, medians of %d rounds\n' \
    "$backlog" "$body_bytes" "$threads" "$threads" "$rounds"
  printf '%-12s %10s %10s %7s   %s\n' concurrency "local/s" "redis/s" "ratio" "rounds: local | redis"
  local l rd
  for c in $concurrencies; do
    read -r l _ < <(median_row "$work/local-$c.rows")
    read -r rd _ < <(median_row "$work/redis-$c.rows")
    printf '%-12s %10.0f %10.0f %7.2f   %s| %s\n' "$c" "$l" "$rd" "$(awk -v a="$rd" -v b="$l" 'BEGIN { print a / b }')" \
      "$(cut -d' ' -f1 "$work/local-$c.rows" | tr '\n' ' ')" "$(cut -d' ' -f1 "$work/redis-$c.rows" | tr '\n' ' ')"
  done
}
if [ "${1:-}" = drain ]; then
  shift
  drain_mode "$@"
  exit
fi
load_args "$@"
runs="async-1:async:1 async-$connections:async:$connections redis-1:redis:1 redis-$connections:redis:$connections sync-$connections:sync:$connections"

need_packages nginx:nginx-light wrk:wrk openssl:openssl curl:curl redis-server:redis-server

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)

rye_body "$body_bytes" > "$work/body"
sig=$(body_signature)
post_lua "$sig" > "$work/post.lua"

up_port=$(free_port)
nginx_start up "$threads" "" "server { listen 127.0.0.1:$up_port; access_log $work/up-access.log; location / { return 200 \"ok\n\"; } }"

start_redis

declare -A port pid
admin_port=$(free_port)
for delivery in sync async redis; do
  port[$delivery]=$(free_port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = %s\naccess_log = "off"\n' "${port[$delivery]}" "$threads"
    [ "$delivery" = async ] && printf 'admin_listen = "127.0.0.1:%s"\n' "$admin_port"
    if [ "$delivery" = redis ]; then
      printf '[server.state]\nredis_url = "redis://127.0.0.1:%s"\n[spool]\nbackend = "redis"\n' "$redis_port"
    else
      printf '[spool]\ndir = "%s/spool"\n' "$work"
    fi
    printf '[[routes]]\nname = "load"\npath = "/hook"\nupstream = "http://127.0.0.1:%s/hook"\ndelivery = "%s"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
      "$up_port" "$([ "$delivery" = sync ] && echo sync || echo async)" "$secret"
  } > "$work/$delivery.toml"
  RUST_LOG=warn "$bin" run --config "$work/$delivery.toml" >/dev/null 2>"$work/$delivery.log" &
  pid[$delivery]=$!
  pids+=("$!")
done
wait_port "$up_port"
wait_port "$redis_port"
for delivery in sync async redis; do wait_port "${port[$delivery]}"; done
expect_status "http://127.0.0.1:${port[sync]}/hook" "v0=$sig" 200 sync
expect_status "http://127.0.0.1:${port[async]}/hook" "v0=$sig" 202 async
expect_status "http://127.0.0.1:${port[redis]}/hook" "v0=$sig" 202 redis

round() { # name delivery connections round
  local url before after
  url="http://127.0.0.1:${port[$2]}/hook"
  wrk -t"$wrk_threads" -c"$3" -d2s -s "$work/post.lua" "$url" >/dev/null
  before=$(cpu_ticks "${pid[$2]}")
  wrk -t"$wrk_threads" -c"$3" -d"${duration}s" --latency -s "$work/post.lua" "$url" > "$work/$1.$4.wrk"
  after=$(cpu_ticks "${pid[$2]}")
  if grep -q 'Non-2xx\|Socket errors' "$work/$1.$4.wrk"; then
    echo "$1: errors under load:" >&2; cat "$work/$1.$4.wrk" >&2; exit 1
  fi
  wrk_figures "$work/$1.$4.wrk" $(( after - before )) >> "$work/$1.rows"
}
for r in $(seq 1 "$rounds"); do
  for run in $runs; do
    IFS=: read -r name delivery conns <<< "$run"
    round "$name" "$delivery" "$conns" "$r"
  done
done

printf '%d x %d s, %d wrk threads, %d gateway threads, %d-byte signed POSTs, spool in %s\n' \
  "$rounds" "$duration" "$wrk_threads" "$threads" "$body_bytes" "$work"
printf '%-10s %10s %9s %9s %16s   (medians of %d rounds)\n' "" "acks/s" "p50 ms" "p99 ms" "gateway us/req" "$rounds"
for run in $runs; do
  IFS=: read -r name _ _ <<< "$run"
  read -r rps p50 p99 cpu < <(median_row "$work/$name.rows")
  printf '%-10s %10.0f %9.2f %9.2f %16.1f\n' "$name" "$rps" "$p50" "$p99" "$cpu"
done

# The deliverer: how fast the backlog left by one more async round drains
# once no new request comes (it also delivers during the rounds, sharing the
# CPU with the acknowledgements).
pending() {
  curl -s "127.0.0.1:$admin_port/metrics" | awk '/^hookgate_spool_pending/ { n += $2 } END { print n + 0 }'
}
until [ "$(pending)" = 0 ]; do sleep 0.2; done
wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" -s "$work/post.lua" "http://127.0.0.1:${port[async]}/hook" >/dev/null
backlog=$(pending); start=$(date +%s%N)
until [ "$(pending)" = 0 ]; do sleep 0.05; done
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf 'backlog after %d s of async load: %d pending, delivered in %d ms (%.0f deliveries/s)\n' \
  "$duration" "$backlog" "$took_ms" "$(awk -v n="$backlog" -v ms="$took_ms" 'BEGIN { print n * 1000 / (ms ? ms : 1) }')"
