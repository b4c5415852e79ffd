// `klock bench` output: table, CSV, JSON (bench_output.hpp). The SVG plot is in bench_svg.cpp.
#include "bench_output.hpp"

#include <klock/detail/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <string_view>

#include <sched.h>
#include <sys/utsname.h>

namespace klock::tool::bench {

namespace {

std::string fmt(const char* f, double v)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

// A JSON or CSV number: finite, without exponent surprises for integers.
std::string num(double v)
{
    if (!std::isfinite(v))
        return "0";
    if (v == std::floor(v) && std::fabs(v) < 1e15)
        return fmt("%.0f", v);
    return fmt("%.6g", v);
}

std::string csv_field(std::string_view s)
{
    if (s.find_first_of(",\"\n") == std::string_view::npos)
        return std::string(s);
    std::string out = "\"";
    for (char c : s) {
        if (c == '"')
            out += '"';
        out += c;
    }
    return out + "\"";
}

// Workloads in the order they first appear, each with its rows sorted by thread count.
std::vector<std::pair<workload, std::vector<const point_row*>>> by_workload(const std::vector<point_row>& rows)
{
    std::vector<std::pair<workload, std::vector<const point_row*>>> out;
    for (const point_row& r : rows) {
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == r.w; });
        if (it == out.end()) {
            out.push_back({r.w, {}});
            it = out.end() - 1;
        }
        it->second.push_back(&r);
    }
    for (auto& [w, v] : out)
        std::stable_sort(
            v.begin(), v.end(), [](const point_row* a, const point_row* b) { return a->threads < b->threads; });
    return out;
}

std::string read_cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const std::size_t colon = line.find(':');
            if (colon != std::string::npos) {
                std::size_t b = line.find_first_not_of(" \t", colon + 1);
                return b == std::string::npos ? std::string() : line.substr(b);
            }
        }
    }
    return "unknown CPU";
}

std::string describe_workload(const point_row& r)
{
    switch (r.w) {
    case workload::uncontended:
        return "uncontended: one thread, cs " + human_ns(static_cast<double>(r.cs_ns)) + ", delay "
            + human_ns(static_cast<double>(r.delay_ns));
    case workload::contended:
        return "contended: cs " + human_ns(static_cast<double>(r.cs_ns)) + ", delay "
            + human_ns(static_cast<double>(r.delay_ns));
    case workload::oversubscribed:
        return "oversubscribed: cs " + human_ns(static_cast<double>(r.cs_ns)) + ", delay "
            + human_ns(static_cast<double>(r.delay_ns));
    case workload::handoff:
        return "handoff: owner holds " + human_ns(static_cast<double>(r.cs_ns))
            + " once every waiter is in lock(); latency = unlock() call to the next owner's return from lock()";
    case workload::rw:
        return "rw: " + std::to_string(r.read_percent) + "% reads, cs " + human_ns(static_cast<double>(r.cs_ns))
            + ", delay " + human_ns(static_cast<double>(r.delay_ns));
    }
    return "";
}

} // namespace

std::string human_ns(double ns)
{
    if (ns < 1000)
        return fmt("%.0f ns", ns);
    if (ns < 1e6)
        return fmt(ns < 1e4 ? "%.2f us" : ns < 1e5 ? "%.1f us" : "%.0f us", ns / 1e3);
    if (ns < 1e9)
        return fmt(ns < 1e7 ? "%.2f ms" : ns < 1e8 ? "%.1f ms" : "%.0f ms", ns / 1e6);
    return fmt("%.2f s", ns / 1e9);
}

std::string human_rate(double v)
{
    if (v >= 1e6)
        return fmt(v >= 1e8 ? "%.0f M" : "%.2f M", v / 1e6);
    if (v >= 1e3)
        return fmt(v >= 1e5 ? "%.0f k" : "%.1f k", v / 1e3);
    return fmt("%.0f", v);
}

run_figures figures_of(const point_result& r)
{
    run_figures f;
    f.seconds = r.seconds;
    f.error = r.error;
    if (!r.error.empty())
        return f;
    f.per_thread = r.ops;
    double total = 0;
    for (std::uint64_t v : r.ops)
        total += static_cast<double>(v);
    f.ops = total;
    f.reads = static_cast<double>(r.reads);
    f.writes = static_cast<double>(r.writes);
    f.ops_per_s = r.seconds > 0 ? total / r.seconds : 0;
    f.min_max = min_max_ratio(r.ops);
    f.jain = jain_index(r.ops);
    f.wait_p50 = static_cast<double>(r.wait.percentile(50));
    f.wait_p99 = static_cast<double>(r.wait.percentile(99));
    f.wait_max = static_cast<double>(r.wait.max());
    f.wait_samples = static_cast<double>(r.wait.samples());
    f.handoff_p50 = static_cast<double>(r.handoff.percentile(50));
    f.handoff_p99 = static_cast<double>(r.handoff.percentile(99));
    f.handoff_max = static_cast<double>(r.handoff.max());
    f.handoff_samples = static_cast<double>(r.handoff.samples());
    return f;
}

void summarize(point_row& row)
{
    run_figures s;
    std::vector<const run_figures*> good;
    for (const run_figures& f : row.runs) {
        if (!f.error.empty() && s.error.empty())
            s.error = f.error;
        if (f.error.empty())
            good.push_back(&f);
    }
    auto med = [&good](double run_figures::*m) {
        std::vector<double> v;
        for (const run_figures* f : good)
            v.push_back(f->*m);
        return median(v);
    };
    for (double run_figures::*m : {&run_figures::seconds, &run_figures::ops_per_s, &run_figures::min_max,
             &run_figures::jain, &run_figures::ops, &run_figures::reads, &run_figures::writes, &run_figures::wait_p50,
             &run_figures::wait_p99, &run_figures::wait_max, &run_figures::wait_samples, &run_figures::handoff_p50,
             &run_figures::handoff_p99, &run_figures::handoff_max, &run_figures::handoff_samples})
        s.*m = med(m);
    row.summary = std::move(s);
}

report_meta machine_meta()
{
    report_meta m;
    m.cpu_model = read_cpu_model();
    cpu_set_t set;
    CPU_ZERO(&set);
    m.cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : 1u;
    utsname u{};
    m.kernel = uname(&u) == 0 ? u.release : "unknown";
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m.date = buf;
    return m;
}

void print_tables(std::FILE* out, const std::vector<point_row>& rows, const report_meta& meta)
{
    std::fprintf(out, "klock bench: %s, %u CPUs, Linux %s\n", meta.cpu_model.c_str(), meta.cpus, meta.kernel.c_str());
    std::fprintf(out,
        "%s per point after %s warm-up, %s; wait = lock() call to return, timed on 1 call in %u and every call "
        "after a slow one (clock read %s, subtracted)\n",
        human_ns(meta.duration_s * 1e9).c_str(), human_ns(meta.warmup_s * 1e9).c_str(),
        meta.repeat == 1 ? "1 run" : ("median of " + std::to_string(meta.repeat) + " runs").c_str(), meta.sample_every,
        human_ns(static_cast<double>(meta.clock_ns)).c_str());
    for (const auto& [w, list] : by_workload(rows)) {
        const bool handoff = w == workload::handoff;
        std::fprintf(out, "\n== %s ==\n", describe_workload(*list.front()).c_str());
        std::fprintf(out, "%-20s %7s %10s %8s %6s %10s %10s %10s\n", "lock", "threads", handoff ? "handoff/s" : "ops/s",
            "min/max", "Jain", handoff ? "p50 lat" : "p50 wait", handoff ? "p99 lat" : "p99 wait",
            handoff ? "max lat" : "max wait");
        unsigned last_threads = list.front()->threads;
        for (const point_row* r : list) {
            if (r->threads != last_threads)
                std::fputc('\n', out);
            last_threads = r->threads;
            const run_figures& s = r->summary;
            if (!s.error.empty()) {
                std::fprintf(out, "%-20s %7u  FAILED: %s\n", r->lock.c_str(), r->threads, s.error.c_str());
                continue;
            }
            // No timed call at all (a thread that hardly ran): no percentiles, rather than zeros.
            const bool none = (handoff ? s.handoff_samples : s.wait_samples) == 0;
            auto lat = [none](double v) { return none ? std::string("-") : human_ns(v); };
            const double p50 = handoff ? s.handoff_p50 : s.wait_p50;
            const double p99 = handoff ? s.handoff_p99 : s.wait_p99;
            const double mx = handoff ? s.handoff_max : s.wait_max;
            std::fprintf(out, "%-20s %7u %10s %8.2f %6.3f %10s %10s %10s\n", r->lock.c_str(), r->threads,
                human_rate(s.ops_per_s).c_str(), s.min_max, s.jain, lat(p50).c_str(), lat(p99).c_str(),
                lat(mx).c_str());
        }
    }
    std::fflush(out);
}

std::string csv_of(const std::vector<point_row>& rows)
{
    std::string out
        = "workload,lock,family,threads,cs_ns,delay_ns,read_percent,runs,seconds,ops,ops_per_s,min_max,jain,"
          "wait_p50_ns,wait_p99_ns,wait_max_ns,wait_samples,handoff_p50_ns,handoff_p99_ns,handoff_max_ns,"
          "handoff_samples,reads,writes,error\n";
    for (const point_row& r : rows) {
        const run_figures& s = r.summary;
        const bool handoff = r.w == workload::handoff;
        const bool rw = r.w == workload::rw;
        out += std::string(workload_name(r.w)) + ',' + csv_field(r.lock) + ',' + (r.klock ? "klock" : "peer") + ','
            + std::to_string(r.threads) + ',' + std::to_string(r.cs_ns) + ',' + std::to_string(r.delay_ns) + ','
            + (rw ? std::to_string(r.read_percent) : "") + ',' + std::to_string(r.runs.size()) + ',';
        if (!s.error.empty()) {
            out += ",,,,,,,,,,,,,,," + csv_field(s.error) + '\n';
            continue;
        }
        out += num(s.seconds) + ',' + num(s.ops) + ',' + num(s.ops_per_s) + ',' + num(s.min_max) + ',' + num(s.jain)
            + ',' + num(s.wait_p50) + ',' + num(s.wait_p99) + ',' + num(s.wait_max) + ',' + num(s.wait_samples) + ',';
        if (handoff)
            out += num(s.handoff_p50) + ',' + num(s.handoff_p99) + ',' + num(s.handoff_max) + ','
                + num(s.handoff_samples) + ',';
        else
            out += ",,,,";
        out += (rw ? num(s.reads) : "") + ',' + (rw ? num(s.writes) : "") + ",\n";
    }
    return out;
}

namespace {

std::string json_figures(const run_figures& f, bool handoff, bool rw, const std::string& indent)
{
    std::string o = "{";
    if (!f.error.empty())
        return o + "\"error\": " + klock::detail::json_quote(f.error) + ", \"seconds\": " + num(f.seconds) + "}";
    o += "\"seconds\": " + num(f.seconds) + ", \"ops\": " + num(f.ops) + ", \"ops_per_s\": " + num(f.ops_per_s)
        + ", \"min_max\": " + num(f.min_max) + ", \"jain\": " + num(f.jain);
    if (rw)
        o += ", \"reads\": " + num(f.reads) + ", \"writes\": " + num(f.writes);
    o += ",\n" + indent + "\"wait_ns\": {\"p50\": " + num(f.wait_p50) + ", \"p99\": " + num(f.wait_p99)
        + ", \"max\": " + num(f.wait_max) + ", \"samples\": " + num(f.wait_samples) + "}";
    if (handoff)
        o += ",\n" + indent + "\"handoff_ns\": {\"p50\": " + num(f.handoff_p50) + ", \"p99\": " + num(f.handoff_p99)
            + ", \"max\": " + num(f.handoff_max) + ", \"samples\": " + num(f.handoff_samples) + "}";
    if (!f.per_thread.empty()) {
        o += ",\n" + indent + "\"per_thread_ops\": [";
        for (std::size_t i = 0; i < f.per_thread.size(); ++i)
            o += (i ? ", " : "") + std::to_string(f.per_thread[i]);
        o += "]";
    }
    return o + "}";
}

} // namespace

std::string json_of(const std::vector<point_row>& rows, const report_meta& meta)
{
    std::string o = "{\n  \"tool\": \"klock bench\",\n  \"version\": " + klock::detail::json_quote(meta.version)
        + ",\n  \"date\": " + klock::detail::json_quote(meta.date)
        + ",\n  \"machine\": {\"cpu\": " + klock::detail::json_quote(meta.cpu_model)
        + ", \"cpus\": " + std::to_string(meta.cpus) + ", \"kernel\": " + klock::detail::json_quote(meta.kernel)
        + "},\n  \"config\": {\"duration_s\": " + num(meta.duration_s) + ", \"warmup_s\": " + num(meta.warmup_s)
        + ", \"repeat\": " + std::to_string(meta.repeat) + ", \"sample_every\": " + std::to_string(meta.sample_every)
        + ", \"clock_read_ns\": " + std::to_string(meta.clock_ns)
        + ", \"burn_iterations_per_ns\": " + num(meta.burn_per_ns) + "},\n  \"results\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const point_row& r = rows[i];
        const bool handoff = r.w == workload::handoff, rw = r.w == workload::rw;
        o += i ? ",\n" : "\n";
        o += "    {\"workload\": " + klock::detail::json_quote(workload_name(r.w))
            + ", \"lock\": " + klock::detail::json_quote(r.lock)
            + ", \"family\": " + (r.klock ? "\"klock\"" : "\"peer\"") + ", \"threads\": " + std::to_string(r.threads)
            + ", \"cs_ns\": " + std::to_string(r.cs_ns) + ", \"delay_ns\": " + std::to_string(r.delay_ns)
            + ", \"read_percent\": " + (rw ? std::to_string(r.read_percent) : "null") + ",\n     \"median\": ";
        run_figures med = r.summary;
        med.per_thread.clear();
        o += json_figures(med, handoff, rw, "      ") + ",\n     \"runs\": [";
        for (std::size_t k = 0; k < r.runs.size(); ++k)
            o += std::string(k ? ",\n       " : "\n       ") + json_figures(r.runs[k], handoff, rw, "        ");
        o += "]}";
    }
    return o + "\n  ]\n}\n";
}

} // namespace klock::tool::bench
