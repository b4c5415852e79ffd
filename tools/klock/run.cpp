// `klock run [options] -- PROGRAM [ARGS...]`: lockdep and lock_stat for an unmodified program,
// through libklock-preload.so (src/preload/). This file is the command: it checks the options
// and the files they name (a problem exits 2 before anything runs), finds the library, and runs
// the program with LD_PRELOAD and the library's environment variables (run_options.cpp), passing
// its exit status through (run_exec.cpp).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "commands.hpp"
#include "run_options.hpp"

int klock::tool::run_run(int argc, char** argv)
{
    using namespace klock::tool::run;
    options o;
    std::string error;
    if (!parse(argc, argv, o, error)) {
        std::fprintf(stderr, "klock run: %s\n(klock run --help for the options)\n", error.c_str());
        return 2;
    }
    if (o.help) {
        std::fputs(help_text, stdout);
        return 0;
    }
    if (!prepare_files(o, error)) {
        std::fprintf(stderr, "klock run: %s\n", error.c_str());
        return 2;
    }
    const std::string preload = find_preload(error);
    if (preload.empty()) {
        std::fprintf(stderr, "klock run: %s\n", error.c_str());
        return 2;
    }
    return spawn_and_wait(o.command, environment(o, preload, std::getenv("LD_PRELOAD")), o.lock_stat_signal);
}
