// The kernel-semantics spinlock layer (klock/spinlock.hpp) over both arch locks:
// preempt_count, irq and bh variants, guards, debug reports, Env instantiation, stress.
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/report.hpp>
#include <klock/spinlock.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <new>
#include <pthread.h>
#include <string>
#include <thread>
#include <type_traits>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

namespace {

using namespace std::chrono_literals;

static_assert(std::is_same_v<klock::spinlock, klock::qspinlock>);
static_assert(std::is_same_v<klock::qspinlock, klock::basic_qspinlock<klock::env::os>>);
static_assert(std::is_same_v<klock::ticket_spinlock, klock::basic_ticket_spinlock<klock::env::os>>);
// The debug owner sits beside the 4-byte arch word (CONFIG_DEBUG_SPINLOCK-style).
#if KLOCK_LOCKDEP // lockdep adds its 32-byte lockdep_map
static_assert(sizeof(klock::spinlock) == 16 + sizeof(klock::lockdep_map));
#else
static_assert(sizeof(klock::spinlock) == 16 && sizeof(klock::ticket_spinlock) == 16);
#endif
static_assert(!std::is_copy_constructible_v<klock::spinlock>);
static_assert(std::is_nothrow_default_constructible_v<klock::spinlock>);

using klock::test::wait_until;

bool has(const klock::report_capture& cap, const std::string& needle) { return cap.contains(needle); }

template <class L> class Spinlock : public ::testing::Test { };
using Flavours = ::testing::Types<klock::qspinlock, klock::ticket_spinlock>;
TYPED_TEST_SUITE(Spinlock, Flavours);

TYPED_TEST(Spinlock, LockRaisesPreemptCountUntilUnlock)
{
    TypeParam l;
    ASSERT_EQ(klock::preempt_count(), 0u);
    l.lock();
    EXPECT_EQ(klock::preempt_count(), 1u);
    EXPECT_TRUE(klock::in_atomic());
    EXPECT_TRUE(l.is_locked());
    EXPECT_TRUE(l.held_by_current());
    l.unlock();
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(l.owner(), nullptr);
}

TYPED_TEST(Spinlock, TryLockTakesOrLeavesPreemptCountAlone)
{
    TypeParam l;
    if (!l.try_lock())
        return ADD_FAILURE() << "try_lock failed on a free lock";
    EXPECT_EQ(klock::preempt_count(), 1u);
    bool other = true;
    std::uint32_t other_pc = 99;
    std::thread([&] {
        other = l.try_lock();
        other_pc = klock::preempt_count();
    }).join();
    EXPECT_FALSE(other);
    EXPECT_EQ(other_pc, 0u); // the failed trylock undid its preempt_disable
    l.unlock();
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TYPED_TEST(Spinlock, IrqsaveDisablesAndRestores)
{
    TypeParam l;
    ASSERT_FALSE(klock::irqs_disabled());
    klock::irq_flags f = l.lock_irqsave();
    EXPECT_TRUE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.unlock_irqrestore(f);
    EXPECT_FALSE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 0u);

    // Nested inside an irqs-off section, restore must keep them off.
    klock::irq_flags outer = klock::local_irq_save();
    f = l.lock_irqsave();
    l.unlock_irqrestore(f);
    EXPECT_TRUE(klock::irqs_disabled());
    klock::local_irq_restore(outer);
    EXPECT_FALSE(klock::irqs_disabled());
}

TYPED_TEST(Spinlock, TryLockIrqsaveRestoresOnFailure)
{
    TypeParam l;
    klock::irq_flags f = 0;
    if (!l.try_lock_irqsave(f))
        return ADD_FAILURE() << "try_lock_irqsave failed on a free lock";
    EXPECT_TRUE(klock::irqs_disabled());
    bool other = true, other_irqs_off = true;
    std::thread([&] {
        klock::irq_flags g = 0;
        other = l.try_lock_irqsave(g);
        other_irqs_off = klock::irqs_disabled();
    }).join();
    EXPECT_FALSE(other);
    EXPECT_FALSE(other_irqs_off);
    l.unlock_irqrestore(f);
    EXPECT_FALSE(klock::irqs_disabled());
}

TYPED_TEST(Spinlock, LockIrqAndLockBh)
{
    TypeParam l;
    l.lock_irq();
    EXPECT_TRUE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.unlock_irq();
    EXPECT_FALSE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 0u);

    l.lock_bh();
    EXPECT_EQ(klock::preempt_count(), klock::SOFTIRQ_DISABLE_OFFSET + klock::PREEMPT_OFFSET); // 0x201
    EXPECT_TRUE(klock::in_softirq());
    l.unlock_bh();
    EXPECT_EQ(klock::preempt_count(), 0u);

    if (!l.try_lock_bh())
        return ADD_FAILURE() << "try_lock_bh failed on a free lock";
    EXPECT_EQ(klock::preempt_count(), 0x201u);
    l.unlock_bh();
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TYPED_TEST(Spinlock, Guards)
{
    TypeParam l;
    {
        klock::spin_lock_irqsave_guard<TypeParam> g(l);
        EXPECT_TRUE(l.is_locked());
        EXPECT_TRUE(klock::irqs_disabled());
        EXPECT_EQ(g.flags(), 0u);
    }
    EXPECT_FALSE(l.is_locked());
    EXPECT_FALSE(klock::irqs_disabled());
    {
        klock::spin_lock_irq_guard<TypeParam> g(l);
        EXPECT_TRUE(klock::irqs_disabled());
    }
    {
        klock::spin_lock_bh_guard<TypeParam> g(l);
        EXPECT_TRUE(klock::in_softirq());
    }
    {
        klock::lock_guard<TypeParam> g(l);
        EXPECT_EQ(klock::preempt_count(), 1u);
    }
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_FALSE(l.is_locked());
}

TYPED_TEST(Spinlock, StressMoreThreadsThanCoresCheckingPreemptCount)
{
    klock::test::watchdog dog(30s, "spinlock stress");
    TypeParam l;
    // The ticket lock hands over to preempted waiters: keep its share small.
    const int iters = std::is_same_v<TypeParam, klock::ticket_spinlock> ? 150 : 10000;
    std::uint64_t counter = 0;
    std::atomic<int> inside{0}, overlaps{0}, bad_pc{0};
    klock::test::run_threads(4, [&](int) {
        for (int i = 0; i < iters; ++i) {
            l.lock();
            if (inside.fetch_add(1, std::memory_order_relaxed) != 0)
                overlaps++;
            if (klock::preempt_count() != 1)
                bad_pc++;
            ++counter;
            inside.fetch_sub(1, std::memory_order_relaxed);
            l.unlock();
        }
        if (klock::preempt_count() != 0)
            bad_pc++;
    });
    EXPECT_EQ(counter, 4u * static_cast<std::uint64_t>(iters));
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(bad_pc.load(), 0);
}

// ---- misuse reports ----
// (Thread-safety analysis off: these deliberately break the locking rules.)

template <class L> void unlock_unlocked(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock(); }
template <class L> void lock_twice(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    l.lock();
    l.lock();
}
template <class L> void unlock_once(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock(); }
template <class L> void lock_once(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock(); }

TYPED_TEST(Spinlock, ReportsAlreadyUnlockedAndStaysUsable)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    TypeParam l;
    const std::uint32_t before = l.raw();
    {
        klock::report_capture cap;
        unlock_unlocked(l);
        ASSERT_EQ(cap.count(), 1u);
        const std::string r = cap.reports()[0];
        EXPECT_NE(r.find("BUG: spinlock already unlocked on CPU#"), std::string::npos) << r;
        EXPECT_NE(r.find(".owner: <none>/-1"), std::string::npos) << r;
    }
    EXPECT_EQ(l.raw(), before); // unchanged
    EXPECT_EQ(klock::preempt_count(), 0u);
    l.lock();
    l.unlock();
    EXPECT_FALSE(l.is_locked());
}

template <class L> void unlock_irqrestore_(L& l, klock::irq_flags f) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    l.unlock_irqrestore(f);
}

TYPED_TEST(Spinlock, MisusedUnlockIrqrestoreStillRestoresInterrupts)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    TypeParam l;
    klock::irq_flags f = klock::local_irq_save();
    {
        klock::report_capture cap;
        unlock_irqrestore_(l, f);
        EXPECT_EQ(cap.count(), 1u);
        EXPECT_TRUE(has(cap, "BUG: spinlock already unlocked"));
    }
    EXPECT_FALSE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_FALSE(l.is_locked());
}

TYPED_TEST(Spinlock, ReportsWrongOwnerAndKeepsTheHold)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(20s, "wrong owner");
    TypeParam l;
    std::atomic<int> step{0};
    std::atomic<int> owner_pid{0};
    std::thread holder([&] {
        pthread_setname_np(pthread_self(), "holder");
        l.lock();
        owner_pid = klock::env::os::task_pid(klock::env::os::current());
        step = 1;
        while (step != 2)
            std::this_thread::yield();
        l.unlock();
        step = 3;
    });
    ASSERT_TRUE(wait_until([&] { return step == 1; }));
    const std::uint32_t before = l.raw();
    {
        klock::report_capture cap;
        unlock_unlocked(l);
        ASSERT_EQ(cap.count(), 1u);
        const std::string r = cap.reports()[0];
        EXPECT_NE(r.find("BUG: spinlock wrong owner on CPU#"), std::string::npos) << r;
        EXPECT_NE(r.find(".owner: holder/" + std::to_string(owner_pid.load())), std::string::npos) << r;
    }
    EXPECT_EQ(l.raw(), before);
    EXPECT_TRUE(l.is_locked()); // still the holder's
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_FALSE(l.try_lock());
    step = 2;
    ASSERT_TRUE(wait_until([&] { return step == 3; }));
    holder.join();
    EXPECT_FALSE(l.is_locked());
    l.lock();
    l.unlock();
}

TYPED_TEST(Spinlock, ReportsRecursionInsteadOfDeadlocking)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(20s, "recursion");
    TypeParam l;
    {
        klock::report_capture cap;
        lock_twice(l); // would spin forever without the check
        ASSERT_EQ(cap.count(), 1u);
        EXPECT_TRUE(has(cap, "BUG: spinlock recursion on CPU#"));
    }
    EXPECT_EQ(klock::preempt_count(), 2u); // both lock() calls raised it
    EXPECT_TRUE(l.held_by_current());
    const std::uint32_t held = l.raw();
    unlock_once(l); // pairs with the refused lock(): the real hold stays
    EXPECT_EQ(l.raw(), held);
    EXPECT_TRUE(l.held_by_current());
    EXPECT_EQ(klock::preempt_count(), 1u);
    bool other = true;
    std::thread([&] { other = l.try_lock(); }).join();
    EXPECT_FALSE(other);
    unlock_once(l);
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
    klock::report_capture cap;
    l.lock();
    l.unlock();
    EXPECT_EQ(cap.count(), 0u);
}

TYPED_TEST(Spinlock, ReportsSuspectedLockupOnceNamingTheOwnerAndKeepsWaiting)
{
    klock::test::watchdog dog(20s, "lockup");
    TypeParam l;
    const std::uint64_t old_threshold = klock::spin_lockup_threshold_ns();
    klock::set_spin_lockup_threshold_ns(20000000); // 20 ms
    klock::report_capture cap;
    std::atomic<int> step{0};
    std::atomic<int> owner_pid{0};
    std::thread holder([&] {
        pthread_setname_np(pthread_self(), "slowpoke");
        l.lock();
        owner_pid = klock::env::os::task_pid(klock::env::os::current());
        step = 1;
        while (step != 2)
            std::this_thread::yield();
        l.unlock();
    });
    ASSERT_TRUE(wait_until([&] { return step == 1; }));
    std::atomic<bool> got{false};
    std::thread waiter([&] {
        l.lock();
        got = true;
        l.unlock();
    });
    ASSERT_TRUE(wait_until([&] { return cap.count() >= 1; }, 5000ms));
    std::this_thread::sleep_for(150ms); // several more thresholds: still one report
    EXPECT_FALSE(got.load());
    step = 2;
    holder.join();
    waiter.join();
    EXPECT_TRUE(got.load());
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: spinlock lockup suspected on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: slowpoke/" + std::to_string(owner_pid.load())), std::string::npos) << r;
    klock::set_spin_lockup_threshold_ns(old_threshold);
    EXPECT_FALSE(l.is_locked());
}

TYPED_TEST(Spinlock, ReportsDestroyWhileHeld)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    alignas(TypeParam) unsigned char storage[sizeof(TypeParam)];
    TypeParam* l = ::new (storage) TypeParam;
    lock_once(*l);
    klock::report_capture cap;
    l->~TypeParam();
    klock::preempt_enable(); // the lock() we can no longer pair
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_TRUE(has(cap, "BUG: spinlock destroyed while held on CPU#"));
}

// ---- the layer over a counting Env: every atomic goes through it ----

template <class L> class SpinlockEnv : public ::testing::Test { };
using CountedFlavours = ::testing::Types<klock::basic_qspinlock<klock::test::counting_env>,
    klock::basic_ticket_spinlock<klock::test::counting_env>>;
TYPED_TEST_SUITE(SpinlockEnv, CountedFlavours);

TYPED_TEST(SpinlockEnv, AtomicsGoThroughTheEnvAndTheLockWorks)
{
    using E = klock::test::counting_env;
    klock::test::watchdog dog(30s, "spinlock counting_env");
    TypeParam l;
    E::reset();
    l.lock();
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.unlock();
    EXPECT_GE(E::atomic_ops.load(), 4u); // arch lock + owner store + owner load + arch unlock
    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(l, 3, 150, &overlaps), 450u);
    EXPECT_EQ(overlaps.load(), 0);
    {
        klock::irq_flags f = l.lock_irqsave();
        EXPECT_TRUE(klock::irqs_disabled());
        l.unlock_irqrestore(f);
    }
    EXPECT_EQ(klock::preempt_count(), 0u);
}

} // namespace
