// rwlock_t over the queued rwlock: word layout, reader sharing, writer exclusion and
// fairness, interrupt-context read recursion, preempt/irq semantics, misuse, stress.
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/report.hpp>
#include <klock/rwlock.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

namespace {

using namespace std::chrono_literals;
using os = klock::env::os;
using namespace klock::arch;

static_assert(sizeof(qrwlock<os>) == 8);
#if KLOCK_LOCKDEP // lockdep adds its 32-byte lockdep_map
static_assert(sizeof(klock::rwlock) == 16 + sizeof(klock::lockdep_map));
#else
static_assert(sizeof(klock::rwlock) == 16);
#endif
static_assert(!std::is_copy_constructible_v<klock::rwlock>);
static_assert(std::is_nothrow_default_constructible_v<klock::rwlock>);

using klock::test::wait_until;

// For conditions checked while a lock is held: failing must not return early (which would
// leave the lock held and the other threads stuck), so it aborts the program instead.
#define REQUIRE_OR_ABORT(cond)                                                                                         \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            std::fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);                        \
            std::abort();                                                                                              \
        }                                                                                                              \
    } while (0)

// Deliberate recursion and misuse, hidden from clang's thread-safety analysis.
template <class L> void read_unlock_(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.read_unlock(); }
template <class L> void write_unlock_(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.write_unlock(); }
template <class L> void write_lock_(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.write_lock(); }
template <class L> void read_lock_(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.read_lock(); }
template <class L> bool read_trylock_(L& l) KLOCK_NO_THREAD_SAFETY_ANALYSIS { return l.read_trylock(); }

TEST(Qrwlock, KernelLayout)
{
    static_assert(Q_W_LOCKED == 0xffu && Q_W_WAITING == 0x100u && Q_R_BIAS == 0x200u);
    qrwlock<os> l;
    l.read_lock();
    EXPECT_EQ(l.raw(), Q_R_BIAS);
    EXPECT_TRUE(l.try_read_lock());
    EXPECT_EQ(l.raw(), 2 * Q_R_BIAS);
    EXPECT_EQ(l.readers(), 2u);
    EXPECT_FALSE(l.try_write_lock());
    l.read_unlock();
    l.read_unlock();
    EXPECT_EQ(l.raw(), 0u);
    l.write_lock();
    EXPECT_EQ(l.raw(), Q_W_LOCKED);
    EXPECT_TRUE(l.is_write_locked());
    EXPECT_FALSE(l.try_read_lock());
    EXPECT_EQ(l.raw(), Q_W_LOCKED); // a failed read trylock backs its bias out
    EXPECT_FALSE(l.try_write_lock());
    l.write_unlock();
    EXPECT_EQ(l.raw(), 0u);
}

TEST(Rwlock, ReadersShareWritersExclude)
{
    klock::rwlock l;
    l.read_lock();
    bool other_read = false, other_write = true;
    std::thread([&] {
        if (l.read_trylock()) {
            other_read = true;
            l.read_unlock();
        }
        other_write = l.write_trylock();
    }).join();
    EXPECT_TRUE(other_read);
    EXPECT_FALSE(other_write);
    EXPECT_EQ(l.readers(), 1u);
    l.read_unlock();
    l.write_lock();
    EXPECT_TRUE(l.is_write_locked());
    EXPECT_EQ(l.write_owner(), os::current());
    std::thread([&] {
        other_read = l.read_trylock();
        other_write = l.write_trylock();
    }).join();
    EXPECT_FALSE(other_read);
    EXPECT_FALSE(other_write);
    l.write_unlock();
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(l.write_owner(), nullptr);
}

TEST(Rwlock, PreemptCountAndIrqVariants)
{
    klock::rwlock l;
    l.read_lock();
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.read_unlock();
    l.write_lock();
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.write_unlock();
    EXPECT_EQ(klock::preempt_count(), 0u);

    klock::irq_flags f = l.read_lock_irqsave();
    EXPECT_TRUE(klock::irqs_disabled());
    l.read_unlock_irqrestore(f);
    EXPECT_FALSE(klock::irqs_disabled());
    f = l.write_lock_irqsave();
    EXPECT_TRUE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.write_unlock_irqrestore(f);
    EXPECT_FALSE(klock::irqs_disabled());

    l.read_lock_irq();
    EXPECT_TRUE(klock::irqs_disabled());
    l.read_unlock_irq();
    l.write_lock_irq();
    EXPECT_TRUE(klock::irqs_disabled());
    l.write_unlock_irq();
    EXPECT_FALSE(klock::irqs_disabled());

    l.read_lock_bh();
    EXPECT_EQ(klock::preempt_count(), 0x201u);
    l.read_unlock_bh();
    l.write_lock_bh();
    EXPECT_EQ(klock::preempt_count(), 0x201u);
    l.write_unlock_bh();
    EXPECT_EQ(klock::preempt_count(), 0u);

    klock::irq_flags outer = klock::local_irq_save();
    f = l.write_lock_irqsave();
    l.write_unlock_irqrestore(f);
    EXPECT_TRUE(klock::irqs_disabled()); // restored to "off"
    klock::local_irq_restore(outer);
    EXPECT_FALSE(l.is_locked());
}

TEST(Rwlock, StandardNamesAndGuards)
{
    klock::rwlock l;
    {
        std::shared_lock<klock::rwlock> r1(l);
        EXPECT_EQ(l.readers(), 1u);
        if (l.try_lock_shared())
            l.unlock_shared();
        else
            ADD_FAILURE() << "try_lock_shared failed on a read-held lock";
    }
    {
        std::unique_lock<klock::rwlock> w(l);
        EXPECT_TRUE(l.is_write_locked());
    }
    {
        klock::shared_lock_guard<klock::rwlock> r(l);
        EXPECT_EQ(l.readers(), 1u);
    }
    {
        klock::write_lock_irqsave_guard<klock::rwlock> w(l);
        EXPECT_TRUE(l.is_write_locked());
        EXPECT_TRUE(klock::irqs_disabled());
    }
    {
        klock::read_lock_irqsave_guard<klock::rwlock> r(l);
        EXPECT_EQ(l.readers(), 1u);
        EXPECT_TRUE(klock::irqs_disabled());
    }
    EXPECT_FALSE(klock::irqs_disabled());
    if (l.try_lock())
        l.unlock();
    else
        ADD_FAILURE() << "try_lock failed on a free lock";
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

// A waiting writer sets _QW_WAITING, turns new task-context readers away, gets the lock once
// the readers drain, and the turned-away reader gets it after the writer.
TEST(Rwlock, WaitingWriterBlocksNewReadersAndIsServedFirst)
{
    klock::test::watchdog dog(20s, "rwlock writer fairness");
    klock::rwlock l;
    l.read_lock();
    std::vector<int> order;
    std::mutex order_lock;
    auto record = [&](int who) {
        std::lock_guard<std::mutex> g(order_lock);
        order.push_back(who);
    };
    std::thread writer([&] {
        l.write_lock();
        record(1);
        l.write_unlock();
    });
    REQUIRE_OR_ABORT(wait_until([&] { return (l.raw() & Q_W_WAITING) != 0; }));
    EXPECT_FALSE(l.read_trylock()); // a writer is waiting
    std::thread reader([&] {
        l.read_lock();
        record(2);
        l.read_unlock();
    });
    REQUIRE_OR_ABORT(wait_until([&] { return l.arch().wait_lock().is_contended(); })); // queued behind the writer
    std::this_thread::sleep_for(20ms);
    {
        std::lock_guard<std::mutex> g(order_lock);
        EXPECT_TRUE(order.empty());
    }
    l.read_unlock();
    writer.join();
    reader.join();
    ASSERT_EQ(order.size(), 2u);
    EXPECT_EQ(order[0], 1);
    EXPECT_EQ(order[1], 2);
    EXPECT_FALSE(l.is_locked());
}

// In interrupt context a reader ignores a waiting writer, so a read_lock from an irq that
// interrupted a read-side section cannot deadlock (kernel qrwlock behaviour).
TEST(Rwlock, InterruptContextReaderRecursesPastAWaitingWriter)
{
    klock::test::watchdog dog(20s, "rwlock irq read recursion");
    klock::rwlock l;
    l.read_lock();
    std::thread writer([&] {
        l.write_lock();
        l.write_unlock();
    });
    REQUIRE_OR_ABORT(wait_until([&] { return (l.raw() & Q_W_WAITING) != 0; }));

    klock::kernel::preempt_count_add<os>(klock::HARDIRQ_OFFSET); // "in a hardirq"
    EXPECT_TRUE(klock::in_interrupt());
    read_lock_(l); // must not wait for the writer, which waits for us
    EXPECT_EQ(l.readers(), 2u);
    read_unlock_(l);
    klock::kernel::preempt_count_sub<os>(klock::HARDIRQ_OFFSET);

    if (read_trylock_(l)) { // task context still defers to the writer
        ADD_FAILURE() << "read_trylock succeeded past a waiting writer";
        read_unlock_(l);
    }
    l.read_unlock();
    writer.join();
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

// Readers and writers, more threads than cores: writers exclusive, readers never see a
// writer inside nor a half-done update.
template <class L> void rw_stress(L& l, int writers, int readers, int iters)
{
    std::uint64_t a = 0, b = 0;
    std::atomic<int> writers_inside{0}, readers_inside{0}, violations{0};
    std::atomic<std::uint64_t> reads{0};
    klock::test::run_threads(writers + readers, [&](int id) {
        for (int i = 0; i < iters; ++i) {
            if (id < writers) {
                l.lock();
                if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0)
                    violations++;
                ++a;
                ++b;
                writers_inside.fetch_sub(1);
                l.unlock();
            } else {
                l.lock_shared();
                readers_inside.fetch_add(1);
                if (writers_inside.load() != 0)
                    violations++;
                if (a != b)
                    violations++;
                reads.fetch_add(1, std::memory_order_relaxed);
                readers_inside.fetch_sub(1);
                l.unlock_shared();
            }
        }
    });
    EXPECT_EQ(a, static_cast<std::uint64_t>(writers) * static_cast<std::uint64_t>(iters));
    EXPECT_EQ(b, a);
    EXPECT_EQ(reads.load(), static_cast<std::uint64_t>(readers) * static_cast<std::uint64_t>(iters));
    EXPECT_EQ(violations.load(), 0);
}

TEST(Rwlock, StressReadersAndWritersMoreThreadsThanCores)
{
    klock::test::watchdog dog(30s, "rwlock stress");
    klock::rwlock l;
    rw_stress(l, 2, 4, 5000);
    EXPECT_FALSE(l.is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST(Rwlock, AtomicsGoThroughTheEnvAndTheLockWorks)
{
    using E = klock::test::counting_env;
    klock::test::watchdog dog(30s, "rwlock counting_env");
    klock::basic_rwlock<E> l;
    E::reset();
    l.read_lock();
    l.read_unlock();
    l.write_lock();
    l.write_unlock();
    EXPECT_GE(E::atomic_ops.load(), 4u);
    rw_stress(l, 2, 2, 1000);
    EXPECT_GT(E::atomic_ops.load(), 4000u);
    EXPECT_FALSE(l.is_locked());
}

// ---- misuse ----

TEST(Rwlock, ReportsReadUnlockWithoutReaders)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::rwlock l;
    {
        klock::report_capture cap;
        read_unlock_(l);
        EXPECT_EQ(cap.count(), 1u);
        EXPECT_TRUE(cap.contains("BUG: rwlock read_unlock without readers on CPU#"));
    }
    EXPECT_EQ(l.raw(), 0u);
    EXPECT_EQ(klock::preempt_count(), 0u);
    l.read_lock();
    l.read_unlock();
    l.write_lock();
    l.write_unlock();
    EXPECT_EQ(l.raw(), 0u);
}

TEST(Rwlock, ReportsWriteUnlockWhenNotWriteLocked)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::rwlock l;
    {
        klock::report_capture cap;
        write_unlock_(l);
        EXPECT_EQ(cap.count(), 1u);
        EXPECT_TRUE(cap.contains("BUG: rwlock already unlocked on CPU#"));
    }
    l.read_lock();
    {
        klock::report_capture cap;
        write_unlock_(l); // read-held: still not ours to write-unlock
        EXPECT_EQ(cap.count(), 1u);
        EXPECT_TRUE(cap.contains("BUG: rwlock already unlocked"));
    }
    EXPECT_EQ(l.raw(), Q_R_BIAS);
    EXPECT_EQ(klock::preempt_count(), 1u);
    l.read_unlock();
    EXPECT_EQ(l.raw(), 0u);
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST(Rwlock, ReportsWriteUnlockByNonOwner)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(20s, "rwlock wrong owner");
    klock::rwlock l;
    std::atomic<int> step{0};
    std::thread holder([&] {
        l.write_lock();
        step = 1;
        while (step != 2)
            std::this_thread::yield();
        l.write_unlock();
    });
    ASSERT_TRUE(wait_until([&] { return step == 1; }));
    {
        klock::report_capture cap;
        write_unlock_(l);
        EXPECT_EQ(cap.count(), 1u);
        EXPECT_TRUE(cap.contains("BUG: rwlock wrong owner on CPU#"));
    }
    EXPECT_EQ(l.raw(), Q_W_LOCKED);
    EXPECT_EQ(klock::preempt_count(), 0u);
    step = 2;
    holder.join();
    EXPECT_EQ(l.raw(), 0u);
    l.write_lock();
    l.write_unlock();
}

TEST(Rwlock, ReportsRecursionOnTheWriteHeldLock)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog dog(20s, "rwlock recursion");
    klock::rwlock l;
    l.write_lock();
    {
        klock::report_capture cap;
        write_lock_(l); // self-deadlock without the check
        read_lock_(l);  // likewise
        EXPECT_EQ(cap.count(), 2u);
        for (const std::string& r : cap.reports())
            EXPECT_NE(r.find("BUG: rwlock recursion on CPU#"), std::string::npos) << r;
    }
    EXPECT_EQ(l.raw(), Q_W_LOCKED);
    EXPECT_EQ(klock::preempt_count(), 3u);
    read_unlock_(l);  // pairs with the refused read_lock
    write_unlock_(l); // pairs with the refused write_lock
    EXPECT_EQ(l.raw(), Q_W_LOCKED);
    EXPECT_EQ(klock::preempt_count(), 1u);
    klock::report_capture cap;
    l.write_unlock();
    EXPECT_EQ(l.raw(), 0u);
    EXPECT_EQ(klock::preempt_count(), 0u);
    l.read_lock();
    l.read_unlock();
    EXPECT_EQ(cap.count(), 0u);
}

TEST(Rwlock, ReportsDestroyWhileHeld)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    alignas(klock::rwlock) unsigned char storage[sizeof(klock::rwlock)];
    klock::rwlock* l = ::new (storage) klock::rwlock;
    read_lock_(*l);
    klock::report_capture cap;
    l->~basic_rwlock();
    klock::preempt_enable(); // the read_lock() we can no longer pair
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("BUG: rwlock destroyed while held on CPU#"));
}

} // namespace
