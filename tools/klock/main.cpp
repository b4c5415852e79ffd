// The klock command: one table of subcommands, each implemented in its own file (commands.hpp).
#include <cstdio>
#include <string_view>

#include "commands.hpp"

namespace {

struct command {
    std::string_view name;
    int (*run)(int argc, char** argv);
    const char* summary;
};

constexpr command commands[] = {
    { "demo", klock::tool::run_demo,
        "walk through the kernel's locks: the ticket lock word, preempt_count,\n"
        "              might_sleep, and a priority inversion with mutex vs rt_mutex" },
    { "selftest", klock::tool::run_selftest,
        "the kernel's locking API self-test matrix over klock's lock types" },
    { "run", klock::tool::run_run, "run a program with lockdep and lock_stat on its pthread locks" },
    { "sim", klock::tool::run_sim, "the deterministic multi-CPU kernel simulator" },
    { "torture", klock::tool::run_torture, "the kernel's locktorture over klock's locks" },
    { "bench", klock::tool::run_bench, "klock's locks against their peers: throughput, fairness, latency" },
};

void print_usage(std::FILE* out)
{
    std::fputs("usage: klock <command> [options]   (klock <command> --help for its options)\n\ncommands:\n", out);
    for (const command& c : commands)
        std::fprintf(out, "  %-10.*s  %s\n", static_cast<int>(c.name.size()), c.name.data(), c.summary);
    std::fputs("  help        show this text\n  version     show klock's version\n", out);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const std::string_view name = argv[1];
    for (const command& c : commands)
        if (c.name == name)
            return c.run(argc - 1, argv + 1);
    if (name == "help" || name == "--help" || name == "-h") {
        print_usage(stdout);
        return 0;
    }
    if (name == "version" || name == "--version") {
        std::puts("klock " KLOCK_VERSION);
        return 0;
    }
    std::fprintf(stderr, "klock: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
