#!/usr/bin/env bash
# Route-scale figures: how long `hookgate check` takes and how much memory it
# peaks at for configs of 1, 1,000, 10,000 and 100,000 routes, and how long a
# running gateway takes to reload 1,000 and 100,000 routes through
# `POST /reload`, from one route and then again (the reload's own duration,
# from hookgate_config_reload_duration_seconds, and the gateway's RSS).
#
# The generated routes take turns: an exact path, a path prefix, an exact path
# with a host, and a prefix with two methods; their upstreams alternate
# between 127.0.0.1 and localhost (a name to resolve), each verifying `rye`
# with one of seven literal secrets.
#
# Run with:  benches/routes.sh [runs]
# Needs:     curl and GNU time (/usr/bin/time).
# Env:       COUNTS (check sizes, default "1 1000 10000 100000"),
#            RELOADS (reload sizes, default "1000 100000"),
#            HOOKGATE_BIN (a prebuilt binary to measure instead of building
#            this tree, e.g. an older commit's).
set -euo pipefail

runs=${1:-3}
counts=${COUNTS:-1 1000 10000 100000}
reloads=${RELOADS:-1000 100000}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
need_packages curl:curl /usr/bin/time:time

work=$(mktemp -d)
trap 'cleanup_all' EXIT
bin=$(hookgate_bin)

# config routes port [server lines]: `routes` generated routes, listening on `port`.
config() {
  printf '[server]\nlisten = "127.0.0.1:%s"\naccess_log = "off"\nwatch_config = false\n%s\n\n' \
    "$2" "${3:-}"
  awk -v n="$1" 'BEGIN {
    for (i = 1; i <= n; i++) {
      printf "[[routes]]\nname = \"r%d\"\n", i
      k = i % 4
      if (k == 0) printf "path = \"/r/%d\"\n", i
      else if (k == 1) printf "path_prefix = \"/p/%d/\"\n", i
      else if (k == 2) printf "path = \"/h/%d\"\nhost = \"h%d.example\"\n", i, i
      else printf "path_prefix = \"/q/%d\"\nmethods = [\"POST\", \"PUT\"]\n", i
      printf "upstream = \"http://%s:9/in/%d\"\n", (i % 2 ? "127.0.0.1" : "localhost"), i
      printf "verify = { scheme = \"rye\", secrets = [\"secret-%d\"] }\n\n", i % 7
    }
  }'
}

# Peak resident memory of a process, in KiB.
peak_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

# The median of the numbers on standard input.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# On a shared machine the CPU time (user + system) is steadier than the wall time.
echo "hookgate check (median of $runs runs)"
printf '%10s %10s %10s %12s\n' routes seconds "CPU s" "max RSS MB"
for n in $counts; do
  config "$n" 1 > "$work/check.toml"
  for _ in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" check --config "$work/check.toml" >/dev/null
    awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$work/time" >> "$work/check.$n"
  done
  column() { cut -d' ' -f"$1" "$work/check.$n" | median; }
  printf '%10d %10s %10s %12d\n' "$n" "$(column 1)" "$(column 2)" $(( $(column 3) / 1024 ))
done

# reload admin-port pid: one POST /reload: its duration as the gateway measured
# it (the change in the reload histogram's sum) and the gateway's CPU seconds.
reload() {
  local sum='/^hookgate_config_reload_duration_seconds_sum/ { print $2 }' before after cpu
  before=$(curl -s "127.0.0.1:$1/metrics" | awk "$sum")
  cpu=$(cpu_ticks "$2")
  curl -sf -X POST "127.0.0.1:$1/reload" >/dev/null \
    || { echo "POST /reload failed:" >&2; cat "$work/reload.log" >&2; exit 1; }
  cpu=$(( $(cpu_ticks "$2") - cpu ))
  after=$(curl -s "127.0.0.1:$1/metrics" | awk "$sum")
  awk -v a="$before" -v b="$after" -v c="$cpu" -v t="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.3f %.2f\n", b - a, c / t }'
}

echo
echo "POST /reload: from 1 route to N, then N to N again (median of $runs)"
printf '%10s %10s %10s %10s %10s %12s %12s\n' routes "1->N s" "CPU s" "N->N s" "CPU s" "1->N MB" "N->N MB"
printf '%10s %10s %10s %10s %10s %12s %12s\n' "" "" "" "" "" "(peak RSS)" "(peak RSS)"
for n in $reloads; do
  port=$(free_port)
  admin=$(free_port)
  server="admin_listen = \"127.0.0.1:$admin\""
  config 1 "$port" "$server" > "$work/reload.toml"
  RUST_LOG=warn "$bin" run --config "$work/reload.toml" >/dev/null 2>"$work/reload.log" &
  pid=$!
  pids+=("$pid")
  wait_port "$admin"
  # A port taken meanwhile by another process stops the gateway after its admin listener is up.
  sleep 0.2
  kill -0 "$pid" 2>/dev/null || { echo "the gateway stopped:" >&2; cat "$work/reload.log" >&2; exit 1; }
  config "$n" "$port" "$server" > "$work/reload.toml"
  reload "$admin" "$pid" > "$work/first.$n"
  first_peak=$(peak_kib "$pid")
  for _ in $(seq 1 "$runs"); do reload "$admin" "$pid" >> "$work/reload.$n"; done
  read -r first first_cpu < "$work/first.$n"
  again=$(cut -d' ' -f1 "$work/reload.$n" | median)
  again_cpu=$(cut -d' ' -f2 "$work/reload.$n" | median)
  printf '%10d %10s %10s %10s %10s %12d %12d\n' "$n" "$first" "$first_cpu" "$again" "$again_cpu" \
    $(( first_peak / 1024 )) $(( $(peak_kib "$pid") / 1024 ))
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
