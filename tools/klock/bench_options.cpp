// `klock bench` command line (bench_options.hpp).
#include "bench_options.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace klock::tool::bench {

namespace {

struct workload_names {
    workload w;
    const char* name;
};
constexpr workload_names workload_table[] = {
    {workload::uncontended, "uncontended"},
    {workload::contended, "contended"},
    {workload::oversubscribed, "oversubscribed"},
    {workload::handoff, "handoff"},
    {workload::rw, "rw"},
};

// A decimal number (digits, at most one '.') followed by a unit, both taken from `s`.
bool split_number(std::string_view s, double& value, std::string_view& unit)
{
    std::size_t i = 0;
    bool digits = false, dot = false;
    for (; i < s.size(); ++i) {
        const char c = s[i];
        if (c >= '0' && c <= '9')
            digits = true;
        else if (c == '.' && !dot)
            dot = true;
        else
            break;
    }
    if (!digits)
        return false;
    const std::string num(s.substr(0, i));
    char* end = nullptr;
    errno = 0;
    value = std::strtod(num.c_str(), &end);
    if (errno != 0 || end != num.c_str() + num.size() || !std::isfinite(value))
        return false;
    unit = s.substr(i);
    return true;
}

// Seconds per unit of a time suffix; 0 for an unknown suffix.
double unit_seconds(std::string_view unit, double none)
{
    if (unit.empty())
        return none;
    if (unit == "ns")
        return 1e-9;
    if (unit == "us")
        return 1e-6;
    if (unit == "ms")
        return 1e-3;
    if (unit == "s")
        return 1;
    return 0;
}

} // namespace

const char* workload_name(workload w) noexcept
{
    for (const auto& e : workload_table)
        if (e.w == w)
            return e.name;
    return "?";
}

std::optional<workload> workload_from_name(std::string_view s) noexcept
{
    for (const auto& e : workload_table)
        if (s == e.name)
            return e.w;
    return std::nullopt;
}

std::vector<std::string> split_list(std::string_view s)
{
    std::vector<std::string> out;
    while (!s.empty()) {
        const std::size_t comma = s.find(',');
        const std::string_view item = s.substr(0, comma);
        if (!item.empty())
            out.emplace_back(item);
        if (comma == std::string_view::npos)
            break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

std::optional<unsigned> parse_unsigned(std::string_view s, unsigned lo, unsigned hi)
{
    if (s.empty() || s.size() > 10)
        return std::nullopt;
    unsigned long long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v < lo || v > hi)
        return std::nullopt;
    return static_cast<unsigned>(v);
}

std::optional<std::vector<unsigned>> parse_thread_list(std::string_view s)
{
    std::vector<unsigned> out;
    if (s.empty())
        return std::nullopt;
    // Every comma must separate two items: "1,,2" and "4," are typing errors, not lists.
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = s.find(',', start);
        const std::string_view item = s.substr(start, comma == std::string_view::npos ? s.npos : comma - start);
        const std::size_t dash = item.find('-');
        if (dash == std::string_view::npos) {
            const auto v = parse_unsigned(item, 1, max_threads);
            if (!v)
                return std::nullopt;
            out.push_back(*v);
        } else {
            const auto a = parse_unsigned(item.substr(0, dash), 1, max_threads);
            const auto b = parse_unsigned(item.substr(dash + 1), 1, max_threads);
            if (!a || !b || *a > *b)
                return std::nullopt;
            for (unsigned t = *a; t <= *b; ++t)
                out.push_back(t);
        }
        if (comma == std::string_view::npos)
            break;
        start = comma + 1;
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::optional<std::uint64_t> parse_nanoseconds(std::string_view s)
{
    double v = 0;
    std::string_view unit;
    if (!split_number(s, v, unit))
        return std::nullopt;
    const double per = unit_seconds(unit, 1e-9);
    if (per == 0)
        return std::nullopt;
    const double ns = v * per * 1e9;
    if (ns > 1e9)
        return std::nullopt;
    return static_cast<std::uint64_t>(std::llround(ns));
}

std::optional<double> parse_duration(std::string_view s)
{
    double v = 0;
    std::string_view unit;
    if (!split_number(s, v, unit))
        return std::nullopt;
    const double per = unit_seconds(unit, 1);
    if (per == 0)
        return std::nullopt;
    const double sec = v * per;
    if (sec < 1e-3 - 1e-12 || sec > 3600)
        return std::nullopt;
    return sec;
}

bool parse_options(int argc, char** argv, options& o, std::string& error)
{
    bool workloads_given = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view value;
        bool has_value = false;
        if (arg.rfind("--", 0) == 0) {
            const std::size_t eq = arg.find('=');
            if (eq != std::string_view::npos) {
                value = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
                has_value = true;
            }
        }
        auto flag_only = [&]() {
            if (has_value)
                error = std::string(arg) + " takes no value";
            return !has_value;
        };
        // The flag's value: after '=' or the next argument.
        auto take = [&](std::string_view& out) {
            if (has_value) {
                out = value;
                return true;
            }
            if (i + 1 >= argc) {
                error = std::string(arg) + " needs a value";
                return false;
            }
            out = argv[++i];
            return true;
        };
        auto bad = [&](std::string_view v, const char* expected) {
            error = "bad value '" + std::string(v) + "' for " + std::string(arg) + ": expected " + expected;
            return false;
        };
        std::string_view v;
        if (arg == "--help" || arg == "-h") {
            if (!flag_only())
                return false;
            o.help = true;
        } else if (arg == "--list") {
            if (!flag_only())
                return false;
            o.list = true;
        } else if (arg == "--workload" || arg == "-w") {
            if (!take(v))
                return false;
            if (!workloads_given)
                o.workloads.clear();
            workloads_given = true;
            const auto items = split_list(v);
            if (items.empty())
                return bad(v, "a workload: uncontended, contended, oversubscribed, handoff, rw or all");
            for (const std::string& item : items) {
                if (item == "all") {
                    o.workloads.assign(std::begin(all_workloads), std::end(all_workloads));
                    continue;
                }
                const auto w = workload_from_name(item);
                if (!w) {
                    error = "unknown workload '" + item
                        + "' for --workload: expected uncontended, contended, oversubscribed, handoff, rw or all";
                    return false;
                }
                o.workloads.push_back(*w);
            }
        } else if (arg == "--threads" || arg == "-t") {
            if (!take(v))
                return false;
            const auto t = parse_thread_list(v);
            if (!t)
                return bad(v, "thread counts from 1 to 1024 such as 1,2,4 or 1-8");
            o.threads = *t;
        } else if (arg == "--oversub-threads") {
            if (!take(v))
                return false;
            const auto t = parse_unsigned(v, 1, max_threads);
            if (!t)
                return bad(v, "a thread count from 1 to 1024");
            o.oversub_threads = *t;
        } else if (arg == "--cs") {
            if (!take(v))
                return false;
            const auto ns = parse_nanoseconds(v);
            if (!ns)
                return bad(v, "a time up to 1s such as 100, 100ns, 2us");
            o.cs_ns = *ns;
            o.cs_given = true;
        } else if (arg == "--delay") {
            if (!take(v))
                return false;
            const auto ns = parse_nanoseconds(v);
            if (!ns)
                return bad(v, "a time up to 1s such as 100, 100ns, 2us");
            o.delay_ns = *ns;
        } else if (arg == "--read-percent") {
            if (!take(v))
                return false;
            const auto p = parse_unsigned(v, 0, 100);
            if (!p)
                return bad(v, "a percentage from 0 to 100");
            o.read_percent = *p;
        } else if (arg == "--duration" || arg == "-d") {
            if (!take(v))
                return false;
            const auto d = parse_duration(v);
            if (!d)
                return bad(v, "a duration from 1ms to 3600s such as 0.5, 200ms, 2s");
            o.duration_s = *d;
        } else if (arg == "--warmup") {
            if (!take(v))
                return false;
            const auto d = v == "0" ? std::optional<double>(0.0) : parse_duration(v);
            if (!d)
                return bad(v, "0 or a duration from 1ms to 3600s such as 50ms");
            o.warmup_s = *d;
        } else if (arg == "--repeat" || arg == "-r") {
            if (!take(v))
                return false;
            const auto r = parse_unsigned(v, 1, 1000);
            if (!r)
                return bad(v, "a count from 1 to 1000");
            o.repeat = *r;
        } else if (arg == "--sample") {
            if (!take(v))
                return false;
            const auto r = parse_unsigned(v, 1, 1000000);
            if (!r)
                return bad(v, "a count from 1 to 1000000 (1: time every lock())");
            o.sample_every = *r;
        } else if (arg == "--locks" || arg == "-l") {
            if (!take(v))
                return false;
            const auto items = split_list(v);
            if (items.empty())
                return bad(v, "lock names separated by commas (klock bench --list)");
            o.locks.insert(o.locks.end(), items.begin(), items.end());
        } else if (arg == "--out" || arg == "-o") {
            if (!take(v))
                return false;
            if (!(v.size() > 4 && v.ends_with(".csv")) && !(v.size() > 5 && v.ends_with(".json")))
                return bad(v, "a file name ending in .csv or .json");
            o.outputs.emplace_back(v);
        } else if (arg == "--svg") {
            if (!take(v))
                return false;
            if (v.size() <= 4 || !v.ends_with(".svg"))
                return bad(v, "a file name ending in .svg");
            o.svg = std::string(v);
        } else {
            error = "unknown option '" + std::string(argv[i]) + "' (klock bench --help lists the options)";
            return false;
        }
    }
    // A workload named twice runs once, in the order first given.
    std::vector<workload> uniq;
    for (workload w : o.workloads)
        if (std::find(uniq.begin(), uniq.end(), w) == uniq.end())
            uniq.push_back(w);
    o.workloads = uniq;
    return true;
}

const char* usage_text() noexcept
{
    return R"(usage: klock bench [options]

Measures klock's locks and their peers side by side: throughput, per-thread fairness and
wait-time percentiles, one table per workload on stdout (docs/bench.md).

workloads (--workload W[,W...], default contended):
  uncontended      one thread: lock + unlock
  contended        every --threads count on one lock (default 1,2,4,... up to 2 x CPUs)
  oversubscribed   more threads than CPUs on one lock (--oversub-threads, default 4 x CPUs)
  handoff          latency from the owner's unlock() call to the waiter's return from lock();
                   the owner holds the lock --cs (default 20us) after every other thread has
                   announced its lock() call (--threads, default 2)
  rw               readers and writers on the shared locks, --read-percent readers
  all              every workload above

options:
  -l, --locks L[,L...]     locks to measure (default: all built in); --list shows them;
                           'klock' and 'peers' select the groups
      --list               list the locks, their kind and whether this build has them
  -t, --threads LIST       thread counts: 1,2,4 or 1-8 or 2,4-6
      --oversub-threads N  threads of the oversubscribed workload
      --cs TIME            work inside the critical section (default 0: a counter increment)
      --delay TIME         work between an unlock() and the next lock() (default 0)
      --read-percent P     rw: share of operations that take the read side (default 90)
  -d, --duration TIME      measuring time per point and repeat (default 200ms)
      --warmup TIME        run unmeasured this long first (default: a quarter of --duration)
  -r, --repeat N           run every point N times, interleaved; the median is reported
      --sample N           time one lock() call in N, chosen at random (default 32;
                           1 = every call); handoff times every handoff
  -o, --out FILE           also write the results to FILE.csv or FILE.json (repeatable)
      --svg FILE           write a plot: throughput, fairness and p99 wait against threads
  -h, --help               this text

TIME: 250, 250ns, 1.5us, 2ms, 1s (a plain number is ns for --cs/--delay, s for --duration).
Exit status: 0 done, 1 a lock failed (mutual exclusion broken, a thread stuck in lock(),
an output not written), 2 bad usage.
)";
}

} // namespace klock::tool::bench
