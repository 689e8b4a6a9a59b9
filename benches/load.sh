#!/usr/bin/env bash
# Load test: hookgate vs a plain nginx `proxy_pass`, side by side on loopback,
# both in front of the same upstream (a separate nginx answering 200).
#
# Run with:  benches/load.sh [seconds] [connections]
# Needs:     nginx, wrk, openssl   (apt-get install -y nginx wrk openssl)
# Env:       THREADS (gateway threads = nginx workers, default: CPUs),
#            WRK_THREADS (default 2), BODY_BYTES (default 1024),
#            HOOKGATE_EXTRA (lines appended to the gateway's [server] table,
#            e.g. 'access_log = "off"'), HOOKGATE_BIN (a prebuilt binary to
#            measure instead of building this tree, e.g. an older commit's).
# The gateway's access log (stdout) goes to a file, as a log collector would
# take it.
# Prints requests/s, p99 latency and CPU time per request of each for signed
# POSTs, and the throughput ratio.
set -euo pipefail

duration=${1:-10}
connections=${2:-64}
threads=${THREADS:-$(nproc)}
wrk_threads=${WRK_THREADS:-2}
body_bytes=${BODY_BYTES:-1024}
secret="load-test-secret"

for tool in nginx wrk openssl curl; do
  command -v "$tool" >/dev/null || { echo "load.sh needs $tool (apt-get install -y nginx wrk openssl curl)" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/up.pid" ] && kill "$(cat "$work/up.pid")" 2>/dev/null || true
  [ -f "$work/proxy.pid" ] && kill "$(cat "$work/proxy.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local port
  while :; do
    port=$(( (RANDOM % 20000) + 20000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
up_port=$(free_port); proxy_port=$(free_port); gw_port=$(free_port)

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

bin=${HOOKGATE_BIN:-}
if [ -z "$bin" ]; then
  echo "building hookgate (release)..." >&2
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/hookgate"
fi

nginx_conf() { # name port workers server-body
  cat > "$work/$1.conf" <<CONF
worker_processes $3;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/$1-body;
  proxy_temp_path $work/$1-proxy;
  fastcgi_temp_path $work/$1-fastcgi;
  uwsgi_temp_path $work/$1-uwsgi;
  scgi_temp_path $work/$1-scgi;
  server { listen 127.0.0.1:$2; $4 }
}
CONF
  nginx -c "$work/$1.conf" -p "$work" -e "$work/$1-error.log"
}
nginx_conf up "$up_port" "$threads" 'location / { return 200 "ok\n"; }'
nginx_conf proxy "$proxy_port" "$threads" "location / { proxy_pass http://127.0.0.1:$up_port; }"

cat > "$work/hookgate.toml" <<CONF
[server]
listen = "127.0.0.1:$gw_port"
threads = $threads
${HOOKGATE_EXTRA:-}

[[routes]]
name = "load"
path = "/hook"
upstream = "http://127.0.0.1:$up_port/hook"

[routes.verify]
scheme = "rye"
secrets = ["$secret"]
CONF
RUST_LOG=warn "$bin" run --config "$work/hookgate.toml" >"$work/access.log" 2>"$work/hookgate.log" &
pids+=($!)
wait_port "$up_port"; wait_port "$proxy_port"; wait_port "$gw_port"

# A Rye-style event padded to BODY_BYTES, and its signature.
head='{"id":"evt_load","type":"order.updated","createdAt":"2026-01-01T00:00:00Z","pad":"'
pad=$(( body_bytes - ${#head} - 2 ))
body="$head$(head -c "$pad" /dev/zero | tr '\0' x)\"}"
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.* //')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [==[$body]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-rye-signature"] = "v0=$sig"
LUA

# The load must be real deliveries: signed ones pass, forged ones do not.
check() {
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw_port/hook" -H "x-rye-signature: $1" -H 'Content-Type: application/json' --data-binary "$body")
  [ "$got" = "$2" ] || { echo "sanity check: expected $2, got $got" >&2; cat "$work/hookgate.log" >&2; exit 1; }
}
check "v0=$sig" 200
check "v0=$(printf '%064d' 0)" 401

# CPU time (user + system, clock ticks) of processes: steadier than req/s on a
# shared machine, since it does not depend on what else gets the CPU.
cpu_ticks() {
  local total=0 stat
  for pid in "$@"; do
    read -ra stat < <(sed 's/^.*) //' "/proc/$pid/stat")
    total=$(( total + stat[11] + stat[12] ))
  done
  echo "$total"
}

run() { # name url pids...
  local name=$1 url=$2 before after
  shift 2
  wrk -t"$wrk_threads" -c"$connections" -d2s -s "$work/post.lua" "$url" >/dev/null   # warm-up
  before=$(cpu_ticks "$@")
  wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency -s "$work/post.lua" "$url" > "$work/$name.wrk"
  after=$(cpu_ticks "$@")
  if grep -q 'Non-2xx' "$work/$name.wrk"; then
    echo "$name answered non-2xx under load:" >&2; cat "$work/$name.wrk" >&2; exit 1
  fi
  awk -v c=$(( after - before )) -v t="$(getconf CLK_TCK)" '/requests in/ { printf "%.1f", c * 1e6 / t / $1 }' \
    "$work/$name.wrk" > "$work/$name.cpu"
}
run nginx "http://127.0.0.1:$proxy_port/hook" $(pgrep -P "$(cat "$work/proxy.pid")")
run hookgate "http://127.0.0.1:$gw_port/hook" "${pids[0]}"

rps() { awk '/^Requests\/sec/ {print $2}' "$work/$1.wrk"; }
p99() { awk '$1 == "99%" {print $2}' "$work/$1.wrk"; }
printf '%d s, %d connections, %d wrk threads, %d server threads, %d-byte signed POSTs\n' \
  "$duration" "$connections" "$wrk_threads" "$threads" "$body_bytes"
printf '%-10s %12s %10s %16s\n' "" "req/s" "p99" "CPU us/request"
for name in nginx hookgate; do
  printf '%-10s %12s %10s %16s\n' "$name" "$(rps "$name")" "$(p99 "$name")" "$(cat "$work/$name.cpu")"
done
awk -v g="$(rps hookgate)" -v n="$(rps nginx)" 'BEGIN { printf "ratio hookgate/nginx: %.2f\n", g / n }'
