// The priority-inversion experiment on real threads (REFERENCE.md, "Priority inversion
// recipe"): three SCHED_FIFO threads pinned to one CPU share a lock.
//
//   L (low, prio 10)     takes the lock and keeps the CPU busy for `low_hold` while holding it
//   H (high, prio 30)    asks for the lock while L holds it
//   M (medium, prio 20)  spins for `medium_spin` without ever touching the lock
//
// Without priority inheritance M preempts L, so H - the most important thread - waits for M's
// whole spin (unbounded inversion: M could run forever). With priority inheritance L runs at
// H's priority while H waits, M cannot preempt it, and H waits only for the rest of L's
// critical section.
//
// Sequencing. On one CPU under SCHED_FIFO the highest-priority runnable thread runs, alone:
// a thread that spins for a signal from a lower-priority thread on the same CPU would spin
// forever. So every start signal here is a futex wait (the waiter sleeps), and every step that
// must happen "after X blocked" is done by a lower-priority thread, which can only be running
// if every higher-priority thread is asleep:
//   1. the caller creates H, M and L, already pinned and SCHED_FIFO (pthread attributes, so
//      they never run with other settings); each sleeps on its own start gate;
//   2. the caller opens L's gate; L takes the lock and opens H's gate;
//   3. H preempts L at once, notes the time and M's progress, and calls lock(): it sleeps
//      (L runs again - proof that H is asleep);
//   4. L opens M's gate: without PI, M (20 > 10) preempts L and spins; with PI, L runs at 30
//      and M must wait;
//   5. L burns the rest of `low_hold` of its own CPU time, unlocks; H takes the lock, notes
//      the time and M's progress, unlocks, and marks itself done;
//   6. M spins until it has used `medium_spin` of CPU time, or stops as soon as H is done -
//      after that its spin cannot change the result, and the experiment stays short.
// "Work" is measured in thread CPU time (CLOCK_THREAD_CPUTIME_ID), so a preempted thread's
// work is not counted while it is off the CPU. The total stays under about
// low_hold + medium_spin, far below the kernel's RT throttling budget (950 ms per second).
//
// The lock must make a contended locker sleep (a mutex, not a pure spinlock): H spinning on
// the CPU it shares with L would starve L for good. Nothing is changed globally: the threads
// created here carry all the scheduling settings and exit before the function returns.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace klock::demo {

struct priority_inversion_options {
    std::chrono::nanoseconds low_hold = std::chrono::milliseconds(5);      // L's CPU time inside the lock
    std::chrono::nanoseconds medium_spin = std::chrono::milliseconds(200); // M's CPU time, at most
    int cpu = -1; // the CPU all three share; -1: the one the caller runs on
    int low_prio = 10;
    int medium_prio = 20;
    int high_prio = 30;
};

struct priority_inversion_result {
    // False if the threads could not be made SCHED_FIFO and pinned; then `error` holds the
    // errno (EPERM: no CAP_SYS_NICE / RLIMIT_RTPRIO too low) and `message` says what failed.
    bool permitted = false;
    int error = 0;
    std::string message;
    int cpu = -1;
    std::chrono::nanoseconds high_wait{};       // H: from calling lock() to holding the lock
    std::chrono::nanoseconds medium_progress{}; // M's CPU time spent while H waited
    std::chrono::nanoseconds medium_ran{};      // M's CPU time in all
    std::chrono::nanoseconds low_hold{};        // L: wall time from lock to unlock
    std::chrono::nanoseconds total{};           // from L's start to the last thread's exit
};

namespace detail {

inline std::int64_t pi_clock_ns(clockid_t clock) noexcept
{
    timespec ts;
    clock_gettime(clock, &ts);
    return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline std::int64_t pi_now() noexcept { return pi_clock_ns(CLOCK_MONOTONIC); }
inline std::int64_t pi_cpu_now() noexcept { return pi_clock_ns(CLOCK_THREAD_CPUTIME_ID); }

// A one-shot start signal that its waiter sleeps on. (<linux/futex.h> is not included: its
// FUTEX_WAITERS macros would collide with klock::env's constants.)
class pi_gate {
    static constexpr int futex_wait_private = 0 | 128; // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
    static constexpr int futex_wake_private = 1 | 128; // FUTEX_WAKE | FUTEX_PRIVATE_FLAG

public:
    void open() noexcept
    {
        state_.store(1, std::memory_order_release);
        ::syscall(SYS_futex, &state_, futex_wake_private, 1, nullptr, nullptr, 0);
    }
    void wait() noexcept
    {
        while (state_.load(std::memory_order_acquire) == 0)
            ::syscall(SYS_futex, &state_, futex_wait_private, 0, nullptr, nullptr, 0);
    }

private:
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    std::atomic<std::uint32_t> state_{0};
};

template <class Lock> struct pi_experiment {
    Lock& lock;
    priority_inversion_options opt;
    pi_gate gate_low, gate_high, gate_medium;
    std::atomic<bool> abort{false};
    std::atomic<bool> high_waiting{false};
    std::atomic<bool> high_done{false};
    std::atomic<std::int64_t> medium_progress{0}; // M's CPU time so far, ns
    std::int64_t high_wait = 0, medium_seen_before = 0, medium_seen_after = 0;
    std::int64_t low_hold = 0;

    void low()
    {
        gate_low.wait();
        if (abort.load())
            return;
        lock.lock();
        const std::int64_t t0 = pi_now();
        const std::int64_t cpu0 = pi_cpu_now();
        gate_high.open(); // H (higher, same CPU) runs now and goes to sleep in lock()
        // Still here, so H sleeps - unless the threads are not really on one CPU; then H is
        // at most a few instructions from lock().
        while (!high_waiting.load(std::memory_order_acquire))
            sched_yield();
        gate_medium.open(); // without PI, M takes the CPU here
        while (pi_cpu_now() - cpu0 < opt.low_hold.count()) { }
        low_hold = pi_now() - t0;
        lock.unlock();
    }

    void high()
    {
        gate_high.wait();
        if (abort.load())
            return;
        medium_seen_before = medium_progress.load(std::memory_order_relaxed);
        high_waiting.store(true, std::memory_order_release);
        const std::int64_t t0 = pi_now();
        lock.lock();
        high_wait = pi_now() - t0;
        medium_seen_after = medium_progress.load(std::memory_order_relaxed);
        lock.unlock();
        high_done.store(true, std::memory_order_release);
    }

    void medium()
    {
        gate_medium.wait();
        if (abort.load())
            return;
        const std::int64_t cpu0 = pi_cpu_now();
        for (;;) {
            const std::int64_t used = pi_cpu_now() - cpu0;
            medium_progress.store(used, std::memory_order_relaxed);
            if (used >= opt.medium_spin.count() || high_done.load(std::memory_order_acquire))
                break;
        }
    }
};

// A pthread created directly with SCHED_FIFO `prio` on `cpu`. Returns 0 or an errno.
template <class Fn> int pi_start_thread(pthread_t* thread, Fn* fn, int prio, int cpu) noexcept
{
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return EINVAL;
    pthread_attr_t attr;
    if (int rc = pthread_attr_init(&attr); rc != 0)
        return rc;
    sched_param sp{};
    sp.sched_priority = prio;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    if (rc == 0)
        rc = pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    if (rc == 0)
        rc = pthread_attr_setschedparam(&attr, &sp);
    if (rc == 0)
        rc = pthread_attr_setaffinity_np(&attr, sizeof set, &set);
    if (rc == 0)
        rc = pthread_create(
            thread, &attr,
            [](void* p) -> void* {
                (*static_cast<Fn*>(p))();
                return nullptr;
            },
            fn);
    pthread_attr_destroy(&attr);
    return rc;
}

} // namespace detail

// Runs the experiment once with `lock` (unlocked on entry, unlocked again on return).
template <class Lock>
priority_inversion_result run_priority_inversion(Lock& lock, const priority_inversion_options& opt = {})
{
    priority_inversion_result res;
    res.cpu = opt.cpu >= 0 ? opt.cpu : sched_getcpu();
    if (res.cpu < 0)
        res.cpu = 0;

    detail::pi_experiment<Lock> ex{lock, opt, {}, {}, {}};
    auto low = [&ex] { ex.low(); };
    auto high = [&ex] { ex.high(); };
    auto medium = [&ex] { ex.medium(); };
    pthread_t th_low{}, th_high{}, th_medium{};
    // H and M first: L starts the experiment, so it is started last.
    int started = 0;
    const char* what = "high";
    int rc = detail::pi_start_thread(&th_high, &high, opt.high_prio, res.cpu);
    if (rc == 0) {
        started = 1;
        what = "medium";
        rc = detail::pi_start_thread(&th_medium, &medium, opt.medium_prio, res.cpu);
    }
    if (rc == 0) {
        started = 2;
        what = "low";
        rc = detail::pi_start_thread(&th_low, &low, opt.low_prio, res.cpu);
    }

    if (rc != 0) {
        // Release whatever was started; it sees `abort` and exits.
        ex.abort.store(true);
        ex.gate_high.open();
        ex.gate_medium.open();
        if (started >= 1)
            pthread_join(th_high, nullptr);
        if (started >= 2)
            pthread_join(th_medium, nullptr);
        res.error = rc;
        res.message = std::string("cannot start the ") + what + "-priority thread as SCHED_FIFO on CPU "
            + std::to_string(res.cpu) + ": " + std::strerror(rc);
        return res;
    }

    res.permitted = true;
    const std::int64_t t0 = detail::pi_now();
    ex.gate_low.open();
    pthread_join(th_low, nullptr);
    pthread_join(th_high, nullptr);
    pthread_join(th_medium, nullptr);
    res.total = std::chrono::nanoseconds(detail::pi_now() - t0);
    res.high_wait = std::chrono::nanoseconds(ex.high_wait);
    res.medium_progress = std::chrono::nanoseconds(ex.medium_seen_after - ex.medium_seen_before);
    res.medium_ran = std::chrono::nanoseconds(ex.medium_progress.load());
    res.low_hold = std::chrono::nanoseconds(ex.low_hold);
    return res;
}

// Same, with a lock of its own.
template <class Lock> priority_inversion_result run_priority_inversion(const priority_inversion_options& opt = {})
{
    Lock lock;
    return run_priority_inversion(lock, opt);
}

} // namespace klock::demo
