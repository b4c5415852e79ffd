// `klock selftest`: the kernel's locking API self-test matrix (lib/locking-selftest.c, what a
// CONFIG_DEBUG_LOCKING_API_SELFTESTS kernel prints at boot) over klock's lock types: every case
// either must be reported by lockdep or the lock's own debug checks, or must stay silent, and the
// table shows whether it did. docs/selftest.md describes the rows; selftest_harness.hpp how a case
// runs.
#include "commands.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "selftest_harness.hpp"

namespace klock::tool {

namespace {

void selftest_usage(std::FILE* out)
{
    std::fputs("usage: klock selftest [-v|--verbose] [--filter SUBSTRING]\n"
               "\n"
               "Runs the kernel's locking API self-test matrix (lib/locking-selftest.c) over klock's\n"
               "lock types - spinlock, rwlock (write and read side), mutex, rw_semaphore (write and\n"
               "read side), rt_mutex, and ww_mutex - and prints the kernel's table: \"  ok  |\" where\n"
               "lockdep (or the lock's own checks) reported exactly when it should, \"FAILED|\" where not.\n"
               "\n"
               "options:\n"
               "  -v, --verbose        print the reports each case produced, under its row\n"
               "  --filter SUBSTRING   run only the rows whose name contains SUBSTRING\n"
               "  -h, --help           show this text\n"
               "\n"
               "exit status: 0 all cases as expected, 1 unexpected failures, 2 bad usage or a build\n"
               "without lockdep (configure with -DKLOCK_LOCKDEP=ON, e.g. cmake --preset debug).\n",
        out);
}

} // namespace

int run_selftest(int argc, char** argv)
{
#if KLOCK_LOCKDEP
    selftest::options opt;
#endif
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        if (std::strcmp(a, "-h") == 0 || std::strcmp(a, "--help") == 0) {
            selftest_usage(stdout);
            return 0;
        }
        std::string filter;
        bool have_filter = false;
        if (std::strcmp(a, "--filter") == 0) {
            if (i + 1 >= argc) {
                std::fputs("klock selftest: --filter needs a SUBSTRING\n", stderr);
                return 2;
            }
            filter = argv[++i];
            have_filter = true;
        } else if (std::strncmp(a, "--filter=", 9) == 0) {
            filter = a + 9;
            have_filter = true;
        }
        if (have_filter) {
            if (filter.empty()) {
                std::fputs("klock selftest: --filter needs a non-empty SUBSTRING\n", stderr);
                return 2;
            }
#if KLOCK_LOCKDEP
            opt.filter = filter;
#endif
            continue;
        }
        if (std::strcmp(a, "-v") == 0 || std::strcmp(a, "--verbose") == 0) {
#if KLOCK_LOCKDEP
            opt.verbose = true;
#endif
            continue;
        }
        // Not in --help: for the test suite, which must see the matrix fail when it should.
        if (std::strcmp(a, "--expect-inverted") == 0) {
#if KLOCK_LOCKDEP
            opt.expect_inverted = true;
#endif
            continue;
        }
        std::fprintf(stderr, "klock selftest: unknown option '%s' (see klock selftest --help)\n", a);
        return 2;
    }
#if KLOCK_LOCKDEP
    return selftest::run_matrix(opt, stdout);
#else
    std::fputs("klock selftest: lockdep is compiled out of this build (KLOCK_LOCKDEP is off), so there is\n"
               "nothing to test. Build klock with lockdep's hooks in its locks and run that klock:\n"
               "  cmake --preset debug && cmake --build --preset debug && build/debug/tools/klock/klock selftest\n"
               "or configure any build with -DKLOCK_LOCKDEP=ON.\n",
        stderr);
    return 2;
#endif
}

} // namespace klock::tool
