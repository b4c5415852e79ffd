#!/usr/bin/env bash
# Runs klock's lock benchmarks against the peers (docs/benchmarks.md):
#   1. installs the peers (scripts/setup.sh --bench: abseil, TBB, Concurrency Kit),
#   2. configures the release preset and builds its klock_bench target,
#   3. runs it, writing the console table, the JSON and a markdown report with the targets.
#
#   scripts/bench.sh [--strict] [klock_bench flags, e.g. --benchmark_filter=contended]
#
# Environment:
#   KLOCK_BENCH_OUT        where results go (default build/bench-results)
#   KLOCK_BENCH_BUILD_DIR  build here with the release settings instead of the preset's
#                          build/release (for a tree where several people build at once)
#   KLOCK_BENCH_WINDOW_MS  length of one threaded measurement window (default 200)
#   KLOCK_BENCH_REPS       repetitions of every benchmark; medians are reported (default 5)
#   KLOCK_BENCH_STUCK_S    a thread still in lock() this long after its window is an error (10)
# --strict makes the script exit 1 when a target is missed (after writing everything).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

strict=()
if [[ "${1:-}" == "--strict" ]]; then
  strict=(--strict)
  shift
fi

scripts/setup.sh --bench

if [[ -n "${KLOCK_BENCH_BUILD_DIR:-}" ]]; then
  build=$KLOCK_BENCH_BUILD_DIR
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ -DKLOCK_WERROR=ON \
    -DKLOCK_BUILD_TESTS=OFF -DKLOCK_BUILD_TOOLS=OFF -DKLOCK_BUILD_BENCH=ON
  cmake --build "$build" --target klock_bench
else
  build=build/release
  cmake --preset release -DKLOCK_BUILD_BENCH=ON
  cmake --build --preset release --target klock_bench
fi

out=${KLOCK_BENCH_OUT:-build/bench-results}
mkdir -p "$out"
{
  echo "# $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, Linux $(uname -r)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"
"$build/bench/klock_bench" --benchmark_out="$out/bench.json" --benchmark_out_format=json "$@" |
  tee "$out/bench.txt"
bench/report.py "${strict[@]}" "$out/bench.json" | tee "$out/report.md"
echo "bench: results in $out/ (bench.txt, bench.json, report.md)"
