# Helpers shared by the benchmark scripts (sourced, not run). They expect
# `root` (the repository) and `work` (a scratch directory) to be set.

pids=()
# The HMAC secret every contestant verifies with.
secret="load-test-secret"
lua_module=/usr/lib/nginx/modules/ngx_http_lua_module.so
ndk_module=/usr/lib/nginx/modules/ndk_http_module.so

# The load scripts' arguments [seconds-per-round] [connections] [rounds] and
# their THREADS, WRK_THREADS and BODY_BYTES settings, with their defaults.
load_args() {
  duration=${1:-10}
  connections=${2:-32}
  rounds=${3:-3}
  threads=${THREADS:-2}
  wrk_threads=${WRK_THREADS:-1}
  body_bytes=${BODY_BYTES:-1024}
}

# Installs Debian packages (as root, with apt-get), once per script.
install_packages() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "needs the Debian packages: $* (apt-get install -y $*)" >&2; exit 1
  fi
  if [ -z "${apt_updated:-}" ]; then apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# need_packages command:package ...: installs the packages whose command is missing.
need_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# Installs nginx's Lua module when it is missing.
need_lua_module() {
  [ -f "$lua_module" ] || install_packages libnginx-mod-http-lua
}

# Stops everything the script started and removes the scratch directory.
cleanup_all() {
  local pid f
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.2
  rm -rf "$work"
}

free_port() {
  local port
  while :; do
    port=$(( (RANDOM % 12000) + 20000 ))   # below the ephemeral range (32768+)
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

# The binary to measure: $HOOKGATE_BIN, or this tree built in release mode.
hookgate_bin() {
  if [ -n "${HOOKGATE_BIN:-}" ]; then echo "$HOOKGATE_BIN"; return; fi
  echo "building hookgate (release)..." >&2
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" >&2
  echo "$root/target/release/hookgate"
}

# A Rye-style event of exactly $1 bytes.
rye_body() {
  local head='{"id":"evt_load","type":"order.updated","createdAt":"2026-01-01T00:00:00Z","pad":"'
  printf '%s' "$head"
  head -c $(( $1 - ${#head} - 2 )) /dev/zero | tr '\0' x
  printf '"}'
}

# The hex HMAC-SHA256 of $work/body under $secret (rye's `v0=`).
body_signature() {
  openssl dgst -sha256 -hmac "$secret" < "$work/body" | sed 's/^.* //'
}

# A wrk script POSTing $work/body signed with `v0=$1`.
post_lua() {
  cat <<LUA
wrk.method = "POST"
local f = io.open("$work/body", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-rye-signature"] = "v0=$1"
LUA
}

# nginx_start name workers main-context-lines http-context-lines
nginx_start() {
  cat > "$work/$1.conf" <<CONF
$3
worker_processes $2;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $work/$1-body;
  proxy_temp_path $work/$1-proxy;
  fastcgi_temp_path $work/$1-fastcgi;
  uwsgi_temp_path $work/$1-uwsgi;
  scgi_temp_path $work/$1-scgi;
  $4
}
CONF
  nginx -c "$work/$1.conf" -p "$work" -e "$work/$1-error.log"
}

# expect_status url signature-header status name: a signed POST of $work/body.
expect_status() {
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "$1" -H "x-rye-signature: $2" \
    -H 'Content-Type: application/json' --data-binary "@$work/body")
  [ "$got" = "$3" ] || { echo "$4: sanity check expected $3, got $got" >&2; exit 1; }
}

# CPU time (user + system, clock ticks) of processes: steadier than req/s on a
# shared machine, since it does not depend on what else gets the CPU.
cpu_ticks() {
  local total=0 stat pid
  for pid in "$@"; do
    read -ra stat < <(sed 's/^.*) //' "/proc/$pid/stat")
    total=$(( total + stat[11] + stat[12] ))
  done
  echo "$total"
}

# Resident memory of a process, in KiB.
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# wrk_figures wrk-output cpu-ticks: "req/s p50-ms p99-ms cpu-us-per-request".
wrk_figures() {
  awk -v c="$2" -v t="$(getconf CLK_TCK)" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v
    }
    /requests in/ { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    END { printf "%s %s %s %.1f\n", rps, p50, p99, c * 1e6 / t / n }' "$1"
}

# The per-column median of rows of numbers.
median_row() {
  local cols
  cols=$(head -1 "$1" | wc -w)
  for c in $(seq 1 "$cols"); do
    awk -v c="$c" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
  done
  echo
}

# The nginx+Lua verifier: an `init_by_lua_block` defining verify_rye(body, header),
# which checks `v0=<hex>` against HMAC-SHA256(secret $1, body) with libcrypto's
# HMAC through LuaJIT's FFI and a constant-time comparison.
lua_verifier() {
  cat <<LUA
  init_by_lua_block {
    local ffi = require 'ffi'
    ffi.cdef[[
      typedef struct evp_md_st EVP_MD;
      const EVP_MD *EVP_sha256(void);
      unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len,
                          const unsigned char *d, size_t n, unsigned char *out, unsigned int *out_len);
      int CRYPTO_memcmp(const void *a, const void *b, size_t len);
    ]]
    local crypto = ffi.load('crypto')
    local sha256 = crypto.EVP_sha256()
    local key = '$1'
    local mac = ffi.new('unsigned char[32]')
    local want = ffi.new('unsigned char[32]')
    local byte, sub = string.byte, string.sub
    local hexval = {}
    for i = 0, 9 do hexval[48 + i] = i end
    for i = 0, 5 do hexval[65 + i] = 10 + i; hexval[97 + i] = 10 + i end
    function verify_rye(body, header)
      if not body or not header or #header ~= 67 or sub(header, 1, 3) ~= 'v0=' then return false end
      for i = 0, 31 do
        local hi, lo = hexval[byte(header, 4 + 2 * i)], hexval[byte(header, 5 + 2 * i)]
        if not hi or not lo then return false end
        want[i] = hi * 16 + lo
      end
      crypto.HMAC(sha256, key, #key, body, #body, mac, nil)
      return crypto.CRYPTO_memcmp(mac, want, 32) == 0
    end
  }
LUA
}
