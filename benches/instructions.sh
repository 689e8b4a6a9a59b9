#!/usr/bin/env bash
# Instructions per request: a steady figure on a noisy machine. Runs each proxy
# under valgrind's callgrind in front of the same nginx upstream (which runs
# natively), sends warm-up requests, zeroes the counters, sends a fixed number
# of signed 1 KiB POSTs one after another on one keep-alive connection, and
# divides the instructions the proxy executed (all its threads) by that number.
#
#   hookgate    verifying `rye`, access log off, 1 thread
#   nginx       plain `proxy_pass` with upstream keepalive, one process
#   nginx-lua   nginx verifying the same HMAC in Lua (see benches/load.sh)
#
# Run with:  benches/instructions.sh [requests]
# Needs:     valgrind, nginx-light, libnginx-mod-http-lua, python3, openssl, curl
#            (installed with apt-get when missing and running as root).
# Env:       CONTESTANTS (default "hookgate nginx nginx-lua"), BODY_BYTES
#            (default 1024), HOOKGATE_BIN (a prebuilt binary to measure).
set -euo pipefail

requests=${1:-2000}
body_bytes=${BODY_BYTES:-1024}
contestants=${CONTESTANTS:-hookgate nginx nginx-lua}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
need_packages nginx:nginx-light valgrind:valgrind python3:python3 openssl:openssl curl:curl
need_lua_module

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)
rye_body "$body_bytes" > "$work/body"
sig=$(body_signature)

up_port=$(free_port)
nginx_start up 1 "" "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\n\"; } }"
wait_port "$up_port"

# Sends N signed POSTs on one keep-alive connection; fails on any non-200.
cat > "$work/client.py" <<'PY'
import http.client, sys
port, count, sig, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], open(sys.argv[4], "rb").read()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
headers = {"Content-Type": "application/json", "x-rye-signature": "v0=" + sig}
for _ in range(count):
    conn.request("POST", "/hook", body, headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit("answered %d" % response.status)
PY

# Starts contestant $1 under callgrind on port $2.
start() {
  local name=$1 port=$2
  local vg=(valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" --dump-instr=no)
  case $name in
    hookgate)
      printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = 1\naccess_log = "off"\nwatch_config = false\n[[routes]]\nname = "load"\npath = "/hook"\nupstream = "http://127.0.0.1:%s/hook"\nverify = { scheme = "rye", secrets = ["%s"] }\n' \
        "$port" "$up_port" "$secret" > "$work/hookgate.toml"
      RUST_LOG=error "${vg[@]}" "$bin" run --config "$work/hookgate.toml" >/dev/null 2>"$work/$name.log" &
      ;;
    nginx|nginx-lua)
      local modules="" location
      location="proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";"
      if [ "$name" = nginx-lua ]; then
        modules="load_module $ndk_module; load_module $lua_module;"
        location="access_by_lua_block {
            ngx.req.read_body()
            if not verify_rye(ngx.req.get_body_data(), ngx.var.http_x_rye_signature) then return ngx.exit(401) end
          } $location"
      fi
      cat > "$work/$name.conf" <<CONF
$modules
master_process off;
daemon off;
worker_processes 1;
pid $work/$name.pid;
error_log $work/$name-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/$name-body;
  proxy_temp_path $work/$name-proxy;
  fastcgi_temp_path $work/$name-fastcgi;
  uwsgi_temp_path $work/$name-uwsgi;
  scgi_temp_path $work/$name-scgi;
  upstream app { server 127.0.0.1:$up_port; keepalive 64; }
  $( [ "$name" = nginx-lua ] && lua_verifier "$secret" )
  server { listen 127.0.0.1:$port; client_body_buffer_size 1m; location / { $location } }
}
CONF
      "${vg[@]}" nginx -c "$work/$name.conf" -p "$work" -e "$work/$name-error.log" 2>"$work/$name.log" &
      ;;
  esac
  pids+=($!)
  wait_port "$port"
}

printf '%d signed %d-byte POSTs, one keep-alive connection, under callgrind\n' "$requests" "$body_bytes"
printf '%-10s %22s\n' "" "instructions/request"
for name in $contestants; do
  port=$(free_port)
  start "$name" "$port"
  vg_pid=${pids[-1]}
  python3 "$work/client.py" "$port" 200 "$sig" "$work/body"          # warm-up
  callgrind_control --zero "$vg_pid" >/dev/null 2>&1
  python3 "$work/client.py" "$port" "$requests" "$sig" "$work/body"
  callgrind_control --dump "$vg_pid" >/dev/null 2>&1
  kill "$vg_pid"; wait "$vg_pid" 2>/dev/null || true
  # --dump wrote the measured span to $name.out.1; the exit wrote the rest.
  measured=$(awk '/^summary:/ { print $2 }' "$work/$name.out.1")
  awk -v n="$name" -v i="$measured" -v r="$requests" 'BEGIN { printf "%-10s %22.0f\n", n, i / r }'
  rm -f "$work/$name.out"*
done
