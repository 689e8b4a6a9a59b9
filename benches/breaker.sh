#!/usr/bin/env bash
# What a circuit breaker saves while an async destination's app is down, and
# that every event still arrives: two gateways side by side, each with one
# async route whose destination is a port nothing listens on (connection
# refused), one with `[routes.destinations.breaker]` (5 failures, 30 s
# cooldown) and one without, both with the default `[routes.retry]`
# (backoff from 1 s, doubling, up to 12 attempts). Each accepts the same
# events; after `minutes` the apps come up (an nginx answering 200 on both
# ports), and the script waits until each gateway has delivered everything.
# Prints, per gateway: attempts made while the app was down (the upstream's
# failures counted in `hookgate_delivery_attempts_total`), dead letters, and
# how long after the app came up the last event arrived.
#
# Run with:  benches/breaker.sh [minutes] [events]      (10 and 100)
# Needs:     nginx-light, curl, openssl.
# Env:       HOOKGATE_BIN (a prebuilt binary to measure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"

minutes=${1:-10}
events=${2:-100}
need_packages nginx:nginx-light curl:curl openssl:openssl

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)

declare -A port admin app
for g in breaker none; do
  port[$g]=$(free_port); admin[$g]=$(free_port); app[$g]=$(free_port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\naccess_log = "off"\n' \
      "${port[$g]}" "${admin[$g]}"
    printf '[spool]\ndir = "%s/spool-%s"\n' "$work" "$g"
    printf '[[routes]]\nname = "r"\npath = "/r"\ndelivery = "async"\n'
    printf 'verify = { scheme = "rye", secrets = ["%s"] }\n' "$secret"
    printf '[[routes.destinations]]\nname = "app"\nupstream = "http://127.0.0.1:%s/in"\n' "${app[$g]}"
    if [ "$g" = breaker ]; then
      printf '[routes.destinations.breaker]\nfailures = 5\ncooldown_secs = 30\n'
    fi
  } > "$work/$g.toml"
  RUST_LOG=warn "$bin" run --config "$work/$g.toml" >/dev/null 2>"$work/$g.log" &
  pids+=("$!")
done
for g in breaker none; do wait_port "${port[$g]}"; wait_port "${admin[$g]}"; done

# The same events to both: each its own id.
for i in $(seq 1 "$events"); do
  printf '{"id":"evt_%d","type":"order.created","data":{"n":%d}}' "$i" "$i" > "$work/body"
  sig=$(body_signature)
  for g in breaker none; do
    got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$g]}/r" \
      -H "x-rye-signature: v0=$sig" -H 'Content-Type: application/json' --data-binary "@$work/body")
    [ "$got" = 202 ] || { echo "$g: event $i answered $got" >&2; exit 1; }
  done
done

metric() { # gateway name outcome
  curl -s "127.0.0.1:${admin[$1]}/metrics" |
    awk -v o="outcome=\"$2\"" '/^hookgate_delivery_attempts_total/ && index($0, o) { n += $2 } END { print n + 0 }'
}

echo "$events events accepted by each; the apps are down for $minutes minute(s)" >&2
sleep $(( minutes * 60 ))
declare -A down_retry down_dead
for g in breaker none; do
  down_retry[$g]=$(metric "$g" retry); down_dead[$g]=$(metric "$g" dead)
done

# The apps come up: 200 on both ports.
nginx_start app 1 "" "server { listen 127.0.0.1:${app[breaker]}; listen 127.0.0.1:${app[none]}; location / { return 200 \"ok\n\"; } }"
up=$(date +%s.%N)
declare -A took
waited=0
while :; do
  for g in breaker none; do
    if [ -z "${took[$g]:-}" ] && [ "$(curl -s "127.0.0.1:${admin[$g]}/deliveries?route=r&status=pending")" = "[]" ]; then
      took[$g]=$(awk -v a="$up" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    fi
  done
  [ -n "${took[breaker]:-}" ] && [ -n "${took[none]:-}" ] && break
  sleep 0.5; waited=$(( waited + 1 ))
  [ "$waited" -lt 7200 ] || { echo "not delivered within an hour" >&2; exit 1; }
done

printf '%d events, app down (connection refused) for %d minute(s), then up\n' "$events" "$minutes"
printf '%-10s %16s %8s %10s %12s\n' gateway "attempts (down)" dead delivered "last after"
for g in breaker none; do
  printf '%-10s %16d %8d %10d %11ss\n' "$g" "$(( down_retry[$g] + down_dead[$g] ))" "$(metric "$g" dead)" \
    "$(metric "$g" delivered)" "${took[$g]}"
done
