// klock::mutex: the kernel's sleeping mutex (owner word + WAITERS/HANDOFF/PICKUP, wait_list).
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include "support/counting_env.hpp"
#include "support/stress.hpp"
#include "support/lockdep_off.hpp"

// The scenarios below hand locks across threads, hooks and scopes on purpose, which clang's static
// analysis cannot follow; correct use is checked with the analysis on at the end of the file.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace {

using namespace std::chrono_literals;
using klock::MUTEX_FLAG_HANDOFF;
using klock::MUTEX_FLAG_PICKUP;
using klock::MUTEX_FLAG_WAITERS;
using klock::MUTEX_FLAGS;
using os = klock::env::os;

// The os world with probes, so that tests can drive the slow paths deterministically:
// - spinning can be switched off (task_on_cpu() says "not running"), which makes every contender
//   queue and sleep at once: the sleep/wake protocol alone must then get everything right;
// - hooks run just before each futex_wake (in the waker), after a futex_wait that timed out (in the
//   waiter) and before each store to a 32-bit lock-code atomic, i.e. at the exact points where a
//   handoff can race with a wakeup or a timeout, and a wakeup with a waiter going to sleep.
struct probe_env : os {
    static inline std::atomic<bool> spinning{true};
    static inline std::atomic<void (*)()> on_wake{nullptr};
    static inline std::atomic<void (*)()> on_timeout{nullptr};
    static inline std::atomic<void (*)(std::uint32_t)> on_store32{nullptr};

    template <class T> struct atomic : std::atomic<T> {
        constexpr atomic() noexcept : std::atomic<T>() { }
        constexpr atomic(T v) noexcept : std::atomic<T>(v) { }
        void store(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            if constexpr (std::is_same_v<T, std::uint32_t>)
                if (auto* hook = on_store32.load())
                    hook(v);
            std::atomic<T>::store(v, mo);
        }
    };

    static bool task_on_cpu(task* t) noexcept { return spinning.load(std::memory_order_relaxed) && os::task_on_cpu(t); }
    static int futex_wait(atomic<std::uint32_t>& w, std::uint32_t v, std::uint64_t deadline) noexcept
    {
        const int rc = os::futex_wait(w, v, deadline);
        if (rc == -ETIMEDOUT)
            if (auto* hook = on_timeout.load())
                hook();
        return rc;
    }
    static int futex_wake(atomic<std::uint32_t>& w, int n) noexcept
    {
        if (auto* hook = on_wake.load())
            hook();
        return os::futex_wake(w, n);
    }
};
static_assert(klock::env::Env<probe_env>);
using probe_mutex = klock::basic_mutex<probe_env>;

// Restores the probes when a test ends, however it ends.
struct probe_scope {
    explicit probe_scope(bool spin) { probe_env::spinning = spin; }
    ~probe_scope()
    {
        probe_env::on_store32 = nullptr;
        probe_env::on_wake = nullptr;
        probe_env::on_timeout = nullptr;
        probe_env::spinning = true;
    }
};

template <class Task> std::uintptr_t word_of(Task* t) { return reinterpret_cast<std::uintptr_t>(t); }

// Polls `pred` until it holds or `limit` passes; returns the last value of pred().
template <class Pred> bool eventually(Pred pred, std::chrono::milliseconds limit = 3000ms)
{
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return pred();
        std::this_thread::sleep_for(50us);
    }
    return true;
}

void burn(std::chrono::microseconds d)
{
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) { }
}

void relax(int n)
{
    for (int k = 0; k < n; ++k)
        os::cpu_relax();
}

int gettid_now() { return static_cast<int>(::syscall(SYS_gettid)); }

constinit klock::mutex static_mutex; // constexpr constructor: usable as a constinit global

// ---------------------------------------------------------------- basic operations

TEST(Mutex, TypeProperties)
{
#if KLOCK_LOCKDEP // lockdep's 32-byte map comes on top
    static_assert(sizeof(klock::mutex) <= sizeof(std::mutex) + sizeof(klock::lockdep_map));
#else
    static_assert(sizeof(klock::mutex) <= sizeof(std::mutex));
#endif
    static_assert(!std::is_copy_constructible_v<klock::mutex>);
    static_assert(!std::is_copy_assignable_v<klock::mutex>);
    static_assert(std::is_nothrow_default_constructible_v<klock::mutex>);
    EXPECT_FALSE(static_mutex.is_locked());
    {
        klock::lock_guard<klock::mutex> g(static_mutex);
        EXPECT_TRUE(static_mutex.is_locked());
    }
    EXPECT_FALSE(static_mutex.is_locked());
}

TEST(Mutex, LockSetsOwnerWordToCurrentTask)
{
    klock::mutex m;
    EXPECT_EQ(m.owner_word(), 0u);
    EXPECT_FALSE(m.is_locked());
    EXPECT_EQ(m.owner_pid(), 0);
    m.lock();
    EXPECT_EQ(m.owner_word(), word_of(os::current())); // no flag without contention
    EXPECT_TRUE(m.is_locked());
    EXPECT_EQ(m.owner_pid(), gettid_now());
    m.unlock();
    EXPECT_EQ(m.owner_word(), 0u);
    EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, TryLock)
{
    klock::test::watchdog wd(10s, "Mutex.TryLock");
    klock::mutex m;
    ASSERT_TRUE(m.try_lock());
    EXPECT_EQ(m.owner_word(), word_of(os::current()));
    bool other = true;
    std::thread([&] { other = m.try_lock(); }).join();
    EXPECT_FALSE(other); // held by another task: fails at once, never sleeps
    m.unlock();
    std::thread([&] {
        other = m.try_lock();
        if (other)
            m.unlock();
    }).join();
    EXPECT_TRUE(other);
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(Mutex, WorksWithStandardAndKlockGuards)
{
    klock::mutex a, b;
    {
        std::lock_guard<klock::mutex> g(a);
        EXPECT_TRUE(a.is_locked());
    }
    {
        std::scoped_lock both(a, b); // std::lock's deadlock avoidance uses try_lock
        EXPECT_TRUE(a.is_locked() && b.is_locked());
    }
    {
        std::unique_lock<klock::mutex> u(a, std::defer_lock);
        EXPECT_TRUE(u.try_lock_for(1ms)); // TimedLockable
        u.unlock();
        EXPECT_TRUE(u.try_lock_until(std::chrono::steady_clock::now() + 1ms));
    }
    {
        klock::lock_guard<klock::mutex> g(b);
        EXPECT_TRUE(b.is_locked());
    }
    EXPECT_EQ(a.owner_word(), 0u);
    EXPECT_EQ(b.owner_word(), 0u);
}

TEST(Mutex, LockBlocksUntilOwnerUnlocks)
{
    klock::test::watchdog wd(10s, "Mutex.LockBlocksUntilOwnerUnlocks");
    klock::mutex m;
    std::atomic<bool> acquired{false};
    m.lock();
    std::thread t([&] {
        m.lock();
        acquired = true;
        m.unlock();
    });
    // The contender spins a bounded while, then queues and sets WAITERS.
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(acquired.load());
    EXPECT_EQ(m.owner_word() & ~MUTEX_FLAGS, word_of(os::current()));
    m.unlock();
    t.join();
    EXPECT_TRUE(acquired.load());
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- flags

TEST(MutexFlags, WaitersSetWhileTasksWaitAndClearedAfterTheLastLeaves)
{
    klock::test::watchdog wd(10s, "MutexFlags.WaitersSetWhileTasksWaitAndClearedAfterTheLastLeaves");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    std::atomic<int> order{0};
    std::uintptr_t seen[2] = {};
    std::uintptr_t self[2] = {};
    m.lock();
    auto waiter = [&](int i) {
        self[i] = word_of(probe_env::current());
        m.lock();
        seen[order.fetch_add(1)] = m.owner_word(); // the word as the new owner sees it
        m.unlock();
    };
    std::thread a(waiter, 0);
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    std::thread b(waiter, 1);
    std::this_thread::sleep_for(20ms); // b queues at once: spinning is off
    EXPECT_EQ(m.owner_word(), word_of(probe_env::current()) | MUTEX_FLAG_WAITERS);
    m.unlock();
    a.join();
    b.join();
    ASSERT_EQ(order.load(), 2);
    // FIFO: a first, and b was still queued, so WAITERS stayed set;
    EXPECT_EQ(seen[0], self[0] | MUTEX_FLAG_WAITERS);
    // b was the last waiter: it removed itself and cleared the flags.
    EXPECT_EQ(seen[1], self[1]);
    EXPECT_EQ(m.owner_word(), 0u);
}

// The controlled starvation scenario. main holds the lock; V queues. main unlocks and re-locks before
// V can run (the re-lock happens in the futex_wake hook, while V is provably still asleep), so V's
// first wakeup fails: it must set HANDOFF. main's next unlock must then pass the lock straight to V
// (owner = V | PICKUP, never free), and V picks it up.
namespace handoff_scenario {
std::atomic<probe_mutex*> mutex{nullptr};
std::atomic<std::uintptr_t> main_task{0};
std::atomic<bool> relock{false};
std::atomic<std::uintptr_t> word_at_wake{0};
void on_wake()
{
    if (word_of(probe_env::current()) != main_task.load())
        return;
    if (relock.exchange(false))
        mutex.load()->lock();
    else
        word_at_wake = mutex.load()->owner_word();
}
} // namespace handoff_scenario

void handoff_and_pickup(probe_mutex& m, std::uintptr_t& v_task, std::uintptr_t& v_saw, std::uintptr_t& handed,
    bool& saw_handoff) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    namespace s = handoff_scenario;
    s::mutex = &m;
    s::main_task = word_of(probe_env::current());
    probe_env::on_wake = s::on_wake;
    std::atomic<std::uintptr_t> vt{0};
    m.lock();
    std::thread v([&] {
        vt = word_of(probe_env::current());
        m.lock();
        v_saw = m.owner_word();
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    s::relock = true;
    m.unlock(); // wakes V, and the hook takes the lock back before V runs
    ASSERT_FALSE(s::relock.load()) << "the unlock with a waiter queued did not wake it";
    EXPECT_EQ(m.owner_word() & ~MUTEX_FLAGS, s::main_task.load());
    saw_handoff = eventually([&] { return (m.owner_word() & MUTEX_FLAG_HANDOFF) != 0; });
    m.unlock(); // HANDOFF: the lock goes to V, never becoming free
    handed = s::word_at_wake.load();
    v.join();
    v_task = vt.load();
}

TEST(MutexFlags, HandoffAndPickupInStarvationScenario)
{
    klock::test::watchdog wd(10s, "MutexFlags.HandoffAndPickupInStarvationScenario");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    std::uintptr_t v_task = 0, v_saw = 0, handed = 0;
    bool saw_handoff = false;
    handoff_and_pickup(m, v_task, v_saw, handed, saw_handoff);
    EXPECT_TRUE(saw_handoff) << "a top waiter that was woken and lost the lock must set HANDOFF";
    // When main's unlock woke V, the lock already belonged to V, marked for pickup (and still WAITERS:
    // V is queued until it picks the lock up). The lock was never free in between.
    EXPECT_EQ(handed, v_task | MUTEX_FLAG_PICKUP | MUTEX_FLAG_WAITERS);
    // V picked it up, left the list as the last waiter: all flags clear.
    EXPECT_EQ(v_saw, v_task);
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- lost wakeups

// The unlock runs, start to finish, exactly when the waiter arms its wake word for the first time
// (a hook on that store, in the waiter). The waiter arms the word under wait_lock, so the unlock
// cannot get to the wakeup until the waiter has retried the lock - it then finds the lock free. A
// waiter that armed the word after dropping wait_lock would overwrite the unlock's WOKEN with ARMED
// and sleep forever on a free lock (the watchdog fires).
namespace arm_race {
std::atomic<std::uintptr_t> waiter_task{0};
std::atomic<bool> armed{false};
std::atomic<bool> unlock_requested{false};
std::atomic<bool> unlock_done{false};
void on_store(std::uint32_t value)
{
    if (value != 0 || word_of(probe_env::current()) != waiter_task.load() || !armed.exchange(false))
        return;
    unlock_requested = true;
    eventually([] { return unlock_done.load(); }, 100ms); // cannot complete while we hold wait_lock
}
} // namespace arm_race

void unlock_as_waiter_arms(probe_mutex& m, bool& acquired) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    namespace s = arm_race;
    m.lock();
    std::atomic<bool> got{false};
    std::thread v([&] {
        s::waiter_task = word_of(probe_env::current());
        s::armed = true;
        probe_env::on_store32 = s::on_store;
        m.lock();
        got = true;
        m.unlock();
    });
    while (!s::unlock_requested.load())
        std::this_thread::yield();
    m.unlock();
    s::unlock_done = true;
    v.join();
    acquired = got.load();
}

TEST(MutexLostWakeup, UnlockWhileTheWaiterArmsItsWakeWord)
{
    klock::test::watchdog wd(10s, "MutexLostWakeup.UnlockWhileTheWaiterArmsItsWakeWord");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    bool acquired = false;
    unlock_as_waiter_arms(m, acquired);
    EXPECT_TRUE(acquired);
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- anti-starvation

// G holds the mutex for 300 us at a time and re-locks it immediately after every unlock - with the
// worst timing there is: from the futex_wake hook, i.e. after the release and before the woken waiter
// can even run (try_lock, so that it cannot block when the lock was handed off instead). Without
// HANDOFF the waiter V wakes into a re-taken lock every time and waits for all of G's rounds.
// Two measures per round:
// - after_handoff: G acquisitions after G had seen HANDOFF set while holding the lock, before V got
//   it. HANDOFF promises exactly 0, however late V's thread gets a CPU.
// - waited: all G acquisitions while V waited; this also counts V's scheduling delays on a loaded
//   machine, so it only gets a loose bound (without HANDOFF it hits G's cap).
namespace greedy {
constexpr long cap = 400;
std::atomic<probe_mutex*> mutex{nullptr};
std::atomic<std::uintptr_t> g_task{0};
std::atomic<bool> relocked{false};
void on_wake()
{
    if (word_of(probe_env::current()) == g_task.load() && !relocked.load())
        relocked = mutex.load()->try_lock();
}
} // namespace greedy

struct starvation_result {
    long worst_waited = 0;
    long after_handoff = 0;
    int handoffs_seen = 0;
};

starvation_result greedy_relocker_rounds(probe_mutex& m, int rounds) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    greedy::mutex = &m;
    probe_env::on_wake = greedy::on_wake;
    starvation_result res;
    for (int r = 0; r < rounds; ++r) {
        std::atomic<long> g_acquisitions{0};
        std::atomic<bool> v_done{false};
        std::atomic<bool> g_holding{false};
        long after_handoff = 0;
        bool handoff_seen = false;
        std::thread g([&] {
            greedy::g_task = word_of(probe_env::current());
            m.lock();
            g_holding = true;
            while (!v_done.load() && g_acquisitions.load() < greedy::cap) {
                burn(300us);
                handoff_seen = handoff_seen || (m.owner_word() & MUTEX_FLAG_HANDOFF) != 0;
                greedy::relocked = false;
                m.unlock();
                if (!greedy::relocked.load())
                    m.lock();
                g_acquisitions.fetch_add(1);
                if (handoff_seen && !v_done.load()) // V sets v_done while holding the lock
                    ++after_handoff;
            }
            m.unlock();
        });
        while (!g_holding.load())
            std::this_thread::yield();
        const long before = g_acquisitions.load();
        m.lock();
        const long waited = g_acquisitions.load() - before;
        v_done = true;
        m.unlock();
        g.join();
        greedy::g_task = 0;
        res.worst_waited = std::max(res.worst_waited, waited);
        res.after_handoff += after_handoff;
        res.handoffs_seen += handoff_seen ? 1 : 0;
    }
    return res;
}

TEST(MutexAntiStarvation, SleepingWaiterBeatsGreedyRelocker)
{
    klock::test::watchdog wd(20s, "MutexAntiStarvation.SleepingWaiterBeatsGreedyRelocker");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    const starvation_result r = greedy_relocker_rounds(m, 3);
    EXPECT_EQ(r.handoffs_seen, 3) << "a woken waiter that lost the lock must set HANDOFF";
    EXPECT_EQ(r.after_handoff, 0) << "the greedy task re-took the lock although HANDOFF was set";
    // Expected 1-2; the slack is for V's thread waiting for a CPU on a loaded machine.
    EXPECT_LT(r.worst_waited, greedy::cap / 2) << "the waiter was starved";
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexAntiStarvation, SpinningWaiterBeatsGreedyRelocker)
{
    klock::test::watchdog wd(20s, "MutexAntiStarvation.SpinningWaiterBeatsGreedyRelocker");
    probe_scope probes(/*spin=*/true);
    probe_mutex m;
    const starvation_result r = greedy_relocker_rounds(m, 3);
    // A spinning top waiter may also win the lock in the instant it is free, so HANDOFF need not
    // show up; but once it does, it must hold.
    EXPECT_EQ(r.after_handoff, 0);
    EXPECT_LT(r.worst_waited, greedy::cap / 2);
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- timed locking

TEST(MutexTimed, TimesOutWhileHeldAndLeavesNoFlags)
{
    klock::test::watchdog wd(10s, "MutexTimed.TimesOutWhileHeldAndLeavesNoFlags");
    klock::mutex m;
    m.lock();
    bool got = true;
    std::chrono::steady_clock::duration took{};
    std::thread([&] {
        const auto t0 = std::chrono::steady_clock::now();
        got = m.try_lock_for(30ms);
        took = std::chrono::steady_clock::now() - t0;
        if (got)
            m.unlock();
    }).join();
    EXPECT_FALSE(got);
    EXPECT_GE(took, 29ms);
    // The timed-out waiter was the only one: WAITERS must be gone, or every unlock would go slow.
    EXPECT_EQ(m.owner_word(), word_of(os::current()));
    m.unlock();
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexTimed, SucceedsWhenReleasedInTime)
{
    klock::test::watchdog wd(10s, "MutexTimed.SucceedsWhenReleasedInTime");
    klock::mutex m;
    m.lock();
    std::atomic<bool> got{false};
    std::thread t([&] {
        if (m.try_lock_for(5s)) {
            got = true;
            m.unlock();
        }
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    EXPECT_FALSE(got.load());
    m.unlock();
    t.join();
    EXPECT_TRUE(got.load());
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexTimed, TryLockUntilWithAnyClock)
{
    klock::test::watchdog wd(10s, "MutexTimed.TryLockUntilWithAnyClock");
    klock::mutex m;
    // A deadline in the past on a free mutex still acquires (like try_lock).
    ASSERT_TRUE(m.try_lock_until(std::chrono::steady_clock::now() - 1s));
    m.unlock();
    m.lock();
    bool steady = true, system = true, zero = true;
    std::thread([&] {
        steady = m.try_lock_until(std::chrono::steady_clock::now() + 10ms);
        system = m.try_lock_until(std::chrono::system_clock::now() + 10ms);
        zero = m.try_lock_for(0s);
    }).join();
    EXPECT_FALSE(steady);
    EXPECT_FALSE(system);
    EXPECT_FALSE(zero);
    EXPECT_EQ(m.owner_word(), word_of(os::current()));
    m.unlock();
    std::thread([&] {
        zero = m.try_lock_for(0s);
        if (zero)
            m.unlock();
    }).join();
    EXPECT_TRUE(zero);
}

TEST(MutexTimed, TimedOutWaiterLeavesOthersQueued)
{
    klock::test::watchdog wd(10s, "MutexTimed.TimedOutWaiterLeavesOthersQueued");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    m.lock();
    std::atomic<int> timed_result{-1};
    std::atomic<bool> blocking_got{false};
    std::thread timed([&] {
        const bool ok = m.try_lock_for(80ms);
        timed_result = ok ? 1 : 0;
        if (ok)
            m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    std::thread blocking([&] {
        m.lock();
        blocking_got = true;
        m.unlock();
    });
    timed.join();
    EXPECT_EQ(timed_result.load(), 0);
    // The blocking waiter is still queued: WAITERS must survive the timed waiter's departure.
    EXPECT_EQ(m.owner_word(), word_of(probe_env::current()) | MUTEX_FLAG_WAITERS);
    EXPECT_FALSE(blocking_got.load());
    m.unlock();
    blocking.join();
    EXPECT_TRUE(blocking_got.load());
    EXPECT_EQ(m.owner_word(), 0u);
}

// The lock is handed to a timed waiter (HANDOFF) exactly when its futex wait times out: the hook runs
// in the waiter after the timeout and before it looks at the lock again, and only returns once the
// handoff is done. The waiter must notice that it owns the lock and return true - returning false
// would leave the lock owned (V | PICKUP) by a task that thinks it failed.
namespace timeout_scenario {
std::atomic<probe_mutex*> mutex{nullptr};
std::atomic<std::uintptr_t> main_task{0};
std::atomic<std::uintptr_t> v_task{0};
std::atomic<bool> relock{false};
std::atomic<bool> timed_out{false};
void on_wake()
{
    if (word_of(probe_env::current()) == main_task.load() && relock.exchange(false))
        mutex.load()->lock();
}
void on_timeout()
{
    timed_out = true;
    eventually([] { return (mutex.load()->owner_word() & ~MUTEX_FLAGS) == v_task.load(); });
}
} // namespace timeout_scenario

void handoff_at_timeout(probe_mutex& m, int& result, std::uintptr_t& v_saw) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    namespace s = timeout_scenario;
    s::mutex = &m;
    s::main_task = word_of(probe_env::current());
    probe_env::on_wake = s::on_wake;
    m.lock();
    std::thread v([&] {
        s::v_task = word_of(probe_env::current());
        const bool ok = m.try_lock_for(250ms);
        result = ok ? 1 : 0;
        if (ok) {
            v_saw = m.owner_word();
            m.unlock();
        }
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    s::relock = true;
    m.unlock(); // wakes V; the hook re-takes the lock first, so V's retry fails and sets HANDOFF
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_HANDOFF) != 0; }));
    probe_env::on_timeout = s::on_timeout;
    ASSERT_TRUE(eventually([&] { return s::timed_out.load(); }));
    m.unlock(); // hands the lock to V, which has just timed out
    v.join();
}

TEST(MutexTimed, HandoffAtTimeoutIsNotSwallowed)
{
    klock::test::watchdog wd(10s, "MutexTimed.HandoffAtTimeoutIsNotSwallowed");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    int result = -1;
    std::uintptr_t v_saw = 0;
    handoff_at_timeout(m, result, v_saw);
    EXPECT_EQ(result, 1) << "the timed waiter was handed the lock but reported failure";
    EXPECT_EQ(v_saw, timeout_scenario::v_task.load()); // picked up, last waiter: no flags
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- misuse

void double_unlock(klock::mutex& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    m.lock();
    m.unlock();
    m.unlock();
}

TEST(MutexMisuse, DoubleUnlockIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::mutex m;
    klock::report_capture cap;
    double_unlock(m);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: mutex already unlocked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(gettid_now())), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: <none>/-1"), std::string::npos) << r;
    EXPECT_EQ(m.owner_word(), 0u);
    m.lock(); // still usable
    m.unlock();
    EXPECT_EQ(cap.count(), 1u);
}

void unlock_not_mine(klock::mutex& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.unlock(); }

TEST(MutexMisuse, UnlockByNonOwnerIsReportedAndIgnored)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "MutexMisuse.UnlockByNonOwnerIsReportedAndIgnored");
    klock::mutex m;
    std::atomic<int> stage{0};
    std::atomic<std::uintptr_t> owner{0};
    int owner_pid = 0;
    std::thread t([&] {
        m.lock();
        owner = word_of(os::current());
        owner_pid = gettid_now();
        stage = 1;
        while (stage.load() != 2)
            std::this_thread::yield();
        m.unlock();
    });
    while (stage.load() != 1)
        std::this_thread::yield();
    klock::report_capture cap;
    unlock_not_mine(m);
    EXPECT_EQ(m.owner_word(), owner.load()); // unchanged: still the other thread's
    stage = 2;
    t.join();
    EXPECT_EQ(m.owner_word(), 0u);
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: mutex wrong owner on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find(".owner: "), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(owner_pid) + ", .owner_cpu:"), std::string::npos) << r;
}

void lock_and_leak(klock::mutex& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.lock(); }

TEST(MutexMisuse, DestroyWhileLockedIsReported)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::report_capture cap;
    {
        std::optional<klock::mutex> m;
        m.emplace();
        m->lock();
        m->unlock();
        m.reset(); // unlocked: silent
    }
    EXPECT_EQ(cap.count(), 0u);
    {
        std::optional<klock::mutex> m;
        m.emplace();
        lock_and_leak(*m);
        m.reset();
    }
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: mutex destroyed while locked on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("/" + std::to_string(gettid_now()) + ", .owner_cpu:"), std::string::npos) << r;
}

unsigned recursive_lock(klock::mutex& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    m.lock();
    const unsigned line = __LINE__ + 1; // the report must name the next line
    m.lock();
    return line;
}

TEST(MutexMisuse, RecursiveLockIsReportedAndDoesNotDeadlock)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "MutexMisuse.RecursiveLockIsReportedAndDoesNotDeadlock");
    klock::mutex m;
    klock::report_capture cap;
    const unsigned line = recursive_lock(m);
    // Documented outcome: reported, returns without locking again; the state is unchanged.
    EXPECT_EQ(m.owner_word(), word_of(os::current()));
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: mutex recursion on CPU#"), std::string::npos) << r;
    EXPECT_NE(r.find("mutex_test.cpp:" + std::to_string(line)), std::string::npos) << r;

    // try_lock by the owner is just a failed trylock; a timed lock by the owner is reported and fails.
    EXPECT_FALSE(m.try_lock());
    EXPECT_EQ(cap.count(), 1u);
    EXPECT_FALSE(m.try_lock_for(1s));
    EXPECT_EQ(cap.count(), 2u);
    EXPECT_NE(cap.reports()[1].find("BUG: mutex recursion on CPU#"), std::string::npos);
    EXPECT_EQ(m.owner_word(), word_of(os::current()));

    m.unlock(); // one unlock releases it: the recursive lock() did not count
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexMisuse, LockInAtomicContextIsReportedByMightSleep)
{
    klock::mutex m;
    klock::report_capture cap;
    klock::preempt_disable();
    EXPECT_TRUE(m.try_lock()); // trylock never sleeps: no report
    m.unlock();
    EXPECT_EQ(cap.count(), 0u);
    const unsigned line = __LINE__ + 1; // the report must name the next line
    m.lock();
    klock::preempt_enable();
    EXPECT_EQ(m.owner_word(), word_of(os::current())); // the check reports; the lock is still taken
    m.unlock();
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: sleeping function called from invalid context at "), std::string::npos) << r;
    EXPECT_NE(r.find("mutex_test.cpp:" + std::to_string(line)), std::string::npos) << r;
    EXPECT_NE(r.find("preempt_count: 1, expected: 0"), std::string::npos) << r;
}

// ---------------------------------------------------------------- the Env seam

TEST(MutexEnv, CountingEnvSeesEveryAtomicAndFutex)
{
    klock::test::watchdog wd(10s, "MutexEnv.CountingEnvSeesEveryAtomicAndFutex");
    using E = klock::test::counting_env;
    klock::basic_mutex<E> m;
    E::reset();
    m.lock();
    m.unlock();
    EXPECT_GE(E::atomic_ops.load(), 2u); // fast lock CAS + fast unlock CAS
    EXPECT_EQ(E::futex_calls.load(), 0u);

    // A contender that outlasts its spin sleeps through E::futex_wait and is woken by E::futex_wake.
    m.lock();
    std::atomic<bool> got{false};
    std::thread t([&] {
        m.lock();
        got = true;
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    std::this_thread::sleep_for(5ms);
    m.unlock();
    t.join();
    EXPECT_TRUE(got.load());
    EXPECT_GT(E::futex_calls.load(), 0u);

    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(m, 4, 2000, &overlaps), 4u * 2000u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.owner_word(), 0u);
}

// An Env that may declare its world single-threaded (as glibc's __libc_single_threaded does): the
// fast paths then use plain loads and stores, and everything else must behave exactly the same.
struct single_env : os {
    static inline std::atomic<bool> alone{false};
    static bool single_threaded() noexcept { return alone.load(std::memory_order_relaxed); }
};
static_assert(klock::env::Env<single_env>);

void single_threaded_misuse(klock::basic_mutex<single_env>& m) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    m.lock();
    m.lock(); // recursion: reported, not acquired again
    m.unlock();
    m.unlock(); // already unlocked
}

TEST(MutexEnv, SingleThreadedFastPathsWhenTheEnvSaysSo)
{
    // Misuses the lock on purpose and counts its own reports; with KLOCK_LOCKDEP lockdep would
    // report the same misuse too (checked in lockdep_locks_test), so it is off for this test.
    klock::test::lockdep_off no_lockdep;
    klock::test::watchdog wd(10s, "MutexEnv.SingleThreadedFastPathsWhenTheEnvSaysSo");
    using E = klock::test::counting_env;
    struct counted_single : E {
        static bool single_threaded() noexcept { return true; }
    };
    klock::basic_mutex<counted_single> c;
    E::reset();
    c.lock();
    EXPECT_EQ(c.owner_word(), word_of(E::current()));
    c.unlock();
    EXPECT_EQ(c.owner_word(), 0u);
    // Two loads and two stores through the Env's atomic (plus owner_word's two loads); no RMW needed.
    EXPECT_EQ(E::atomic_ops.load(), 6u);

    single_env::alone = true;
    klock::basic_mutex<single_env> m;
    {
        klock::report_capture cap;
        single_threaded_misuse(m);
        ASSERT_EQ(cap.count(), 2u);
        EXPECT_NE(cap.reports()[0].find("BUG: mutex recursion"), std::string::npos);
        EXPECT_NE(cap.reports()[1].find("BUG: mutex already unlocked"), std::string::npos);
        EXPECT_EQ(m.owner_word(), 0u);
    }
    // The world gains a second task while the lock is held: the atomic paths take over seamlessly.
    m.lock();
    single_env::alone = false;
    std::atomic<bool> got{false};
    std::thread t([&] {
        m.lock();
        got = true;
        m.unlock();
    });
    ASSERT_TRUE(eventually([&] { return (m.owner_word() & MUTEX_FLAG_WAITERS) != 0; }));
    m.unlock();
    t.join();
    EXPECT_TRUE(got.load());
    EXPECT_EQ(m.owner_word(), 0u);
}

// ---------------------------------------------------------------- stress

TEST(MutexStress, SixThreadsOnTwoCoresExactCount)
{
    klock::test::watchdog wd(15s, "MutexStress.SixThreadsOnTwoCoresExactCount");
    klock::mutex m;
    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(m, 6, 100000, &overlaps), 6u * 100000u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.owner_word(), 0u); // no flag left behind
}

TEST(MutexStress, SixThreadsNoSpinningExactCount)
{
    klock::test::watchdog wd(15s, "MutexStress.SixThreadsNoSpinningExactCount");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    std::atomic<int> overlaps{0};
    EXPECT_EQ(klock::test::hammer(m, 6, 30000, &overlaps), 6u * 30000u);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.owner_word(), 0u);
}

// lock(), try_lock() and short timed locks mixed: timed-out waiters leave while others queue and
// hand off; the count of successful acquisitions must match the counter exactly.
template <class Mutex> void mixed_stress(Mutex& m, int threads, int iters) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    std::uint64_t counter = 0;
    std::atomic<std::uint64_t> acquired{0};
    std::atomic<int> inside{0}, overlaps{0};
    klock::test::run_threads(threads, [&](int id) {
        for (int i = 0; i < iters; ++i) {
            bool ok;
            switch ((i + id) % 3) {
            case 0:
                m.lock();
                ok = true;
                break;
            case 1:
                ok = m.try_lock();
                break;
            default:
                ok = m.try_lock_for(std::chrono::microseconds(20 + (i % 7) * 30));
                break;
            }
            if (!ok)
                continue;
            if (inside.fetch_add(1) != 0)
                overlaps.fetch_add(1);
            ++counter;
            relax(i % 16); // hold it a little, so that the others really queue up
            inside.fetch_sub(1);
            m.unlock();
            acquired.fetch_add(1, std::memory_order_relaxed);
            relax(i % 32);
        }
    });
    EXPECT_EQ(counter, acquired.load());
    EXPECT_GE(acquired.load(), static_cast<std::uint64_t>(threads) * iters / 3); // every lock() succeeded
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexStress, MixedLockTryLockAndTimedLock)
{
    klock::test::watchdog wd(15s, "MutexStress.MixedLockTryLockAndTimedLock");
    klock::mutex m;
    mixed_stress(m, 6, 20000);
}

TEST(MutexStress, MixedLockTryLockAndTimedLockNoSpinning)
{
    klock::test::watchdog wd(15s, "MutexStress.MixedLockTryLockAndTimedLockNoSpinning");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    mixed_stress(m, 6, 10000);
}

// Many short rounds with sleeps inside and outside the lock: the sleeping path runs constantly, so a
// lost wakeup leaves a waiter asleep with the lock free and the watchdog fires.
template <class Mutex> void churn(Mutex& m, int threads, int rounds)
{
    std::uint64_t counter = 0;
    klock::test::run_threads(threads, [&](int id) {
        for (int i = 0; i < rounds; ++i) {
            m.lock();
            ++counter;
            if ((i + id) % 16 == 0)
                std::this_thread::sleep_for(20us);
            m.unlock();
            if ((i * 7 + id) % 5 == 0)
                std::this_thread::sleep_for(10us);
        }
    });
    EXPECT_EQ(counter, static_cast<std::uint64_t>(threads) * rounds);
    EXPECT_EQ(m.owner_word(), 0u);
}

TEST(MutexStress, NoLostWakeupUnderChurn)
{
    klock::test::watchdog wd(15s, "MutexStress.NoLostWakeupUnderChurn");
    klock::mutex m;
    churn(m, 5, 1500);
}

TEST(MutexStress, NoLostWakeupUnderChurnNoSpinning)
{
    klock::test::watchdog wd(15s, "MutexStress.NoLostWakeupUnderChurnNoSpinning");
    probe_scope probes(/*spin=*/false);
    probe_mutex m;
    churn(m, 5, 1500);
}

} // namespace

#if defined(__clang__)
#pragma clang diagnostic pop
#endif

// ---------------------------------------------------------------- clang thread-safety analysis

// Correct use must pass clang's -Wthread-safety without a single warning (the build uses -Werror).
namespace {

class account {
public:
    void deposit(int n) KLOCK_EXCLUDES(m_)
    {
        klock::lock_guard<klock::mutex> g(m_);
        balance_ += n;
    }
    bool try_withdraw(int n) KLOCK_EXCLUDES(m_)
    {
        if (!m_.try_lock())
            return false;
        const bool ok = balance_ >= n;
        if (ok)
            balance_ -= n;
        m_.unlock();
        return ok;
    }
    bool timed_read(int& out) KLOCK_EXCLUDES(m_)
    {
        if (!m_.try_lock_for(std::chrono::milliseconds(10)))
            return false;
        out = balance_;
        m_.unlock();
        return true;
    }
    int read() KLOCK_EXCLUDES(m_)
    {
        m_.lock();
        const int b = balance_;
        m_.unlock();
        return b;
    }

private:
    klock::mutex m_;
    int balance_ KLOCK_GUARDED_BY(m_) = 0;
};

TEST(MutexThreadSafety, AnnotatedUseIsCleanAndWorks)
{
    account a;
    a.deposit(5);
    EXPECT_TRUE(a.try_withdraw(3));
    EXPECT_FALSE(a.try_withdraw(3));
    int v = -1;
    EXPECT_TRUE(a.timed_read(v));
    EXPECT_EQ(v, 2);
    EXPECT_EQ(a.read(), 2);
}

} // namespace
