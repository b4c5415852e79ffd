#!/usr/bin/env bash
# Times `klock run` on a lock-heavy program (bench/preload/lockheavy.c: 4 threads, short critical
# sections, six lock classes) against the native run and the other tools people use for the
# same job, and checks the targets of docs/run.md:
#   native                      the program alone
#   klock run (lockdep)         target: at most 3x native
#   klock run (lock_stat only)  --lockdep off --lock-stat-out: target at most 1.5x native
#   klock run (both)            lockdep and lock_stat
#   ThreadSanitizer             the same source built with clang -fsanitize=thread (if clang)
#   Helgrind                    valgrind --tool=helgrind (Debian package "valgrind"), on a tenth of
#                               the work, scaled up (it is ~100x slower)
# Each configuration runs REPS times; the median wall time is reported. Every run's checksum must
# equal the native one (a tool must not change what the program computes).
#
#   scripts/bench_run.sh [--strict] [BUILD_DIR]
#
# BUILD_DIR holds a configured build with the klock command (default build/release; it is built
# if needed: targets klock_cli and klock_preload). Environment: KLOCK_RUN_BENCH_THREADS (4),
# KLOCK_RUN_BENCH_OPS (operations per thread, 200000), KLOCK_RUN_BENCH_REPS (5),
# KLOCK_RUN_BENCH_OUT (results directory, default build/bench-results). --strict: exit 1 when a
# target is missed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

strict=0
if [[ "${1:-}" == "--strict" ]]; then
  strict=1
  shift
fi
build=${1:-build/release}
threads=${KLOCK_RUN_BENCH_THREADS:-4}
ops=${KLOCK_RUN_BENCH_OPS:-200000}
reps=${KLOCK_RUN_BENCH_REPS:-5}
out=${KLOCK_RUN_BENCH_OUT:-build/bench-results}
mkdir -p "$out"

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKLOCK_BUILD_TESTS=OFF -DKLOCK_BUILD_BENCH=OFF \
    -DKLOCK_BUILD_TOOLS=ON
fi
cmake --build "$build" --target klock_cli klock_preload >/dev/null
klock=$build/tools/klock/klock

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=bench/preload/lockheavy.c
cc=${CC:-cc}
"$cc" -O2 -g -pthread -rdynamic "$src" -o "$work/lockheavy"
tsan=""
if command -v clang >/dev/null 2>&1; then
  clang -O2 -g -pthread -fsanitize=thread "$src" -o "$work/lockheavy-tsan"
  tsan=$work/lockheavy-tsan
fi

expected=$("$work/lockheavy" "$threads" "$ops" 2>/dev/null)

# run NAME SCALE COMMAND...: median wall seconds of REPS runs (times SCALE), checksum checked.
declare -A seconds
run() {
  local name=$1 scale=$2
  shift 2
  local times=()
  for ((i = 0; i < reps; i++)); do
    local start end sum
    start=$(date +%s.%N)
    sum=$("$@" 2>"$work/stderr") || { echo "$name: exit status $?" >&2; cat "$work/stderr" >&2; return 1; }
    end=$(date +%s.%N)
    if [[ "$scale" == 1 && "$sum" != "$expected" ]]; then
      echo "$name: checksum '$sum' differs from the native '$expected'" >&2
      return 1
    fi
    if grep -qE "WARNING:|BUG:" "$work/stderr"; then
      echo "$name: reported something:" >&2
      head -20 "$work/stderr" >&2
      return 1
    fi
    times+=("$(echo "($end - $start) * $scale" | bc -l)")
  done
  seconds[$name]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
}

run native 1 "$work/lockheavy" "$threads" "$ops"
run lockdep 1 "$klock" run -- "$work/lockheavy" "$threads" "$ops"
run lock_stat_only 1 "$klock" run --lockdep off --lock-stat-out "$work/stat.txt" -- "$work/lockheavy" "$threads" "$ops"
run lockdep_lock_stat 1 "$klock" run --lock-stat-out "$work/stat.txt" -- "$work/lockheavy" "$threads" "$ops"
if [[ -n "$tsan" ]]; then
  run tsan 1 env TSAN_OPTIONS=report_signal_unsafe=0 "$tsan" "$threads" "$ops"
fi
if command -v valgrind >/dev/null 2>&1; then
  run helgrind 10 valgrind --tool=helgrind -q "$work/lockheavy" "$threads" "$((ops / 10))"
fi

report=$out/run_bench.md
missed=0
{
  echo "# klock run overhead: bench/preload/lockheavy.c, $threads threads x $ops operations"
  echo
  echo "Median of $reps runs, wall seconds, on $(nproc) CPUs ($(uname -m)), load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| configuration | seconds | vs native | target |"
  echo "|---|---:|---:|---|"
  for name in native lockdep lock_stat_only lockdep_lock_stat tsan helgrind; do
    [[ -n "${seconds[$name]:-}" ]] || continue
    ratio=$(echo "${seconds[$name]} / ${seconds[native]}" | bc -l)
    target="" verdict=""
    case $name in
    lockdep) target=3 ;;
    lock_stat_only) target=1.5 ;;
    esac
    if [[ -n "$target" ]]; then
      if (($(echo "$ratio <= $target" | bc -l))); then verdict="<= ${target}x: met"; else verdict="<= ${target}x: MISSED"; missed=1; fi
    fi
    note=""
    [[ $name == helgrind ]] && note=" (1/10 of the work, x10)"
    printf '| %s%s | %.3f | %.2fx | %s |\n' "$name" "$note" "${seconds[$name]}" "$ratio" "$verdict"
  done
} | tee "$report"
echo "written: $report"
if [[ $strict == 1 && $missed == 1 ]]; then
  exit 1
fi
