#!/usr/bin/env python3
"""Turns klock_bench's Google Benchmark JSON into markdown: one table of every lock's numbers
and one of the issue's targets, each a ratio to a named baseline measured in the same run.

    bench/report.py bench.json            # print the tables
    bench/report.py --strict bench.json   # also exit 1 if a target is missed or unmeasured

Standard library only. With repetitions the median aggregate is used; without, the mean of the
iterations' entries.
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# (description, workload, metric, lock, baseline or None, goal, "le"/"ge")
#   metric "ns": uncontended cpu_time per lock+unlock (lower is better)
#   metric "ops": ops_per_s, "fair": min/max of per-thread operations (higher is better)
#   baseline None: the goal applies to the value itself, not to a ratio.
TARGETS = [
    ("uncontended: spinlock ≤ 1.3× tbb::spin_mutex", "uncontended", "ns", "klock::spinlock", "tbb::spin_mutex", 1.3, "le"),
    ("uncontended: mutex ≤ 1.0× std::mutex", "uncontended", "ns", "klock::mutex", "std::mutex", 1.0, "le"),
    ("uncontended: rt_mutex ≤ 1.0× glibc PI mutex", "uncontended", "ns", "klock::rt_mutex", "glibc_pi_mutex", 1.0, "le"),
    ("2 threads: mutex throughput ≥ 1.0× std::mutex", "contended_2t", "ops", "klock::mutex", "std::mutex", 1.0, "ge"),
    ("2 threads: mutex fairness (min/max) ≥ 0.5", "contended_2t", "fair", "klock::mutex", None, 0.5, "ge"),
    ("oversubscribed: spinlock throughput ≥ 0.5× std::mutex", "oversubscribed", "ops", "klock::spinlock", "std::mutex", 0.5, "ge"),
    ("2 threads: rt_mutex throughput ≥ 5× glibc PI mutex", "contended_2t", "ops", "klock::rt_mutex", "glibc_pi_mutex", 5.0, "ge"),
]


# Table order: klock's locks, then the peers; anything else after them, as it comes.
ORDER = [
    "klock::spinlock", "klock::ticket_spinlock", "klock::qspinlock", "klock::mutex", "klock::rt_mutex",
    "klock::rwlock", "klock::rw_semaphore", "std::mutex", "std::shared_mutex", "pthread_spinlock",
    "glibc_pi_mutex", "absl::Mutex", "tbb::spin_mutex", "tbb::queuing_mutex", "ck_spinlock_ticket",
    "ck_spinlock_mcs",
]


def load(path):
    """Returns ({(workload, lock): {metric: value}}, context, {(workload, lock): (error, times)})."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    medians = {}
    samples = defaultdict(lambda: defaultdict(list))
    errors = {}
    for b in data.get("benchmarks", []):
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 2:
            continue
        key = (parts[0], parts[1])
        if b.get("error_occurred"):
            msg, n = errors.get(key, (b.get("error_message", "error"), 0))
            errors[key] = (msg, n + 1)
            continue
        m = {"ns": b["cpu_time"] * TO_NS[b.get("time_unit", "ns")]}
        for c in ("ops_per_s", "fairness", "min_share", "max_share", "nthreads"):
            if c in b:
                m[c] = b[c]
        m["cpus"] = b["cpu_time"] / b["real_time"] if b.get("real_time") else 0.0
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = m
        else:
            for k, v in m.items():
                samples[key][k].append(v)
    results = {k: {m: statistics.mean(v) for m, v in ms.items()} for k, ms in samples.items()}
    results.update(medians)
    return results, data.get("context", {}), errors


def metric(results, workload, lock, name):
    r = results.get((workload, lock))
    if r is None:
        return None
    return r.get({"ns": "ns", "ops": "ops_per_s", "fair": "fairness"}[name])


def fmt_ns(v):
    return "—" if v is None else f"{v:.1f}"


def fmt_mops(v):
    return "—" if v is None else f"{v / 1e6:.2f}"


def fmt_f(v):
    return "—" if v is None else f"{v:.2f}"


def lock_table(results, prefix, title):
    locks = []
    for (w, l) in results:
        if w.startswith(prefix) and (prefix or not w.startswith("shared_")) and l not in locks:
            locks.append(l)
    if not locks:
        return []
    locks.sort(key=lambda l: ORDER.index(l) if l in ORDER else len(ORDER))
    g = lambda w, l, m: results.get((prefix + w, l), {}).get(m)
    over = next((g("oversubscribed", l, "nthreads") for l in locks if g("oversubscribed", l, "nthreads")), None)
    over_label = f"oversubscribed ({int(over)} threads)" if over else "oversubscribed"
    out = [
        f"### {title}",
        "",
        f"| lock | uncontended ns | 2 threads Mops/s | 2 threads fairness | 2 threads CPUs | "
        f"{over_label} Mops/s | fairness | CPUs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for l in locks:
        out.append(
            f"| {l} | {fmt_ns(g('uncontended', l, 'ns'))} | {fmt_mops(g('contended_2t', l, 'ops_per_s'))} | "
            f"{fmt_f(g('contended_2t', l, 'fairness'))} | {fmt_f(g('contended_2t', l, 'cpus'))} | "
            f"{fmt_mops(g('oversubscribed', l, 'ops_per_s'))} | {fmt_f(g('oversubscribed', l, 'fairness'))} | "
            f"{fmt_f(g('oversubscribed', l, 'cpus'))} |"
        )
    return out + [""]


def target_table(results, errors):
    out = [
        "### Targets",
        "",
        "| target | klock | baseline | ratio | goal | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    show = {"ns": lambda v: f"{v:.1f} ns", "ops": lambda v: f"{v / 1e6:.2f} M/s", "fair": lambda v: f"{v:.2f}"}
    missed = 0
    for desc, w, m, lock, base, goal, cmp in TARGETS:
        v = metric(results, w, lock, m)
        b = metric(results, w, base, m) if base else None
        failed = [k for k in ((w, lock), (w, base)) if k in errors]
        if failed:
            missed += 1
            out.append(f"| {desc} | — | — | — | {goal:g} | ERROR ({failed[0][1]}: {errors[failed[0]][0]}) |")
            continue
        if v is None or (base and not b):
            missed += 1
            absent = lock if v is None else base
            out.append(f"| {desc} | — | — | — | {goal:g} | n/a ({absent} not measured) |")
            continue
        ratio = v / b if base else v
        ok = ratio <= goal if cmp == "le" else ratio >= goal
        missed += not ok
        sign = "≤" if cmp == "le" else "≥"
        out.append(
            f"| {desc} | {show[m](v)} | {show[m](b) if base else '—'} | {ratio:.2f} | {sign} {goal:g} | "
            f"{'PASS' if ok else 'MISS'} |"
        )
    return out + [""], missed


# Peers whose waiters never sleep: the CPUs their 2-thread runs kept busy is how many CPUs the
# process actually had.
SPINNERS = ["pthread_spinlock", "tbb::spin_mutex", "tbb::queuing_mutex", "ck_spinlock_ticket", "ck_spinlock_mcs"]


def load_warning(results, ctx):
    """Well under 2 CPUs for the spinners, the "contended" threads mostly took turns on one CPU
    instead of contending, and the threaded numbers say little about the locks."""
    spinners = [l for l in SPINNERS if ("contended_2t", l) in results]
    if not spinners:
        return []
    probe = statistics.median(results[("contended_2t", l)]["cpus"] for l in spinners)
    load = ctx.get("load_avg", [0.0])[0]
    ncpu = ctx.get("num_cpus", 0)
    if probe < 1.8:
        return [
            f"**Preliminary: the machine was busy** (load average {load:.1f} on {ncpu} CPUs; 2 spinning "
            f"threads got {probe:.2f} CPUs of 2, the median over {', '.join(spinners)}). "
            "Threads took turns more than they contended, so the threaded numbers and their targets "
            "are not reliable; re-run on an idle machine.",
            "",
        ]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="Google Benchmark JSON (--benchmark_out=FILE --benchmark_out_format=json)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed or not measured")
    args = ap.parse_args()
    results, ctx, errors = load(args.json)
    lines = [
        f"Run {ctx.get('date', '?')} on {ctx.get('host_name', '?')}: {ctx.get('num_cpus', '?')} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in ctx.get('load_avg', []))}; "
        f"{ctx.get('klock_bench.window_ms', '?')} ms windows; medians of repetitions.",
        "",
    ]
    lines += load_warning(results, ctx)
    targets, missed = target_table(results, errors)
    lines += targets
    lines += lock_table(results, "", "Exclusive locks")
    lines += lock_table(results, "shared_", "Reader side (lock_shared)")
    lines.append(
        "ns: cpu_time per uncontended lock+unlock. Mops/s: acquisitions per second of wall time, all "
        "threads together. fairness: fewest / most acquisitions of any one thread. CPUs: process CPU "
        "time / wall time (spinning waiters keep CPUs busy; sleeping ones do not)."
    )
    for (w, l), (e, n) in errors.items():
        lines.append(f"\n**ERROR** {w}/{l} ({n} of its runs): {e}")
    print("\n".join(lines))
    return 1 if args.strict and (missed or errors) else 0


if __name__ == "__main__":
    sys.exit(main())
