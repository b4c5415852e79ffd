// klock::arch::ticket_spinlock: the seeds' ARM ticket lock, word by word.
#include <gtest/gtest.h>

#include <klock/arch/ticket_spinlock.hpp>
#include <klock/env/os.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "support/counting_env.hpp"
#include "support/stress.hpp"

namespace {

using os = klock::env::os;
using ticket = klock::arch::ticket_spinlock<os>;
using namespace std::chrono_literals;

using klock::test::wait_until;

TEST(TicketSpinlock, LayoutIsOneWord)
{
    static_assert(sizeof(ticket) == 4);
    static_assert(klock::arch::TICKET_SHIFT == 16);
    ticket l;
    EXPECT_EQ(l.raw(), 0u);
    EXPECT_FALSE(l.is_locked());
}

// seeds/002: 0x00010001 free -> lock -> 0x00020001 held -> a second taker draws ticket 2,
// 0x00030001, and waits -> unlock -> 0x00030002, ticket 2 served -> unlock -> 0x00030003.
TEST(TicketSpinlock, SeedWalkThroughValueByValue)
{
    klock::test::watchdog dog(10s, "seed walk-through");
    ticket l(0x00010001u);
    EXPECT_EQ(l.raw(), 0x00010001u);
    EXPECT_EQ(l.next(), 1u);
    EXPECT_EQ(l.owner(), 1u);
    EXPECT_FALSE(l.is_locked());
    EXPECT_FALSE(l.is_contended());

    l.lock();
    EXPECT_EQ(l.raw(), 0x00020001u);
    EXPECT_TRUE(l.is_locked());
    EXPECT_FALSE(l.is_contended());

    std::atomic<bool> second_in{false};
    std::thread second([&] {
        l.lock();
        second_in = true;
        EXPECT_EQ(l.raw(), 0x00030002u); // served with ticket 2
        l.unlock();
    });
    ASSERT_TRUE(wait_until([&] { return l.raw() == 0x00030001u; }));
    EXPECT_TRUE(l.is_contended());
    std::this_thread::sleep_for(20ms);
    EXPECT_FALSE(second_in.load()); // still waiting for owner == 2
    EXPECT_EQ(l.raw(), 0x00030001u);

    l.unlock();
    second.join();
    EXPECT_TRUE(second_in.load());
    EXPECT_EQ(l.raw(), 0x00030003u);
    EXPECT_FALSE(l.is_locked());
}

TEST(TicketSpinlock, TryLockSucceedsOnlyWhenFree)
{
    ticket l(0x00050005u);
    EXPECT_TRUE(l.try_lock());
    EXPECT_EQ(l.raw(), 0x00060005u);
    EXPECT_FALSE(l.try_lock());
    EXPECT_EQ(l.raw(), 0x00060005u); // a failed trylock draws no ticket
    l.unlock();
    EXPECT_EQ(l.raw(), 0x00060006u);
    EXPECT_TRUE(l.try_lock());
    l.unlock();
}

TEST(TicketSpinlock, TryLockIsOneCasAndNoWriteWhenHeld)
{
    using E = klock::test::counting_env;
    klock::arch::ticket_spinlock<E> l;
    l.lock();
    E::reset();
    EXPECT_FALSE(l.try_lock());
    EXPECT_EQ(E::atomic_ops.load(), 1u); // one load, no CAS
    l.unlock();
    E::reset();
    EXPECT_TRUE(l.try_lock());
    EXPECT_EQ(E::atomic_ops.load(), 2u); // load + one CAS
    l.unlock();
}

// Unlock adds one to the owner half only: at 0xffff the half wraps to 0 without a carry
// into `next`.
TEST(TicketSpinlock, OwnerWrapsWithoutCarryIntoNext)
{
    ticket l(0xffffffffu); // next 0xffff, owner 0xffff: free
    EXPECT_FALSE(l.is_locked());
    l.lock();
    EXPECT_EQ(l.raw(), 0x0000ffffu); // next wrapped to 0, owner 0xffff: held by ticket 0xffff
    EXPECT_TRUE(l.is_locked());
    l.unlock();
    EXPECT_EQ(l.raw(), 0x00000000u);
    EXPECT_FALSE(l.is_locked());
}

TEST(TicketSpinlock, WrapWithAWaiterHandsOver)
{
    klock::test::watchdog dog(10s, "ticket wrap handover");
    ticket l(0xfffefffeu);
    l.lock(); // ticket 0xfffe
    l.unlock();
    l.lock(); // ticket 0xffff
    EXPECT_EQ(l.raw(), 0x0000ffffu);
    std::atomic<bool> in{false};
    std::thread t([&] {
        l.lock(); // ticket 0x0000
        in = true;
        l.unlock();
    });
    ASSERT_TRUE(wait_until([&] { return l.raw() == 0x0001ffffu; }));
    EXPECT_TRUE(l.is_contended());
    l.unlock(); // owner 0xffff -> 0x0000, next stays 1
    t.join();
    EXPECT_TRUE(in.load());
    EXPECT_EQ(l.raw(), 0x00010001u);
}

// Arrivals serialized (each visibly holds its ticket before the next starts): acquisition
// order must equal arrival order exactly.
TEST(TicketSpinlock, FifoOrderIsExact)
{
    klock::test::watchdog dog(20s, "ticket FIFO");
    constexpr int k = 5;
    ticket l;
    l.lock();
    std::vector<int> order;
    std::vector<std::thread> threads;
    for (int i = 0; i < k; ++i) {
        const std::uint32_t before = l.next();
        threads.emplace_back([&, i] {
            l.lock();
            order.push_back(i); // protected by l
            l.unlock();
        });
        ASSERT_TRUE(wait_until([&] { return l.next() == static_cast<std::uint16_t>(before + 1); }));
    }
    EXPECT_EQ(l.next() - l.owner(), k + 1);
    l.unlock();
    for (auto& t : threads)
        t.join();
    ASSERT_EQ(order.size(), static_cast<std::size_t>(k));
    for (int i = 0; i < k; ++i)
        EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
    EXPECT_FALSE(l.is_locked());
}

// More threads than cores. A ticket lock hands over to preempted waiters, so the count is
// kept small: this checks exclusion, not speed.
TEST(TicketSpinlock, StressMoreThreadsThanCores)
{
    klock::test::watchdog dog(30s, "ticket stress");
    ticket l;
    std::atomic<int> overlaps{0};
    const std::uint64_t n = klock::test::hammer(l, 4, 150, &overlaps);
    EXPECT_EQ(n, 4u * 150u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_FALSE(l.is_locked());
}

TEST(TicketSpinlock, AtomicsGoThroughTheEnv)
{
    using E = klock::test::counting_env;
    klock::test::watchdog dog(30s, "ticket counting_env");
    klock::arch::ticket_spinlock<E> l;
    E::reset();
    l.lock();
    l.unlock();
    EXPECT_GE(E::atomic_ops.load(), 2u);
    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(l, 3, 100, &overlaps), 300u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_GT(E::atomic_ops.load(), 600u);
}

} // namespace
