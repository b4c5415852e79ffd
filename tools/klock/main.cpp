// The klock command.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "demo.hpp"

namespace {

constexpr const char* usage_text
    = "usage: klock <command> [options]\n"
      "\n"
      "commands:\n"
      "  demo        walk through the kernel's locks: the ticket lock word, preempt_count,\n"
      "              might_sleep, and a priority inversion with mutex vs rt_mutex\n"
      "  help        show this text\n"
      "  version     show klock's version\n";

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fputs(usage_text, stderr);
        return 2;
    }
    std::string_view cmd = argv[1];
    if (cmd == "demo")
        return klock::tool::run_demo(argc - 1, argv + 1);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
        std::fputs(usage_text, stdout);
        return 0;
    }
    if (cmd == "version" || cmd == "--version") {
        std::puts("klock " KLOCK_VERSION);
        return 0;
    }
    std::fprintf(stderr, "klock: unknown command '%s'\n\n%s", argv[1], usage_text);
    return 2;
}
