// `klock torture`'s parameters: the kernel's locktorture module parameters
// (kernel/locking/locktorture.c, torture_param(...)) as command-line flags, and the start/end
// line that prints them (lock_torture_print_module_parms).
//
// Times are seconds (fractions allowed: --stutter 0.25) except --long-hold, which is
// milliseconds as in the kernel. The kernel's stutter and shuffle_interval count jiffies in
// recent kernels and seconds in older ones; here both are seconds.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace klock::tool::torture {

inline constexpr int max_nested_locks = 8; // the kernel's MAX_NESTED_LOCKS
inline constexpr int max_threads_per_role = 1024;

struct config {
    std::string type = "spin_lock"; // torture_type
    int nwriters = -1;              // nwriters_stress; -1: the kernel's default
    int nreaders = -1;              // nreaders_stress; -1: the kernel's default
    double duration = 10;           // s; the kernel runs until rmmod, its scripts pass --duration
    double stat_interval = 5;       // s between stats lines; 0: only the final one
    double stutter = 2;             // s of running, then s of pause; 0: never pause
    double shuffle_interval = 3;    // s between CPU shuffles; 0: never
    int long_hold = 10;             // ms of an occasional long hold; 0: never
    int nested_locks = 0;           // 0..max_nested_locks
    int rt_boost = 1;               // 0: never, 1: rt_mutex writers, 2: writers of every sleeping lock
    int rt_boost_factor = 50;       // boost about once every nwriters * factor acquisitions

    // Not flags; the engine's knobs (tests shorten them).
    double stall_timeout = 0; // s without progress that count as a stall; 0: stall_bound()
    double join_timeout = 0;  // s to wait for threads to stop; 0: join_bound()
    bool progress_bar = true; // drawn only when stderr is a terminal

    // Resolved by resolve(): the thread counts actually run (cxt.nrealwriters_stress, ...).
    int real_writers = 0;
    int real_readers = 0;

    // max(5 s, duration / 2, three of the longest holds the delays can produce).
    double stall_bound() const noexcept;
    double join_bound() const noexcept;
};

enum class parse_status { ok, help, bad };

// Parses the arguments after the subcommand name (argv[0] is "torture"). Flags are
// `--name value` or `--name=value`; the kernel's module parameter spelling `name=value`
// (torture_type=mutex_lock nwriters_stress=4) is accepted too, as are '_' for '-'.
// On `bad`, `error` names the flag or value. Resolves the thread counts on `ok`.
parse_status parse(int argc, char** argv, config& cfg, std::string& error);

// Fills real_writers/real_readers as lock_torture_init() does; `error` when nothing would run.
bool resolve(config& cfg, int ncpus, std::string& error);

// CPUs this process may run on (its affinity mask), at least 1.
int online_cpus() noexcept;

void print_help(std::FILE* out);

// "<type>-torture:--- <tag>[ debug]: duration=... torture_type=..." (lock_torture_print_module_parms).
std::string parms_line(const config& cfg, std::string_view tag);

} // namespace klock::tool::torture
