// klock::rt_mutex: the PI futex word, every operation, misuse reports, the kernel's answers
// (-EDEADLK, -ESRCH, FUTEX_OWNER_DIED) and a stress run.
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rt_mutex.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

// The tests below misuse locks on purpose, and gtest's ASSERTs return early with locks held:
// clang's static analysis would (rightly) reject both. The annotations themselves are checked
// at the end of the file, outside this region.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace {

using namespace std::chrono_literals;
using klock::env::futex_owner_died;
using klock::env::futex_tid_mask;
using klock::env::futex_waiters;
using os = klock::env::os;

std::uint32_t my_tid() { return static_cast<std::uint32_t>(os::task_pid(os::current())); }

// Polls `pred` until it holds or `limit` passes.
template <class Pred> bool eventually(Pred pred, std::chrono::milliseconds limit = 3000ms)
{
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        std::this_thread::sleep_for(100us);
    }
    return true;
}

double ms_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// True once thread `tid` of this process sleeps (state S in /proc). A waiter marks the PI word
// (FUTEX_WAITERS) a moment before it is queued on the kernel's rt_mutex; the kernel's deadlock
// detection only sees it once queued.
bool sleeping(int tid)
{
    std::FILE* f = std::fopen(("/proc/self/task/" + std::to_string(tid) + "/stat").c_str(), "r");
    if (f == nullptr)
        return false;
    char buf[512] = {};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    const char* paren = std::strrchr(buf, ')'); // comm may contain spaces
    return n > 0 && paren != nullptr && paren[1] == ' ' && paren[2] == 'S';
}

// Deliberate misuse, hidden from clang's static analysis (which would rightly reject it).
template <class M> void misuse_lock(M& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.lock(); }
template <class M> void misuse_unlock(M& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.unlock(); }
template <class M> bool misuse_try_lock_for(M& m, std::chrono::milliseconds d) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    return m.try_lock_for(d);
}
template <class M> bool misuse_try_lock(M& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { return m.try_lock(); }

TEST(RtMutex, IsThePiFutexWord)
{
#if KLOCK_LOCKDEP // lockdep's 32-byte map comes on top of the word
    static_assert(sizeof(klock::rt_mutex) == 4 + 4 + sizeof(klock::lockdep_map)); // + padding
#else
    static_assert(sizeof(klock::rt_mutex) == 4);
#endif
    static_assert(!std::is_copy_constructible_v<klock::rt_mutex>);
    static_assert(std::is_nothrow_default_constructible_v<klock::rt_mutex>);
    static constinit klock::rt_mutex static_lock; // constexpr constructor
    EXPECT_EQ(static_lock.raw(), 0u);
    klock::rt_mutex m;
    EXPECT_FALSE(m.is_locked());
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, LockStoresOwnerTid)
{
    klock::rt_mutex m;
    m.lock();
    EXPECT_EQ(m.raw(), my_tid()); // TID, no flags: nobody waits
    EXPECT_TRUE(m.is_locked());
    EXPECT_EQ(m.owner_tid(), static_cast<int>(::gettid()));
    EXPECT_FALSE(m.has_waiters());
    m.unlock();
    EXPECT_EQ(m.raw(), 0u);
    EXPECT_FALSE(m.is_locked());
}

TEST(RtMutex, TryLock)
{
    klock::rt_mutex m;
    const bool ok = m.try_lock();
    ASSERT_TRUE(ok);
    EXPECT_EQ(m.raw(), my_tid());

    // Held by another thread: fails at once and leaves the word alone.
    bool other = true;
    std::thread([&] {
        other = misuse_try_lock(m);
        if (other)
            misuse_unlock(m);
    }).join();
    EXPECT_FALSE(other);
    EXPECT_EQ(m.raw(), my_tid());

    // Held by the caller: a trylock cannot deadlock, so it just fails, silently.
    klock::report_capture cap;
    EXPECT_FALSE(misuse_try_lock(m));
    EXPECT_EQ(cap.count(), 0u);
    m.unlock();
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, WorksWithStdLocks)
{
    klock::rt_mutex m;
    {
        std::unique_lock<klock::rt_mutex> ul(m, 10ms); // TimedLockable
        EXPECT_TRUE(ul.owns_lock());
        EXPECT_TRUE(m.is_locked());
    }
    EXPECT_FALSE(m.is_locked());
    {
        std::scoped_lock g(m);
        EXPECT_TRUE(m.is_locked());
    }
    EXPECT_FALSE(m.is_locked());
}

TEST(RtMutex, SleepingWaiterSetsFutexWaitersAndGetsTheLockHandedOver)
{
    klock::test::watchdog dog(10s, "rt_mutex waiters bit");
    klock::rt_mutex m;
    m.lock();
    std::atomic<std::uint32_t> waiter_tid{0};
    std::atomic<std::uint32_t> seen_by_waiter{0};
    std::atomic<bool> release{false};
    std::thread waiter([&] {
        waiter_tid = my_tid();
        m.lock();
        seen_by_waiter = m.raw();
        while (!release.load())
            std::this_thread::sleep_for(100us);
        m.unlock();
    });
    // The waiter spins briefly, then sleeps in FUTEX_LOCK_PI, which marks the word.
    ASSERT_TRUE(eventually([&] { return m.has_waiters(); })) << std::hex << m.raw();
    EXPECT_EQ(m.raw(), my_tid() | futex_waiters);
    m.unlock(); // FUTEX_UNLOCK_PI: the kernel writes the waiter's TID into the word
    EXPECT_EQ(m.raw() & futex_tid_mask, waiter_tid.load()) << "the lock was not handed to the sleeper";
    release = true;
    waiter.join();
    // Its own TID. The kernel's hand-over always sets FUTEX_WAITERS (it does not know whether
    // more sleepers follow), so the new owner's unlock goes through the kernel too.
    EXPECT_EQ(seen_by_waiter.load() & futex_tid_mask, waiter_tid.load());
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, StressSixThreadsOnTwoCores)
{
    klock::test::watchdog dog(30s, "rt_mutex stress");
    klock::rt_mutex m;
    std::atomic<int> overlaps{0};
    constexpr int threads = 6, iters = 20000;
    EXPECT_EQ(klock::test::hammer(m, threads, iters, &overlaps), std::uint64_t(threads) * iters);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, StressWithTimedAndTryLocks)
{
    klock::test::watchdog dog(30s, "rt_mutex mixed stress");
    klock::rt_mutex m;
    std::uint64_t counter = 0;
    std::atomic<int> inside{0}, overlaps{0};
    std::atomic<std::uint64_t> taken{0};
    klock::test::run_threads(4, [&](int id) KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        for (int i = 0; i < 5000; ++i) {
            bool ok = true;
            if (id == 1)
                ok = m.try_lock();
            else if (id == 2)
                ok = m.try_lock_for(50us);
            else
                m.lock();
            if (!ok)
                continue;
            if (inside.fetch_add(1) != 0)
                overlaps.fetch_add(1);
            ++counter;
            inside.fetch_sub(1);
            m.unlock();
            taken.fetch_add(1, std::memory_order_relaxed);
        }
    });
    EXPECT_EQ(counter, taken.load());
    EXPECT_GE(counter, 2u * 5000u); // the two lock() threads never fail
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, TimedLockTimesOut)
{
    klock::test::watchdog dog(10s, "rt_mutex timed lock");
    klock::rt_mutex m;
    m.lock();
    bool got = true;
    double waited = 0;
    std::thread([&] {
        const auto t0 = std::chrono::steady_clock::now();
        got = misuse_try_lock_for(m, 30ms);
        waited = ms_since(t0);
        if (got)
            misuse_unlock(m);
    }).join();
    EXPECT_FALSE(got);
    EXPECT_GE(waited, 29.0);
    EXPECT_LT(waited, 2000.0);
    EXPECT_EQ(m.raw() & futex_tid_mask, my_tid()); // still ours
    m.unlock();
    EXPECT_EQ(m.raw(), 0u); // a stale FUTEX_WAITERS is cleared by the unlock

    // Deadline in the past, or zero timeout, on a held lock: fails without sleeping.
    m.lock();
    std::thread([&] {
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_FALSE(misuse_try_lock_for(m, 0ms));
        EXPECT_FALSE(m.try_lock_until(os::now_ns() - 1000000));
        EXPECT_FALSE(m.try_lock_until(std::chrono::steady_clock::now() - 1ms));
        EXPECT_LT(ms_since(t0), 1000.0);
    }).join();
    m.unlock();
}

TEST(RtMutex, TimedLockSucceeds)
{
    klock::test::watchdog dog(10s, "rt_mutex timed lock success");
    klock::rt_mutex m;
    {
        const bool ok = m.try_lock_until(os::now_ns() + 1000000);
        ASSERT_TRUE(ok);
        EXPECT_EQ(m.raw(), my_tid());
        m.unlock();
    }
    m.lock();
    bool got = false;
    std::uint32_t seen = 0;
    std::thread t([&] {
        got = m.try_lock_until(std::chrono::steady_clock::now() + 5s);
        if (got) {
            seen = m.raw();
            m.unlock();
        }
    });
    ASSERT_TRUE(eventually([&] { return m.has_waiters(); }));
    m.unlock();
    t.join();
    EXPECT_TRUE(got);
    EXPECT_NE(seen & futex_tid_mask, 0u);
    EXPECT_NE(seen & futex_tid_mask, my_tid());
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, RecursionIsReportedNotHung)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(10s, "rt_mutex recursion");
    klock::rt_mutex m;
    m.lock();
    {
        klock::report_capture cap;
        misuse_lock(m); // would sleep forever on itself
        ASSERT_EQ(cap.count(), 1u);
        const std::string r = cap.reports()[0];
        EXPECT_NE(r.find("BUG: rt_mutex recursion on CPU#"), std::string::npos) << r;
        EXPECT_NE(r.find("-EDEADLK"), std::string::npos) << r;
        EXPECT_NE(r.find(".owner: " + std::string(os::task_comm(os::current())) + "/" + std::to_string(my_tid())),
            std::string::npos)
            << r;
        EXPECT_EQ(m.raw(), my_tid()); // held once, unchanged
    }
    {
        klock::report_capture cap;
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_FALSE(misuse_try_lock_for(m, 2000ms)); // would time out; reported at once
        EXPECT_LT(ms_since(t0), 1000.0);
        EXPECT_TRUE(cap.contains("BUG: rt_mutex recursion"));
        EXPECT_EQ(m.raw(), my_tid());
    }
    klock::report_capture cap;
    m.unlock(); // the one unlock matching the one real acquisition
    EXPECT_EQ(m.raw(), 0u);
    EXPECT_EQ(cap.count(), 0u);
}

TEST(RtMutex, UnlockOfUnlockedIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::rt_mutex m;
    klock::report_capture cap;
    misuse_unlock(m);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rt_mutex already unlocked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: <none>/-1"), std::string::npos) << r;
    EXPECT_EQ(m.raw(), 0u);

    // Double unlock: the second one is the bug.
    m.lock();
    m.unlock();
    misuse_unlock(m);
    EXPECT_EQ(cap.count(), 2u);
    EXPECT_EQ(m.raw(), 0u);
    m.lock(); // still usable
    EXPECT_EQ(m.raw(), my_tid());
    m.unlock();
}

TEST(RtMutex, UnlockByNonOwnerIsReportedAndChangesNothing)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(10s, "rt_mutex wrong owner");
    using E = klock::test::counting_env;
    klock::basic_rt_mutex<E> m;
    m.lock();
    const std::uint32_t owner = my_tid();
    // A sleeper too, so that a wrong FUTEX_UNLOCK_PI would be visible (-EPERM, or worse).
    std::thread waiter([&] {
        m.lock();
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return m.has_waiters(); }));
    klock::report_capture cap;
    std::uint64_t futex_before = 0, futex_after = 0;
    int intruder = 0;
    std::thread([&] {
        intruder = os::task_pid(os::current());
        futex_before = E::futex_calls.load();
        misuse_unlock(m);
        futex_after = E::futex_calls.load();
    }).join();
    EXPECT_EQ(futex_after, futex_before) << "the kernel was asked to unlock for a non-owner";
    EXPECT_EQ(m.raw(), owner | futex_waiters);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rt_mutex wrong owner on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(intruder) + "\n"), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: ?/" + std::to_string(owner)), std::string::npos) << r;
    EXPECT_NE(r.find("FUTEX_WAITERS"), std::string::npos) << r;
    m.unlock();
    waiter.join();
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, DestroyWhileLockedIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::report_capture cap;
    {
        std::optional<klock::rt_mutex> m;
        m.emplace();
        misuse_lock(*m);
        m.reset();
    }
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("BUG: rt_mutex destroyed while locked"), std::string::npos) << cap.reports()[0];
    {
        klock::rt_mutex m2;
        m2.lock();
        m2.unlock();
    }
    EXPECT_EQ(cap.count(), 1u); // an unlocked lock dies quietly
}

TEST(RtMutex, LockInAtomicContextIsReportedByMightSleep)
{
    klock::rt_mutex m;
    klock::report_capture cap;
    klock::preempt_disable();
    const bool ok = m.try_lock(); // never sleeps: no complaint
    if (ok)
        m.unlock();
    EXPECT_EQ(cap.count(), 0u);
    m.lock();
    m.unlock();
    klock::preempt_enable();
    ASSERT_GE(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("BUG: sleeping function called from invalid context at"));
    EXPECT_TRUE(cap.contains("rt_mutex.hpp"));
}

// ABBA through two rt_mutexes: the kernel's chain walk finds the cycle; a timed lock fails.
TEST(RtMutex, CircularWaitIsReportedByTheKernel)
{
    klock::test::watchdog dog(10s, "rt_mutex ABBA (timed)");
    klock::rt_mutex a, b;
    std::atomic<bool> holds_a{false};
    std::atomic<int> t1_tid{0};
    b.lock();
    std::thread t1([&] {
        t1_tid = os::task_pid(os::current());
        klock::lock_guard<klock::rt_mutex> ga(a);
        holds_a = true;
        klock::lock_guard<klock::rt_mutex> gb(b); // sleeps: b is ours
    });
    ASSERT_TRUE(eventually([&] { return holds_a.load() && b.has_waiters() && sleeping(t1_tid.load()); }));
    klock::report_capture cap;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(misuse_try_lock_for(a, 3000ms)); // a's owner waits for b, which we hold
    EXPECT_LT(ms_since(t0), 2000.0);
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("BUG: rt_mutex deadlock"), std::string::npos) << cap.reports()[0];
    EXPECT_NE(cap.reports()[0].find("-EDEADLK"), std::string::npos) << cap.reports()[0];
    b.unlock(); // break the cycle
    t1.join();
    EXPECT_EQ(a.raw(), 0u);
    EXPECT_EQ(b.raw(), 0u);
}

// Same cycle closed by lock(): reported once, and lock() goes on trying, so that it gets the
// lock when the other side gives up (here: its timed lock expires).
TEST(RtMutex, CircularWaitInLockIsReportedAndRetried)
{
    klock::test::watchdog dog(10s, "rt_mutex ABBA (lock)");
    klock::rt_mutex a, b;
    std::atomic<bool> holds_a{false};
    std::atomic<bool> t1_got_b{true};
    std::atomic<int> t1_tid{0};
    b.lock();
    std::thread t1([&] {
        t1_tid = os::task_pid(os::current());
        klock::lock_guard<klock::rt_mutex> ga(a);
        holds_a = true;
        const bool ok = b.try_lock_for(300ms);
        t1_got_b = ok;
        if (ok)
            b.unlock();
    });
    ASSERT_TRUE(eventually([&] { return holds_a.load() && b.has_waiters() && sleeping(t1_tid.load()); }));
    klock::report_capture cap;
    a.lock(); // -EDEADLK; reported; retried until t1 times out and drops a
    EXPECT_EQ(a.raw() & futex_tid_mask, my_tid());
    a.unlock();
    b.unlock();
    t1.join();
    EXPECT_FALSE(t1_got_b.load());
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("BUG: rt_mutex deadlock"));
}

TEST(RtMutex, OwnerThatExitedHoldingItIsReportedAndTakenOver)
{
    klock::test::watchdog dog(10s, "rt_mutex dead owner");
    klock::rt_mutex m;
    int dead = 0;
    std::thread([&] {
        dead = os::task_pid(os::current());
        misuse_lock(m); // and exit without unlocking
    }).join();
    EXPECT_EQ(m.owner_tid(), dead);
    klock::report_capture cap;
    m.lock(); // FUTEX_LOCK_PI answers -ESRCH: no such owner
    EXPECT_EQ(m.raw() & futex_tid_mask, my_tid());
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rt_mutex owner died"), std::string::npos) << r;
    EXPECT_NE(r.find("-ESRCH"), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: ?/" + std::to_string(dead)), std::string::npos) << r;
    m.unlock();
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, RobustHandOverWithOwnerDiedIsReportedAndAcquired)
{
    klock::test::watchdog dog(10s, "rt_mutex OWNER_DIED");
    klock::rt_mutex m;
    // What the kernel's robust-list walk leaves behind: no owner, FUTEX_OWNER_DIED.
    m.native_handle().store(futex_owner_died);
    {
        klock::report_capture cap;
        m.lock();
        EXPECT_EQ(m.raw(), my_tid()); // taken, and the bit cleared
        ASSERT_EQ(cap.count(), 1u);
        EXPECT_NE(cap.reports()[0].find("BUG: rt_mutex owner died"), std::string::npos);
        EXPECT_NE(cap.reports()[0].find("FUTEX_OWNER_DIED"), std::string::npos);
        m.unlock();
        EXPECT_EQ(m.raw(), 0u);
    }
    m.native_handle().store(futex_owner_died);
    {
        klock::report_capture cap;
        const bool ok = m.try_lock(); // only the kernel may take an ownerless flagged word
        ASSERT_TRUE(ok);
        EXPECT_EQ(m.raw(), my_tid());
        EXPECT_EQ(cap.count(), 1u);
        m.unlock();
    }
    EXPECT_EQ(m.raw(), 0u);
}

TEST(RtMutex, CountingEnvSeesAtomicsAndFutexCalls)
{
    klock::test::watchdog dog(20s, "rt_mutex over counting_env");
    using E = klock::test::counting_env;
    klock::basic_rt_mutex<E> m;
    E::reset();
    m.lock();
    m.unlock();
    EXPECT_GE(E::atomic_ops.load(), 2u); // fast paths: one CAS each
    EXPECT_EQ(E::futex_calls.load(), 0u);

    // A sleeper: FUTEX_LOCK_PI and FUTEX_UNLOCK_PI, both through the Env.
    m.lock();
    std::thread waiter([&] {
        m.lock();
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return m.has_waiters(); }));
    m.unlock();
    waiter.join();
    EXPECT_GE(E::futex_calls.load(), 2u);

    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(m, 4, 5000, &overlaps), 20000u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.raw(), 0u);
}

} // namespace

#if defined(__clang__)
#pragma clang diagnostic pop
#endif

// Correct use must pass clang's -Wthread-safety without a single warning.
namespace {

class annotated_counter {
public:
    void add()
    {
        klock::lock_guard<klock::rt_mutex> g(lock_);
        ++value_;
    }
    bool try_add()
    {
        if (!lock_.try_lock())
            return false;
        ++value_;
        lock_.unlock();
        return true;
    }
    bool add_within(std::chrono::milliseconds d)
    {
        if (!lock_.try_lock_for(d))
            return false;
        ++value_;
        lock_.unlock();
        return true;
    }
    int get()
    {
        lock_.lock();
        const int v = value_;
        lock_.unlock();
        return v;
    }

private:
    klock::rt_mutex lock_;
    int value_ KLOCK_GUARDED_BY(lock_) = 0;
};

TEST(RtMutex, ThreadSafetyAnnotations)
{
    annotated_counter c;
    c.add();
    EXPECT_TRUE(c.try_add());
    EXPECT_TRUE(c.add_within(10ms));
    EXPECT_EQ(c.get(), 3);
}

} // namespace
