#!/usr/bin/env bash
# Soak: the gateway under a fixed rate of signed POSTs for a long while, in
# front of an upstream that fails on purpose, with its resident memory sampled
# every 10 s. Prints the least-squares slope of RSS over time as the change it
# makes over the run, in % of the mean, and fails when that is beyond ±5 %: a
# leak per request or per failure shows as a steady climb.
#
# The upstream (python3, asyncio) answers 200 `ok` on keep-alive connections,
# but of every 100 requests it
#   #7   resets the connection before any response      -> 502, kind broken
#   #23  answers a garbage status line                  -> 502, kind broken
#   #41  sends nothing for 1.5 s (the route allows 1 s)  -> 504, kind timeout
#   #59  sends the header and part of the body, resets  -> cut, aborted_mid_response
#   #77  sends the header and part of the body, stalls  -> cut, aborted_mid_response
#   #89  answers 200, then closes the connection at once (the pooled-close race)
#   #95  answers 200 after 100 ms
# (a reset on a pooled connection before any byte is retried on a new one, so
# it may come out a 200). It prints how many of each it injected.
#
# The load is wrk with a Lua script whose delay() hands out send times at a
# fixed interval (an open-loop schedule over CONNECTIONS connections; a
# request whose slot came while every connection was busy goes out late,
# never dropped).
#
# Run with:  benches/soak.sh [seconds]      (default 1800)
# Needs:     wrk, python3, openssl, curl (installed with apt-get when missing
#            and running as root).
# Env:       RATE (requests/s, default 500), CONNECTIONS (default 32),
#            THREADS (gateway threads, default 2), BODY_BYTES (default 1024),
#            WARMUP (seconds left out of the fit, default 60), HOOKGATE_BIN.
set -euo pipefail

duration=${1:-${DURATION:-1800}}
rate=${RATE:-500}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
body_bytes=${BODY_BYTES:-1024}
warmup=${WARMUP:-60}
interval=10

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
need_packages wrk:wrk python3:python3 openssl:openssl curl:curl

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)
rye_body "$body_bytes" > "$work/body"
sig=$(body_signature)

cat > "$work/upstream.py" <<'PY'
import asyncio, signal, socket, struct, sys
from collections import Counter

injected = Counter()
seen = 0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"

def reset(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

async def serve(reader, writer):
    global seen
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if not head.startswith(b"POST /faulty "):
                writer.write(OK)
                await writer.drain()
                continue
            seen += 1
            n = seen % 100
            if n == 7:
                injected["reset"] += 1
                return reset(writer)
            if n == 23:
                injected["garbage"] += 1
                writer.write(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                return writer.close()
            if n == 41:
                injected["slow_header"] += 1
                await asyncio.sleep(1.5)
                return writer.close()
            if n in (59, 77):
                injected["reset_mid_body" if n == 59 else "slow_body"] += 1
                writer.write(PARTIAL)
                await writer.drain()
                if n == 59:
                    return reset(writer)
                await asyncio.sleep(1.5)
                return writer.close()
            if n == 95:
                injected["slow_ok"] += 1
                await asyncio.sleep(0.1)
            writer.write(OK)
            await writer.drain()
            if n == 89:
                injected["close_after_answer"] += 1
                return writer.close()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(f"requests {seen}")
    for kind, n in sorted(injected.items()):
        print(f"{kind} {n}")

asyncio.run(main(int(sys.argv[1])))
PY

# Hands out send times `interval` apart (one schedule for all the thread's
# connections): each request waits for the next free slot.
cat > "$work/soak.lua" <<LUA
$(post_lua "$sig")
local ffi = require "ffi"
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } timespec;
  int clock_gettime(int clk, timespec *ts);
]]
local ts = ffi.new("timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local step = 1000 / $rate
local next_slot = nil
function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  next_slot = math.max(next_slot + step, now - 1000)
  return math.max(0, math.floor(next_slot - now))
end
LUA

up_port=$(free_port); gw_port=$(free_port); admin_port=$(free_port)
python3 "$work/upstream.py" "$up_port" > "$work/upstream.out" 2>"$work/upstream.log" &
up_pid=$!
pids+=("$up_pid")
cat > "$work/hookgate.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = "127.0.0.1:$admin_port"
threads = $threads
access_log = "off"

[[routes]]
name = "soak"
path = "/hook"
upstream = "http://127.0.0.1:$up_port/faulty"
upstream_timeout_ms = 1000
verify = { scheme = "rye", secrets = ["$secret"] }

[[routes]]
name = "check"
path = "/check"
upstream = "http://127.0.0.1:$up_port/ok"
verify = { scheme = "rye", secrets = ["$secret"] }
TOML
RUST_LOG=error "$bin" run --config "$work/hookgate.toml" >/dev/null 2>"$work/hookgate.log" &
gw=$!
pids+=("$gw")
wait_port "$up_port"; wait_port "$gw_port"; wait_port "$admin_port"
expect_status "http://127.0.0.1:$gw_port/check" "v0=$sig" 200 hookgate
expect_status "http://127.0.0.1:$gw_port/check" "v0=$(printf '%064d' 0)" 401 hookgate

printf '%d s at %d req/s over %d connections, %d gateway threads, %d-byte signed POSTs\n' \
  "$duration" "$rate" "$connections" "$threads" "$body_bytes"
wrk -t1 -c"$connections" -d"${duration}s" --timeout 5s -s "$work/soak.lua" \
  "http://127.0.0.1:$gw_port/hook" > "$work/wrk.out" 2>&1 &
load=$!
pids+=("$load")

start=$(date +%s)
: > "$work/rss"
while kill -0 "$load" 2>/dev/null; do
  kill -0 "$gw" 2>/dev/null || { echo "the gateway died:" >&2; cat "$work/hookgate.log" >&2; exit 1; }
  printf '%d %d\n' $(( $(date +%s) - start )) "$(rss_kib "$gw")" | tee -a "$work/rss"
  sleep "$interval"
done
wait "$load" || true
kill -0 "$gw" 2>/dev/null || { echo "the gateway died:" >&2; cat "$work/hookgate.log" >&2; exit 1; }

metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
kill -TERM "$up_pid"
wait "$up_pid" || true

echo
echo "wrk:"
sed -n '/requests in/,$p' "$work/wrk.out"
echo "upstream: injected"
sed 's/^/  /' "$work/upstream.out"
echo "gateway: requests by outcome, upstream errors by kind (route soak)"
grep -E '^hookgate_(requests_total|upstream_errors_total)\{.*route="soak"' <<<"$metrics" | sed 's/^/  /'

# Least squares over the samples after the warm-up: the slope times the span,
# in % of the mean.
awk -v warmup="$warmup" '
  NR == 1 { first = $2 }
  { last = $2 }
  $1 >= warmup { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2; if (n == 1) t0 = $1; t1 = $1 }
  END {
    if (n < 3) { print "too few samples after the warm-up for a slope"; exit 1 }
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    mean = sy / n
    change = slope * (t1 - t0) / mean * 100
    printf "RSS: first %d KiB, last %d KiB, mean %.0f KiB after %d s of warm-up (%d samples)\n", first, last, mean, warmup, n
    printf "RSS slope: %.3f KiB/s, %+.2f %% over %d s: %s\n", slope, change, t1 - t0, (change <= 5 && change >= -5) ? "flat (within 5 %)" : "NOT FLAT (beyond 5 %)"
    exit (change <= 5 && change >= -5) ? 0 : 1
  }' "$work/rss"
