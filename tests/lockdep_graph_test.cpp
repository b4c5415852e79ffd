// lockdep's dependency graph, driven directly through the engine's hooks with static keys:
// circular dependencies (across threads that never overlap), recursion, subclasses, nest locks,
// trylocks, reader semantics, the held-lock stack, and the hit path under several threads.
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/report.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/stress.hpp"

namespace {

namespace ld = klock::lockdep;
using klock::lock_class_key;
using klock::lockdep_map;

lock_class_key key_a, key_b, key_c, key_d, key_n, key_x, key_y, key_z;
lockdep_map lock_a{"A", &key_a};
lockdep_map lock_b{"B", &key_b};
lockdep_map lock_c{"C", &key_c};
lockdep_map lock_d{"D", &key_d};
lockdep_map lock_n{"N", &key_n};

void acq(lockdep_map& m, unsigned subclass = 0, int read = 0, int trylock = 0, lockdep_map* nest = nullptr)
{
    ld::lock_acquire(m, subclass, trylock, read, 1, nest);
}
void rel(lockdep_map& m) { ld::lock_release(m); }

// Each runs on its own thread: the two orders never overlap in time.
[[gnu::noinline]] void take_a_then_b()
{
    acq(lock_a);
    acq(lock_b);
    rel(lock_b);
    rel(lock_a);
}

[[gnu::noinline]] void take_b_then_a()
{
    acq(lock_b);
    acq(lock_a);
    rel(lock_a);
    rel(lock_b);
}

void on_thread(void (*fn)()) { std::thread(fn).join(); }

class Lockdep : public ::testing::Test {
protected:
    void SetUp() override
    {
        ld::reset();
        ld::set_one_shot(false);
    }
    void TearDown() override { ld::reset(); }
    std::string only_report()
    {
        auto r = cap.reports();
        EXPECT_EQ(r.size(), 1u);
        return r.empty() ? std::string() : r.front();
    }
    klock::report_capture cap;
};

TEST_F(Lockdep, ConsistentOrderIsSilent)
{
    for (int i = 0; i < 3; ++i)
        on_thread(take_a_then_b);
    EXPECT_EQ(cap.count(), 0u);
    EXPECT_TRUE(ld::debug_locks());
}

TEST_F(Lockdep, AbbaAcrossThreadsThatNeverOverlap)
{
    const auto before = ld::report_count();
    on_thread(take_a_then_b);
    EXPECT_EQ(cap.count(), 0u);
    on_thread(take_b_then_a);
    const std::string r = only_report();
    EXPECT_EQ(ld::report_count(), before + 1);

    const std::string title = "WARNING: possible circular locking dependency detected";
    const std::string rule(title.size(), '=');
    EXPECT_EQ(r.rfind("\n" + rule + "\n" + title + "\nklock ", 0), 0u) << r;
    EXPECT_NE(r.find("\n" + std::string(title.size(), '-') + "\n"), std::string::npos);
    EXPECT_NE(r.find(" is trying to acquire lock:\n"), std::string::npos);
    EXPECT_NE(r.find(" (A){+.+.}, at: "), std::string::npos) << r;
    EXPECT_NE(r.find("\nbut task is already holding lock:\n"), std::string::npos);
    EXPECT_NE(r.find(" (B){+.+.}, at: "), std::string::npos);
    EXPECT_NE(r.find("\nwhich lock already depends on the new lock.\n\n"), std::string::npos);
    EXPECT_NE(r.find("\nthe existing dependency chain (in reverse order) is:\n"), std::string::npos);
    // #1: where B was taken under A (the other thread), #0: the acquisition now. Both with stacks.
    const std::string h1 = "\n-> #1 (B){+.+.}:\n", h0 = "\n-> #0 (A){+.+.}:\n";
    const auto e1 = r.find(h1);
    const auto e0 = r.find(h0);
    ASSERT_NE(e1, std::string::npos) << r;
    ASSERT_NE(e0, std::string::npos);
    EXPECT_LT(e1, e0);
    for (const auto at : {e1 + h1.size(), e0 + h0.size()}) {
        EXPECT_EQ(r.compare(at, 7, "       "), 0) << "stack frames are indented by 7:\n" << r;
        EXPECT_NE(r[at + 7], ' ');
        EXPECT_NE(r[at + 7], '\n');
    }
    EXPECT_EQ(r.find("Chain exists of:"), std::string::npos) << "two locks: no chain line";
    EXPECT_NE(r.find(" Possible unsafe locking scenario:\n\n"
                     "       CPU0                    CPU1\n"
                     "       ----                    ----\n"
                     "  lock(B);\n"
                     "                               lock(A);\n"
                     "                               lock(B);\n"
                     "  lock(A);\n"
                     "\n *** DEADLOCK ***\n\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("1 lock held by "), std::string::npos);
    EXPECT_NE(r.find(" #0: "), std::string::npos);
    EXPECT_NE(r.find("\nstack backtrace:\nCPU: "), std::string::npos);
    EXPECT_NE(r.find("Call Trace:\n"), std::string::npos);
    // The report does not stop lockdep (default mode), and is not repeated.
    EXPECT_TRUE(ld::debug_locks());
    on_thread(take_b_then_a);
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(Lockdep, FourLockCycleShowsTheChain)
{
    on_thread([] {
        acq(lock_a);
        acq(lock_b);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread([] {
        acq(lock_b);
        acq(lock_c);
        rel(lock_c);
        rel(lock_b);
    });
    on_thread([] {
        acq(lock_c);
        acq(lock_d);
        rel(lock_d);
        rel(lock_c);
    });
    EXPECT_EQ(cap.count(), 0u);
    on_thread([] {
        acq(lock_d);
        acq(lock_a);
        rel(lock_a);
        rel(lock_d);
    });
    const std::string r = only_report();
    const auto p3 = r.find("\n-> #3 (D){+.+.}:\n");
    const auto p2 = r.find("\n-> #2 (C){+.+.}:\n");
    const auto p1 = r.find("\n-> #1 (B){+.+.}:\n");
    const auto p0 = r.find("\n-> #0 (A){+.+.}:\n");
    ASSERT_NE(p3, std::string::npos) << r;
    ASSERT_NE(p0, std::string::npos);
    EXPECT_LT(p3, p2);
    EXPECT_LT(p2, p1);
    EXPECT_LT(p1, p0);
    EXPECT_NE(r.find("Chain exists of:\n  A --> C --> D\n\n"), std::string::npos) << r;
    EXPECT_NE(r.find("  lock(D);\n                               lock(C);\n"
                     "                               lock(D);\n  lock(A);\n"),
        std::string::npos);
}

TEST_F(Lockdep, RecursiveLocking)
{
    acq(lock_a);
    acq(lock_a);
    const std::string r = only_report();
    const std::string title = "WARNING: possible recursive locking detected";
    EXPECT_EQ(r.rfind("\n" + std::string(title.size(), '=') + "\n" + title + "\n", 0), 0u) << r;
    EXPECT_NE(r.find(" is trying to acquire lock:\n"), std::string::npos);
    EXPECT_NE(r.find("\nbut task is already holding lock:\n"), std::string::npos);
    EXPECT_NE(r.find(" Possible unsafe locking scenario:\n\n       CPU0\n       ----\n  lock(A);\n  lock(A);\n"
                     "\n *** DEADLOCK ***\n\n May be due to missing lock nesting notation\n\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("1 lock held by "), std::string::npos);
    // The stack stays balanced with the caller's releases.
    rel(lock_a);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_FALSE(ld::lock_is_held(lock_a));
}

TEST_F(Lockdep, SubclassAnnotationAllowsNesting)
{
    acq(lock_a, 0);
    acq(lock_a, 1);
    acq(lock_a, 2);
    rel(lock_a);
    rel(lock_a);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u);
    const std::string dump = ld::proc_lockdep();
    EXPECT_NE(dump.find(": A/1\n"), std::string::npos) << dump;
    EXPECT_NE(dump.find(": A/2\n"), std::string::npos);
    // Same subclass twice is still recursion.
    acq(lock_a, 1);
    acq(lock_a, 1);
    EXPECT_EQ(cap.count(), 1u);
    rel(lock_a);
    rel(lock_a);
}

TEST_F(Lockdep, NestLockAllowsManyOfOneClass)
{
    static lock_class_key key_item;
    static lockdep_map items[4] = {{"item", &key_item}, {"item", &key_item}, {"item", &key_item}, {"item", &key_item}};
    acq(lock_n);
    for (auto& m : items)
        acq(m, 0, 0, 0, &lock_n);
    EXPECT_TRUE(ld::lock_is_held(items[2]));
    for (auto& m : items)
        rel(m);
    rel(lock_n);
    EXPECT_EQ(cap.count(), 0u) << (cap.count() ? cap.reports()[0] : "");
    // With another lock between them the entries are not merged, and still fine.
    acq(lock_n);
    acq(items[0], 0, 0, 0, &lock_n);
    acq(lock_b);
    acq(items[1], 0, 0, 0, &lock_n);
    rel(items[1]);
    rel(lock_b);
    rel(items[0]);
    rel(lock_n);
    EXPECT_EQ(cap.count(), 0u) << (cap.count() ? cap.reports()[0] : "");
    // Without the nest annotation, two of one class is recursion.
    acq(items[0]);
    acq(items[1]);
    EXPECT_EQ(cap.count(), 1u);
    rel(items[1]);
    rel(items[0]);
}

TEST_F(Lockdep, NestLockThatIsNotHeldIsReported)
{
    acq(lock_a, 0, 0, 0, &lock_n);
    const std::string r = only_report();
    EXPECT_NE(r.find("WARNING: Nested lock was not taken\n"), std::string::npos) << r;
    EXPECT_NE(r.find("\nbut this task is not holding:\nN\n"), std::string::npos) << r;
    rel(lock_a);
}

TEST_F(Lockdep, TrylockInversionIsNotReported)
{
    on_thread([] {
        acq(lock_a);
        acq(lock_b, 0, 0, /*trylock=*/1);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread(take_b_then_a);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

TEST_F(Lockdep, TrylockCountsAsHeld)
{
    // A, trylock B, then C: C depends on B (and on A).
    on_thread([] {
        acq(lock_a);
        acq(lock_b, 0, 0, 1);
        acq(lock_c);
        rel(lock_c);
        rel(lock_b);
        rel(lock_a);
    });
    EXPECT_EQ(cap.count(), 0u);
    on_thread([] {
        acq(lock_c);
        acq(lock_b);
        rel(lock_b);
        rel(lock_c);
    });
    const std::string r = only_report();
    EXPECT_NE(r.find("circular locking dependency"), std::string::npos);
    EXPECT_NE(r.find("-> #1 (C)"), std::string::npos) << r;
}

TEST_F(Lockdep, RecursiveReadersReadReadCycleIsNotADeadlock)
{
    on_thread([] {
        acq(lock_a, 0, ld::READ_RECURSIVE);
        acq(lock_b, 0, ld::READ_RECURSIVE);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread([] {
        acq(lock_b, 0, ld::READ_RECURSIVE);
        acq(lock_a, 0, ld::READ_RECURSIVE);
        rel(lock_a);
        rel(lock_b);
    });
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    // Recursive read of one class while it is read-held is allowed too.
    acq(lock_a, 0, ld::READ_RECURSIVE);
    acq(lock_a, 0, ld::READ_RECURSIVE);
    rel(lock_a);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(Lockdep, NonRecursiveReadersCycleIsReported)
{
    on_thread([] {
        acq(lock_a, 0, ld::READ);
        acq(lock_b, 0, ld::READ);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread([] {
        acq(lock_b, 0, ld::READ);
        acq(lock_a, 0, ld::READ);
        rel(lock_a);
        rel(lock_b);
    });
    const std::string r = only_report();
    EXPECT_NE(r.find("circular locking dependency"), std::string::npos);
    EXPECT_NE(r.find("  rlock(B);\n"), std::string::npos) << r;
    EXPECT_NE(r.find("  rlock(A);\n"), std::string::npos);
    // And read-after-read of one non-recursive class is recursion.
    acq(lock_c, 0, ld::READ);
    acq(lock_c, 0, ld::READ);
    EXPECT_EQ(cap.count(), 2u);
    rel(lock_c);
    rel(lock_c);
}

TEST_F(Lockdep, CycleThroughAWriterIsReported)
{
    // W(A) -> R(B) and W(B) -> W(A): the reader of B waits for B's writer.
    on_thread([] {
        acq(lock_a);
        acq(lock_b, 0, ld::READ_RECURSIVE);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread(take_b_then_a);
    EXPECT_EQ(cap.count(), 1u);
}

TEST_F(Lockdep, RecursiveReaderUnderWriterIsNotADeadlock)
{
    // R(A) -> R(B) and W(B) -> R(A): the writer's recursive read of A cannot block on a reader.
    on_thread([] {
        acq(lock_a, 0, ld::READ_RECURSIVE);
        acq(lock_b, 0, ld::READ_RECURSIVE);
        rel(lock_b);
        rel(lock_a);
    });
    on_thread([] {
        acq(lock_b);
        acq(lock_a, 0, ld::READ_RECURSIVE);
        rel(lock_a);
        rel(lock_b);
    });
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

TEST_F(Lockdep, ReinitialisedLockGetsItsNewClass)
{
    // The same object, reinitialised with another key, is another class: no false cycle.
    static lockdep_map obj{"X", &key_x};
    static lockdep_map z{"Z", &key_z};
    acq(obj);
    acq(z);
    rel(z);
    rel(obj);
    obj.init("Y", &key_y);
    acq(z);
    acq(obj);
    rel(obj);
    rel(z);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    EXPECT_NE(ld::proc_lockdep().find(": Y\n"), std::string::npos);
}

TEST_F(Lockdep, OutOfOrderReleaseRebuildsTheStack)
{
    acq(lock_a);
    acq(lock_b);
    acq(lock_c);
    rel(lock_b); // not the innermost
    EXPECT_TRUE(ld::lock_is_held(lock_a));
    EXPECT_FALSE(ld::lock_is_held(lock_b));
    EXPECT_TRUE(ld::lock_is_held(lock_c));
    rel(lock_a);
    rel(lock_c);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    EXPECT_FALSE(ld::lock_is_held(lock_c));
}

TEST_F(Lockdep, DowngradeMakesTheHoldARead)
{
    acq(lock_a);
    EXPECT_TRUE(ld::lock_is_held(lock_a, 0));
    ld::lock_downgrade(lock_a);
    EXPECT_TRUE(ld::lock_is_held(lock_a, 1));
    EXPECT_FALSE(ld::lock_is_held(lock_a, 0));
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(Lockdep, SiteKeysAreOnePerSourceLocation)
{
    const auto& k1 = ld::site_key("mutex", "/src/app/file.cpp", 42);
    const auto& k2 = ld::site_key("mutex", "/src/app/file.cpp", 42);
    const auto& k3 = ld::site_key("mutex", "/src/app/file.cpp", 43);
    std::string same_content = "/src/app/file.cpp"; // another pointer, same text
    const auto& k4 = ld::site_key("mutex", same_content.c_str(), 42);
    EXPECT_EQ(&k1, &k2);
    EXPECT_EQ(&k1, &k4);
    EXPECT_NE(&k1, &k3);
    EXPECT_STREQ(k1.name, "mutex@file.cpp:42");
    // Two locks from one site are one class: taking both is recursion.
    static lockdep_map m1{k1.name, &k1.key}, m2{k2.name, &k2.key};
    acq(m1);
    acq(m2);
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("(mutex@file.cpp:42)"));
    rel(m2);
    rel(m1);
}

TEST_F(Lockdep, ManyClassesInOneOrderThenOneInversion)
{
    // 32 classes taken in random increasing subsets by 4 threads: a large acyclic graph, no report.
    constexpr int n = 32;
    static lock_class_key keys[n];
    static std::string names[n];
    static std::vector<std::unique_ptr<lockdep_map>> maps;
    if (maps.empty())
        for (int i = 0; i < n; ++i) {
            names[i] = "L" + std::to_string(i);
            maps.push_back(std::make_unique<lockdep_map>(names[i].c_str(), &keys[i]));
        }
    klock::test::run_threads(4, [](int t) {
        std::uint32_t rnd = 12345u + static_cast<std::uint32_t>(t);
        for (int round = 0; round < 200; ++round) {
            int taken[n];
            int depth = 0;
            for (int i = 0; i < n; ++i) {
                rnd = rnd * 1103515245u + 12345u;
                if ((rnd >> 16) % 4 == 0 || i == n - 1 || (round == 0 && t == 0)) {
                    acq(*maps[i]);
                    taken[depth++] = i;
                }
            }
            while (depth > 0)
                rel(*maps[taken[--depth]]);
        }
    });
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    const auto st = ld::get_stats();
    EXPECT_EQ(st.lock_classes, std::uint64_t(n));
    EXPECT_GT(st.direct_dependencies, std::uint64_t(2 * (n - 1)));
    // Now the last class before the first one: a cycle through the whole graph.
    acq(*maps[n - 1]);
    acq(*maps[0]);
    rel(*maps[0]);
    rel(*maps[n - 1]);
    const std::string r = only_report();
    EXPECT_NE(r.find("circular locking dependency"), std::string::npos);
    EXPECT_NE(r.find("is trying to acquire lock:\n"), std::string::npos);
    EXPECT_NE(r.find(" (L0){+.+.}, at: "), std::string::npos) << r;
    EXPECT_NE(r.find("\n-> #0 (L0){+.+.}:\n"), std::string::npos) << r;
    EXPECT_NE(r.find("  lock(L31);\n"), std::string::npos) << r;
}

TEST_F(Lockdep, HitPathUnderManyThreadsStaysSilentAndCounts)
{
    klock::test::watchdog wd(std::chrono::seconds(20), "lockdep hit path");
    static lock_class_key key_obj;
    constexpr int threads = 4, iters = 2000;
    static lockdep_map objs[threads] = {{"obj", &key_obj}, {"obj", &key_obj}, {"obj", &key_obj}, {"obj", &key_obj}};
    const auto before = ld::get_stats();
    klock::test::run_threads(threads, [](int t) {
        for (int i = 0; i < iters; ++i) {
            acq(lock_a);
            acq(objs[t]);
            acq(lock_b);
            rel(lock_b);
            rel(objs[t]);
            rel(lock_a);
        }
    });
    const auto after = ld::get_stats();
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    EXPECT_EQ(after.lock_classes, 3u);
    EXPECT_EQ(after.dependency_chains, 3u); // [A], [A obj], [A obj B]
    EXPECT_GE(after.chain_lookup_hits - before.chain_lookup_hits, std::uint64_t(threads) * iters * 3 - 3 * threads);
    EXPECT_LE(after.chain_lookup_misses, 3u + threads * 3u);
}

} // namespace
