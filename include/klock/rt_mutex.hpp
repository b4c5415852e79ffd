// klock::rt_mutex - a sleeping lock with priority inheritance, built on the kernel's own
// rt_mutex through the PI futex (kernel/locking/rtmutex.c, kernel/futex/pi.c; DESIGN.md,
// "Kernel concepts in each world").
//
// Why the PI futex. Priority inheritance needs the scheduler: the owner of a lock must run at
// the priority of the best task waiting for it, for as long as that task waits, and a chain of
// owners blocked on further locks must be boosted along. User space cannot change another
// thread's effective priority safely or promptly, so in the os world the waiting is delegated
// to FUTEX_LOCK_PI, whose kernel side is an rt_mutex: it queues the waiter by priority, boosts
// the owner (walking the chain, rt_mutex_adjust_prio_chain), detects circular waits, and on
// FUTEX_UNLOCK_PI deboosts the owner before handing the lock to the top waiter. klock adds the
// uncontended fast paths, a bounded adaptive spin, and the kernel's misuse checks.
//
// The lock word is the PI futex word (include/uapi/linux/futex.h):
//
//   bits  0-29  TID of the owner (0: unlocked)           env::futex_tid_mask
//   bit   30    FUTEX_OWNER_DIED: the previous owner exited holding the lock
//   bit   31    FUTEX_WAITERS: tasks sleep in the kernel; unlock must go through the kernel
//
// so sizeof(rt_mutex) == 4. The TID takes the place of the kernel's task pointer and
// FUTEX_WAITERS the place of RT_MUTEX_HAS_WAITERS (which is bit 0 of a pointer in the kernel).
//
// Invariants
//  - Only the owner clears its TID, and only by a CAS from a value without FUTEX_WAITERS: a
//    word with FUTEX_WAITERS is released by FUTEX_UNLOCK_PI, which writes the new owner's TID
//    in one step. The word therefore never reads "free" while the kernel queues waiters, so neither a
//    fast-path CAS nor a spinner can steal the lock from a higher-priority sleeper - the role
//    of the kernel's "ownerless but HAS_WAITERS" state.
//  - User space sets a TID only by CAS from 0 (free) or, after the kernel reported the owner
//    dead (-ESRCH), from the dead owner's exact value; apart from the new owner clearing
//    FUTEX_OWNER_DIED, every other transition is the kernel's.
//  - A misuse is reported (detail::report_lock_bug, as every klock lock does) and the word is
//    left as it was: unlocking an unlocked lock, unlocking another task's lock (the kernel would
//    answer -EPERM; it is never asked), relocking an owned lock (would self-deadlock: reported
//    as -EDEADLK and lock() returns, the lock still held once), destroying a held lock.
//
// Lock: CAS 0 -> TID (acquire). On failure: recursion check, then an adaptive spin, then
// FUTEX_LOCK_PI. The kernel's adaptive spin (rtmutex.c, rtmutex_spin_on_owner) runs while the
// owner is on a CPU; the PI word holds a TID, not a task record, and user space cannot see
// whether that TID runs, so klock spins a bounded number of iterations instead (spin_limit,
// a few microseconds: about the cost of a futex sleep plus wakeup) and stops early when
// FUTEX_WAITERS shows sleepers (the kernel hands such a lock over directly; spinning cannot
// win it). This spin is what makes contended throughput far better than glibc's PI mutex,
// which enters the kernel on every contended lock. The spin ignores priorities: a SCHED_FIFO
// waiter that preempted the owner on the owner's CPU burns at most spin_limit iterations
// before the kernel boosts the owner.
//
// Unlock: CAS TID -> 0 (release); if that fails because FUTEX_WAITERS (or OWNER_DIED) is set,
// FUTEX_UNLOCK_PI. (The kernel's hand-over always sets FUTEX_WAITERS in the new owner's word,
// since it does not know whether more sleepers follow, so that owner's unlock is a syscall
// too - the same in glibc.) try_lock: one CAS; only an ownerless word with flags (a robust hand-over
// in flight) is passed to FUTEX_TRYLOCK_PI. Timed locks pass an absolute E::now_ns() deadline
// to FUTEX_LOCK_PI (-ETIMEDOUT -> false).
//
// Kernel results handled on the slow path
//  -EDEADLK  the word names us (recursion), or the kernel's chain walk found a circular wait
//            through PI futexes (ABBA). Reported. Timed locks return false; lock() reports once
//            and retries every millisecond - the kernel blocks such a task forever, klock lets
//            it proceed if the cycle is broken (e.g. by a timed lock elsewhere giving up).
//  -ESRCH    the TID in the word names no live thread: the owner exited holding the lock
//            without a robust-list entry (klock does not register its words on glibc's robust
//            list). Reported as "rt_mutex owner died"; the caller takes the lock over.
//  OWNER_DIED set after a successful acquisition: a robust hand-over by the kernel. Reported
//            the same way; the bit is cleared and the lock counts as acquired (there is no
//            EOWNERDEAD/consistent protocol: the caller gets the lock).
//
// Layers: the public members (lock, unlock, ...) are where might_sleep and the lockdep hooks
// sit (acquire/release; contended/acquired in the slow path), as rt_mutex_lock() wraps
// __rt_mutex_lock() in the kernel; do_lock/do_unlock are the algorithm.
//
// Limits: the word is process-private (FUTEX_PRIVATE_FLAG); it must not be used across fork()
// (the child's TID differs). A thread that exits holding the lock is reported by the next
// lock(), which takes the lock over; whatever the lock guarded may be left inconsistent.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string_view>

#include <klock/detail/lock_debug.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/might_sleep.hpp>
#include <klock/thread_safety.hpp>

#include <klock/detail/lock_dep.hpp>

namespace klock {

template <env::Env E> class KLOCK_CAPABILITY("mutex") basic_rt_mutex {
public:
    using env_type = E;
    using word_type = typename E::template atomic<std::uint32_t>;

    // Iterations of the bounded spin before FUTEX_LOCK_PI (see the top of this file): one
    // load + pause each, ~17 ns on the development machine, so ~7 us in all.
    static constexpr unsigned spin_limit = 400;

    // rt_mutex_init(): the lockdep class is the construction site (a constant-initialised static
    // lock: its own address); the second form names an explicit class.
    constexpr basic_rt_mutex(klock::source_location loc = klock::source_location::current()) noexcept
        : word_(0), dep_("rt_mutex", loc)
    { }
    basic_rt_mutex(lock_class_key& key, const char* name) noexcept : word_(0), dep_(key, name) { }
    basic_rt_mutex(const basic_rt_mutex&) = delete;
    basic_rt_mutex& operator=(const basic_rt_mutex&) = delete;

    ~basic_rt_mutex()
    {
        dep_.freed(this, sizeof *this);
        const std::uint32_t v = word_.load(std::memory_order_relaxed);
        if (__builtin_expect((v & env::futex_tid_mask) != 0, 0))
            report("rt_mutex destroyed while locked", v);
    }

    // Sleeps (after a short spin) until the lock is free; the owner is boosted to the
    // caller's priority meanwhile. Relocking by the owner is reported and returns at once.
    void lock() noexcept KLOCK_ACQUIRE()
    {
        kernel::might_sleep<E>(__FILE__, __LINE__);
        ld_acquire(0);
        do_lock();
    }

    // Never sleeps and never spins.
    bool try_lock() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        if (!do_trylock())
            return false;
        ld_acquire(1);
        return true;
    }

    // Returns false if the lock could not be taken before the deadline, an absolute time in
    // E::now_ns() terms (a deadline in the past still tries once).
    bool try_lock_until(std::uint64_t deadline_ns) noexcept KLOCK_TRY_ACQUIRE(true)
    {
        kernel::might_sleep<E>(__FILE__, __LINE__);
        ld_acquire(0);
        if (do_lock_timed(deadline_ns == 0 ? 1 : deadline_ns))
            return true;
        dep_.release();
        return false;
    }

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) noexcept KLOCK_TRY_ACQUIRE(true)
    {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
        if (ns <= 0)
            return try_lock();
        return try_lock_until(E::now_ns() + static_cast<std::uint64_t>(ns));
    }

    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) noexcept KLOCK_TRY_ACQUIRE(true)
    {
        return try_lock_for(deadline - Clock::now());
    }

    void unlock() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        do_unlock();
    }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

    bool is_locked() const noexcept { return (raw() & env::futex_tid_mask) != 0; }
    // TID of the owner, 0 if unlocked.
    int owner_tid() const noexcept { return static_cast<int>(raw() & env::futex_tid_mask); }
    // True while tasks sleep in the kernel waiting for this lock.
    bool has_waiters() const noexcept { return (raw() & env::futex_waiters) != 0; }
    // The PI futex word: TID | FUTEX_WAITERS | FUTEX_OWNER_DIED.
    std::uint32_t raw() const noexcept { return word_.load(std::memory_order_relaxed); }
    // The PI futex word itself, for code that speaks the futex protocol (e.g.
    // FUTEX_WAIT_REQUEUE_PI); whoever writes it takes over this class's invariants.
    word_type& native_handle() noexcept { return word_; }

private:
    // rt_mutex_acquire(): lockdep's view of an rt_mutex is a writer.
    [[gnu::always_inline]] void ld_acquire(int trylock) noexcept { dep_.acquire(0, trylock, lockdep::WRITE); }

    static std::uint32_t current_tid() noexcept { return static_cast<std::uint32_t>(E::task_pid(E::current())); }

    [[gnu::always_inline]] void do_lock() noexcept
    {
        const std::uint32_t tid = current_tid();
        std::uint32_t v = 0;
        if (__builtin_expect(
                word_.compare_exchange_strong(v, tid, std::memory_order_acquire, std::memory_order_relaxed), 1))
            return;
        // -EDEADLK (a refused recursion): not acquired again, so the owner's one unlock() must
        // find one lockdep entry, not two.
        if (lock_slowpath(tid, 0) != 0)
            dep_.release();
    }

    bool do_lock_timed(std::uint64_t deadline) noexcept
    {
        const std::uint32_t tid = current_tid();
        std::uint32_t v = 0;
        if (word_.compare_exchange_strong(v, tid, std::memory_order_acquire, std::memory_order_relaxed))
            return true;
        return lock_slowpath(tid, deadline) == 0;
    }

    [[gnu::always_inline]] bool do_trylock() noexcept
    {
        const std::uint32_t tid = current_tid();
        std::uint32_t v = 0;
        if (__builtin_expect(
                word_.compare_exchange_strong(v, tid, std::memory_order_acquire, std::memory_order_relaxed), 1))
            return true;
        // Flags without an owner: the kernel is handing the lock over; only it may decide.
        if (__builtin_expect((v & env::futex_tid_mask) == 0, 0))
            return trylock_kernel();
        return false;
    }

    [[gnu::always_inline]] void do_unlock() noexcept
    {
        const std::uint32_t tid = current_tid();
        std::uint32_t v = tid;
        if (__builtin_expect(
                word_.compare_exchange_strong(v, 0, std::memory_order_release, std::memory_order_relaxed), 1))
            return;
        unlock_slowpath(tid, v);
    }

    // Returns 0 (acquired), -EDEADLK (reported; not acquired) or -ETIMEDOUT. deadline 0: none.
    [[gnu::noinline]] int lock_slowpath(std::uint32_t tid, std::uint64_t deadline) noexcept
    {
        const std::uint32_t v = word_.load(std::memory_order_relaxed);
        if ((v & env::futex_tid_mask) == tid) {
            report("rt_mutex recursion", v, "-EDEADLK: the owner tried to take it again");
            return -EDEADLK;
        }
        dep_.contended();
        const int rc = spin(tid) ? 0 : lock_pi(tid, deadline);
        if (rc == 0)
            dep_.acquired();
        return rc;
    }

    bool spin(std::uint32_t tid) noexcept
    {
        for (unsigned i = 0; i < spin_limit; ++i) {
            std::uint32_t v = word_.load(std::memory_order_relaxed);
            if (v == 0) {
                if (word_.compare_exchange_weak(v, tid, std::memory_order_acquire, std::memory_order_relaxed))
                    return true;
                continue;
            }
            // Sleepers queued (the kernel will hand the lock over, it never reads free) or a
            // dead owner: only the kernel can make progress.
            if ((v & ~env::futex_tid_mask) != 0)
                return false;
            E::cpu_relax();
        }
        return false;
    }

    int lock_pi(std::uint32_t tid, std::uint64_t deadline) noexcept
    {
        bool deadlock_reported = false;
        for (;;) {
            const int rc = E::futex_lock_pi(word_, deadline);
            if (rc == 0) {
                acquired_from_kernel();
                return 0;
            }
            switch (rc) {
            case -EINTR:
            case -EAGAIN: // the owner is exiting, or the word changed under the kernel: retry
                continue;
            case -ETIMEDOUT:
                if ((word_.load(std::memory_order_acquire) & env::futex_tid_mask) == tid) {
                    acquired_from_kernel(); // the lock arrived with the timeout
                    return 0;
                }
                return -ETIMEDOUT;
            case -ESRCH:
                if (take_over_from_dead_owner(tid))
                    return 0;
                continue;
            case -EDEADLK: {
                const std::uint32_t v = word_.load(std::memory_order_relaxed);
                if ((v & env::futex_tid_mask) == tid) {
                    report("rt_mutex recursion", v, "-EDEADLK from FUTEX_LOCK_PI: the owner tried to take it again");
                    return -EDEADLK;
                }
                if (!deadlock_reported) {
                    report("rt_mutex deadlock", v,
                        "-EDEADLK from FUTEX_LOCK_PI: circular wait through PI futexes (the owner waits, directly "
                        "or through other locks, for a lock the caller holds)");
                    deadlock_reported = true;
                }
                if (deadline != 0)
                    return -EDEADLK;
                nap(1000000);
                continue;
            }
            default:
                return lock_without_pi(tid, deadline, rc);
            }
        }
    }

    // FUTEX_LOCK_PI is unavailable (e.g. -ENOSYS or a seccomp filter): no priority
    // inheritance, but still a lock: poll with short sleeps.
    [[gnu::cold]] int lock_without_pi(std::uint32_t tid, std::uint64_t deadline, int rc) noexcept
    {
        char why[96];
        std::snprintf(why, sizeof why, "FUTEX_LOCK_PI failed (%d): polling without priority inheritance", rc);
        report("rt_mutex futex error", word_.load(std::memory_order_relaxed), why);
        for (;;) {
            std::uint32_t v = 0;
            if (word_.compare_exchange_strong(v, tid, std::memory_order_acquire, std::memory_order_relaxed))
                return 0;
            if (deadline != 0 && E::now_ns() >= deadline)
                return -ETIMEDOUT;
            nap(50000);
        }
    }

    // The kernel reported that the TID in the word names no live thread (-ESRCH).
    [[gnu::cold]] bool take_over_from_dead_owner(std::uint32_t tid) noexcept
    {
        std::uint32_t v = word_.load(std::memory_order_relaxed);
        if ((v & env::futex_tid_mask) == 0 || (v & env::futex_tid_mask) == tid)
            return false; // changed meanwhile: ask the kernel again
        const std::uint32_t dead = v;
        // Keep FUTEX_WAITERS: if it is stale, FUTEX_UNLOCK_PI finds no waiter and just clears the word.
        if (!word_.compare_exchange_strong(
                v, tid | (v & env::futex_waiters), std::memory_order_acquire, std::memory_order_relaxed))
            return false;
        report("rt_mutex owner died", dead, "-ESRCH: the owner exited holding the lock; the caller takes it over");
        return true;
    }

    void acquired_from_kernel() noexcept
    {
        const std::uint32_t v = word_.load(std::memory_order_acquire);
        if (__builtin_expect((v & env::futex_owner_died) != 0, 0)) {
            word_.fetch_and(~env::futex_owner_died, std::memory_order_relaxed);
            // The kernel already wrote our TID; the dead owner's is gone: name no owner.
            report("rt_mutex owner died", v,
                "FUTEX_OWNER_DIED: the previous owner exited holding the lock; the caller takes it over", 0);
        }
    }

    [[gnu::noinline]] bool trylock_kernel() noexcept
    {
        if (E::futex_trylock_pi(word_) != 0)
            return false;
        acquired_from_kernel();
        return true;
    }

    [[gnu::noinline]] void unlock_slowpath(std::uint32_t tid, std::uint32_t v) noexcept
    {
        if ((v & env::futex_tid_mask) != tid) {
            report((v & env::futex_tid_mask) == 0 ? "rt_mutex already unlocked" : "rt_mutex wrong owner", v);
            return;
        }
        // Ours, with flags. Without FUTEX_WAITERS nobody sleeps: clear the word ourselves.
        while ((v & env::futex_waiters) == 0) {
            if (word_.compare_exchange_weak(v, 0, std::memory_order_release, std::memory_order_relaxed))
                return;
        }
        // Sleepers: the kernel deboosts us and writes the top waiter's TID into the word.
        int rc;
        int tries = 0;
        do
            rc = E::futex_unlock_pi(word_);
        while ((rc == -EINTR || rc == -EAGAIN) && ++tries < 100);
        if (rc != 0) {
            char why[64];
            std::snprintf(why, sizeof why, "FUTEX_UNLOCK_PI failed (%d)", rc);
            report("rt_mutex unlock failed", word_.load(std::memory_order_relaxed), why);
        }
    }

    // Sleeps about `ns` (a wait on a private word that nobody wakes).
    static void nap(std::uint64_t ns) noexcept
    {
        word_type w(0);
        (void)E::futex_wait(w, 0, E::now_ns() + ns);
    }

    // The owner named in a report is a TID; only the caller's own task record is at hand.
    // `owner`: the TID to name as owner (default: the one in v).
    [[gnu::cold, gnu::noinline]] void report(
        std::string_view what, std::uint32_t v, std::string_view why = {}, int owner = -1) const
    {
        char extra[320];
        std::snprintf(extra, sizeof extra, " rt_mutex: val: 0x%08x, owner tid: %u%s%s%s%.*s", v,
            v & env::futex_tid_mask, (v & env::futex_waiters) ? ", FUTEX_WAITERS" : "",
            (v & env::futex_owner_died) ? ", FUTEX_OWNER_DIED" : "", why.empty() ? "" : "\n ", int(why.size()),
            why.data());
        typename E::task* cur = E::current();
        if (owner < 0)
            owner = static_cast<int>(v & env::futex_tid_mask);
        if (owner == E::task_pid(cur))
            detail::lock_bug<E>(what, this, cur, E::current_cpu(), extra);
        else
            detail::report_lock_bug(what, this, detail::describe_task<E>(cur, E::current_cpu()),
                owner != 0 ? detail::task_desc{owner, "?", -1} : detail::task_desc{}, extra);
    }

    word_type word_;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

using rt_mutex = basic_rt_mutex<env::os>;

#if !KLOCK_LOCKDEP
static_assert(sizeof(rt_mutex) == 4, "the PI futex word is the whole lock");
#endif

} // namespace klock
