// `klock bench` output: the stdout table, CSV, JSON and the SVG plot (docs/bench.md describes
// each format).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_options.hpp"
#include "bench_workloads.hpp"

namespace klock::tool::bench {

// The figures of one run of one point.
struct run_figures {
    double seconds = 0;
    double ops_per_s = 0;
    double min_max = 0;
    double jain = 0;
    double ops = 0, reads = 0, writes = 0; // double: a summary holds medians
    double wait_p50 = 0, wait_p99 = 0, wait_max = 0, wait_samples = 0;
    double handoff_p50 = 0, handoff_p99 = 0, handoff_max = 0, handoff_samples = 0;
    std::vector<std::uint64_t> per_thread;
    std::string error; // non-empty: the run failed and its figures mean nothing
};

run_figures figures_of(const point_result& r);

// One point: a workload, a lock, a thread count, and its runs (one per --repeat).
struct point_row {
    workload w = workload::contended;
    std::string lock;
    bool klock = false;
    unsigned threads = 1;
    std::uint64_t cs_ns = 0;
    std::uint64_t delay_ns = 0;
    unsigned read_percent = 0;
    std::vector<run_figures> runs;
    run_figures summary; // each figure's median over the runs; the first failure's error if any failed
};

// Fills row.summary from row.runs.
void summarize(point_row& row);

struct report_meta {
    std::string version;
    std::string date;      // ISO 8601, UTC
    std::string cpu_model; // lscpu's "Model name"
    unsigned cpus = 0;     // CPUs this process may run on
    std::string kernel;    // uname -r
    double duration_s = 0;
    double warmup_s = 0;
    unsigned repeat = 1;
    unsigned sample_every = 1;
    std::uint64_t clock_ns = 0;
    double burn_per_ns = 0;
};

// The machine half of report_meta (date, CPU, kernel).
report_meta machine_meta();

void print_tables(std::FILE* out, const std::vector<point_row>& rows, const report_meta& meta);
std::string csv_of(const std::vector<point_row>& rows);
std::string json_of(const std::vector<point_row>& rows, const report_meta& meta);
// A self-contained SVG: per workload, throughput, fairness (min/max) and p99 wait (handoff:
// p99 handoff latency) against the thread count, one line per lock, or one bar per lock where
// the workload has a single thread count.
std::string svg_of(const std::vector<point_row>& rows, const report_meta& meta);

// "123 ns", "4.5 us", "12 ms"; "12.3 M", "850 k" for rates.
std::string human_ns(double ns);
std::string human_rate(double per_s);

} // namespace klock::tool::bench
