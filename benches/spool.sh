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
# Run with:  benches/spool.sh [seconds-per-round] [connections] [rounds]
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

redis_port=$(free_port)
mkdir "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync always --dir "$work/redis" >/dev/null 2>&1 &
pids+=("$!")

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
