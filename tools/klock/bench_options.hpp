// `klock bench` command line: the options and their parsers (docs/bench.md lists every flag).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klock::tool::bench {

enum class workload : unsigned char { uncontended, contended, oversubscribed, handoff, rw };

inline constexpr workload all_workloads[]
    = {workload::uncontended, workload::contended, workload::oversubscribed, workload::handoff, workload::rw};

const char* workload_name(workload w) noexcept;
std::optional<workload> workload_from_name(std::string_view s) noexcept;

struct options {
    std::vector<workload> workloads{workload::contended};
    std::vector<unsigned> threads;    // --threads; empty: each workload's default
    unsigned oversub_threads = 0;     // --oversub-threads; 0: 4 x the CPUs this process may use
    std::uint64_t cs_ns = 0;          // --cs
    bool cs_given = false;            // handoff holds 20 us unless --cs says otherwise
    std::uint64_t delay_ns = 0;       // --delay
    unsigned read_percent = 90;       // --read-percent (rw)
    double duration_s = 0.2;          // --duration, per point and repeat
    double warmup_s = -1;             // --warmup before each point's window; < 0: duration / 4
    unsigned repeat = 1;              // --repeat
    unsigned sample_every = 32;       // --sample: one lock() in N (on average) is timed
    std::vector<std::string> locks;   // --locks, as typed; empty: every lock built in
    std::vector<std::string> outputs; // --out FILE.csv / FILE.json (repeatable)
    std::string svg;                  // --svg FILE.svg
    bool list = false;                // --list
    bool help = false;                // --help
};

// Parses argv[1..argc) (argv[0] is the subcommand name). false: `error` names the problem.
bool parse_options(int argc, char** argv, options& o, std::string& error);

// Value parsers, exposed for the tests. Each returns nullopt when `s` is not valid.
// "1,2,4", "1-8", "2,4-6": sorted, without duplicates, each in 1..max_threads.
inline constexpr unsigned max_threads = 1024;
std::optional<std::vector<unsigned>> parse_thread_list(std::string_view s);
// A time in nanoseconds: "250", "250ns", "1.5us", "2ms", "1s"; at most 1 s.
std::optional<std::uint64_t> parse_nanoseconds(std::string_view s);
// A duration in seconds: "0.2", "0.2s", "200ms", "500us"; from 1 ms to 1 hour.
std::optional<double> parse_duration(std::string_view s);
// An unsigned integer in [lo, hi].
std::optional<unsigned> parse_unsigned(std::string_view s, unsigned lo, unsigned hi);

// Comma-separated items, without empty ones.
std::vector<std::string> split_list(std::string_view s);

// The usage text of `klock bench --help`.
const char* usage_text() noexcept;

} // namespace klock::tool::bench
