#!/usr/bin/env bash
# Produces the results section of docs/bench.md with `klock bench`:
#   1. installs the peers (scripts/setup.sh --bench: abseil, TBB, Concurrency Kit) if missing,
#   2. builds the klock command in Release,
#   3. runs every workload over every lock this build has (klock bench -w all),
#   4. writes docs/bench/results.csv, docs/bench/bench.svg, the JSON and a log to
#      $KLOCK_BENCH_OUT, and replaces the text between the "klock_bench.sh results" markers
#      in docs/bench.md with the machine, the targets and the tables.
#
#   scripts/klock_bench.sh [--strict] [--no-docs] [--report-only] [more klock bench flags]
#
# --strict: exit 1 when a target is missed (after writing everything).
# --no-docs: leave docs/ alone; results go to $KLOCK_BENCH_OUT only.
# --report-only: no build and no run; remake the report from the results in $KLOCK_BENCH_OUT.
# Environment:
#   KLOCK_BENCH_BUILD_DIR  build directory (default build/klock-bench)
#   KLOCK_BENCH_OUT        JSON, log and copies of everything (default build/klock-bench-results)
#   KLOCK_BENCH_DURATION   per point and run (default 300ms)
#   KLOCK_BENCH_REPEAT     runs of every point, interleaved; medians reported (default 3)
#   KLOCK_BENCH_NO_SETUP   set to 1 to skip scripts/setup.sh (no root needed)
# On 2 CPUs the default run takes about two minutes. Run it on an otherwise idle machine: the
# script records the load average before and after, and the docs should say if it was not idle.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

strict=0
docs=1
run=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --strict) strict=1; shift ;;
    --no-docs) docs=0; shift ;;
    --report-only) run=0; shift ;;
    *) break ;;
  esac
done
out=${KLOCK_BENCH_OUT:-build/klock-bench-results}
command -v python3 >/dev/null || { echo "klock_bench.sh: python3 is needed for the report" >&2; exit 1; }

if ((run)); then
  if [[ "${KLOCK_BENCH_NO_SETUP:-0}" != 1 ]]; then
    scripts/setup.sh --bench
  fi
  build=${KLOCK_BENCH_BUILD_DIR:-build/klock-bench}
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ -DKLOCK_WERROR=ON \
    -DKLOCK_BUILD_TESTS=OFF -DKLOCK_BUILD_BENCH=OFF -DKLOCK_BUILD_TOOLS=ON >/dev/null
  cmake --build "$build" --target klock_cli
  klock="$build/tools/klock/klock"

  mkdir -p "$out"
  lscpu_field() { lscpu | sed -n "s/^$1: *//p" | head -1; }
  {
    echo "model: $(lscpu_field 'Model name')"
    echo "cpus: $(nproc)"
    echo "topology: $(lscpu_field 'Socket(s)') socket(s), $(lscpu_field 'Core(s) per socket') core(s) per socket, $(lscpu_field 'Thread(s) per core') thread(s) per core"
    echo "hypervisor: $(lscpu_field 'Hypervisor vendor')"
    echo "kernel: $(uname -r)"
    echo "compiler: $(g++ --version | head -1)"
    echo "glibc: $(ldd --version | head -1 | sed 's/.* //')"
    echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$out/machine.txt"

  "$klock" bench --workload all --duration "${KLOCK_BENCH_DURATION:-300ms}" --repeat "${KLOCK_BENCH_REPEAT:-3}" \
    --out "$out/results.csv" --out "$out/results.json" --svg "$out/bench.svg" "$@" | tee "$out/bench.txt"
  echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
fi

python3 - "$out" "$docs" "$strict" <<'PY'
import csv, json, os, shutil, sys

out, docs, strict = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
machine = dict(l.rstrip("\n").split(": ", 1) for l in open(os.path.join(out, "machine.txt")) if ": " in l)
doc = json.load(open(os.path.join(out, "results.json")))
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"), newline="")))

def get(workload, lock, threads=None):
    for r in rows:
        if r["workload"] == workload and r["lock"] == lock and (threads is None or int(r["threads"]) == threads):
            return r if not r["error"] else None
    return None

def ns(v):
    v = float(v)
    if v < 1e3: return "%.0f ns" % v
    if v < 1e6: return "%.1f us" % (v / 1e3)
    if v < 1e9: return "%.1f ms" % (v / 1e6)
    return "%.2f s" % (v / 1e9)

def rate(v):
    v = float(v)
    if v < 1e3: return "%.0f" % v
    return "%.2f M" % (v / 1e6) if v >= 1e5 else "%.1f k" % (v / 1e3)

# ---- the targets of issue 6 ----
targets = []
def target(what, num, den, goal, higher, fmt):
    if num is None or den is None:
        targets.append((what, "n/a", "n/a", "n/a", goal, "NOT MEASURED"))
        return
    ratio = num / den if den else float("inf")
    ok = ratio >= goal if higher else ratio <= goal
    targets.append((what, fmt(num), fmt(den), "%.2f" % ratio, ("≥ " if higher else "≤ ") + str(goal), "PASS" if ok else "MISS"))

def fig(r, key):
    return float(r[key]) if r else None

over = [r for r in rows if r["workload"] == "oversubscribed"]
over_threads = int(over[0]["threads"]) if over else 0
sp, sm = get("oversubscribed", "spinlock"), get("oversubscribed", "std::mutex")
target("oversubscribed (%d threads): spinlock throughput ≥ 0.5× std::mutex" % over_threads,
       fig(sp, "ops_per_s"), fig(sm, "ops_per_s"), 0.5, True, lambda v: rate(v) + "ops/s")
if sp:
    f = float(sp["min_max"])
    targets.append(("oversubscribed: spinlock fairness min/max ≥ 0.5", "%.3f" % f, "—", "%.3f" % f, "≥ 0.5",
                    "PASS" if f >= 0.5 else "MISS"))
m2, s2 = get("contended", "mutex", 2), get("contended", "std::mutex", 2)
target("2 threads: mutex p99 wait ≤ std::mutex p99 wait", fig(m2, "wait_p99_ns"), fig(s2, "wait_p99_ns"), 1.0, False, ns)
target("2 threads: mutex throughput ≥ 1.0× std::mutex", fig(m2, "ops_per_s"), fig(s2, "ops_per_s"), 1.0, True,
       lambda v: rate(v) + "ops/s")

md = []
cfg = doc["config"]
md.append("Run %s with `scripts/klock_bench.sh` (`klock bench --workload all`, %s per point after %s warm-up, "
          "median of %d runs; wait timed on 1 lock() call in %d and every call after a slow one; clock read %d ns, "
          "subtracted).\n"
          % (doc["date"], ns(cfg["duration_s"] * 1e9), ns(cfg["warmup_s"] * 1e9), cfg["repeat"], cfg["sample_every"],
             cfg["clock_read_ns"]))
md.append("Machine: **%s**, %s CPUs (%s%s), Linux %s; %s, glibc %s. Load average before the run: %s, after: %s.\n"
          % (machine.get("model", "?"), machine.get("cpus", "?"), machine.get("topology", "?"),
             (", " + machine["hypervisor"] + " guest") if machine.get("hypervisor") else "",
             machine.get("kernel", "?"), machine.get("compiler", "?"), machine.get("glibc", "?"),
             machine.get("load_before", "?"), machine.get("load_after", "?")))
try:
    busy = float(machine.get("load_before", "0").split()[0]) > 0.5 * float(machine.get("cpus", "1"))
except ValueError:
    busy = False
if busy:
    md.append("**The machine was not idle** (load average %s on %s CPUs when the run started): other "
              "programs took CPU time from the threads measured, so these figures are preliminary, the "
              "contended ones most of all. Re-run `scripts/klock_bench.sh` on an idle machine.\n"
              % (machine.get("load_before", "?").split()[0], machine.get("cpus", "?")))
md.append("### Targets\n")
md.append("| target | klock | baseline | ratio | goal | result |")
md.append("|---|---:|---:|---:|---:|---|")
for t in targets:
    md.append("| %s | %s | %s | %s | %s | %s |" % t)
md.append("")

titles = {
    "uncontended": "Uncontended (one thread)",
    "contended": "Contended: one lock, all threads",
    "oversubscribed": "Oversubscribed",
    "handoff": "Handoff latency (unlock() call to the waiter's return from lock())",
    "rw": "Readers and writers",
}
for w in ["uncontended", "contended", "oversubscribed", "handoff", "rw"]:
    wr = [r for r in rows if r["workload"] == w]
    if not wr:
        continue
    threads = sorted({int(r["threads"]) for r in wr})
    locks = []
    for r in wr:
        if r["lock"] not in locks:
            locks.append(r["lock"])
    lat = "handoff" if w == "handoff" else "wait"
    sub = " (%s%% reads)" % wr[0]["read_percent"] if w == "rw" else ""
    md.append("### %s%s\n" % (titles[w], sub))
    if w == "handoff":
        md.append("Cells: handoffs/s · fairness (min/max) · p50 / p99 handoff latency.\n")
    else:
        md.append("Cells: operations/s · fairness (min/max) · p50 / p99 wait in lock().\n")
    md.append("| lock | " + " | ".join("%d thread%s" % (t, "" if t == 1 else "s") for t in threads) + " |")
    md.append("|---|" + "---:|" * len(threads))
    for l in locks:
        cells = []
        for t in threads:
            r = get(w, l, t)
            if r is None:
                bad = [x for x in wr if x["lock"] == l and int(x["threads"]) == t]
                cells.append("FAILED" if bad else "")
                continue
            cells.append("%s · %.2f · %s / %s" % (rate(r["ops_per_s"]), float(r["min_max"]),
                                                  ns(r[lat + "_p50_ns"]), ns(r[lat + "_p99_ns"])))
        md.append("| %s | %s |" % (l, " | ".join(cells)))
    md.append("")
md.append("![klock bench: throughput, fairness and p99 wait against threads, per workload](bench/bench.svg)\n")
md.append("The same figures as CSV: [bench/results.csv](bench/results.csv).")
text = "\n".join(md) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text)

if docs:
    os.makedirs("docs/bench", exist_ok=True)
    shutil.copy(os.path.join(out, "results.csv"), "docs/bench/results.csv")
    shutil.copy(os.path.join(out, "bench.svg"), "docs/bench/bench.svg")
    page = open("docs/bench.md").read()
    begin, end = "<!-- klock_bench.sh results begin -->", "<!-- klock_bench.sh results end -->"
    if begin in page and end in page:
        head, rest = page.split(begin, 1)
        tail = rest.split(end, 1)[1]
        open("docs/bench.md", "w").write(head + begin + "\n" + text + end + tail)
        print("klock_bench.sh: docs/bench.md, docs/bench/results.csv and docs/bench/bench.svg updated")
    else:
        print("klock_bench.sh: docs/bench.md has no results markers; results are in " + out, file=sys.stderr)
if strict and any(t[5] != "PASS" for t in targets):
    sys.exit(1)
PY
