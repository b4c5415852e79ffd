// `klock run`: its options, how they become environment variables for the preload library, and
// how the program is started (run_options.cpp, run_exec.cpp; the command itself is run.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace klock::tool::run {

struct options {
    bool help = false;
    bool lockdep = true;
    bool lock_stat = false;
    std::string report;        // --report: lockdep and misuse reports (default: stderr)
    std::string json;          // --json: one JSON object per report
    std::string lock_stat_out; // --lock-stat-out: lock_stat table at exit (and on the signal)
    int lock_stat_signal = 0;  // --lock-stat-signal
    std::string suppress;      // --suppress
    bool abort_on_report = false;
    unsigned class_depth = 0;         // --class-depth (0: the library's default)
    std::vector<std::string> command; // PROGRAM ARGS...
};

// Parse the arguments after "run" (argv[0] is "run"). false: `error` names the problem.
bool parse(int argc, char** argv, options& o, std::string& error);

// Check what the options name before anything runs: the suppression file parses, the output
// files can be written (they are created, and truncated: each run starts them afresh).
bool prepare_files(options& o, std::string& error);

// The environment variables the preload library reads, NAME=value, for these options. Paths are
// made absolute (the program may change directory). LD_PRELOAD appends `preload` to `ld_preload`.
std::vector<std::string> environment(const options& o, const std::string& preload, const char* ld_preload);

// "USR1", "SIGUSR1", "usr1", "10", "RTMIN+2" -> the signal number; 0 if it is not one.
int signal_number(std::string_view name);

// The preload library: $KLOCK_PRELOAD_LIB, else next to the installed klock
// (<bin>/<KLOCK_PRELOAD_INSTALL_DIR>/libklock-preload.so), else the build tree's. Empty (and
// `error` set) if none exists.
std::string find_preload(std::string& error);

// Start the program with `env` added to the environment, wait for it, and return its exit status
// (128 + signal if a signal ended it; 127 if it could not be started, 126 if not executable).
int spawn_and_wait(const std::vector<std::string>& command, const std::vector<std::string>& env, int forward_signal);

extern const char* const help_text;

} // namespace klock::tool::run
