#!/usr/bin/env bash
# Installs what building and testing tollgate need, when missing. Safe to run again.
#   .ci/deps.sh build   cmake (pingora builds zlib-ng with it)
#   .ci/deps.sh test    the above, plus PostgreSQL and Redis running on loopback, and the
#                       browser, nginx and Caddy the tests drive
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_install() {
  # Try without a fresh index first: it is fast and works on most images.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

need_build() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust from https://rustup.rs first" >&2
    exit 1
  fi
  if ! command -v cmake >/dev/null 2>&1; then
    echo "installing cmake"
    apt_install cmake
  fi
  if ! command -v cc >/dev/null 2>&1; then
    echo "installing a C compiler"
    apt_install build-essential
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

# The replica test runs a PostgreSQL of its own (initdb, pg_ctl) and a Redis of its own, so
# the server binaries must be installed even when servers already answer on the usual ports;
# the outage tests signal processes with kill and pkill.
need_server_binaries() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL (server binaries)"
    apt_install postgresql postgresql-client
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis (server binary)"
    apt_install redis-server redis-tools
  fi
  if ! command -v pkill >/dev/null 2>&1; then
    echo "installing procps"
    apt_install procps
  fi
}

# PostgreSQL on 127.0.0.1:5432, reachable as postgres/postgres (or with trust auth).
need_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql postgresql-client
  fi
  echo "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || $SUDO pg_ctlcluster "$version" main start
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
  as_postgres "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

# Redis on 127.0.0.1:6379, keeping nothing on disk.
need_redis() {
  if command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then return; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis"
    apt_install redis-server redis-tools
  fi
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 40); do
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && return
    sleep 0.25
  done
  echo "Redis did not start" >&2; exit 1
}

# promtool, for the tests that check a real scrape and the alert rules. Taken from
# Debian's prometheus package without installing the server.
need_promtool() {
  local dir="target/tools"
  if command -v promtool >/dev/null 2>&1 || [ -x "$dir/promtool" ]; then return; fi
  echo "extracting promtool from Debian's prometheus package"
  mkdir -p "$dir/deb"
  ( cd "$dir/deb" && { apt-get download prometheus >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && apt-get download prometheus >/dev/null; }; } )
  dpkg-deb -x "$dir"/deb/prometheus_*.deb "$dir/deb/root"
  cp "$dir/deb/root/usr/bin/promtool" "$dir/promtool"
  rm -rf "$dir/deb"
}

# schemathesis (PyPI), the independent client that holds the admin API to its OpenAPI
# document, in a virtual environment of its own under target/tools.
SCHEMATHESIS_VERSION=4.32.5
need_schemathesis() {
  local venv="target/tools/py"
  if [ -x "$venv/bin/schemathesis" ]; then return; fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  echo "installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv python3-pip; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# Python HTTP/2 clients for the TLS and HTTP/2 tests, in the same environment: httpx with
# HTTP/2 (a real client), and h2 (the framing and HPACK for the rapid-reset and
# CONTINUATION attacks, written frame by frame).
need_h2_clients() {
  local venv="target/tools/py"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import h2, httpx" 2>/dev/null; then return; fi
  [ -x "$venv/bin/python" ] || need_schemathesis
  echo "installing httpx[http2] 0.28.1 and h2 4.2.0 from PyPI"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "httpx[http2]==0.28.1" "h2==4.2.0"
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  command -v curl >/dev/null 2>&1 || apt_install curl
}

# standardwebhooks (PyPI), the official verifier of Standard Webhooks signatures, in the
# same environment: the webhook tests' receiver checks every delivery with it.
STANDARDWEBHOOKS_VERSION=1.3.0
need_standardwebhooks() {
  local venv="target/tools/py"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then return; fi
  [ -x "$venv/bin/python" ] || need_schemathesis
  echo "installing standardwebhooks $STANDARDWEBHOOKS_VERSION from PyPI"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
}

# Debian's Chromium and chromedriver, for the console tests in a real browser.
need_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return; fi
  echo "installing chromium and chromium-driver"
  apt_install chromium chromium-driver fonts-dejavu-core
}

# Debian's nginx (with auth_request) and Caddy, for the forward-auth tests that run the
# configurations shipped in deploy/forward-auth/.
need_forward_auth_proxies() {
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx-light"
    apt_install nginx-light
  fi
  if ! command -v caddy >/dev/null 2>&1; then
    echo "installing caddy"
    apt_install caddy
  fi
}

# pingap 0.13.1, a peer in `make bench`, built once with cargo into a cache outside the
# tree (0.16 needs a newer rustc). When it does not build, the reason is kept beside it and
# the benchmark prints it and skips the case.
PINGAP_ROOT="${HOME}/.cache/tollgate-bench/pingap"
need_pingap() {
  if [ -x "$PINGAP_ROOT/bin/pingap" ]; then return; fi
  mkdir -p "$PINGAP_ROOT/bin"
  command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler || true
  echo "building pingap 0.13.1 once into $PINGAP_ROOT (several minutes)"
  if ! cargo install pingap --version 0.13.1 --locked --root "$PINGAP_ROOT" >"$PINGAP_ROOT/build.log" 2>&1; then
    echo "cargo install pingap 0.13.1 failed: $(grep -m1 '^error' "$PINGAP_ROOT/build.log" || tail -n 1 "$PINGAP_ROOT/build.log")" \
      >"$PINGAP_ROOT/bin/pingap.why"
    echo "pingap did not build; make bench skips it (see $PINGAP_ROOT/build.log)"
  fi
}

case "${1:-build}" in
  build) need_build ;;
  test)
    need_build
    need_server_binaries
    need_postgres
    need_redis
    need_promtool
    need_schemathesis
    need_h2_clients
    need_standardwebhooks
    need_browser
    need_forward_auth_proxies
    ;;
  bench)
    need_build
    for tool in nginx wrk python3 haproxy; do
      command -v "$tool" >/dev/null 2>&1 || { echo "installing $tool"; apt_install "$tool"; }
    done
    # h2load, the HTTP/2 client of the HTTPS cases (benches/load/tls.py).
    command -v h2load >/dev/null 2>&1 || { echo "installing nghttp2-client"; apt_install nghttp2-client; }
    need_pingap
    command -v taskset >/dev/null 2>&1 || apt_install util-linux
    need_redis   # the micro-benchmark of the Redis limiter's round trip
    ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
