// `klock selftest` in-process (tools/klock/selftest*.cpp): its exit statuses, the cells of its
// table, what -v prints, that inverted expectations turn cells FAILED, and that a run leaves the
// calling thread's context and lockdep as it found them.
#include <gtest/gtest.h>

#if __has_include("commands.hpp") // linked with klock_tool (KLOCK_BUILD_TOOLS=ON)

#include <string>
#include <vector>

#include "commands.hpp"

#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/spinlock.hpp>
#if KLOCK_LOCKDEP
#include <klock/lockdep.hpp>
#endif

namespace {

struct outcome {
    int rc;
    std::string out;
    std::string err;
};

outcome selftest(std::vector<std::string> args)
{
    args.insert(args.begin(), "selftest");
    std::vector<char*> argv;
    for (std::string& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    const int rc = klock::tool::run_selftest(static_cast<int>(args.size()), argv.data());
    std::fflush(stdout);
    outcome o{rc, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
    return o;
}

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

TEST(SelftestCommand, BadUsageExitsTwoAndNamesTheProblem)
{
    outcome o = selftest({"--frobnicate"});
    EXPECT_EQ(o.rc, 2);
    EXPECT_TRUE(has(o.err, "unknown option '--frobnicate'")) << o.err;
    EXPECT_TRUE(o.out.empty()) << o.out;

    o = selftest({"--filter"});
    EXPECT_EQ(o.rc, 2);
    EXPECT_TRUE(has(o.err, "--filter needs a SUBSTRING")) << o.err;

    o = selftest({"--filter="});
    EXPECT_EQ(o.rc, 2);
}

TEST(SelftestCommand, HelpExitsZero)
{
    const outcome o = selftest({"--help"});
    EXPECT_EQ(o.rc, 0);
    EXPECT_TRUE(has(o.out, "usage: klock selftest")) << o.out;
    EXPECT_FALSE(has(o.out, "expect-inverted")) << "a hidden option shows in --help";
}

#if KLOCK_LOCKDEP

TEST(SelftestCommand, RowOfAllColumnsPassesAndIsCounted)
{
    const outcome o = selftest({"--filter", "A-A deadlock"});
    EXPECT_EQ(o.rc, 0) << o.out;
    EXPECT_TRUE(has(o.out, "------------------------\n| Locking API testsuite:\n")) << o.out;
    EXPECT_TRUE(has(o.out, "                                 | spin |wlock |rlock |mutex | wsem | rsem |rtmutex\n"));
    EXPECT_TRUE(has(o.out, "                     A-A deadlock:  ok  |  ok  |  ok  |  ok  |  ok  |  ok  |  ok  |\n"))
        << o.out;
    EXPECT_TRUE(has(o.out, "Good, all   7 testcases passed! |\n")) << o.out;
    EXPECT_FALSE(has(o.out, "A-B-B-A")) << "the filter let another row through";
    EXPECT_TRUE(o.err.empty()) << "a report leaked out of the capture: " << o.err;
}

TEST(SelftestCommand, InvertedExpectationsTurnEveryCellFailed)
{
    // FAILURE cells (lock_bug and lockdep reports), SUCCESS cells, and the helper-task cases.
    const outcome o = selftest({"--expect-inverted", "--filter", "EDEADLK handling"});
    EXPECT_EQ(o.rc, 1);
    EXPECT_TRUE(has(o.out, "EDEADLK handling:FAILED|FAILED|FAILED|FAILED|FAILED|FAILED|FAILED|FAILED|FAILED|FAILED|\n"))
        << o.out;
    EXPECT_TRUE(has(o.out, "BUG:  10 unexpected failures (out of  10) - debugging disabled! |\n")) << o.out;

    const outcome irq = selftest({"--expect-inverted", "--filter", "hard-irqs-on + irq-safe-A/12"});
    EXPECT_EQ(irq.rc, 1);
    EXPECT_TRUE(has(irq.out, "hard-irqs-on + irq-safe-A/12:FAILED|FAILED|FAILED|\n")) << irq.out;
}

TEST(SelftestCommand, SpacersAreNotTestcases)
{
    const outcome o = selftest({"--filter", "recursive read-lock #2"});
    EXPECT_EQ(o.rc, 0) << o.out;
    EXPECT_TRUE(has(o.out, "           recursive read-lock #2:             |  ok  |             |  ok  |\n")) << o.out;
    EXPECT_TRUE(has(o.out, "Good, all   2 testcases passed! |")) << o.out;
    // The section's rule is printed before its first row.
    EXPECT_TRUE(has(o.out,
        "  --------------------------------------------------------------------------\n"
        "           recursive read-lock #2:"))
        << o.out;
}

TEST(SelftestCommand, VerbosePrintsEachReportUnderItsRow)
{
    const outcome o = selftest({"-v", "--filter", "A-B-B-A deadlock"});
    EXPECT_EQ(o.rc, 0) << o.out;
    const auto row = o.out.find("A-B-B-A deadlock:");
    const auto detail = o.out.find(" --- ABBA_spin: expected a report; as expected (1 report) ---\n");
    const auto splat = o.out.find("WARNING: possible circular locking dependency detected");
    ASSERT_NE(row, std::string::npos) << o.out;
    ASSERT_NE(detail, std::string::npos) << o.out;
    ASSERT_NE(splat, std::string::npos) << o.out;
    EXPECT_LT(row, detail);
    EXPECT_LT(detail, splat);
    // The rlock case stays silent, so it has nothing to show.
    EXPECT_FALSE(has(o.out, "ABBA_rlock")) << o.out;
    // The misuse reports of the locks themselves show too.
    const outcome du = selftest({"-v", "--filter", "double unlock"});
    EXPECT_TRUE(has(du.out, "BUG: spinlock already unlocked")) << du.out;
    EXPECT_TRUE(has(du.out, "WARNING: bad unlock balance detected!")) << du.out;
}

TEST(SelftestCommand, NoMatchingRowIsBadUsage)
{
    const outcome o = selftest({"--filter", "no such row"});
    EXPECT_EQ(o.rc, 2);
    EXPECT_TRUE(has(o.err, "no test row matches")) << o.err;
    EXPECT_TRUE(o.out.empty()) << o.out;
}

// Cases leave locks held, preempt_count off by one, interrupts off and lockdep in one-shot mode
// with debug_locks cleared; none of that may outlive the run.
TEST(SelftestCommand, LeavesTheCallersContextAndLockdepAsFound)
{
    for (const char* row : {"initialize held", "double unlock", "soft-safe-A + unsafe-B #2/321", "ww api failures",
             "wound-wait context ABBA", "hardirq_unsafe_softirq_safe"}) {
        const outcome o = selftest({"--filter", row});
        EXPECT_EQ(o.rc, 0) << row << "\n" << o.out;
        EXPECT_EQ(klock::preempt_count(), 0u) << row;
        EXPECT_FALSE(klock::irqs_disabled()) << row;
        EXPECT_TRUE(klock::lockdep::enabled()) << row;
        EXPECT_TRUE(klock::lockdep::debug_locks()) << row;
    }
    // lockdep is back in its default mode (one-shot off): a report leaves it validating.
    static klock::lock_class_key key;
    klock::spinlock a(key, "selftest_test_a"), b(key, "selftest_test_a");
    klock::report_capture cap;
    a.lock();
    b.lock();
    b.unlock();
    a.unlock();
    EXPECT_TRUE(cap.contains("possible recursive locking detected"));
    EXPECT_TRUE(klock::lockdep::debug_locks());
    klock::lockdep::reset();
}

#else

TEST(SelftestCommand, WithoutLockdepSaysHowToGetIt)
{
    const outcome o = selftest({});
    EXPECT_EQ(o.rc, 2);
    EXPECT_TRUE(has(o.err, "lockdep is compiled out of this build")) << o.err;
    EXPECT_TRUE(has(o.err, "-DKLOCK_LOCKDEP=ON")) << o.err;
    EXPECT_TRUE(has(o.err, "cmake --preset debug")) << o.err;
}

#endif // KLOCK_LOCKDEP

} // namespace

#else

TEST(SelftestCommand, NeedsTheKlockCommand)
{
    GTEST_SKIP() << "built without the klock command (KLOCK_BUILD_TOOLS=OFF)";
}

#endif
