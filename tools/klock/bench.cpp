// `klock bench`: klock's locks and their peers side by side - throughput, per-thread fairness,
// wait-time percentiles and handoff latency - as a table, CSV, JSON and an SVG plot
// (docs/bench.md).
//
//   bench_options   the command line
//   bench_locks     the locks: klock's, and the peers found when klock was built
//   bench_workloads the measuring loops, over any lock adapter
//   bench_stats     percentiles, Jain's index, the wait-time histogram
//   bench_output    table, CSV, JSON;  bench_svg  the plot
//
// Every point (workload x lock x thread count) runs --repeat times; the repeats are
// interleaved (all points once, then all again), so that a burst of load from elsewhere on the
// machine spreads over every lock instead of sinking one, and the medians are reported.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

#include "bench_locks.hpp"
#include "bench_options.hpp"
#include "bench_output.hpp"
#include "commands.hpp"

namespace klock::tool {

namespace {

using namespace bench;

constexpr std::uint64_t default_handoff_hold_ns = 20000;

void print_list(std::FILE* out)
{
    std::fprintf(out, "%-20s %-6s %-7s %-38s %s\n", "lock", "from", "sides", "waiters", "in this build");
    for (const lock_desc& l : all_locks()) {
        std::string status = l.available ? "yes" : std::string("no: install ") + l.package + " and rebuild";
        std::string name = l.name;
        if (*l.aliases != '\0')
            status += std::string("   (also: ") + l.aliases + ")";
        std::fprintf(out, "%-20s %-6s %-7s %-38s %s\n", name.c_str(), l.klock ? "klock" : "peer",
            l.run_rw != nullptr ? "ex+sh" : "ex", l.kind, status.c_str());
    }
}

// 1, 2, 4, ... up to twice the CPUs.
std::vector<unsigned> default_threads(unsigned cpus)
{
    std::vector<unsigned> t;
    for (unsigned n = 1; n <= std::max(2u, 2 * cpus) && n <= max_threads; n *= 2)
        t.push_back(n);
    return t;
}

struct planned {
    workload w;
    unsigned threads;
    const lock_desc* lock;
};

bool write_file(const std::string& path, const std::string& text)
{
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
        std::fprintf(stderr, "klock bench: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) {
        std::fprintf(stderr, "klock bench: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    return true;
}

// Fails early, before minutes of measuring, if an output cannot be created.
bool can_write(const std::string& path)
{
    std::FILE* f = std::fopen(path.c_str(), "a");
    if (f == nullptr) {
        std::fprintf(stderr, "klock bench: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    std::fclose(f);
    return true;
}

} // namespace

int run_bench(int argc, char** argv)
{
    options o;
    std::string err;
    if (!parse_options(argc, argv, o, err)) {
        std::fprintf(stderr, "klock bench: %s\n", err.c_str());
        return 2;
    }
    if (o.help) {
        std::fputs(usage_text(), stdout);
        return 0;
    }
    if (o.list) {
        print_list(stdout);
        return 0;
    }
    std::vector<const lock_desc*> locks;
    if (!resolve_locks(o.locks, locks, err)) {
        std::fprintf(stderr, "klock bench: %s\n", err.c_str());
        return 2;
    }

    report_meta meta = machine_meta();
    meta.version = KLOCK_VERSION;
    meta.duration_s = o.duration_s;
    meta.repeat = o.repeat;
    meta.sample_every = o.sample_every;

    // The points, in the order of one repeat.
    const bool only_rw = o.workloads.size() == 1 && o.workloads.front() == workload::rw;
    std::vector<planned> plan;
    for (workload w : o.workloads) {
        std::vector<unsigned> threads;
        switch (w) {
        case workload::uncontended:
            threads = {1};
            break;
        case workload::oversubscribed:
            threads = {o.oversub_threads != 0 ? o.oversub_threads : 4 * meta.cpus};
            break;
        case workload::handoff:
            if (o.threads.empty())
                threads = {2};
            for (unsigned t : o.threads)
                if (t >= 2)
                    threads.push_back(t);
            if (threads.empty()) {
                std::fprintf(stderr, "klock bench: handoff needs at least 2 threads (--threads)\n");
                return 2;
            }
            break;
        case workload::contended:
        case workload::rw:
            threads = o.threads.empty() ? default_threads(meta.cpus) : o.threads;
            break;
        }
        std::vector<const lock_desc*> mine;
        std::string left_out;
        for (const lock_desc* l : locks) {
            if (w != workload::rw || l->run_rw != nullptr) {
                mine.push_back(l);
                continue;
            }
            if (o.locks.empty())
                continue; // the default set: rw simply measures the locks that have a reader side
            if (only_rw) {
                std::fprintf(stderr,
                    "klock bench: lock '%s' has no reader side for the rw workload (klock bench --list)\n", l->name);
                return 2;
            }
            left_out += (left_out.empty() ? "" : ", ") + std::string(l->name);
        }
        if (!left_out.empty())
            std::fprintf(stderr, "klock bench: note: rw leaves out %s (no reader side)\n", left_out.c_str());
        for (unsigned t : threads)
            for (const lock_desc* l : mine)
                plan.push_back({w, t, l});
    }

    for (const std::string& path : o.outputs)
        if (!can_write(path))
            return 2;
    if (!o.svg.empty() && !can_write(o.svg))
        return 2;

    prepare_locks();
    const double burn_per_ns = calibrate_burn();
    meta.burn_per_ns = burn_per_ns;
    meta.clock_ns = calibrate_clock();
    auto iters = [burn_per_ns](std::uint64_t ns) {
        return static_cast<std::uint64_t>(std::llround(static_cast<double>(ns) * burn_per_ns));
    };
    const std::uint64_t hold_ns = o.cs_given ? o.cs_ns : default_handoff_hold_ns;

    const double warmup_s = o.warmup_s >= 0 ? o.warmup_s : o.duration_s / 4;
    meta.warmup_s = warmup_s;
    const double estimate = static_cast<double>(plan.size()) * o.repeat * (o.duration_s + warmup_s);
    std::fprintf(stderr, "klock bench: %zu points x %u run%s x %s: about %.0f s\n", plan.size(), o.repeat,
        o.repeat == 1 ? "" : "s", human_ns(o.duration_s * 1e9).c_str(), std::ceil(estimate));
    const bool progress = isatty(STDERR_FILENO) != 0;

    std::vector<point_row> rows(plan.size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
        point_row& r = rows[i];
        r.w = plan[i].w;
        r.lock = plan[i].lock->name;
        r.klock = plan[i].lock->klock;
        r.threads = plan[i].threads;
        r.cs_ns = r.w == workload::handoff ? hold_ns : o.cs_ns;
        r.delay_ns = r.w == workload::handoff ? 0 : o.delay_ns;
        r.read_percent = o.read_percent;
    }
    bool failed = false;
    const std::size_t total = plan.size() * o.repeat;
    std::size_t done = 0;
    for (unsigned rep = 0; rep < o.repeat; ++rep) {
        for (std::size_t i = 0; i < plan.size(); ++i) {
            const planned& p = plan[i];
            if (progress)
                std::fprintf(stderr, "\r\033[K[%zu/%zu] %s %s %u thread%s", ++done, total, workload_name(p.w),
                    p.lock->name, p.threads, p.threads == 1 ? "" : "s");
            point_config cfg;
            cfg.w = p.w;
            cfg.threads = p.threads;
            cfg.cs_iters = iters(rows[i].cs_ns);
            cfg.delay_iters = iters(rows[i].delay_ns);
            cfg.read_percent = o.read_percent;
            cfg.duration = std::chrono::nanoseconds(static_cast<std::int64_t>(o.duration_s * 1e9));
            cfg.warmup = std::chrono::nanoseconds(static_cast<std::int64_t>(warmup_s * 1e9));
            cfg.sample_every = p.w == workload::handoff ? 1 : o.sample_every;
            cfg.clock_ns = meta.clock_ns;
            cfg.slow_ns = std::max<std::uint64_t>(1000, 50 * meta.clock_ns);
            const point_result res = p.w == workload::rw ? p.lock->run_rw(cfg) : p.lock->run(cfg);
            if (!res.error.empty()) {
                failed = true;
                std::fprintf(stderr, "%sklock bench: %s, %s, %u threads: %s\n", progress ? "\r\033[K" : "",
                    workload_name(p.w), p.lock->name, p.threads, res.error.c_str());
            }
            rows[i].runs.push_back(figures_of(res));
        }
    }
    if (progress)
        std::fputs("\r\033[K", stderr);
    for (point_row& r : rows)
        summarize(r);

    print_tables(stdout, rows, meta);
    for (const std::string& path : o.outputs)
        failed |= !write_file(path, path.ends_with(".json") ? json_of(rows, meta) : csv_of(rows));
    if (!o.svg.empty())
        failed |= !write_file(o.svg, svg_of(rows, meta));
    return failed ? 1 : 0;
}

} // namespace klock::tool
