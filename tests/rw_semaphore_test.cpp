// klock::rw_semaphore: the kernel's sleeping reader-writer semaphore.
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rw_semaphore.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

namespace {

using namespace std::chrono_literals;
using klock::rw_semaphore;
using clk = std::chrono::steady_clock;

// Polls `pred` until it holds or `limit` passes; true if it held.
template <class Pred> bool eventually(Pred pred, std::chrono::milliseconds limit = 2000ms)
{
    const auto end = clk::now() + limit;
    while (!pred()) {
        if (clk::now() > end)
            return false;
        std::this_thread::sleep_for(100us);
    }
    return true;
}

void spin_for(std::chrono::microseconds d)
{
    const auto end = clk::now() + d;
    while (clk::now() < end) { }
}

// Clang's analysis follows locks lexically. Test bodies that take a lock under ASSERT_*, hold
// two read locks at once, or hand a lock to another thread use these unannotated forwarders
// (which pass the caller's location on, for might_sleep reports).
template <class S>
void rd(S& s, klock::source_location loc = klock::source_location::current()) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    s.down_read(loc);
}
template <class S>
void wr(S& s, klock::source_location loc = klock::source_location::current()) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    s.down_write(loc);
}
template <class S> void ur(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.up_read(); }
template <class S> void uw(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.up_write(); }
template <class S> void dg(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.downgrade_write(); }
template <class S> bool try_rd(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { return s.down_read_trylock(); }
template <class S> bool try_wr(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { return s.down_write_trylock(); }

// Misuse is done through these: clang's analysis would (rightly) refuse it in plain code.
template <class S> void unbalanced_up_read(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.up_read(); }
template <class S> void unbalanced_up_write(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.up_write(); }
template <class S> void unbalanced_downgrade(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.downgrade_write(); }
template <class S> void take_write(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.down_write(); }
template <class S> void take_read(S& s) KLOCK_NO_THREAD_SAFETY_ANALYSIS { s.down_read(); }

// ---------------------------------------------------------------- layout and basic operations

TEST(RwSemaphore, KernelCountLayout)
{
    EXPECT_EQ(klock::RWSEM_WRITER_LOCKED, 0x1u);
    EXPECT_EQ(klock::RWSEM_FLAG_WAITERS, 0x2u);
    EXPECT_EQ(klock::RWSEM_FLAG_HANDOFF, 0x4u);
    EXPECT_EQ(klock::RWSEM_READER_BIAS, 0x100u);
    EXPECT_EQ(klock::RWSEM_READER_OWNED, 0x1u);

    rw_semaphore s;
    EXPECT_EQ(s.raw_count(), 0u);
    rd(s);
    EXPECT_EQ(s.raw_count(), 0x100u);
    EXPECT_EQ(s.raw_owner() & klock::RWSEM_READER_OWNED, klock::RWSEM_READER_OWNED);
    EXPECT_EQ(s.write_owner(), nullptr);
    rd(s);
    EXPECT_EQ(s.raw_count(), 0x200u);
    ur(s);
    ur(s);
    EXPECT_EQ(s.raw_count(), 0u);

    wr(s);
    EXPECT_EQ(s.raw_count(), 0x1u);
    EXPECT_EQ(s.write_owner(), klock::env::os::current());
    EXPECT_TRUE(s.is_write_locked());
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(s.write_owner(), nullptr);
    EXPECT_FALSE(s.is_locked());
}

TEST(RwSemaphore, TrylockRules)
{
    rw_semaphore s;
    ASSERT_TRUE(try_wr(s));
    EXPECT_FALSE(try_wr(s)); // by the owner too: trylock never reports or nests
    bool other_read = true, other_write = true;
    std::thread([&] {
        other_read = other_write = false;
        if (s.down_read_trylock()) {
            other_read = true;
            s.up_read();
        }
        if (s.down_write_trylock()) {
            other_write = true;
            s.up_write();
        }
    }).join();
    EXPECT_FALSE(other_read);
    EXPECT_FALSE(other_write);
    uw(s);

    ASSERT_TRUE(try_rd(s));
    EXPECT_FALSE(try_wr(s)); // readers exclude writers
    EXPECT_TRUE(try_rd(s));
    ur(s);
    ur(s);
    EXPECT_TRUE(try_wr(s));
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
}

TEST(RwSemaphore, StdLockTypesWork)
{
    rw_semaphore s;
    {
        std::unique_lock<rw_semaphore> w(s);
        EXPECT_TRUE(s.is_write_locked());
    }
    {
        std::shared_lock<rw_semaphore> r1(s);
        std::shared_lock<rw_semaphore> r2(s, std::try_to_lock);
        EXPECT_TRUE(r2.owns_lock());
        EXPECT_EQ(s.raw_count(), 0x200u);
    }
    {
        std::unique_lock<rw_semaphore> w(s, 10ms); // SharedTimedLockable: timed forms
        EXPECT_TRUE(w.owns_lock());
    }
    {
        std::shared_lock<rw_semaphore> r(s, clk::now() + 10ms);
        EXPECT_TRUE(r.owns_lock());
    }
    EXPECT_EQ(s.raw_count(), 0u);
}

// The annotations are part of the API: this compiles warning-free under -Wthread-safety only
// if lock/shared acquisitions and releases are declared as such.
struct annotated {
    rw_semaphore sem;
    int value KLOCK_GUARDED_BY(sem) = 0;

    void write(int v)
    {
        klock::lock_guard<rw_semaphore> g(sem);
        value = v;
    }
    int read()
    {
        klock::shared_lock_guard<rw_semaphore> g(sem);
        return value;
    }
    int write_then_read(int v)
    {
        sem.down_write();
        value = v;
        sem.downgrade_write();
        int r = value;
        sem.up_read();
        return r;
    }
    bool try_write(int v)
    {
        if (!sem.try_lock_for(1ms))
            return false;
        value = v;
        sem.unlock();
        return true;
    }
};

TEST(RwSemaphore, ThreadSafetyAnnotatedUse)
{
    annotated a;
    a.write(3);
    EXPECT_EQ(a.read(), 3);
    EXPECT_EQ(a.write_then_read(5), 5);
    EXPECT_TRUE(a.try_write(7));
    EXPECT_EQ(a.read(), 7);
}

// ---------------------------------------------------------------- sharing and exclusion

TEST(RwSemaphore, ReadersReallyShare)
{
    klock::test::watchdog wd(10s, "ReadersReallyShare");
    rw_semaphore s;
    std::atomic<int> inside{0};
    std::atomic<bool> both{false};
    klock::test::run_threads(2, [&](int) {
        s.down_read();
        if (inside.fetch_add(1) + 1 == 2)
            both = true;
        // Each stays (bounded) until both have been inside at the same time.
        eventually([&] { return both.load(); });
        inside.fetch_sub(1);
        s.up_read();
    });
    EXPECT_TRUE(both.load());
    EXPECT_EQ(s.raw_count(), 0u);
}

TEST(RwSemaphore, WriterExcludesReadersAndTheyGetInAfter)
{
    klock::test::watchdog wd(10s, "WriterExcludesReaders");
    rw_semaphore s;
    wr(s);
    std::atomic<bool> writer_done{false};
    std::atomic<int> got_in{0};
    std::atomic<bool> saw_writer{false};
    std::vector<std::thread> readers;
    for (int i = 0; i < 3; ++i)
        readers.emplace_back([&] {
            s.down_read();
            if (!writer_done.load())
                saw_writer = true;
            got_in.fetch_add(1);
            // All three queued readers are granted together by one up_write: wait until all
            // are inside at the same time.
            eventually([&] { return got_in.load() == 3; });
            s.up_read();
        });
    EXPECT_TRUE(eventually([&] { return s.waiter_count() == 3; }));
    EXPECT_TRUE(s.is_contended());
    EXPECT_EQ(got_in.load(), 0);
    writer_done = true;
    uw(s);
    for (auto& t : readers)
        t.join();
    EXPECT_FALSE(saw_writer.load());
    EXPECT_EQ(got_in.load(), 3);
    EXPECT_EQ(s.raw_count(), 0u);
}

TEST(RwSemaphore, QueuedWriterStopsNewReaders)
{
    klock::test::watchdog wd(10s, "QueuedWriterStopsNewReaders");
    rw_semaphore s;
    rd(s); // reader A (main)
    std::atomic<int> order{0};
    int writer_pos = -1, reader_pos = -1;
    std::thread w([&] {
        s.down_write();
        writer_pos = order.fetch_add(1);
        s.up_write();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 1; }));
    // A writer is queued: the read fast path and trylock now fail ...
    std::thread probe([&] { EXPECT_FALSE(try_rd(s)); });
    probe.join();
    // ... and a new reader queues behind the writer although readers hold the lock.
    std::thread r([&] {
        s.down_read();
        reader_pos = order.fetch_add(1);
        s.up_read();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 2; }));
    EXPECT_EQ(order.load(), 0);
    ur(s);
    w.join();
    r.join();
    EXPECT_EQ(writer_pos, 0);
    EXPECT_EQ(reader_pos, 1);
    EXPECT_EQ(s.raw_count(), 0u);
}

// ---------------------------------------------------------------- downgrade_write

TEST(RwSemaphore, DowngradeLetsWaitingReadersIn)
{
    klock::test::watchdog wd(10s, "DowngradeLetsWaitingReadersIn");
    rw_semaphore s;
    wr(s);
    std::atomic<int> readers_in{0};
    std::atomic<bool> released{false};
    std::atomic<bool> writer_in{false};
    std::atomic<bool> writer_overlap{false};
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; ++i)
        ts.emplace_back([&] {
            s.down_read();
            readers_in.fetch_add(1);
            if (writer_in.load())
                writer_overlap = true;
            s.up_read();
        });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 2; }));
    ts.emplace_back([&] {
        s.down_write();
        writer_in = true;
        if (!released.load())
            writer_overlap = true; // got in while the downgraded reader still held it
        s.up_write();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 3; }));

    dg(s);
    EXPECT_FALSE(s.is_write_locked());
    EXPECT_NE(s.raw_owner() & klock::RWSEM_READER_OWNED, 0u);
    // The queued readers get in while we still hold the (now read) lock; the writer does not.
    EXPECT_TRUE(eventually([&] { return readers_in.load() == 2; }));
    std::this_thread::sleep_for(5ms);
    EXPECT_FALSE(writer_in.load());
    released = true;
    ur(s);
    for (auto& t : ts)
        t.join();
    EXPECT_TRUE(writer_in.load());
    EXPECT_FALSE(writer_overlap.load());
    EXPECT_EQ(s.raw_count(), 0u);
}

// ---------------------------------------------------------------- timed variants

TEST(RwSemaphore, TimedWriteTimesOutAndLeavesNoTrace)
{
    rw_semaphore s;
    rd(s);
    bool got = true;
    std::chrono::nanoseconds waited{};
    std::thread([&] {
        const auto t0 = clk::now();
        got = false;
        if (s.try_lock_for(20ms)) {
            got = true;
            s.unlock();
        }
        waited = clk::now() - t0;
    }).join();
    EXPECT_FALSE(got);
    EXPECT_GE(waited, 20ms);
    EXPECT_EQ(s.raw_count(), 0x100u); // our read lock only: no waiters bit, no handoff left
    EXPECT_EQ(s.waiter_count(), 0u);
    ur(s);
    if (s.try_lock_until(clk::now() + 10ms))
        s.unlock();
    else
        ADD_FAILURE() << "try_lock_until failed on a free semaphore";
}

TEST(RwSemaphore, TimedReadTimesOutAndSucceedsWhenReleased)
{
    klock::test::watchdog wd(10s, "TimedRead");
    rw_semaphore s;
    wr(s);
    bool got = true;
    std::thread([&] { got = s.try_lock_shared_for(15ms); }).join();
    EXPECT_FALSE(got);
    EXPECT_EQ(s.raw_count(), klock::RWSEM_WRITER_LOCKED);

    std::atomic<bool> got2{false};
    std::thread t([&] {
        if (s.try_lock_shared_until(clk::now() + 2s)) {
            got2 = true;
            s.unlock_shared();
        }
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 1; }));
    uw(s);
    t.join();
    EXPECT_TRUE(got2.load());
    EXPECT_EQ(s.raw_count(), 0u);
}

// A writer at the head that gives up must not strand the readers queued behind it.
TEST(RwSemaphore, TimedOutHeadWriterLetsReadersBehindIn)
{
    klock::test::watchdog wd(10s, "TimedOutHeadWriter");
    rw_semaphore s;
    rd(s);
    std::atomic<bool> writer_result{true};
    std::thread w([&] {
        bool g = s.try_lock_for(60ms);
        writer_result = g;
        if (g)
            s.unlock();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 1; }));
    std::atomic<bool> reader_in{false};
    std::thread r([&] {
        s.down_read();
        reader_in = true;
        s.up_read();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 2; }));
    // We keep our read lock: the reader can only get in by the timed-out writer's wakeup.
    EXPECT_TRUE(eventually([&] { return reader_in.load(); }, 3000ms));
    w.join();
    r.join();
    EXPECT_FALSE(writer_result.load());
    ur(s);
    EXPECT_EQ(s.raw_count(), 0u);
}

// ---------------------------------------------------------------- stress

TEST(RwSemaphore, StressReadersAndWriters)
{
    klock::test::watchdog wd(20s, "StressReadersAndWriters");
    rw_semaphore s;
    std::uint64_t counter = 0; // plain: a broken lock loses increments
    std::atomic<int> writers_inside{0}, readers_inside{0};
    std::atomic<int> violations{0}, contended_seen{0};
    std::atomic<std::uint64_t> writes{0};
    constexpr int kThreads = 6, kIters = 3000;
    klock::test::run_threads(kThreads, [&](int id) {
        std::minstd_rand rng(static_cast<unsigned>(id) * 7919u + 1);
        for (int i = 0; i < kIters; ++i) {
            // Now and then give the CPU away inside the critical section, so that the other
            // five threads pile up behind a holder (2 cores): every wakeup path gets used.
            const bool linger = rng() % 16 == 0;
            if (rng() % 3 == 0) {
                s.down_write();
                if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0)
                    violations.fetch_add(1);
                ++counter;
                writes.fetch_add(1, std::memory_order_relaxed);
                if (linger)
                    std::this_thread::yield();
                if (s.is_contended())
                    contended_seen.fetch_add(1, std::memory_order_relaxed);
                writers_inside.fetch_sub(1);
                s.up_write();
            } else {
                s.down_read();
                readers_inside.fetch_add(1);
                const std::uint64_t before = counter;
                if (writers_inside.load() != 0)
                    violations.fetch_add(1);
                if (linger)
                    std::this_thread::yield();
                if (counter != before || writers_inside.load() != 0)
                    violations.fetch_add(1);
                readers_inside.fetch_sub(1);
                s.up_read();
            }
        }
    });
    EXPECT_EQ(violations.load(), 0);
    EXPECT_EQ(counter, writes.load());
    EXPECT_GT(counter, 0u);
    EXPECT_GT(contended_seen.load(), 0) << "the stress never made anyone wait";
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(s.waiter_count(), 0u);
}

// Exclusive use only, through klock::test::hammer (6 threads on 2 cores).
TEST(RwSemaphore, StressWritersExact)
{
    klock::test::watchdog wd(20s, "StressWritersExact");
    rw_semaphore s;
    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(s, 6, 4000, &overlaps), 6u * 4000u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(s.raw_count(), 0u);
}

// Every kind of operation at once, with tiny critical sections and short deadlines, so that
// waiters come and go through every wakeup path; a lost wakeup trips the watchdog.
TEST(RwSemaphore, NoLostWakeupsUnderChurn)
{
    klock::test::watchdog wd(25s, "NoLostWakeupsUnderChurn");
    rw_semaphore s;
    std::atomic<int> writers_inside{0}, readers_inside{0}, violations{0};
    std::atomic<unsigned> tick{0};
    // Every 16th critical section yields the CPU while holding the lock, so waiters pile up.
    auto linger = [&] {
        if (tick.fetch_add(1, std::memory_order_relaxed) % 16 == 0)
            std::this_thread::yield();
    };
    auto in_write = [&] {
        if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0)
            violations.fetch_add(1);
        linger();
        writers_inside.fetch_sub(1);
    };
    auto in_read = [&] {
        readers_inside.fetch_add(1);
        if (writers_inside.load() != 0)
            violations.fetch_add(1);
        linger();
        readers_inside.fetch_sub(1);
    };
    std::atomic<int> contended_seen{0};
    klock::test::run_threads(6, [&](int id) {
        std::minstd_rand rng(static_cast<unsigned>(id) + 17u);
        for (int i = 0; i < 2500; ++i) {
            if (i % 8 == 0 && s.is_contended())
                contended_seen.fetch_add(1, std::memory_order_relaxed);
            switch (rng() % 8) {
            case 0:
            case 1:
                s.down_read();
                in_read();
                s.up_read();
                break;
            case 2:
            case 3:
                s.down_write();
                in_write();
                s.up_write();
                break;
            case 4:
                s.down_write();
                in_write();
                s.downgrade_write();
                in_read();
                s.up_read();
                break;
            case 5:
                if (s.try_lock_for(std::chrono::microseconds(rng() % 200))) {
                    in_write();
                    s.unlock();
                }
                break;
            case 6:
                if (s.try_lock_shared_for(std::chrono::microseconds(rng() % 200))) {
                    in_read();
                    s.unlock_shared();
                }
                break;
            default:
                if (s.try_lock()) {
                    in_write();
                    s.unlock();
                } else if (s.try_lock_shared()) {
                    in_read();
                    s.unlock_shared();
                }
                break;
            }
        }
    });
    EXPECT_EQ(violations.load(), 0);
    EXPECT_GT(contended_seen.load(), 0) << "the churn never made anyone wait";
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(s.waiter_count(), 0u);
}

// ---------------------------------------------------------------- fairness

// A continuous, overlapping stream of readers: each holds its read lock at least 200 us and,
// before leaving, waits (up to 10 ms) for another reader to be inside, so with a
// reader-preferring lock the lock is never free of readers and a writer never gets in
// (std::shared_timed_mutex on glibc times out here). The rwsem makes the stream queue behind
// the writer, so the writer gets in once the current readers drain.
template <class Lock> std::chrono::nanoseconds worst_writer_wait(Lock& lock, int rounds, bool& all_got_in)
{
    std::atomic<bool> stop{false};
    std::atomic<int> inside{0};
    std::atomic<long> reads{0};
    std::vector<std::thread> readers;
    for (int i = 0; i < 3; ++i)
        readers.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                lock.lock_shared();
                inside.fetch_add(1);
                const auto t0 = clk::now();
                for (;;) {
                    const auto held = clk::now() - t0;
                    if (held >= 200us && (inside.load() >= 2 || held >= 10ms || stop.load()))
                        break;
                }
                inside.fetch_sub(1);
                reads.fetch_add(1);
                lock.unlock_shared();
            }
        });
    // Let the stream get going: several readers inside at once.
    eventually([&] { return inside.load() >= 2; });
    std::chrono::nanoseconds worst{0};
    all_got_in = true;
    for (int r = 0; r < rounds && all_got_in; ++r) {
        const auto t0 = clk::now();
        if (lock.try_lock_for(500ms)) {
            worst = std::max<std::chrono::nanoseconds>(worst, clk::now() - t0);
            lock.unlock();
        } else {
            all_got_in = false;
            worst = 500ms;
        }
        std::this_thread::sleep_for(2ms);
    }
    stop = true;
    for (auto& t : readers)
        t.join();
    EXPECT_GT(reads.load(), 0);
    return worst;
}

TEST(RwSemaphore, WriterNotStarvedByOverlappingReaders)
{
    klock::test::watchdog wd(15s, "WriterNotStarvedByOverlappingReaders");
    rw_semaphore s;
    bool all_got_in = false;
    const auto worst = worst_writer_wait(s, 4, all_got_in);
    EXPECT_TRUE(all_got_in);
    EXPECT_LT(worst, 500ms);
    EXPECT_EQ(s.raw_count(), 0u);
}

// The mirror image: four writers re-take the lock back to back, so one is (nearly) always
// waiting; a writer-preferring lock (glibc's PREFER_WRITER_NONRECURSIVE) keeps the reader out
// for good here. The rwsem grants the queued reader at the next release (and should a writer
// steal the lock first, the reader's handoff request after RWSEM_WAIT_TIMEOUT settles it).
TEST(RwSemaphore, ReaderNotStarvedByWriterStream)
{
    klock::test::watchdog wd(15s, "ReaderNotStarvedByWriterStream");
    rw_semaphore s;
    std::atomic<bool> stop{false};
    std::atomic<long> writes{0};
    std::vector<std::thread> writers;
    for (int i = 0; i < 4; ++i)
        writers.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                s.down_write();
                spin_for(100us);
                writes.fetch_add(1);
                s.up_write();
            }
        });
    eventually([&] { return writes.load() > 10; });
    std::chrono::nanoseconds worst{0};
    bool all = true;
    for (int r = 0; r < 4 && all; ++r) {
        const auto t0 = clk::now();
        if (s.try_lock_shared_for(500ms)) {
            worst = std::max<std::chrono::nanoseconds>(worst, clk::now() - t0);
            s.unlock_shared();
        } else {
            all = false;
        }
        std::this_thread::sleep_for(2ms);
    }
    stop = true;
    for (auto& t : writers)
        t.join();
    EXPECT_TRUE(all);
    EXPECT_LT(worst, 500ms);
    EXPECT_EQ(s.raw_count(), 0u);
}

// ---------------------------------------------------------------- the Env seam

TEST(RwSemaphore, CountingEnvInstantiation)
{
    using E = klock::test::counting_env;
    klock::basic_rw_semaphore<E> s;
    E::reset();
    rd(s);
    ur(s);
    wr(s);
    uw(s);
    EXPECT_GT(E::atomic_ops.load(), 0u);
    EXPECT_EQ(s.raw_count(), 0u);

    // Contended: the sleeping and the wakeup go through the Env's futex too.
    klock::test::watchdog wd(10s, "CountingEnvInstantiation");
    E::reset();
    wr(s);
    std::atomic<bool> in{false};
    std::thread r([&] {
        s.down_read();
        in = true;
        s.up_read();
    });
    ASSERT_TRUE(eventually([&] { return s.waiter_count() == 1; }));
    std::this_thread::sleep_for(2ms); // let it reach futex_wait
    EXPECT_FALSE(in.load());
    uw(s);
    r.join();
    EXPECT_TRUE(in.load());
    EXPECT_GT(E::futex_calls.load(), 0u);
    EXPECT_GT(E::atomic_ops.load(), 0u);
    EXPECT_EQ(s.raw_count(), 0u);
}

// ---------------------------------------------------------------- misuse

TEST(RwSemaphoreMisuse, UpReadWithoutReaders)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    rw_semaphore s;
    klock::report_capture cap;
    unbalanced_up_read(s);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rw_semaphore up_read: not read-locked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find(" lock: "), std::string::npos) << r;
    EXPECT_NE(r.find("count: 0x0 (readers: 0, writer: 0"), std::string::npos) << r;
    EXPECT_EQ(s.raw_count(), 0u);
    // Still usable.
    rd(s);
    ur(s);
    wr(s);
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(cap.count(), 1u);
}

TEST(RwSemaphoreMisuse, UpReadWhileAnotherTaskWrites)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    rw_semaphore s;
    std::atomic<bool> locked{false}, done{false};
    std::thread w([&] {
        s.down_write();
        locked = true;
        while (!done.load())
            std::this_thread::sleep_for(100us);
        s.up_write();
    });
    ASSERT_TRUE(eventually([&] { return locked.load(); }));
    klock::report_capture cap;
    unbalanced_up_read(s);
    EXPECT_EQ(s.raw_count(), klock::RWSEM_WRITER_LOCKED);
    done = true;
    w.join();
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("BUG: rw_semaphore up_read: not read-locked"));
    EXPECT_TRUE(cap.contains(".owner: ")); // names the writer
    EXPECT_EQ(s.raw_count(), 0u);
}

TEST(RwSemaphoreMisuse, UpWriteWhenNotWriteLocked)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    rw_semaphore s;
    klock::report_capture cap;
    unbalanced_up_write(s);
    rd(s);
    unbalanced_up_write(s); // read-locked is not write-locked
    EXPECT_EQ(s.raw_count(), klock::RWSEM_READER_BIAS);
    ur(s);
    ASSERT_EQ(cap.count(), 2u);
    for (const std::string& r : cap.reports()) {
        EXPECT_NE(r.find("BUG: rw_semaphore up_write: not write-locked on CPU#"), std::string::npos) << r;
        EXPECT_NE(r.find(".owner: <none>"), std::string::npos) << r;
    }
    EXPECT_NE(cap.reports()[1].find("(reader-owned)"), std::string::npos) << cap.reports()[1];
    wr(s);
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
}

TEST(RwSemaphoreMisuse, UpWriteByNonOwner)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    rw_semaphore s;
    wr(s);
    const int owner_pid = klock::env::os::task_pid(klock::env::os::current());
    klock::report_capture cap;
    std::thread([&] { unbalanced_up_write(s); }).join();
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rw_semaphore up_write: wrong owner on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(owner_pid) + ", .owner_cpu"), std::string::npos) << r;
    EXPECT_TRUE(s.is_write_locked()); // unchanged: still ours
    EXPECT_EQ(s.write_owner(), klock::env::os::current());
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(cap.count(), 1u);
}

TEST(RwSemaphoreMisuse, DowngradeWithoutWriteLock)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    rw_semaphore s;
    klock::report_capture cap;
    unbalanced_downgrade(s);
    EXPECT_EQ(s.raw_count(), 0u);
    wr(s);
    std::thread([&] { unbalanced_downgrade(s); }).join();
    EXPECT_EQ(s.raw_count(), klock::RWSEM_WRITER_LOCKED);
    uw(s);
    ASSERT_EQ(cap.count(), 2u);
    EXPECT_NE(cap.reports()[0].find("BUG: rw_semaphore downgrade_write: not write-locked"), std::string::npos);
    EXPECT_NE(cap.reports()[1].find("BUG: rw_semaphore downgrade_write: wrong owner"), std::string::npos);
    EXPECT_EQ(s.raw_count(), 0u);
}

// down_write by the write owner: reported, counted as a nesting level (no hang, no early
// release); the outermost up_write releases.
TEST(RwSemaphoreMisuse, WriteRecursionReportedNotHung)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "WriteRecursion");
    rw_semaphore s;
    klock::report_capture cap;
    wr(s);
    take_write(s);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: rw_semaphore recursion on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("down_write by the task holding it for write would deadlock"), std::string::npos) << r;
    unbalanced_up_write(s); // the inner level
    EXPECT_TRUE(s.is_write_locked());
    EXPECT_EQ(s.write_owner(), klock::env::os::current());
    bool other = true;
    std::thread([&] { other = try_rd(s); }).join();
    EXPECT_FALSE(other); // still exclusive
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
    EXPECT_EQ(cap.count(), 1u);
}

TEST(RwSemaphoreMisuse, ReadUnderOwnWriteReportedNotHung)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "ReadUnderOwnWrite");
    rw_semaphore s;
    klock::report_capture cap;
    wr(s);
    take_read(s);
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("BUG: rw_semaphore recursion"));
    EXPECT_TRUE(cap.contains("down_read by the task holding it for write"));
    EXPECT_EQ(s.raw_count(), klock::RWSEM_WRITER_LOCKED);
    unbalanced_up_read(s); // pairs with the nested down_read: silent
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_EQ(s.raw_count(), klock::RWSEM_WRITER_LOCKED);
    uw(s);
    EXPECT_EQ(s.raw_count(), 0u);
    rd(s);
    ur(s);
}

TEST(RwSemaphoreMisuse, DestroyWhileHeld)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::report_capture cap;
    alignas(rw_semaphore) unsigned char buf[sizeof(rw_semaphore)];
    auto* s = new (buf) rw_semaphore;
    take_read(*s);
    s->~rw_semaphore();
    s = new (buf) rw_semaphore;
    take_write(*s);
    s->~rw_semaphore();
    s = new (buf) rw_semaphore;
    s->~rw_semaphore(); // unlocked: silent
    ASSERT_EQ(cap.count(), 2u);
    EXPECT_NE(cap.reports()[0].find("BUG: rw_semaphore destroyed while locked"), std::string::npos);
    EXPECT_NE(cap.reports()[0].find("readers: 1"), std::string::npos) << cap.reports()[0];
    EXPECT_NE(cap.reports()[1].find("writer: 1"), std::string::npos) << cap.reports()[1];
}

TEST(RwSemaphoreMisuse, MightSleepInAtomicContext)
{
    // might_sleep reports once per call site, so only the first run in a process can check.
    static bool first_run = true;
    if (!first_run)
        GTEST_SKIP() << "might_sleep already reported these call sites";
    first_run = false;
    rw_semaphore s;
    klock::report_capture cap;
    klock::preempt_disable();
    rd(s); // the report must name this line
    const unsigned read_line = __LINE__ - 1;
    ur(s);
    wr(s); // and this one
    const unsigned write_line = __LINE__ - 1;
    uw(s);
    klock::preempt_enable();
    ASSERT_EQ(cap.count(), 2u);
    const auto reps = cap.reports();
    EXPECT_NE(reps[0].find("BUG: sleeping function called from invalid context at "), std::string::npos) << reps[0];
    EXPECT_NE(reps[0].find("rw_semaphore_test.cpp:" + std::to_string(read_line)), std::string::npos) << reps[0];
    EXPECT_NE(reps[0].find("preempt_count: 1, expected: 0"), std::string::npos) << reps[0];
    EXPECT_NE(reps[1].find("rw_semaphore_test.cpp:" + std::to_string(write_line)), std::string::npos) << reps[1];
    // Trylocks never sleep and stay silent.
    klock::preempt_disable();
    if (try_wr(s))
        uw(s);
    if (try_rd(s))
        ur(s);
    klock::preempt_enable();
    EXPECT_EQ(cap.count(), 2u);
    EXPECT_EQ(s.raw_count(), 0u);
}

} // namespace
