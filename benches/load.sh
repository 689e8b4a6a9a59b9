#!/usr/bin/env bash
# Load test: hookgate against the two strongest fair baselines, side by side on
# loopback, all in front of the same upstream (an nginx answering 200 in its own
# process):
#
#   hookgate    verifying `rye` (HMAC-SHA256 of the raw body), access log off
#   nginx       plain `proxy_pass` with upstream keepalive (`keepalive 64`,
#               HTTP/1.1, `Connection ""`): the floor a proxy is held to
#   nginx-lua   nginx verifying the same HMAC before `proxy_pass` (same
#               keepalive): `access_by_lua_block` reads the body and calls
#               libcrypto's HMAC through LuaJIT's FFI, as Kong/OpenResty users do
#
# Every proxy gets THREADS workers or threads and its access log off. Rounds
# alternate the contestants (A B C, A B C, ...) so drift on a shared machine
# hits all of them alike. Prints, per contestant, the median over rounds of
# requests/s, p50, p99 and CPU time per request (user + system of the proxy's
# own processes only), then the ratios.
#
# Run with:  benches/load.sh [seconds-per-round] [connections] [rounds]
# Needs:     nginx-light, libnginx-mod-http-lua, wrk, openssl, curl; installed
#            with apt-get when missing and running as root.
# Env:       THREADS (proxy threads = nginx workers, default 2),
#            WRK_THREADS (default 1), BODY_BYTES (default 1024),
#            ROUTES (routes in the gateway's config, default 1; the measured
#            route is the last one, for the route-scale figure),
#            CONTESTANTS (default "hookgate nginx nginx-lua"),
#            HOOKGATE_EXTRA (lines appended to the gateway's [server] table),
#            HOOKGATE_BIN (a prebuilt binary to measure instead of building
#            this tree, e.g. an older commit's),
#            HOOKGATES ("label=path ..." more gateway builds, each one more
#            contestant with the same config, to compare builds in one run;
#            "label=path@N" gives that one N routes).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
load_args "$@"
routes=${ROUTES:-1}
contestants=${CONTESTANTS:-hookgate nginx nginx-lua}

need_packages nginx:nginx-light wrk:wrk openssl:openssl curl:curl
need_lua_module

work=$(mktemp -d)
trap 'cleanup_all' EXIT

up_port=$(free_port); nginx_port=$(free_port); lua_port=$(free_port); gw_port=$(free_port)
bin=$(hookgate_bin)

# A Rye-style event padded to BODY_BYTES, and its signature.
rye_body "$body_bytes" > "$work/body"
sig=$(body_signature)

# The upstream: one nginx answering 200, shared by every contestant.
nginx_start up "$threads" "" "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\n\"; } }"

keepalive_upstream="upstream app { server 127.0.0.1:$up_port; keepalive 64; }"
proxy_to_app='proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_start nginx "$threads" "" "$keepalive_upstream
  server { listen 127.0.0.1:$nginx_port; location / { $proxy_to_app } }"

nginx_start nginx-lua "$threads" "load_module $ndk_module; load_module $lua_module;" "$keepalive_upstream
$(lua_verifier "$secret")
  server {
    listen 127.0.0.1:$lua_port;
    client_body_buffer_size 1m;
    client_max_body_size 1m;
    location / {
      access_by_lua_block {
        ngx.req.read_body()
        if not verify_rye(ngx.req.get_body_data(), ngx.var.http_x_rye_signature) then
          return ngx.exit(401)
        end
      }
      $proxy_to_app
    }
  }"

# The gateway's config: listening on port $1 with $2 routes, the measured one
# last (for the route-scale figure).
gateway_config() {
  printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = %s\naccess_log = "off"\n%s\n' \
    "$1" "$threads" "${HOOKGATE_EXTRA:-}"
  for i in $(seq 2 "$2"); do
    printf '[[routes]]\nname = "r%d"\npath = "/other/%d"\nupstream = "http://127.0.0.1:%s/hook"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
      "$i" "$i" "$up_port" "$secret"
  done
  printf '[[routes]]\nname = "load"\npath = "/hook"\nupstream = "http://127.0.0.1:%s/hook"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
    "$up_port" "$secret"
}
gateway_config "$gw_port" "$routes" > "$work/hookgate.toml"
RUST_LOG=warn "$bin" run --config "$work/hookgate.toml" >/dev/null 2>"$work/hookgate.log" &
gw_pid=$!
pids+=("$gw_pid")
wait_port "$up_port"; wait_port "$nginx_port"; wait_port "$lua_port"; wait_port "$gw_port"

# Other builds, each on a port of its own; `label=path@N` gives one N routes.
declare -A extra_port extra_pid
for build in ${HOOKGATES:-}; do
  label=${build%%=*}
  path=${build#*=}
  extra_routes=$routes
  if [[ $path == *@* ]]; then extra_routes=${path##*@}; path=${path%@*}; fi
  extra_port[$label]=$(free_port)
  gateway_config "${extra_port[$label]}" "$extra_routes" > "$work/$label.toml"
  RUST_LOG=warn "$path" run --config "$work/$label.toml" >/dev/null 2>"$work/$label.log" &
  extra_pid[$label]=$!
  pids+=("$!")
  wait_port "${extra_port[$label]}"
  contestants="$contestants $label"
done

post_lua "$sig" > "$work/post.lua"

port_of() { case $1 in hookgate) echo "$gw_port" ;; nginx) echo "$nginx_port" ;; nginx-lua) echo "$lua_port" ;; *) echo "${extra_port[$1]}" ;; esac; }
pids_of() { case $1 in hookgate) echo "$gw_pid" ;; nginx|nginx-lua) pgrep -P "$(cat "$work/$1.pid")" | tr '\n' ' ' ;; *) echo "${extra_pid[$1]}" ;; esac; }

# The load must be real deliveries: signed ones pass, forged ones do not.
for name in $contestants; do
  expect_status "http://127.0.0.1:$(port_of "$name")/hook" "v0=$sig" 200 "$name"
  [ "$name" = nginx ] && continue   # plain proxy_pass verifies nothing
  expect_status "http://127.0.0.1:$(port_of "$name")/hook" "v0=$(printf '%064d' 0)" 401 "$name"
done

round() { # name round
  local name=$1 url before after
  url="http://127.0.0.1:$(port_of "$name")/hook"
  wrk -t"$wrk_threads" -c"$connections" -d2s -s "$work/post.lua" "$url" >/dev/null   # warm-up
  # shellcheck disable=SC2046
  before=$(cpu_ticks $(pids_of "$name"))
  wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$url" > "$work/$name.$2.wrk"
  # shellcheck disable=SC2046
  after=$(cpu_ticks $(pids_of "$name"))
  if grep -q 'Non-2xx\|Socket errors' "$work/$name.$2.wrk"; then
    echo "$name: errors under load:" >&2; cat "$work/$name.$2.wrk" >&2; exit 1
  fi
  wrk_figures "$work/$name.$2.wrk" $(( after - before )) >> "$work/$name.rows"
}
for r in $(seq 1 "$rounds"); do
  for name in $contestants; do round "$name" "$r"; done
done

printf '%d x %d s, %d connections, %d wrk threads, %d proxy threads/workers, %d-byte signed POSTs, %d route(s)\n' \
  "$rounds" "$duration" "$connections" "$wrk_threads" "$threads" "$body_bytes" "$routes"
printf '%-12s %10s %9s %9s %15s   (medians of %d rounds)\n' "" "req/s" "p50 ms" "p99 ms" "CPU us/request" "$rounds"
for name in $contestants; do
  median_row "$work/$name.rows" > "$work/$name.median"
  read -r rps p50 p99 cpu < "$work/$name.median"
  printf '%-12s %10.0f %9.2f %9.2f %15.1f\n' "$name" "$rps" "$p50" "$p99" "$cpu"
done
if [[ " $contestants " == *" hookgate "* ]]; then
  read -r g_rps _ g_p99 g_cpu < "$work/hookgate.median"
  for name in $contestants; do
    [ "$name" = hookgate ] && continue
    read -r rps _ p99 cpu < "$work/$name.median"
    awk -v n="$name" -v a="$g_rps" -v b="$rps" -v c="$g_cpu" -v d="$cpu" -v e="$g_p99" -v f="$p99" \
      'BEGIN { printf "hookgate / %-9s req/s %.2f   CPU/request %.2f   p99 %+.2f ms\n", n, a / b, c / d, e - f }'
  done
fi
