// lockdep's other checks and its switches: bad unlock balance, held lock freed, locks held at thread
// exit, keys that are not static, invalid subclasses, limits (each exhausted through the test hook
// switches lockdep off cleanly), one-shot mode, report-once, run-time on/off and reset().
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/report.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace ld = klock::lockdep;
using klock::lock_class_key;
using klock::lockdep_map;

lock_class_key key_a, key_b, key_c;
lockdep_map lock_a{"A", &key_a};
lockdep_map lock_b{"B", &key_b};
lockdep_map lock_c{"C", &key_c};

void acq(lockdep_map& m, unsigned subclass = 0) { ld::lock_acquire(m, subclass, 0, 0, 1, nullptr); }
void rel(lockdep_map& m) { ld::lock_release(m); }

class LockdepChecks : public ::testing::Test {
protected:
    void SetUp() override
    {
        ld::reset();
        ld::set_one_shot(false);
    }
    void TearDown() override
    {
        ld::set_one_shot(false);
        ld::reset();
    }
    std::string only_report()
    {
        auto r = cap.reports();
        EXPECT_EQ(r.size(), 1u);
        return r.empty() ? std::string() : r.front();
    }
    klock::report_capture cap;
};

TEST_F(LockdepChecks, BadUnlockBalance)
{
    rel(lock_a);
    const std::string r = only_report();
    const std::string title = "WARNING: bad unlock balance detected!";
    EXPECT_EQ(r.rfind("\n" + std::string(title.size(), '=') + "\n" + title + "\nklock ", 0), 0u) << r;
    EXPECT_NE(r.find(" is trying to release lock (A) at:\n[<"), std::string::npos) << r;
    EXPECT_NE(r.find("but there are no more locks to release!\n"), std::string::npos);
    EXPECT_NE(r.find("\nother info that might help us debug this:\nno locks held by "), std::string::npos);
    EXPECT_NE(r.find("\nstack backtrace:\n"), std::string::npos);
}

TEST_F(LockdepChecks, ReleasingALockThatIsNotHeldWhileOthersAre)
{
    acq(lock_a);
    rel(lock_b);
    const std::string r = only_report();
    EXPECT_NE(r.find("is trying to release lock (B)"), std::string::npos);
    EXPECT_NE(r.find("1 lock held by "), std::string::npos);
    EXPECT_TRUE(ld::lock_is_held(lock_a)); // the stack is unchanged
    rel(lock_a);
}

TEST_F(LockdepChecks, HeldLockFreed)
{
    struct object {
        lockdep_map m{"object", &key_c};
        int payload = 0;
    };
    auto obj = std::make_unique<object>();
    acq(obj->m);
    klock::debug_check_no_locks_freed(obj.get(), sizeof(object));
    const std::string r = only_report();
    EXPECT_NE(r.find("\n=========================\nWARNING: held lock freed!\n"), std::string::npos) << r;
    EXPECT_NE(r.find(", with a lock still held there!\n"), std::string::npos);
    EXPECT_NE(r.find(" (object){+.+.}, at: "), std::string::npos) << r;
    rel(obj->m);
    // Freeing memory next to a held lock is fine.
    acq(lock_a);
    klock::debug_check_no_locks_freed(obj.get(), sizeof(object));
    rel(lock_a);
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(LockdepChecks, LockHeldAtThreadExit)
{
    std::thread([] {
        acq(lock_a);
        acq(lock_b);
    }).join();
    const std::string r = only_report();
    EXPECT_NE(r.find("\n====================================\nWARNING: "), std::string::npos) << r;
    EXPECT_NE(r.find(" still has locks held!\n"), std::string::npos);
    EXPECT_NE(r.find("2 locks held by "), std::string::npos);
    EXPECT_NE(r.find(" #0: "), std::string::npos);
    EXPECT_NE(r.find(" #1: "), std::string::npos);
    // A thread that releases everything is silent.
    std::thread([] {
        acq(lock_a);
        rel(lock_a);
    }).join();
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(LockdepChecks, DynamicLockWithoutKeyIsNotValidated)
{
    auto m = std::make_unique<lockdep_map>("heap lock", nullptr);
    acq(*m);
    const std::string r = only_report();
    EXPECT_NE(r.find("INFO: trying to register non-static key.\n"), std::string::npos) << r;
    EXPECT_TRUE(ld::debug_locks());
    acq(*m); // no class: no recursion report either
    rel(*m);
    rel(*m);
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(LockdepChecks, StaticLockWithoutKeyUsesItsAddress)
{
    static lockdep_map s1{"static1", nullptr};
    static lockdep_map s2{"static2", nullptr};
    acq(s1);
    acq(s2);
    rel(s2);
    rel(s1);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    acq(s2);
    acq(s1);
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("circular locking dependency"));
    rel(s1);
    rel(s2);
}

TEST_F(LockdepChecks, InvalidSubclassTurnsLockdepOff)
{
    acq(lock_a, ld::MAX_LOCKDEP_SUBCLASSES);
    const std::string r = only_report();
    EXPECT_NE(r.find("BUG: looking up invalid subclass: 8\nturning off the locking correctness validator.\n"),
        std::string::npos)
        << r;
    EXPECT_FALSE(ld::debug_locks());
}

void expect_switched_off(klock::report_capture& cap, const std::string& bug)
{
    auto reports = cap.reports();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].rfind(bug + "\nturning off the locking correctness validator.\n", 0), 0u) << reports[0];
    EXPECT_FALSE(ld::debug_locks());
    EXPECT_FALSE(ld::enabled());
    char line[64];
    std::snprintf(line, sizeof line, " %-31s%11d\n", "debug_locks:", 0);
    EXPECT_NE(ld::proc_lockdep_stats().find(line), std::string::npos);
    // Lockdep is off: even a real recursion goes unreported, and the program goes on.
    acq(lock_c);
    acq(lock_c);
    rel(lock_c);
    rel(lock_c);
    EXPECT_EQ(cap.count(), 1u);
    // reset() switches it back on.
    ld::reset();
    EXPECT_TRUE(ld::debug_locks());
    acq(lock_c);
    acq(lock_c);
    EXPECT_EQ(cap.count(), 2u);
    rel(lock_c);
    rel(lock_c);
}

TEST_F(LockdepChecks, KeysLimit)
{
    ld::test::set_limit(ld::test::limit::keys, 2);
    acq(lock_a);
    acq(lock_b);
    acq(lock_c); // the third class
    rel(lock_c);
    rel(lock_b);
    rel(lock_a);
    expect_switched_off(cap, "BUG: MAX_LOCKDEP_KEYS too low!");
}

TEST_F(LockdepChecks, EntriesLimit)
{
    ld::test::set_limit(ld::test::limit::entries, 2); // one dependency = two entries
    acq(lock_a);
    acq(lock_b);
    acq(lock_c);
    rel(lock_c);
    rel(lock_b);
    rel(lock_a);
    expect_switched_off(cap, "BUG: MAX_LOCKDEP_ENTRIES too low!");
}

TEST_F(LockdepChecks, ChainsLimit)
{
    ld::test::set_limit(ld::test::limit::chains, 2);
    acq(lock_a); // [A]
    acq(lock_b); // [A B]
    rel(lock_b);
    rel(lock_a);
    acq(lock_b); // [B]: the third
    rel(lock_b);
    expect_switched_off(cap, "BUG: MAX_LOCKDEP_CHAINS too low!");
}

TEST_F(LockdepChecks, ChainHlocksLimit)
{
    ld::test::set_limit(ld::test::limit::chain_hlocks, 2);
    acq(lock_a); // 1
    acq(lock_b); // 2 more
    rel(lock_b);
    rel(lock_a);
    expect_switched_off(cap, "BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!");
}

TEST_F(LockdepChecks, StackTraceEntriesLimit)
{
    ld::test::set_limit(ld::test::limit::stack_trace_entries, 3);
    acq(lock_a);
    acq(lock_b);
    rel(lock_b);
    rel(lock_a);
    expect_switched_off(cap, "BUG: MAX_STACK_TRACE_ENTRIES too low!");
}

TEST_F(LockdepChecks, LockDepthLimit)
{
    ld::test::set_limit(ld::test::limit::lock_depth, 2);
    acq(lock_a);
    acq(lock_b);
    auto reports = cap.reports();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].rfind("BUG: MAX_LOCK_DEPTH too low!\nturning off the locking correctness validator.\n"
                               "depth: 2  max: 2!\n2 locks held by ",
                  0),
        0u)
        << reports[0];
    EXPECT_FALSE(ld::debug_locks());
    rel(lock_b);
    rel(lock_a);
    ld::reset();
    EXPECT_TRUE(ld::debug_locks());
}

TEST_F(LockdepChecks, FullDepthWorksWithTheDefaultLimit)
{
    static lock_class_key keys[ld::MAX_LOCK_DEPTH];
    static std::vector<std::unique_ptr<lockdep_map>> maps;
    if (maps.empty())
        for (auto& k : keys)
            maps.push_back(std::make_unique<lockdep_map>("deep", &k));
    for (unsigned i = 0; i + 1 < ld::MAX_LOCK_DEPTH; ++i)
        acq(*maps[i]);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    EXPECT_EQ(ld::get_stats().max_lock_depth, ld::MAX_LOCK_DEPTH - 1);
    for (unsigned i = ld::MAX_LOCK_DEPTH - 1; i-- > 0;)
        rel(*maps[i]);
    EXPECT_EQ(cap.count(), 0u);
    EXPECT_NE(ld::proc_lockdep().find(": deep#47\n"), std::string::npos);
}

TEST_F(LockdepChecks, OneShotModeStopsAtTheFirstReport)
{
    ld::set_one_shot(true);
    acq(lock_a);
    acq(lock_a);
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_FALSE(ld::debug_locks());
    rel(lock_b); // would be an unlock imbalance
    EXPECT_EQ(cap.count(), 1u);
    ld::reset();
    EXPECT_TRUE(ld::debug_locks());
}

TEST_F(LockdepChecks, EachProblemIsReportedOnce)
{
    for (int i = 0; i < 3; ++i) {
        acq(lock_a);
        acq(lock_a);
        rel(lock_a);
        rel(lock_a);
        rel(lock_b);
    }
    EXPECT_EQ(cap.count(), 2u); // one recursion, one imbalance
    EXPECT_TRUE(ld::debug_locks());
}

TEST_F(LockdepChecks, SwitchedOffAtRunTime)
{
    ld::set_enabled(false);
    EXPECT_FALSE(ld::enabled());
    EXPECT_TRUE(ld::debug_locks()); // not a bug, just off
    acq(lock_a);
    acq(lock_a);
    EXPECT_EQ(cap.count(), 0u);
    ld::set_enabled(true);
    // Releases of locks taken while off are tolerated.
    rel(lock_a);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    ld::reset(); // a clean slate for the caller: imbalances are reported again
    rel(lock_a);
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(LockdepChecks, ResetForgetsEverything)
{
    acq(lock_a);
    acq(lock_b);
    rel(lock_b);
    rel(lock_a);
    auto s = ld::get_stats();
    EXPECT_EQ(s.lock_classes, 2u);
    EXPECT_EQ(s.direct_dependencies, 2u);
    EXPECT_EQ(s.dependency_chains, 2u);
    EXPECT_GT(s.stack_trace_entries, 0u);
    ld::reset();
    s = ld::get_stats();
    EXPECT_EQ(s.lock_classes, 0u);
    EXPECT_EQ(s.direct_dependencies, 0u);
    EXPECT_EQ(s.dependency_chains, 0u);
    EXPECT_EQ(s.chain_hlocks, 0u);
    EXPECT_EQ(s.stack_trace_entries, 0u);
    EXPECT_EQ(s.chain_lookup_hits, 0u);
    EXPECT_EQ(s.chain_lookup_misses, 0u);
    EXPECT_EQ(ld::proc_lockdep(), "all lock classes:\n");
    EXPECT_EQ(ld::proc_lockdep_chains(), "all lock chains:\n");
    // The old order is forgotten: the reverse order is fine now.
    acq(lock_b);
    acq(lock_a);
    rel(lock_a);
    rel(lock_b);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    // And problems reported before may be reported again.
    acq(lock_c);
    acq(lock_c);
    rel(lock_c);
    rel(lock_c);
    ld::reset();
    acq(lock_c);
    acq(lock_c);
    rel(lock_c);
    rel(lock_c);
    EXPECT_EQ(cap.count(), 2u);
}

TEST_F(LockdepChecks, OtherThreadsDropTheirStackOnReset)
{
    std::atomic<int> step{0};
    std::thread t([&] {
        acq(lock_a);
        step = 1;
        while (step.load() != 2)
            std::this_thread::yield();
        rel(lock_a); // taken before reset(): tolerated
        acq(lock_b);
        rel(lock_b);
    });
    while (step.load() != 1)
        std::this_thread::yield();
    ld::reset();
    step = 2;
    t.join();
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

} // namespace
