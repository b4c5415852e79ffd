// `klock torture`: the kernel's locktorture (kernel/locking/locktorture.c) over klock's locks.
//
// torture_options.* holds the flags and the parameter line, torture_ops.* the lock types,
// torture_engine.* the threads, checks and statistics. Exit status: 0 when the test ends in
// SUCCESS, 1 in FAILURE, 2 on bad usage. A thread that never stops (a real deadlock) is
// reported and left behind: the process then ends with _exit(1), since neither joining it nor
// running its destructors is possible.
#include "commands.hpp"

#include <cstdio>
#include <string>

#include <unistd.h>

#include "torture_engine.hpp"
#include "torture_ops.hpp"
#include "torture_options.hpp"

int klock::tool::run_torture(int argc, char** argv)
{
    namespace t = klock::tool::torture;
    t::config cfg;
    std::string error;
    switch (t::parse(argc, argv, cfg, error)) {
    case t::parse_status::help:
        t::print_help(stdout);
        return 0;
    case t::parse_status::bad:
        std::fprintf(stderr, "klock torture: %s\n", error.c_str());
        return 2;
    case t::parse_status::ok:
        break;
    }
    const t::type_info* type = t::find_type(cfg.type);
    const t::result r = t::run(cfg, type->make(cfg), stdout);
    if (r.left_running != 0) {
        std::fflush(stdout);
        std::fflush(stderr);
        ::_exit(1);
    }
    return r.success ? 0 : 1;
}
