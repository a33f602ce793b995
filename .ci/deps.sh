#!/usr/bin/env bash
# Installs what building and testing tollgate need, when missing. Safe to run again.
#   .ci/deps.sh build   cmake (pingora builds zlib-ng with it)
#   .ci/deps.sh test    the above, plus the services the test suite talks to
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

case "${1:-build}" in
  build) need_build ;;
  test)
    need_build
    ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
