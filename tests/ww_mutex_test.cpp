// klock::ww_mutex: wound/wait mutexes (Wait-Die and Wound-Wait classes, acquire contexts, back-off).
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/ww_mutex.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

// The scenarios below hold locks across threads, loops and helper functions, which clang's static
// analysis cannot follow; correct use is checked with the analysis on at the end of the file.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace {

using namespace std::chrono_literals;
using os = klock::env::os;
using klock::ww_class_wait_die;
using klock::ww_class_wound_wait;
using klock::WW_FLAG_WAITERS;

int gettid_now() { return static_cast<int>(::syscall(SYS_gettid)); }
template <class Task> std::uintptr_t word_of(Task* t) { return reinterpret_cast<std::uintptr_t>(t); }

template <class Class> class WwMutexTest : public ::testing::Test { };
using ww_classes = ::testing::Types<ww_class_wait_die, ww_class_wound_wait>;
class class_names {
public:
    template <class T> static std::string GetName(int) { return T::is_wait_die ? "WaitDie" : "WoundWait"; }
};
TYPED_TEST_SUITE(WwMutexTest, ww_classes, class_names);

// Waits until the task published in `t` sleeps in a futex wait (the os world's `blocked` flag).
bool wait_asleep(const std::atomic<os::task*>& t)
{
    return klock::test::wait_until([&] {
        os::task* p = t.load();
        return p != nullptr && !os::task_on_cpu(p);
    });
}

// Spins (yielding) until `n` threads have arrived.
void arrive_and_wait(std::atomic<int>& count, int n)
{
    count.fetch_add(1);
    while (count.load() < n)
        std::this_thread::yield();
}

// The full back-off protocol over `order` (the kernel's ww-mutex-design.rst, method 1): take every
// lock; on -EDEADLK release all, lock_slow() the contended one, start over. `between` runs once,
// after the first lock of the first attempt. Returns how many times the context had to back off.
template <class M, class Between>
int lock_all(std::vector<M*> order, typename M::ctx_type& ctx, std::vector<M*>& held, std::atomic<int>& errors,
    Between between) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    int backoffs = 0;
    M* contended = nullptr;
    bool first_attempt = true;
    held.clear();
    for (;;) {
        if (contended != nullptr) {
            contended->lock_slow(&ctx);
            held.push_back(contended);
        }
        bool retry = false;
        for (M* m : order) {
            if (m == contended)
                continue;
            const int r = m->lock(&ctx);
            if (r == -EDEADLK) {
                // Only a context that holds locks may be told to back off, and its count must be exact.
                if (held.empty() || ctx.acquired() != held.size())
                    errors.fetch_add(1);
                for (M* h : held)
                    h->unlock();
                held.clear();
                if (ctx.acquired() != 0)
                    errors.fetch_add(1);
                contended = m;
                ++backoffs;
                retry = true;
                break;
            }
            if (r != 0) {
                errors.fetch_add(1);
                continue;
            }
            held.push_back(m);
            if (first_attempt) {
                first_attempt = false;
                between();
            }
        }
        if (!retry)
            return backoffs;
    }
}

template <class M> void unlock_all(std::vector<M*>& held) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    for (M* h : held)
        h->unlock();
    held.clear();
}

// ---------------------------------------------------------------- the acquire context

TEST(WwAcquireCtx, InitStampsDoneFini)
{
    klock::ww_acquire_ctx idle;
    EXPECT_FALSE(idle.active());

    klock::ww_acquire_ctx a(ww_class_wait_die{});
    klock::ww_acquire_ctx b;
    klock::ww_acquire_init(&b, ww_class_wound_wait{});
    EXPECT_TRUE(a.active());
    EXPECT_TRUE(b.active());
    EXPECT_LT(a.stamp(), b.stamp()); // a is older
    EXPECT_TRUE(a.is_wait_die());
    EXPECT_FALSE(b.is_wait_die());
    EXPECT_STREQ(a.class_name(), "ww_class_wait_die");
    EXPECT_STREQ(b.class_name(), "ww_class_wound_wait");
    EXPECT_EQ(a.acquired(), 0u);
    EXPECT_FALSE(a.wounded());

    klock::report_capture cap;
    a.acquire_done();
    klock::ww_acquire_done(&b);
    a.acquire_fini();
    klock::ww_acquire_fini(&b);
    EXPECT_FALSE(a.active());
    EXPECT_FALSE(b.active());
    const std::uint64_t old = a.stamp();
    a.init(ww_class_wait_die{}); // a new transaction: a new, younger stamp
    EXPECT_GT(a.stamp(), old);
    EXPECT_GT(a.stamp(), b.stamp());
    EXPECT_EQ(cap.count(), 0u);
}

// ---------------------------------------------------------------- single-thread operations

TYPED_TEST(WwMutexTest, LockUnlockWithContext)
{
    klock::ww_mutex<TypeParam> m, n;
    klock::ww_acquire_ctx ctx(TypeParam{});
    EXPECT_FALSE(m.is_locked());
    EXPECT_EQ(m.lock(&ctx), 0);
    EXPECT_TRUE(m.is_locked());
    EXPECT_EQ(m.owner_word(), word_of(os::current())); // no flag without contention
    EXPECT_EQ(m.owner_pid(), gettid_now());
    EXPECT_EQ(m.context(), &ctx);
    EXPECT_EQ(ctx.acquired(), 1u);
    EXPECT_EQ(n.lock(&ctx), 0);
    EXPECT_EQ(ctx.acquired(), 2u);
    ctx.acquire_done();
    m.unlock();
    EXPECT_EQ(ctx.acquired(), 1u);
    EXPECT_EQ(m.context(), nullptr);
    EXPECT_EQ(m.owner_word(), 0u);
    n.unlock();
    EXPECT_EQ(ctx.acquired(), 0u);
    ctx.acquire_fini();
}

TYPED_TEST(WwMutexTest, AaReturnsEalreadyAndChangesNothing)
{
    klock::ww_mutex<TypeParam> m;
    klock::ww_acquire_ctx ctx(TypeParam{});
    klock::report_capture cap;
    ASSERT_EQ(m.lock(&ctx), 0);
    EXPECT_EQ(m.lock(&ctx), -EALREADY);
    EXPECT_EQ(ctx.acquired(), 1u); // not counted twice
    EXPECT_EQ(m.context(), &ctx);
    EXPECT_FALSE(m.try_lock(&ctx));
    m.unlock();
    EXPECT_FALSE(m.is_locked()); // one unlock releases it
    EXPECT_EQ(ctx.acquired(), 0u);
    EXPECT_EQ(cap.count(), 0u); // -EALREADY is an answer, not a misuse
    ctx.acquire_fini();
}

TYPED_TEST(WwMutexTest, NullContextIsAPlainMutex)
{
    klock::test::watchdog wd(10s, "WwMutexTest.NullContextIsAPlainMutex");
    klock::ww_mutex<TypeParam> m;
    EXPECT_EQ(m.lock(nullptr), 0);
    EXPECT_EQ(m.context(), nullptr);
    bool other_got_it = true;
    std::thread([&] { other_got_it = m.try_lock(); }).join();
    EXPECT_FALSE(other_got_it);
    m.unlock();
    {
        std::lock_guard<klock::ww_mutex<TypeParam>> g(m); // Lockable
        EXPECT_TRUE(m.is_locked());
    }
    {
        klock::lock_guard<klock::ww_mutex<TypeParam>> g(m);
        EXPECT_TRUE(m.is_locked());
    }
    EXPECT_FALSE(m.is_locked());
    // A plain lock(): waits for a context holder like any mutex, and holds no context.
    klock::ww_acquire_ctx ctx(TypeParam{});
    ASSERT_EQ(m.lock(&ctx), 0);
    std::atomic<int> got{0};
    std::thread t([&] {
        m.lock();
        got = 1;
        m.unlock();
    });
    EXPECT_TRUE(klock::test::wait_until([&] { return (m.owner_word() & WW_FLAG_WAITERS) != 0; }));
    EXPECT_EQ(got.load(), 0);
    m.unlock();
    t.join();
    EXPECT_EQ(got.load(), 1);
    EXPECT_EQ(m.owner_word(), 0u);
}

TYPED_TEST(WwMutexTest, TryLockWithAndWithoutContext)
{
    klock::ww_mutex<TypeParam> m;
    klock::ww_acquire_ctx ctx(TypeParam{});
    EXPECT_TRUE(m.try_lock());
    EXPECT_FALSE(m.try_lock()); // by the owner: simply fails
    EXPECT_EQ(m.context(), nullptr);
    bool other = true;
    std::thread([&] { other = m.try_lock(); }).join();
    EXPECT_FALSE(other);
    EXPECT_FALSE(m.try_lock(&ctx));
    m.unlock();

    EXPECT_TRUE(m.try_lock(&ctx));
    EXPECT_EQ(m.context(), &ctx);
    EXPECT_EQ(ctx.acquired(), 1u);
    std::thread([&] { other = m.try_lock(); }).join();
    EXPECT_FALSE(other);
    m.unlock();
    EXPECT_EQ(ctx.acquired(), 0u);
    EXPECT_TRUE(m.try_lock(nullptr));
    m.unlock();
    ctx.acquire_fini();
}

// The wait list is sorted by stamp: an older context that queues later is served first, and the
// lock is not free for the taking while somebody waits.
TYPED_TEST(WwMutexTest, WaitersAreServedOldestFirst)
{
    klock::test::watchdog wd(10s, "WwMutexTest.WaitersAreServedOldestFirst");
    using M = klock::ww_mutex<TypeParam>;
    M l;
    l.lock(); // plain holder
    std::atomic<int> stage{0}, next{0};
    int got[2] = {-1, -1}; // [0]: older, [1]: younger
    std::atomic<os::task*> task[2] = {nullptr, nullptr};
    auto waiter = [&](int who) KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        task[who] = os::current();
        while (stage.load() != who)
            std::this_thread::yield();
        typename M::ctx_type ctx(TypeParam{});
        stage = who + 1;
        while (stage.load() != (who == 1 ? 3 : 4)) // the younger queues first
            std::this_thread::yield();
        if (who == 0) // the younger one must be asleep in the queue first
            wait_asleep(task[1]);
        stage = stage.load() + 1;
        if (l.lock(&ctx) != 0)
            std::abort();
        got[who] = next.fetch_add(1);
        l.unlock();
        ctx.acquire_fini();
    };
    std::thread older(waiter, 0), younger(waiter, 1);
    while (stage.load() != 2)
        std::this_thread::yield();
    stage = 3;
    EXPECT_TRUE(wait_asleep(task[0])); // both asleep in the queue
    EXPECT_TRUE(wait_asleep(task[1]));
    l.unlock();
    older.join();
    younger.join();
    EXPECT_EQ(got[0], 0) << "the older context must get the lock first";
    EXPECT_EQ(got[1], 1);
    EXPECT_EQ(l.owner_word(), 0u);
}

// ---------------------------------------------------------------- deadlock avoidance

// Two threads take {A, B} in opposite orders, each holding its first lock before asking for the
// second: a certain ABBA deadlock for a plain mutex. The younger context must back off (Wait-Die:
// it dies asking the older holder; Wound-Wait: the older waiter wounds it), the older never.
TYPED_TEST(WwMutexTest, AbbaResolvesByBackoff)
{
    klock::test::watchdog wd(10s, "WwMutexTest.AbbaResolvesByBackoff");
    using M = klock::ww_mutex<TypeParam>;
    M a, b;
    std::atomic<int> turn{0}, holding{0}, errors{0};
    int backoffs[2] = {0, 0};
    int sections = 0;
    klock::test::run_threads(2, [&](int id) {
        while (turn.load() != id) // the contexts' ages follow the thread index
            std::this_thread::yield();
        typename M::ctx_type ctx(TypeParam{});
        turn = id + 1;
        std::vector<M*> held;
        const std::vector<M*> order = id == 0 ? std::vector<M*>{&a, &b} : std::vector<M*>{&b, &a};
        backoffs[id] = lock_all(order, ctx, held, errors, [&] { arrive_and_wait(holding, 2); });
        ctx.acquire_done();
        if (held.size() != 2 || ctx.acquired() != 2)
            errors.fetch_add(1);
        ++sections; // both locks held: exclusive
        unlock_all(held);
        ctx.acquire_fini();
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(sections, 2);
    EXPECT_EQ(backoffs[0], 0) << "the older context must never back off";
    EXPECT_GE(backoffs[1], 1) << "the younger context must have backed off";
    EXPECT_FALSE(a.is_locked());
    EXPECT_FALSE(b.is_locked());
}

// A 3-lock cycle among 3 threads: T0 takes L0 then L1, T1 L1 then L2, T2 L2 then L0.
TYPED_TEST(WwMutexTest, ThreeLockCycleResolves)
{
    klock::test::watchdog wd(10s, "WwMutexTest.ThreeLockCycleResolves");
    using M = klock::ww_mutex<TypeParam>;
    M l[3];
    std::atomic<int> turn{0}, holding{0}, errors{0};
    int backoffs[3] = {0, 0, 0};
    std::atomic<int> done{0};
    klock::test::run_threads(3, [&](int id) {
        while (turn.load() != id)
            std::this_thread::yield();
        typename M::ctx_type ctx(TypeParam{});
        turn = id + 1;
        std::vector<M*> held;
        backoffs[id] = lock_all(
            std::vector<M*>{&l[id], &l[(id + 1) % 3]}, ctx, held, errors, [&] { arrive_and_wait(holding, 3); });
        if (held.size() != 2)
            errors.fetch_add(1);
        done.fetch_add(1);
        unlock_all(held);
        ctx.acquire_fini();
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(done.load(), 3);
    EXPECT_EQ(backoffs[0], 0) << "the oldest context must never back off";
    EXPECT_GE(backoffs[1] + backoffs[2], 1) << "somebody must have broken the cycle";
    for (auto& m : l)
        EXPECT_FALSE(m.is_locked());
}

// ---------------------------------------------------------------- Wait-Die

// Holds `m` under a fresh context on its own thread until released, for scenario setup.
template <class M> class holder {
public:
    template <class Class> holder(M& m, Class c) : m_(m)
    {
        std::atomic<bool> ready{false};
        t_ = std::thread([this, c, &ready]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
            typename M::ctx_type ctx(c);
            stamp_ = ctx.stamp();
            if (m_.lock(&ctx) != 0)
                std::abort();
            ready = true;
            while (!release_.load())
                std::this_thread::yield();
            m_.unlock();
            ctx.acquire_fini();
        });
        while (!ready.load())
            std::this_thread::yield();
    }
    ~holder() { release(); }
    void release()
    {
        release_ = true;
        if (t_.joinable())
            t_.join();
    }
    std::uint64_t stamp() const { return stamp_; }

private:
    M& m_;
    std::atomic<bool> release_{false};
    std::uint64_t stamp_ = 0;
    std::thread t_;
};

TEST(WwWaitDie, YoungerHoldingLocksDiesAtOnceOlderWaits)
{
    klock::test::watchdog wd(10s, "WwWaitDie.YoungerHoldingLocksDiesAtOnceOlderWaits");
    using M = klock::ww_mutex<ww_class_wait_die>;
    M a, x;
    {
        // A younger context that holds x dies at once on a, held by an older one.
        holder<M> h(a, ww_class_wait_die{});
        klock::ww_acquire_ctx younger(ww_class_wait_die{});
        ASSERT_GT(younger.stamp(), h.stamp());
        ASSERT_EQ(x.lock(&younger), 0);
        EXPECT_EQ(a.lock(&younger), -EDEADLK); // returns while a is held: it did not wait
        EXPECT_EQ(younger.acquired(), 1u);
        EXPECT_TRUE(a.is_locked());
        EXPECT_EQ(a.owner_word() & WW_FLAG_WAITERS, 0u); // and it never queued
        x.unlock();
        younger.acquire_fini();
    }
    // The older context waits for a younger holder instead of dying, even while holding locks.
    klock::ww_acquire_ctx older(ww_class_wait_die{});
    ASSERT_EQ(x.lock(&older), 0);
    holder<M> young(a, ww_class_wait_die{});
    ASSERT_GT(young.stamp(), older.stamp());
    std::atomic<bool> released{false};
    std::thread releaser([&] {
        // Let the older context queue and sleep first.
        klock::test::wait_until([&] { return (a.owner_word() & WW_FLAG_WAITERS) != 0; });
        std::this_thread::sleep_for(20ms);
        released = true;
        young.release();
    });
    EXPECT_EQ(a.lock(&older), 0); // waits: never dies
    EXPECT_TRUE(released.load()) << "lock() returned before the younger holder released";
    releaser.join();
    EXPECT_EQ(older.acquired(), 2u);
    a.unlock();
    x.unlock();
    older.acquire_fini();
}

TEST(WwWaitDie, ContextWithoutLocksWaitsEvenWhenYounger)
{
    klock::test::watchdog wd(10s, "WwWaitDie.ContextWithoutLocksWaitsEvenWhenYounger");
    using M = klock::ww_mutex<ww_class_wait_die>;
    M a;
    holder<M> h(a, ww_class_wait_die{});
    klock::ww_acquire_ctx younger(ww_class_wait_die{});
    ASSERT_GT(younger.stamp(), h.stamp());
    std::atomic<bool> released{false};
    std::thread t([&] {
        klock::test::wait_until([&] { return (a.owner_word() & WW_FLAG_WAITERS) != 0; });
        std::this_thread::sleep_for(10ms);
        released = true;
        h.release();
    });
    EXPECT_EQ(a.lock(&younger), 0); // holds nothing: cannot be in a cycle, so it waits
    EXPECT_TRUE(released.load());
    t.join();
    a.unlock();
    younger.acquire_fini();
}

// A younger context that holds locks and waits (behind a plain holder) must die as soon as an older
// context queues in front of it; one that arrives behind an older waiter dies without queueing.
TEST(WwWaitDie, OlderWaiterMakesYoungerWaiterDie)
{
    klock::test::watchdog wd(10s, "WwWaitDie.OlderWaiterMakesYoungerWaiterDie");
    using M = klock::ww_mutex<ww_class_wait_die>;
    M a, x, y;
    a.lock(); // a plain holder (this thread): no context to compare with
    std::atomic<int> young_result{1}, old_result{1}, late_result{1};
    std::atomic<int> stage{0};
    std::thread young([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        while (stage.load() != 1)
            std::this_thread::yield();
        klock::ww_acquire_ctx ctx(ww_class_wait_die{});
        if (y.lock(&ctx) != 0)
            std::abort();
        stage = 2;
        young_result = a.lock(&ctx); // queues behind the plain holder
        if (young_result == 0)
            a.unlock();
        y.unlock();
        ctx.acquire_fini();
    });
    std::thread old([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        klock::ww_acquire_ctx ctx(ww_class_wait_die{}); // initialised first: older
        stage = 1;
        if (x.lock(&ctx) != 0)
            std::abort();
        while (stage.load() != 3)
            std::this_thread::yield();
        old_result = a.lock(&ctx); // queues in front of the younger one, which must die
        if (old_result == 0)
            a.unlock();
        x.unlock();
        ctx.acquire_fini();
    });
    while (stage.load() != 2)
        std::this_thread::yield();
    EXPECT_TRUE(klock::test::wait_until([&] { return (a.owner_word() & WW_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(10ms); // the younger one sleeps in a's queue
    stage = 3;
    EXPECT_TRUE(klock::test::wait_until([&] { return young_result.load() != 1; }))
        << "the younger waiter was not woken to die";
    EXPECT_EQ(young_result.load(), -EDEADLK);

    // Now the older context waits in a's queue; a late younger one with locks dies on arrival.
    std::this_thread::sleep_for(10ms);
    std::thread late([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        klock::ww_acquire_ctx ctx(ww_class_wait_die{});
        if (y.lock(&ctx) != 0)
            std::abort();
        late_result = a.lock(&ctx);
        if (late_result == 0)
            a.unlock();
        y.unlock();
        ctx.acquire_fini();
    });
    late.join(); // returns while `a` is still held by this thread: it did not wait
    EXPECT_EQ(late_result.load(), -EDEADLK);
    EXPECT_EQ(old_result.load(), 1); // still waiting
    a.unlock();
    old.join();
    young.join();
    EXPECT_EQ(old_result.load(), 0);
    EXPECT_FALSE(a.is_locked());
}

// ---------------------------------------------------------------- Wound-Wait

// The younger context holds b and sleeps on c (held by this thread, no context): blocked elsewhere.
// The older context, holding a, asks for b: it must wound the younger one and wake it where it
// sleeps, so that it backs off from c with -EDEADLK and releases b.
TEST(WwWoundWait, OlderWaiterWoundsYoungerHolderBlockedElsewhere)
{
    klock::test::watchdog wd(10s, "WwWoundWait.OlderWaiterWoundsYoungerHolderBlockedElsewhere");
    using M = klock::ww_mutex<ww_class_wound_wait>;
    M a, b, c;
    c.lock();
    std::atomic<int> stage{0}, young_result{1}, old_result{1};
    std::atomic<bool> young_wounded{false}, old_waited{false};
    std::thread young([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        while (stage.load() != 1)
            std::this_thread::yield();
        klock::ww_acquire_ctx ctx(ww_class_wound_wait{});
        if (b.lock(&ctx) != 0)
            std::abort();
        stage = 2;
        const int r = c.lock(&ctx); // sleeps: c is held by the main thread
        young_wounded = ctx.wounded();
        young_result = r;
        if (r == -EDEADLK) {
            b.unlock();
            c.lock_slow(&ctx); // the back-off: sleep on the contended lock holding nothing
            if (b.lock(&ctx) != 0)
                std::abort();
            b.unlock();
        }
        c.unlock();
        ctx.acquire_fini();
    });
    std::thread old([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        klock::ww_acquire_ctx ctx(ww_class_wound_wait{});
        stage = 1;
        if (a.lock(&ctx) != 0)
            std::abort();
        while (stage.load() != 3)
            std::this_thread::yield();
        old_result = b.lock(&ctx); // wounds the younger holder, then waits for b
        old_waited = true;
        if (old_result == 0)
            b.unlock();
        a.unlock();
        ctx.acquire_fini();
    });
    while (stage.load() != 2)
        std::this_thread::yield();
    EXPECT_TRUE(klock::test::wait_until([&] { return (c.owner_word() & WW_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(10ms); // the younger one sleeps in c's queue
    stage = 3;
    EXPECT_TRUE(klock::test::wait_until([&] { return young_result.load() != 1; }))
        << "the wounded holder was not woken in c's queue";
    EXPECT_EQ(young_result.load(), -EDEADLK);
    EXPECT_TRUE(young_wounded.load());
    EXPECT_TRUE(klock::test::wait_until([&] { return old_waited.load(); }));
    EXPECT_EQ(old_result.load(), 0);
    EXPECT_TRUE(c.is_locked()); // still ours all along
    c.unlock();
    old.join();
    young.join();
    EXPECT_FALSE(b.is_locked());
    EXPECT_FALSE(c.is_locked());
}

TEST(WwWoundWait, YoungerWaitsForOlderAndIsNotWounded)
{
    klock::test::watchdog wd(10s, "WwWoundWait.YoungerWaitsForOlderAndIsNotWounded");
    using M = klock::ww_mutex<ww_class_wound_wait>;
    M a, x;
    klock::ww_acquire_ctx older(ww_class_wound_wait{});
    ASSERT_EQ(a.lock(&older), 0);
    std::atomic<int> result{1};
    std::atomic<bool> wounded{true};
    std::thread t([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        klock::ww_acquire_ctx younger(ww_class_wound_wait{});
        if (x.lock(&younger) != 0)
            std::abort();
        result = a.lock(&younger); // younger waits for the older holder (Wound-Wait never dies here)
        wounded = younger.wounded();
        if (result == 0)
            a.unlock();
        x.unlock();
        younger.acquire_fini();
    });
    EXPECT_TRUE(klock::test::wait_until([&] { return (a.owner_word() & WW_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(result.load(), 1);   // still waiting
    EXPECT_FALSE(older.wounded()); // a younger waiter does not wound
    a.unlock();
    t.join();
    EXPECT_EQ(result.load(), 0);
    EXPECT_FALSE(wounded.load());
    older.acquire_fini();
}

// An older context that holds nothing cannot be in a cycle: it waits without wounding.
TEST(WwWoundWait, OlderWithoutLocksDoesNotWound)
{
    klock::test::watchdog wd(10s, "WwWoundWait.OlderWithoutLocksDoesNotWound");
    using M = klock::ww_mutex<ww_class_wound_wait>;
    M b;
    std::atomic<int> stage{0}, result{1};
    std::thread t([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        klock::ww_acquire_ctx older(ww_class_wound_wait{});
        stage = 1;
        while (stage.load() != 2)
            std::this_thread::yield();
        result = b.lock(&older); // holds nothing: waits, wounds nobody
        if (result == 0)
            b.unlock();
        older.acquire_fini();
    });
    while (stage.load() != 1)
        std::this_thread::yield();
    klock::ww_acquire_ctx younger(ww_class_wound_wait{});
    ASSERT_EQ(b.lock(&younger), 0);
    stage = 2;
    EXPECT_TRUE(klock::test::wait_until([&] { return (b.owner_word() & WW_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(5ms);
    EXPECT_FALSE(younger.wounded());
    EXPECT_EQ(result.load(), 1);
    b.unlock();
    t.join();
    EXPECT_EQ(result.load(), 0);
    younger.acquire_fini();
}

// ---------------------------------------------------------------- the fast-path race

// The os world, plus a hook that runs just before a ww_mutex publishes its owner's context (the store
// of ctx_ after a fast-path CAS): the window in which a new waiter cannot see the context yet.
template <class T> struct is_ctx_ptr : std::false_type { };
template <class E> struct is_ctx_ptr<klock::basic_ww_acquire_ctx<E>*> : std::true_type { };

struct probe_env : os {
    static inline std::atomic<void (*)()> before_ctx_publish{nullptr};
    template <class T> struct atomic : std::atomic<T> {
        constexpr atomic() noexcept : std::atomic<T>() { }
        constexpr atomic(T v) noexcept : std::atomic<T>(v) { }
        void store(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            if constexpr (is_ctx_ptr<T>::value)
                if (v != nullptr)
                    if (auto* hook = before_ctx_publish.exchange(nullptr))
                        hook();
            std::atomic<T>::store(v, mo);
        }
    };
};
static_assert(klock::env::Env<probe_env>);

template <class Class> struct race_scenario {
    using M = klock::basic_ww_mutex<probe_env, Class>;
    static inline M* lock = nullptr;
    static inline std::atomic<os::task*> waiter{nullptr};
    // In the fast-path owner, before it publishes its context: let the waiter queue, judge (seeing no
    // context) and go to sleep.
    static void hold_back() { wait_asleep(waiter); }
};

// Wait-Die: the older owner publishes its context after a younger waiter (holding locks) has judged
// the lock and gone to sleep: the owner must wake it to die.
TEST(WwFastPathRace, WaitDieOwnerMakesYoungerWaiterDie)
{
    klock::test::watchdog wd(10s, "WwFastPathRace.WaitDieOwnerMakesYoungerWaiterDie");
    using S = race_scenario<ww_class_wait_die>;
    using ctx_t = klock::basic_ww_acquire_ctx<probe_env>;
    S::M l, x;
    S::lock = &l;
    S::waiter = nullptr;
    ctx_t older(ww_class_wait_die{});
    std::atomic<int> result{1};
    std::atomic<bool> go{false};
    std::thread young([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        ctx_t ctx(ww_class_wait_die{});
        S::waiter = os::current();
        if (x.lock(&ctx) != 0)
            std::abort();
        go = true;
        EXPECT_TRUE(klock::test::wait_until([&] { return l.is_locked(); }));
        result = l.lock(&ctx);
        if (result == 0)
            l.unlock();
        x.unlock();
        ctx.acquire_fini();
    });
    while (!go.load())
        std::this_thread::yield();
    probe_env::before_ctx_publish = &S::hold_back;
    ASSERT_EQ(l.lock(&older), 0);
    EXPECT_TRUE(klock::test::wait_until([&] { return result.load() != 1; }, 3000ms))
        << "the younger waiter slept on although the older owner's context was published";
    EXPECT_EQ(result.load(), -EDEADLK);
    l.unlock();
    young.join();
    older.acquire_fini();
}

// Wound-Wait: the younger owner publishes its context after an older waiter (holding locks) has
// queued without seeing it: the owner must wound itself.
TEST(WwFastPathRace, WoundWaitOwnerWoundsItself)
{
    klock::test::watchdog wd(10s, "WwFastPathRace.WoundWaitOwnerWoundsItself");
    using S = race_scenario<ww_class_wound_wait>;
    using ctx_t = klock::basic_ww_acquire_ctx<probe_env>;
    S::M l, x, y;
    S::lock = &l;
    S::waiter = nullptr;
    std::atomic<int> stage{0}, result{1};
    std::thread old([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        ctx_t ctx(ww_class_wound_wait{});
        S::waiter = os::current();
        stage = 1;
        if (x.lock(&ctx) != 0)
            std::abort();
        while (stage.load() != 2)
            std::this_thread::yield();
        EXPECT_TRUE(klock::test::wait_until([&] { return l.is_locked(); }));
        result = l.lock(&ctx);
        if (result == 0)
            l.unlock();
        x.unlock();
        ctx.acquire_fini();
    });
    while (stage.load() != 1)
        std::this_thread::yield();
    ctx_t younger(ww_class_wound_wait{});
    ASSERT_EQ(y.lock(&younger), 0);
    stage = 2;
    probe_env::before_ctx_publish = &S::hold_back;
    ASSERT_EQ(l.lock(&younger), 0);
    EXPECT_TRUE(younger.wounded()) << "the owner did not check the waiters that queued before its context was visible";
    EXPECT_EQ(result.load(), 1); // the older one still waits
    l.unlock();
    y.unlock();
    old.join();
    EXPECT_EQ(result.load(), 0);
    // Backed off (holds nothing): the wound is history, the next lock starts clean.
    ASSERT_EQ(y.lock(&younger), 0);
    EXPECT_FALSE(younger.wounded());
    y.unlock();
    younger.acquire_fini();
}

// ---------------------------------------------------------------- stress

// `threads` threads each run `iters` transactions over a random subset of 5 locks in random order,
// with the full back-off protocol, and check inside that they alone hold every lock of the subset.
// Size-1 transactions use lock() without a context half of the time, so plain waiters mix in.
template <class Class> long transaction_stress(int threads, int iters)
{
    using M = klock::ww_mutex<Class>;
    constexpr int n = 5;
    M locks[n];
    std::atomic<int> holder[n];
    std::uint64_t count[n] = {};
    for (auto& h : holder)
        h = -1;
    std::atomic<int> errors{0}, overlaps{0};
    std::atomic<long> backoffs{0};
    std::vector<std::array<std::uint64_t, n>> expected(static_cast<std::size_t>(threads));
    klock::test::run_threads(threads, [&](int id) KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 17u);
        std::array<std::uint64_t, n>& mine = expected[static_cast<std::size_t>(id)];
        mine.fill(0);
        std::vector<M*> held;
        for (int it = 0; it < iters; ++it) {
            std::vector<int> idx{0, 1, 2, 3, 4};
            std::shuffle(idx.begin(), idx.end(), rng);
            idx.resize(1 + rng() % n);
            std::vector<M*> order;
            for (int i : idx)
                order.push_back(&locks[i]);
            if (idx.size() == 1 && (rng() & 1)) {
                order[0]->lock();
                held.assign(1, order[0]);
            } else {
                klock::ww_acquire_ctx ctx(Class{});
                backoffs += lock_all(order, ctx, held, errors, [] {});
                ctx.acquire_done();
                if (ctx.acquired() != idx.size())
                    errors.fetch_add(1);
                // Reorder `held` to match idx for the bookkeeping below.
                held = order;
                for (int i : idx)
                    if (holder[i].exchange(id) != -1)
                        overlaps.fetch_add(1);
                for (int i : idx) {
                    ++count[i];
                    ++mine[static_cast<std::size_t>(i)];
                }
                if (rng() % 8 == 0)
                    std::this_thread::yield(); // a long section now and then
                for (int i : idx)
                    holder[i].store(-1);
                unlock_all(held);
                if (ctx.acquired() != 0)
                    errors.fetch_add(1);
                ctx.acquire_fini();
                continue;
            }
            const int i = idx[0];
            if (holder[i].exchange(id) != -1)
                overlaps.fetch_add(1);
            ++count[i];
            ++mine[static_cast<std::size_t>(i)];
            holder[i].store(-1);
            unlock_all(held);
        }
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(overlaps.load(), 0);
    for (int i = 0; i < n; ++i) {
        std::uint64_t want = 0;
        for (auto& e : expected)
            want += e[static_cast<std::size_t>(i)];
        EXPECT_EQ(count[i], want) << "lock " << i;
        EXPECT_EQ(locks[i].owner_word(), 0u);
    }
    return backoffs.load();
}

TYPED_TEST(WwMutexTest, RandomTransactionsStress)
{
    klock::test::watchdog wd(20s, "WwMutexTest.RandomTransactionsStress");
    // Typically well over 1000 back-offs in one round. On a loaded machine the threads may happen
    // to run one after another and never collide: a few more rounds, then the paths must have run.
    long backoffs = 0;
    for (int round = 0; round < 5 && backoffs == 0; ++round)
        backoffs += transaction_stress<TypeParam>(4, 1000);
    std::printf("[          ] %ld back-offs\n", backoffs);
    EXPECT_GT(backoffs, 0);
}

// The usual counter stress, through lock(ctx) on a single lock (no back-off possible: never -EDEADLK).
TYPED_TEST(WwMutexTest, CounterStressSingleLock)
{
    klock::test::watchdog wd(20s, "WwMutexTest.CounterStressSingleLock");
    klock::ww_mutex<TypeParam> m;
    std::uint64_t counter = 0;
    std::atomic<int> inside{0}, overlaps{0}, errors{0};
    constexpr int threads = 5, iters = 2000;
    klock::test::run_threads(threads, [&](int) KLOCK_NO_THREAD_SAFETY_ANALYSIS {
        for (int i = 0; i < iters; ++i) {
            klock::ww_acquire_ctx ctx(TypeParam{});
            if (m.lock(&ctx) != 0)
                errors.fetch_add(1);
            if (inside.fetch_add(1) != 0)
                overlaps.fetch_add(1);
            ++counter;
            inside.fetch_sub(1);
            m.unlock();
            ctx.acquire_fini();
        }
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(counter, static_cast<std::uint64_t>(threads) * iters);
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- the Env seam

TEST(WwMutexEnv, CountingEnvSeesTheAtomicsAndFutexes)
{
    klock::test::watchdog wd(10s, "WwMutexEnv.CountingEnvSeesTheAtomicsAndFutexes");
    using E = klock::test::counting_env;
    using M = klock::basic_ww_mutex<E, ww_class_wound_wait>;
    using ctx_t = klock::basic_ww_acquire_ctx<E>;
    M a, b;
    E::reset();
    {
        ctx_t ctx(ww_class_wound_wait{});
        ASSERT_EQ(a.lock(&ctx), 0);
        ASSERT_EQ(b.lock(&ctx), 0);
        b.unlock();
        a.unlock();
        ctx.acquire_fini();
    }
    EXPECT_GT(E::atomic_ops.load(), 0u);
    EXPECT_EQ(E::futex_calls.load(), 0u); // uncontended: no sleeping, no waking
    {
        // A waiter that sleeps and is woken does so through the Env's futexes.
        ctx_t ctx(ww_class_wound_wait{});
        ASSERT_EQ(a.lock(&ctx), 0);
        std::atomic<os::task*> waiter{nullptr};
        std::atomic<int> result{1};
        std::thread t([&]() KLOCK_NO_THREAD_SAFETY_ANALYSIS {
            ctx_t other(ww_class_wound_wait{});
            waiter = os::current();
            result = a.lock(&other);
            if (result == 0)
                a.unlock();
            other.acquire_fini();
        });
        EXPECT_TRUE(wait_asleep(waiter));
        a.unlock();
        t.join();
        EXPECT_EQ(result.load(), 0);
        ctx.acquire_fini();
        EXPECT_GE(E::futex_calls.load(), 2u); // its wait and our wake
    }
    // ABBA between two threads: the wound/back-off paths over the Env's atomics.
    std::atomic<int> turn{0}, holding{0}, errors{0};
    int backoffs[2] = {0, 0};
    klock::test::run_threads(2, [&](int id) {
        while (turn.load() != id)
            std::this_thread::yield();
        ctx_t ctx(ww_class_wound_wait{});
        turn = id + 1;
        std::vector<M*> held;
        backoffs[id] = lock_all(id == 0 ? std::vector<M*>{&a, &b} : std::vector<M*>{&b, &a}, ctx, held, errors,
            [&] { arrive_and_wait(holding, 2); });
        unlock_all(held);
        ctx.acquire_fini();
    });
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(backoffs[0], 0);
    EXPECT_GE(backoffs[1], 1);
    EXPECT_FALSE(a.is_locked());
    EXPECT_FALSE(b.is_locked());
}

// ---------------------------------------------------------------- misuse

void unlock_it(klock::ww_mutex<ww_class_wait_die>& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.unlock(); }

TEST(WwMutexMisuse, DoubleUnlockIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::ww_mutex<ww_class_wait_die> m;
    klock::ww_acquire_ctx ctx(ww_class_wait_die{});
    klock::report_capture cap;
    ASSERT_EQ(m.lock(&ctx), 0);
    m.unlock();
    unlock_it(m);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: ww_mutex already unlocked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(gettid_now())), std::string::npos) << r;
    EXPECT_EQ(m.owner_word(), 0u);
    EXPECT_EQ(ctx.acquired(), 0u); // not decremented twice
    ctx.acquire_fini();
    EXPECT_EQ(cap.count(), 1u);
}

TEST(WwMutexMisuse, UnlockByNonOwnerIsReportedAndIgnored)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "WwMutexMisuse.UnlockByNonOwnerIsReportedAndIgnored");
    klock::ww_mutex<ww_class_wait_die> m;
    klock::ww_acquire_ctx ctx(ww_class_wait_die{});
    ASSERT_EQ(m.lock(&ctx), 0);
    const std::uintptr_t word = m.owner_word();
    klock::report_capture cap;
    std::thread([&] { unlock_it(m); }).join();
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: ww_mutex wrong owner on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(gettid_now()) + ", .owner_cpu:"), std::string::npos) << r;
    EXPECT_EQ(m.owner_word(), word); // unchanged
    EXPECT_EQ(m.context(), &ctx);
    EXPECT_EQ(ctx.acquired(), 1u);
    m.unlock();
    ctx.acquire_fini();
}

void lock_and_leak(klock::ww_mutex<ww_class_wait_die>& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.lock(); }

TEST(WwMutexMisuse, DestroyWhileLockedIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::report_capture cap;
    {
        std::optional<klock::ww_mutex<ww_class_wait_die>> m;
        m.emplace();
        m->lock();
        m->unlock();
        m.reset();
    }
    EXPECT_EQ(cap.count(), 0u);
    {
        std::optional<klock::ww_mutex<ww_class_wait_die>> m;
        m.emplace();
        lock_and_leak(*m);
        m.reset();
    }
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: ww_mutex destroyed while locked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(gettid_now()) + ", .owner_cpu:"), std::string::npos) << r;
}

TEST(WwMutexMisuse, FiniWithLocksHeldIsReportedAndKeepsTheContext)
{
    klock::ww_mutex<ww_class_wound_wait> m;
    klock::ww_acquire_ctx ctx(ww_class_wound_wait{});
    ASSERT_EQ(m.lock(&ctx), 0);
    klock::report_capture cap;
    ctx.acquire_fini();
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("BUG: ww_acquire_fini with locks held on CPU#"), std::string::npos)
        << cap.reports()[0];
    EXPECT_NE(cap.reports()[0].find("(1 still held)"), std::string::npos) << cap.reports()[0];
    EXPECT_TRUE(ctx.active());
    EXPECT_EQ(ctx.acquired(), 1u);
    m.unlock();
    ctx.acquire_fini();
    EXPECT_FALSE(ctx.active());
    EXPECT_EQ(cap.count(), 1u);
}

TEST(WwMutexMisuse, ContextOfTheWrongClassIsRefused)
{
    klock::ww_mutex<ww_class_wound_wait> m;
    klock::ww_acquire_ctx ctx(ww_class_wait_die{});
    klock::report_capture cap;
    EXPECT_EQ(m.lock(&ctx), -EINVAL);
    EXPECT_FALSE(m.try_lock(&ctx));
    m.lock_slow(&ctx);
    ASSERT_EQ(cap.count(), 3u);
    for (const std::string& r : cap.reports()) {
        EXPECT_NE(r.find("BUG: ww_mutex class mismatch on CPU#"), std::string::npos) << r;
        EXPECT_NE(r.find("class ww_class_wait_die"), std::string::npos) << r;
        EXPECT_NE(r.find("(lock class ww_class_wound_wait)"), std::string::npos) << r;
    }
    EXPECT_FALSE(m.is_locked()); // nothing taken
    EXPECT_EQ(ctx.acquired(), 0u);
    ctx.acquire_fini();
}

TEST(WwMutexMisuse, LockAfterAcquireDoneIsReported)
{
    klock::ww_mutex<ww_class_wait_die> a, b;
    klock::ww_acquire_ctx ctx(ww_class_wait_die{});
    ASSERT_EQ(a.lock(&ctx), 0);
    ctx.acquire_done();
    klock::report_capture cap;
    EXPECT_EQ(b.lock(&ctx), 0); // as in the kernel: reported, then taken
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("BUG: ww_mutex lock after ww_acquire_done on CPU#"), std::string::npos)
        << cap.reports()[0];
    EXPECT_EQ(ctx.acquired(), 2u);
    ctx.acquire_done();
    ASSERT_EQ(cap.count(), 2u);
    EXPECT_NE(cap.reports()[1].find("BUG: ww_acquire_done called twice on CPU#"), std::string::npos)
        << cap.reports()[1];
    b.unlock();
    a.unlock();
    ctx.acquire_fini();
}

TEST(WwMutexMisuse, ContextUsedOutsideItsLifeOrByAnotherTaskIsRefused)
{
    klock::ww_mutex<ww_class_wait_die> m;
    klock::report_capture cap;
    klock::ww_acquire_ctx never;
    EXPECT_EQ(m.lock(&never), -EINVAL);
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("BUG: ww_acquire_ctx used before ww_acquire_init on CPU#"), std::string::npos)
        << cap.reports()[0];

    klock::ww_acquire_ctx ctx(ww_class_wait_die{});
    ctx.acquire_fini();
    EXPECT_EQ(m.lock(&ctx), -EINVAL);
    ctx.acquire_done();
    ASSERT_EQ(cap.count(), 3u);
    EXPECT_NE(cap.reports()[1].find("BUG: ww_acquire_ctx used after ww_acquire_fini on CPU#"), std::string::npos)
        << cap.reports()[1];
    EXPECT_NE(cap.reports()[2].find("ww_acquire_ctx used after ww_acquire_fini"), std::string::npos)
        << cap.reports()[2];

    klock::ww_acquire_ctx mine(ww_class_wait_die{});
    int r = 0;
    std::thread([&] { r = m.lock(&mine); }).join();
    EXPECT_EQ(r, -EINVAL);
    ASSERT_EQ(cap.count(), 4u);
    EXPECT_NE(cap.reports()[3].find("BUG: ww_acquire_ctx used by another task on CPU#"), std::string::npos)
        << cap.reports()[3];
    EXPECT_FALSE(m.is_locked());
    mine.acquire_fini();
}

unsigned recursive_plain_lock(klock::ww_mutex<ww_class_wait_die>& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    const unsigned line = __LINE__ + 1; // the report must name the next line
    m.lock();
    return line;
}

TEST(WwMutexMisuse, RecursionIsReportedAndRefused)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "WwMutexMisuse.RecursionIsReportedAndRefused");
    klock::ww_mutex<ww_class_wait_die> m;
    klock::ww_acquire_ctx ctx(ww_class_wait_die{}), other(ww_class_wait_die{});
    ASSERT_EQ(m.lock(&ctx), 0);
    klock::report_capture cap;
    const unsigned line = recursive_plain_lock(m);
    EXPECT_EQ(m.lock(&other), -EINVAL); // the same task, another context: a self-deadlock too
    ASSERT_EQ(cap.count(), 2u);
    EXPECT_NE(cap.reports()[0].find("BUG: ww_mutex recursion on CPU#"), std::string::npos) << cap.reports()[0];
    EXPECT_NE(cap.reports()[0].find("ww_mutex_test.cpp:" + std::to_string(line)), std::string::npos)
        << cap.reports()[0];
    EXPECT_NE(cap.reports()[1].find("lock(ctx) with another context"), std::string::npos) << cap.reports()[1];
    EXPECT_EQ(ctx.acquired(), 1u);
    EXPECT_EQ(other.acquired(), 0u);
    EXPECT_EQ(m.context(), &ctx);
    m.unlock();
    EXPECT_FALSE(m.is_locked());
    ctx.acquire_fini();
    other.acquire_fini();
}

// Gets -EDEADLK for `ctx` (Wait-Die, holding x) on `a`, held by an older context on another thread.
struct deadlock_setup {
    klock::ww_mutex<ww_class_wait_die> a, b, x;
    std::optional<holder<klock::ww_mutex<ww_class_wait_die>>> h;
    klock::ww_acquire_ctx ctx;
    deadlock_setup() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        h.emplace(a, ww_class_wait_die{});
        ctx.init(ww_class_wait_die{});
        if (x.lock(&ctx) != 0 || a.lock(&ctx) != -EDEADLK)
            std::abort();
    }
};

TEST(WwMutexMisuse, BackoffProtocolSlipsAreReported)
{
    klock::test::watchdog wd(10s, "WwMutexMisuse.BackoffProtocolSlipsAreReported");
    klock::report_capture cap;
    {
        // After -EDEADLK, taking more locks while still holding x is refused.
        deadlock_setup s;
        EXPECT_EQ(s.b.lock(&s.ctx), -EINVAL);
        s.a.lock_slow(&s.ctx);
        ASSERT_EQ(cap.count(), 2u);
        EXPECT_NE(cap.reports()[0].find("BUG: ww_mutex backoff with locks held on CPU#"), std::string::npos)
            << cap.reports()[0];
        EXPECT_NE(cap.reports()[1].find("BUG: ww_mutex backoff with locks held"), std::string::npos)
            << cap.reports()[1];
        EXPECT_FALSE(s.b.is_locked());
        EXPECT_EQ(s.ctx.acquired(), 1u);
        s.x.unlock();
        s.h->release();
        // Released everything: lock_slow of the contended lock is the protocol, silent.
        s.a.lock_slow(&s.ctx);
        EXPECT_EQ(cap.count(), 2u);
        EXPECT_EQ(s.a.context(), &s.ctx);
        s.a.unlock();
        s.ctx.acquire_fini();
    }
    {
        // After -EDEADLK and the release, starting over with another lock than the contended one.
        deadlock_setup s;
        s.x.unlock();
        EXPECT_EQ(s.b.lock(&s.ctx), 0); // reported, taken
        ASSERT_EQ(cap.count(), 3u);
        EXPECT_NE(cap.reports()[2].find("BUG: ww_mutex backoff to a different lock on CPU#"), std::string::npos)
            << cap.reports()[2];
        EXPECT_EQ(s.b.lock(&s.ctx), -EALREADY); // the slip is forgotten once a lock is taken
        EXPECT_EQ(cap.count(), 3u);
        s.b.unlock();
        s.h->release();
        s.ctx.acquire_fini();
    }
    {
        // lock_slow without a preceding -EDEADLK: reported; taken when the context holds nothing,
        // refused when it holds locks (lock_slow could not report -EDEADLK).
        klock::ww_mutex<ww_class_wait_die> a, b;
        klock::ww_acquire_ctx ctx(ww_class_wait_die{});
        a.lock_slow(&ctx);
        EXPECT_EQ(a.context(), &ctx);
        b.lock_slow(&ctx);
        EXPECT_FALSE(b.is_locked());
        ASSERT_EQ(cap.count(), 5u);
        EXPECT_NE(cap.reports()[3].find("BUG: ww_mutex lock_slow without -EDEADLK on CPU#"), std::string::npos)
            << cap.reports()[3];
        EXPECT_NE(cap.reports()[4].find("(locks held: refused)"), std::string::npos) << cap.reports()[4];
        a.unlock();
        ctx.acquire_fini();
    }
}

TEST(WwMutexMisuse, ContextLifetimeSlipsAreReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::ww_mutex<ww_class_wait_die> m;
    klock::report_capture cap;
    {
        klock::ww_acquire_ctx ctx(ww_class_wait_die{});
        ASSERT_EQ(m.lock(&ctx), 0);
        const std::uint64_t stamp = ctx.stamp();
        ctx.init(ww_class_wait_die{}); // would orphan the lock
        ASSERT_EQ(cap.count(), 1u);
        EXPECT_NE(
            cap.reports()[0].find("BUG: ww_acquire_init on a context that holds locks on CPU#"), std::string::npos)
            << cap.reports()[0];
        EXPECT_EQ(ctx.stamp(), stamp);
        EXPECT_EQ(ctx.acquired(), 1u);
        m.unlock();
    }
    EXPECT_EQ(cap.count(), 1u); // an active context without locks may simply go out of scope
    {
        std::optional<klock::ww_acquire_ctx> ctx;
        ctx.emplace(ww_class_wait_die{});
        ASSERT_EQ(m.lock(&*ctx), 0);
        ctx.reset();
        ASSERT_EQ(cap.count(), 2u);
        EXPECT_NE(cap.reports()[1].find("BUG: ww_acquire_ctx destroyed with locks held on CPU#"), std::string::npos)
            << cap.reports()[1];
        ctx.emplace(ww_class_wait_die{}); // the storage the lock still points to is alive again
        unlock_it(m);
    }
}

TEST(WwMutexMisuse, LockInAtomicContextIsReportedByMightSleep)
{
    klock::ww_mutex<ww_class_wound_wait> m;
    klock::ww_acquire_ctx ctx(ww_class_wound_wait{});
    klock::report_capture cap;
    klock::preempt_disable();
    EXPECT_TRUE(m.try_lock(&ctx)); // trylock never sleeps
    m.unlock();
    EXPECT_EQ(cap.count(), 0u);
    const unsigned line = __LINE__ + 1; // the report must name the next line
    const int r = m.lock(&ctx);
    klock::preempt_enable();
    EXPECT_EQ(r, 0);
    m.unlock();
    ASSERT_EQ(cap.count(), 1u);
    const std::string s = cap.reports()[0];
    EXPECT_NE(s.find("BUG: sleeping function called from invalid context at "), std::string::npos) << s;
    EXPECT_NE(s.find("ww_mutex_test.cpp:" + std::to_string(line)), std::string::npos) << s;
    ctx.acquire_fini();
}

} // namespace

#if defined(__clang__)
#pragma clang diagnostic pop
#endif

// ---------------------------------------------------------------- clang thread-safety analysis

// Correct use must pass clang's -Wthread-safety without a single warning (the build uses -Werror).
namespace {

class two_accounts {
public:
    // Moves n from a to b: both locks under one context, with the back-off protocol.
    void transfer(int n) KLOCK_EXCLUDES(a_, b_)
    {
        klock::ww_acquire_ctx ctx(klock::ww_class_wound_wait{});
        if (a_.lock(&ctx) != 0)
            return; // holds nothing: cannot be -EDEADLK
        if (b_.lock(&ctx) != 0) {
            a_.unlock();
            b_.lock_slow(&ctx);
            if (a_.lock(&ctx) != 0) {
                b_.unlock();
                return;
            }
        }
        ctx.acquire_done();
        a_balance_ -= n;
        b_balance_ += n;
        b_.unlock();
        a_.unlock();
        ctx.acquire_fini();
    }
    int total() KLOCK_EXCLUDES(a_, b_)
    {
        klock::lock_guard<klock::ww_mutex<klock::ww_class_wound_wait>> g(a_);
        if (!b_.try_lock())
            return -1;
        const int t = a_balance_ + b_balance_;
        b_.unlock();
        return t;
    }

private:
    klock::ww_mutex<klock::ww_class_wound_wait> a_, b_;
    int a_balance_ KLOCK_GUARDED_BY(a_) = 10;
    int b_balance_ KLOCK_GUARDED_BY(b_) = 0;
};

TEST(WwMutexThreadSafety, AnnotatedUseIsCleanAndWorks)
{
    two_accounts t;
    t.transfer(3);
    EXPECT_EQ(t.total(), 10);
}

} // namespace
