#!/usr/bin/env bash
# The 1 MiB `rye` verification beside OpenSSL's SHA-256 on this machine:
# `openssl speed -evp sha256` at the largest block it prints (16384 bytes)
# against `cargo bench --bench verify` on rye/descriptor/1048576 (HMAC-SHA256
# of the body, the constant-time compare, and reading the event id, type and
# time from the JSON body). Rounds alternate the two, so a busy shared machine
# slows both alike. Prints each round in MiB/s, then the best of each and the
# ratio.
#
# OpenSSL divides by its user CPU time unless given `-elapsed`; criterion times
# the wall clock, so OpenSSL runs with `-elapsed` here.
#
# Run with:  benches/verify.sh [rounds]   (default 3)
# Needs:     openssl
set -euo pipefail

rounds=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bench=rye/descriptor/1048576

cargo bench --quiet --manifest-path "$root/Cargo.toml" --bench verify --no-run 2>/dev/null

# OpenSSL's SHA-256 throughput at 16384-byte blocks, in MiB/s.
openssl_mibs() {
  openssl speed -elapsed -evp sha256 -seconds 1 -bytes 16384 2>/dev/null |
    awk '$1 == "sha256" { sub(/k$/, "", $2); printf "%.0f\n", $2 * 1000 / 1048576 }'
}

# The 1 MiB verification's throughput, in MiB/s.
ours_mibs() {
  cargo bench --quiet --manifest-path "$root/Cargo.toml" --bench verify -- \
    --exact "$bench" --warm-up-time 1 --measurement-time 3 --output-format bencher 2>/dev/null |
    awk '$1 == "test" { gsub(/,/, "", $5); printf "%.0f\n", 1e9 / $5 }'
}

best_openssl=0
best_ours=0
printf '%-6s %16s %16s\n' round 'openssl MiB/s' 'hookgate MiB/s'
for round in $(seq "$rounds"); do
  theirs=$(openssl_mibs)
  ours=$(ours_mibs)
  printf '%-6s %16s %16s\n' "$round" "$theirs" "$ours"
  [ "$theirs" -gt "$best_openssl" ] && best_openssl=$theirs
  [ "$ours" -gt "$best_ours" ] && best_ours=$ours
done
printf '%-6s %16s %16s\n' best "$best_openssl" "$best_ours"
awk -v o="$best_ours" -v s="$best_openssl" \
  'BEGIN { printf "hookgate / openssl: %.2f (the target is 0.90 or more)\n", o / s }'
