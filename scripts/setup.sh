#!/usr/bin/env bash
# Installs what building and testing klock needs, from Debian packages, where missing.
# The peer locks that `klock bench` and the benchmarks compare against (abseil, TBB, Concurrency
# Kit) and the programs `klock run`'s tests run (xz, zstd, pigz) are part of it. Pass --bench to
# add what scripts/bench_run.sh compares `klock run` with (valgrind's helgrind).
set -euo pipefail
pkgs=(cmake ninja-build g++ clang pkg-config libgtest-dev libgmock-dev libbenchmark-dev libdw-dev
  libabsl-dev libtbb-dev libck-dev xz-utils zstd pigz)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(valgrind)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
