// klock::basic_mutex<E> / klock::mutex - the kernel's sleeping mutex (kernel/locking/mutex.c).
//
// THE OWNER WORD
//   One word holds everything the fast paths look at:
//
//     owner_ = (uintptr_t)owning task | MUTEX_FLAG_PICKUP | MUTEX_FLAG_HANDOFF | MUTEX_FLAG_WAITERS
//                                          0x04                0x02                 0x01
//
//   Task records are at least 8-byte aligned (64 in the os world), so the three low bits are free.
//   - WAITERS: the wait list is not empty; unlock must take the slow path and wake the top waiter.
//   - HANDOFF: the top waiter has been woken at least once and still lost the lock to somebody
//              else; the next unlock must not release the lock but give it to that waiter.
//   - PICKUP:  the lock was given to the task in the word, which has not noticed yet; only that
//              task may take it (by clearing PICKUP).
//
//   Fast lock:   CAS 0 -> current, acquire.     Fast unlock: CAS current -> 0, release.
//   Any flag makes the fast unlock's CAS fail, so every unlock that owes somebody a wakeup or a
//   handoff reaches the slow path without a separate test. An Env may also declare its world
//   single-threaded (optional `static bool single_threaded() noexcept`, e.g. glibc's
//   __libc_single_threaded); the fast paths then use a plain load and store, as glibc's own mutex
//   does - nobody else can touch the word, and signal handlers (klock's hardirq context) may not
//   take a sleeping lock.
//
//   Layout (32 bytes on LP64, static_assert'ed <= std::mutex): owner word, wait_lock (4 bytes),
//   spinner gate (4 bytes), wait_list head and tail.
//
// THE SLOW PATH (lock)
//   1. One more trylock, then optimistic spinning: while the owner is running, its critical section
//      is probably short, and watching the owner word beats a sleep/wake round trip.
//   2. Otherwise take wait_lock (an arch::qspinlock), try once more, append a waiter record (it lives
//      on the waiter's stack) to the FIFO wait_list and set WAITERS if the list was empty.
//   3. Loop, with wait_lock held at the top: trylock (which also picks up a handoff addressed to us);
//      if we are the top waiter and have been woken before, the trylock instead sets HANDOFF when the
//      lock is still owned; drop wait_lock; a woken top waiter spins on the owner for a while; sleep
//      until woken; retake wait_lock.
//   4. Having the lock, unlink the waiter record; the last one out clears all flags.
//
// THE SLOW PATH (unlock)
//   With HANDOFF set the owner field is left alone (the lock is never free in between); otherwise the
//   task is cleared with a release CAS that keeps the flags, so other tasks may take the lock at once.
//   Then, under wait_lock, the top waiter is marked woken and, with HANDOFF, made owner | PICKUP.
//   The futex wakeup itself is issued after wait_lock is dropped (the kernel's wake_q, and the point
//   of seeds/000): a woken task that runs at once must not find the wait_lock still held.
//
// INVARIANTS
//   - The task field changes only by: lock (0 -> me), unlock (me -> 0) and handoff (me -> top
//     waiter, with PICKUP, under wait_lock). Only the task named in the word clears PICKUP.
//   - wait_list membership and WAITERS change only under wait_lock; whenever wait_lock is held,
//     WAITERS is set <=> the list is not empty, and HANDOFF or PICKUP imply WAITERS.
//   - HANDOFF is set only while the lock is owned, and never while PICKUP is set; an unlock that sees
//     HANDOFF hands the lock over instead of freeing it, so the lock is never free with HANDOFF set.
//   - A waiter leaves the list (lock acquired, or timed out) only under wait_lock, and only after a
//     trylock under that same wait_lock: a handoff (done under wait_lock) is therefore never
//     swallowed by a timeout - the waiter finds itself owner and returns true.
//   - A waiter that times out leaves only while somebody else holds the lock (its last trylock
//     failed); that owner's unlock sees WAITERS if anybody is still queued and wakes the new top
//     waiter, so leaving never strands the others.
//
// SLEEPING AND WAKING WITHOUT LOST WAKEUPS OR WRITES TO DEAD FRAMES
//   Each waiter record holds a 32-bit `wake` word: ARMED (0), SLEEPING (1), WOKEN (2).
//   - The waiter stores ARMED under wait_lock, before its trylock; later, outside wait_lock, it
//     moves ARMED -> SLEEPING with a CAS and futex-waits while the word is SLEEPING (re-checking
//     after every return, so spurious and EINTR returns are harmless).
//   - The waker exchanges WOKEN into the top waiter's word *while it holds wait_lock*. The waiter
//     cannot have left the list (leaving needs wait_lock), so the record is alive for that store.
//     The waker keeps only the word's address, drops wait_lock, and calls futex_wake only when the
//     old value was SLEEPING (a spinning or not yet sleeping waiter costs no syscall).
//   - No lost wakeup: the waker's release of the owner word precedes its wait_lock section. If that
//     section comes before the waiter's (the one that stored ARMED), the waiter's trylock sees the
//     lock released (or owned by a later task, whose unlock will wake it again); if it comes after,
//     WOKEN lands after ARMED, and the futex wait (which compares atomically) cannot sleep through it.
//   - The late futex_wake may reach a word whose waiter has already returned (it saw WOKEN, took the
//     lock and left). FUTEX_WAKE on a private futex only uses the address as a key and never touches
//     the memory; at worst it wakes whatever now waits on a reused stack address - a spurious wakeup,
//     which every futex user must tolerate (glibc's sem_post relies on the same argument). An Env's
//     futex_wake must therefore treat the word as a key only. No *store* ever reaches a record
//     after its owner may have left it.
//
// OPTIMISTIC SPINNING IN USER SPACE
//   The kernel spins while owner->on_cpu, reading the owner's task_struct under RCU. Here a spinner
//   reads the owner's task record through the pointer in the owner word, so the owner publishes it
//   with release (the lock's CAS is acq_rel; free on x86) and the spinner loads the word with
//   acquire: the record's initialisation happens-before the read (ThreadSanitizer checks this).
//   E::task_on_cpu() only knows whether the owner sleeps in a futex wait; a preempted owner still
//   looks "on CPU". So every spin is also bounded
//   (spin_budget pauses, ~16 us), after which the task goes to sleep on the wait list. Between two
//   looks at the owner word a spinner backs off exponentially (up to spin_max_delay pauses): the
//   owner word shares its cache line with the whole mutex, and a spinner that reads it every few
//   nanoseconds makes each of the owner's fast-path CASes a cache miss.
//   The kernel queues spinners on an MCS "OSQ" so that only the OSQ head spins on the owner word.
//   Simplification: klock uses a single-spinner gate (one word, try-exchange). A contender that
//   finds the gate taken waits for it briefly (spin_gate_budget, unordered, same backoff) instead of
//   queueing on a per-spinner node; it gives up and queues on the wait list when that runs out, the
//   owner sleeps, or HANDOFF is set. A full OSQ needs per-task nodes that outlive a departing
//   spinner (the kernel's unqueue reads and CASes neighbours' nodes); stack nodes cannot give that,
//   and a queue without unqueue collapses when a queued spinner is preempted (more threads than
//   cores). Waiting for the gate rather than queueing at once matters: the task that has just won
//   the lock by spinning still holds the gate for a moment, exactly when the next contender's fast
//   path fails. As in the kernel, the woken top waiter spins without the gate. Non-waiter spinners
//   stop once HANDOFF is set: the lock is reserved for the top waiter.
//
// MISUSE (reported through detail::lock_bug, state left unchanged)
//   - unlock of an unlocked mutex:  "mutex already unlocked"
//   - unlock by a non-owner:        "mutex wrong owner"
//   - destruction while locked:     "mutex destroyed while locked"
//   - lock() / try_lock_for/until() by the owner (a self-deadlock): "mutex recursion". lock() then
//     RETURNS WITHOUT LOCKING: the caller already owns the lock, so its section stays exclusive; its
//     inner unlock() releases the lock early and the outer unlock() is then reported as "already
//     unlocked". The timed calls return false (not acquired), which is consistent on their own.
//   - try_lock() by the owner simply returns false, like any failed trylock (no report; lockdep
//     does not flag trylock recursion either).
//
// KNOWN LIMITATIONS
//   - Spinners (and reports, owner_pid()) read the owner's task record through the pointer in the
//     owner word. The kernel keeps that task alive with RCU; here a thread that unlocks and exits
//     right after a spinner loaded its pointer leaves the spinner reading an exited thread's record
//     (glibc caches thread stacks, so this is a stale read, not normally a fault).
//   - With more runnable threads than cores, a spinner cannot tell a preempted owner from a running
//     one and may burn its whole budget on it; glibc's mutex, which sleeps at once, does better there.
//
// Deviations from the kernel: the single-spinner gate (above); bounded spinning with backoff; the
// wake word in the waiter record instead of task state + wake_up_process(); a non-waiter spinner
// stops when it sees HANDOFF; the recursion and destroy-while-locked checks are always on (free on
// the fast paths: both fast CASes fail on misuse); the optional single-threaded fast paths.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <pthread.h>
#include <klock/source_location.hpp>

#include <klock/arch/qspinlock.hpp>
#include <klock/detail/lock_debug.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/might_sleep.hpp>
#include <klock/thread_safety.hpp>

#include <klock/detail/lock_dep.hpp>

namespace klock {

inline constexpr std::uintptr_t MUTEX_FLAG_WAITERS = 0x01;
inline constexpr std::uintptr_t MUTEX_FLAG_HANDOFF = 0x02;
inline constexpr std::uintptr_t MUTEX_FLAG_PICKUP = 0x04;
inline constexpr std::uintptr_t MUTEX_FLAGS = 0x07;

namespace detail {
// An optional Env member: `static bool single_threaded() noexcept`.
template <class E>
concept env_has_single_threaded = requires
{
    E::single_threaded();
};
} // namespace detail

template <env::Env E> class KLOCK_CAPABILITY("mutex") basic_mutex {
    using task = typename E::task;
    template <class T> using atomic = typename E::template atomic<T>;

public:
    static_assert(alignof(task) > MUTEX_FLAGS, "the owner word keeps its flags in the task pointer's low bits");

    // One optimistic spin (gate wait included) lasts at most spin_budget cpu_relax() calls - about
    // 16 us with x86's pause - before the contender queues and sleeps. Between two looks at the owner
    // word it backs off exponentially up to spin_max_delay pauses (about 1 us).
    static constexpr unsigned spin_budget = 1024;
    static constexpr unsigned spin_max_delay = 64;
    // A contender waits at most this many pauses (about 1 us) for the spinner gate.
    static constexpr unsigned spin_gate_budget = 64;

    // mutex_init(): the lockdep class is the construction site (a constant-initialised static
    // mutex: its own address); the second form names an explicit class.
    constexpr basic_mutex(klock::source_location loc = klock::source_location::current()) noexcept
        : owner_(0), wait_lock_(), spinner_(0), head_(nullptr), tail_(nullptr), dep_("mutex", loc)
    { }
    basic_mutex(lock_class_key& key, const char* name) noexcept
        : owner_(0), wait_lock_(), spinner_(0), head_(nullptr), tail_(nullptr), dep_(key, name)
    { }
    basic_mutex(const basic_mutex&) = delete;
    basic_mutex& operator=(const basic_mutex&) = delete;

    ~basic_mutex()
    {
        dep_.freed(this, sizeof *this);
        const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        if (__builtin_expect(o != 0, 0))
            detail::lock_bug<E>("mutex destroyed while locked", this, owner_task(o), -1,
                head_ != nullptr ? " (tasks are still waiting for it)" : "");
    }

    // mutex_lock(): may sleep. `loc` names the caller in a might_sleep() report.
    [[gnu::always_inline]] void lock(klock::source_location loc = klock::source_location::current()) KLOCK_ACQUIRE()
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(0, 0);
        raw_lock(loc);
    }

    // mutex_lock_nested(): the same class at another level (subclass < 8).
    [[gnu::always_inline]] void lock_nested(
        unsigned subclass, klock::source_location loc = klock::source_location::current()) KLOCK_ACQUIRE()
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(subclass, 0);
        raw_lock(loc);
    }

    // mutex_trylock(): never sleeps and never spins.
    [[gnu::always_inline]] bool try_lock() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        task* cur = E::current();
        std::uintptr_t o = 0;
        if (__builtin_expect(
                owner_.compare_exchange_strong(o, to_word(cur), std::memory_order_acq_rel, std::memory_order_relaxed),
                1)) {
            ld_acquire(0, 1);
            return true;
        }
        if (owner_task(o) == nullptr && trylock_common(cur, false)) {
            ld_acquire(0, 1);
            return true;
        }
        return false;
    }

    // std TimedLockable. The timeout is measured on E::now_ns() (CLOCK_MONOTONIC in the os world).
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout,
        klock::source_location loc = klock::source_location::current()) KLOCK_TRY_ACQUIRE(true)
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed_lock(deadline_after(timeout), loc);
    }

    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& when,
        klock::source_location loc = klock::source_location::current()) KLOCK_TRY_ACQUIRE(true)
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed_lock(deadline_after(when - Clock::now()), loc);
    }

    [[gnu::always_inline]] void unlock() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        raw_unlock();
    }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

    // mutex_is_locked().
    bool is_locked() const noexcept { return owner_task(owner_.load(std::memory_order_relaxed)) != nullptr; }
    // The owner's pid, 0 when unlocked (diagnostic: the owner may change right after).
    int owner_pid() const noexcept
    {
        task* t = owner_task(owner_.load(std::memory_order_acquire));
        return t != nullptr ? E::task_pid(t) : 0;
    }
    // The raw owner word (task pointer | MUTEX_FLAG_*), for tests and diagnostics.
    std::uintptr_t owner_word() const noexcept { return owner_.load(std::memory_order_acquire); }

private:
    // mutex_acquire(): lockdep's view of a mutex is a writer.
    [[gnu::always_inline]] void ld_acquire(unsigned subclass, int trylock) noexcept
    {
        dep_.acquire(subclass, trylock, lockdep::WRITE);
    }

    // A timed attempt holds lockdep's acquire while it waits and gives it back if it fails.
    bool timed_lock(std::uint64_t deadline, const klock::source_location& loc) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        ld_acquire(0, 0);
        if (raw_lock_timed(deadline, loc))
            return true;
        dep_.release();
        return false;
    }

    // A task waiting in the wait list. Lives on the waiter's stack; linked and unlinked under wait_lock.
    struct waiter {
        waiter* next = nullptr;
        waiter* prev = nullptr;
        task* owner_task = nullptr;
        atomic<std::uint32_t> wake{0};
    };
    static constexpr std::uint32_t wake_armed = 0;
    static constexpr std::uint32_t wake_sleeping = 1;
    static constexpr std::uint32_t wake_woken = 2;

    // The kernel's wake_q, for the one task an unlock wakes: filled under wait_lock, run after it.
    struct wake_q {
        atomic<std::uint32_t>* word = nullptr;
        void add(waiter& w) noexcept
        {
            if (w.wake.exchange(wake_woken, std::memory_order_acq_rel) == wake_sleeping)
                word = &w.wake;
        }
        void wake_up() noexcept
        {
            if (word != nullptr)
                E::futex_wake(*word, 1); // may hit a departed waiter's address: see the header comment
        }
    };

    // See "THE OWNER WORD": an Env that knows its world has a single task lets the fast paths skip
    // the atomic read-modify-writes.
    [[gnu::always_inline]] static bool single_threaded() noexcept
    {
        if constexpr (detail::env_has_single_threaded<E>)
            return E::single_threaded();
        else
            return false;
    }

    static std::uintptr_t to_word(task* t) noexcept { return reinterpret_cast<std::uintptr_t>(t); }
    static task* owner_task(std::uintptr_t o) noexcept { return reinterpret_cast<task*>(o & ~MUTEX_FLAGS); }

    template <class Rep, class Period>
    static std::uint64_t deadline_after(const std::chrono::duration<Rep, Period>& d) noexcept
    {
        // Long double avoids overflow for duration::max() and for coarse Reps; beyond ~30 years the
        // wait is simply unbounded.
        const long double ns = std::chrono::duration<long double, std::nano>(d).count();
        const std::uint64_t now = E::now_ns();
        if (!(ns > 0))
            return now == 0 ? 1 : now; // already expired: one attempt, no sleep
        if (ns >= 1e18L)
            return 0;
        const std::uint64_t dl = now + static_cast<std::uint64_t>(ns);
        return dl == 0 ? 1 : dl;
    }

    // ---- the algorithm layer (lockdep hooks sit above, in the public members) ----

    [[gnu::always_inline]] void raw_lock(const klock::source_location& loc) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        task* cur = E::current();
        if (single_threaded()) {
            if (__builtin_expect(owner_.load(std::memory_order_relaxed) == 0, 1)) {
                owner_.store(to_word(cur), std::memory_order_relaxed);
                std::atomic_signal_fence(std::memory_order_seq_cst);
                return;
            }
            slowpath_untimed(cur, loc);
            return;
        }
        std::uintptr_t o = 0;
        if (__builtin_expect(
                owner_.compare_exchange_strong(o, to_word(cur), std::memory_order_acq_rel, std::memory_order_relaxed),
                1))
            return;
        slowpath_untimed(cur, loc);
    }

    [[gnu::always_inline]] void slowpath_untimed(task* cur, const klock::source_location& loc) noexcept
    {
        // False only for a refused recursion: not acquired again, so the owner's one unlock()
        // must find one lockdep entry, not two.
        if (!lock_slowpath(cur, 0, loc))
            dep_.release();
    }

    bool raw_lock_timed(std::uint64_t deadline, const klock::source_location& loc) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        task* cur = E::current();
        std::uintptr_t o = 0;
        if (owner_.compare_exchange_strong(o, to_word(cur), std::memory_order_acq_rel, std::memory_order_relaxed))
            return true;
        return lock_slowpath(cur, deadline, loc);
    }

    [[gnu::always_inline]] void raw_unlock() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        task* cur = E::current();
        if (single_threaded()) {
            const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
            if (__builtin_expect(o == to_word(cur), 1)) {
                std::atomic_signal_fence(std::memory_order_seq_cst);
                owner_.store(0, std::memory_order_relaxed);
                return;
            }
            unlock_slowpath(cur, o);
            return;
        }
        std::uintptr_t o = to_word(cur);
        if (__builtin_expect(
                owner_.compare_exchange_strong(o, 0, std::memory_order_release, std::memory_order_relaxed), 1))
            return;
        unlock_slowpath(cur, o);
    }

    // __mutex_trylock_common(): take a free lock (keeping the flags) or pick up a handoff addressed to
    // `cur`. With `handoff`, a lock owned by somebody else gets HANDOFF set instead. True if acquired.
    bool trylock_common(task* cur, bool handoff) noexcept
    {
        std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        for (;;) {
            std::uintptr_t flags = o & MUTEX_FLAGS;
            task* t = owner_task(o);
            if (t != nullptr) {
                if (flags & MUTEX_FLAG_PICKUP) {
                    if (t != cur)
                        return false;
                    flags &= ~MUTEX_FLAG_PICKUP;
                } else if (handoff) {
                    if (flags & MUTEX_FLAG_HANDOFF)
                        return false;
                    flags |= MUTEX_FLAG_HANDOFF;
                } else {
                    return false;
                }
            } else {
                t = cur;
            }
            if (owner_.compare_exchange_weak(
                    o, to_word(t) | flags, std::memory_order_acq_rel, std::memory_order_relaxed))
                return t == cur;
        }
    }

    // One step of a spin: pause `delay` times, then double `delay` (up to spin_max_delay), so that a
    // long spinner looks at the owner word - and steals the owner's cache line - less and less often.
    // False when the budget or the deadline is spent.
    static bool spin_backoff(unsigned& budget, unsigned& delay, std::uint64_t deadline) noexcept
    {
        if (budget < delay)
            return false;
        budget -= delay;
        for (unsigned k = 0; k < delay; ++k)
            E::cpu_relax();
        if (delay < spin_max_delay)
            delay *= 2;
        return deadline == 0 || E::now_ns() < deadline;
    }

    // mutex_optimistic_spin(): spin while the owner runs, trying to take the lock whenever it is free.
    // `w` null: a new contender, which must first win the spinner gate (waiting for it briefly, where
    // the kernel waits in the OSQ); `w` set: the woken top waiter, which spins without the gate and may
    // also pick up a handoff. Bounded by spin_gate_budget + spin_budget and `deadline`.
    bool optimistic_spin(task* cur, waiter* w, std::uint64_t deadline) noexcept
    {
        unsigned budget = spin_gate_budget, delay = 1;
        if (w == nullptr) {
            for (;;) {
                const std::uintptr_t o = owner_.load(std::memory_order_acquire);
                task* t = owner_task(o);
                if ((o & MUTEX_FLAG_HANDOFF) || (t != nullptr && !E::task_on_cpu(t)))
                    return false; // mutex_can_spin_on_owner() says no: go and queue
                if (spinner_.load(std::memory_order_relaxed) == 0
                    && spinner_.exchange(1, std::memory_order_acquire) == 0)
                    break;
                if (!spin_backoff(budget, delay, deadline))
                    return false;
            }
        }
        budget = spin_budget;
        delay = 1;
        bool acquired = false;
        for (;;) {
            const std::uintptr_t o = owner_.load(std::memory_order_acquire);
            task* t = owner_task(o);
            if (t == nullptr || (t == cur && (o & MUTEX_FLAG_PICKUP))) {
                if (trylock_common(cur, false)) {
                    acquired = true;
                    break;
                }
            } else {
                if (w == nullptr && (o & MUTEX_FLAG_HANDOFF))
                    break; // reserved for the top waiter
                if (!E::task_on_cpu(t))
                    break; // the owner sleeps: so should we
            }
            if (!spin_backoff(budget, delay, deadline))
                break;
        }
        if (w == nullptr)
            spinner_.store(0, std::memory_order_release);
        return acquired;
    }

    // __mutex_add_waiter() / __mutex_remove_waiter(); wait_lock held.
    void add_waiter(waiter& w) noexcept
    {
        w.prev = tail_;
        w.next = nullptr;
        if (tail_ != nullptr)
            tail_->next = &w;
        else
            head_ = &w;
        tail_ = &w;
        if (w.prev == nullptr)
            owner_.fetch_or(MUTEX_FLAG_WAITERS, std::memory_order_relaxed);
    }

    void remove_waiter(waiter& w) noexcept
    {
        (w.prev != nullptr ? w.prev->next : head_) = w.next;
        (w.next != nullptr ? w.next->prev : tail_) = w.prev;
        if (head_ == nullptr)
            owner_.fetch_and(~MUTEX_FLAGS, std::memory_order_relaxed);
    }

    [[gnu::cold]] void report_recursion(task* cur, const klock::source_location& loc) const
    {
        char extra[320];
        std::snprintf(extra, sizeof extra, " lock() by its owner would deadlock; not acquired again (at %s:%u)",
            loc.file_name(), loc.line());
        detail::lock_bug<E>("mutex recursion", this, cur, E::current_cpu(), extra);
    }

    // __mutex_lock_common(). deadline: absolute E::now_ns() time, 0 = none. True with the lock held.
    [[gnu::noinline]] bool lock_slowpath(task* cur, std::uint64_t deadline, const klock::source_location& loc) noexcept
    {
        if (__builtin_expect(owner_task(owner_.load(std::memory_order_relaxed)) == cur, 0)) {
            report_recursion(cur, loc);
            return false;
        }
        dep_.contended();
        if (trylock_common(cur, false) || optimistic_spin(cur, nullptr, deadline)) {
            dep_.acquired();
            return true;
        }

        wait_lock_.lock();
        if (trylock_common(cur, false)) {
            wait_lock_.unlock();
            dep_.acquired();
            return true;
        }
        if (deadline != 0 && E::now_ns() >= deadline) {
            wait_lock_.unlock();
            return false;
        }
        waiter w;
        w.owner_task = cur;
        add_waiter(w);

        bool woken = false;
        for (;;) {
            // wait_lock held. ARMED before the trylock: see "no lost wakeup" above.
            w.wake.store(wake_armed, std::memory_order_relaxed);
            const bool first = head_ == &w;
            if (trylock_common(cur, first && woken))
                break;
            if (deadline != 0 && E::now_ns() >= deadline) {
                remove_waiter(w);
                wait_lock_.unlock();
                return false;
            }
            wait_lock_.unlock();

            if (first && woken && optimistic_spin(cur, &w, deadline)) {
                wait_lock_.lock();
                break;
            }
            sleep(w, deadline);
            woken = woken || w.wake.load(std::memory_order_acquire) == wake_woken;
            wait_lock_.lock();
        }
        remove_waiter(w);
        wait_lock_.unlock();
        dep_.acquired();
        return true;
    }

    // schedule(): sleep until an unlock marks `w` woken, or the deadline passes.
    static void sleep(waiter& w, std::uint64_t deadline) noexcept
    {
        std::uint32_t expected = wake_armed;
        if (!w.wake.compare_exchange_strong(
                expected, wake_sleeping, std::memory_order_acq_rel, std::memory_order_acquire))
            return; // already woken
        for (;;) {
            const int rc = E::futex_wait(w.wake, wake_sleeping, deadline);
            if (w.wake.load(std::memory_order_acquire) != wake_sleeping || rc == -ETIMEDOUT)
                return;
        }
    }

    // __mutex_unlock_slowpath(). `o`: the owner word the fast path found.
    [[gnu::noinline]] void unlock_slowpath(task* cur, std::uintptr_t o) noexcept
    {
        for (;;) {
            task* t = owner_task(o);
            if (__builtin_expect(t != cur, 0)) {
                detail::lock_bug<E>(t == nullptr ? "mutex already unlocked" : "mutex wrong owner", this, t);
                return;
            }
            if (o & MUTEX_FLAG_HANDOFF)
                break; // the lock goes straight to the top waiter
            if (owner_.compare_exchange_weak(
                    o, o & MUTEX_FLAGS, std::memory_order_release, std::memory_order_relaxed)) {
                if (!(o & MUTEX_FLAG_WAITERS))
                    return;
                break;
            }
        }

        wake_q q;
        wait_lock_.lock();
        waiter* next = head_;
        if (next != nullptr)
            q.add(*next);
        if (o & MUTEX_FLAG_HANDOFF)
            handoff(next);
        wait_lock_.unlock();
        q.wake_up();
    }

    // __mutex_handoff(): owner becomes `next` | PICKUP (HANDOFF cleared), or free if nobody waits.
    void handoff(waiter* next) noexcept
    {
        std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        for (;;) {
            std::uintptr_t n = o & MUTEX_FLAG_WAITERS;
            if (next != nullptr)
                n |= to_word(next->owner_task) | MUTEX_FLAG_PICKUP;
            if (owner_.compare_exchange_weak(o, n, std::memory_order_release, std::memory_order_relaxed))
                return;
        }
    }

    atomic<std::uintptr_t> owner_;
    arch::qspinlock<E> wait_lock_;
    atomic<std::uint32_t> spinner_; // the single-spinner gate (stands in for the kernel's OSQ)
    waiter* head_;                  // wait_list, FIFO; guarded by wait_lock_
    waiter* tail_;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

using mutex = basic_mutex<env::os>;

// libstdc++'s std::mutex is a pthread_mutex_t (40 bytes on x86-64 glibc).
#if !KLOCK_LOCKDEP
static_assert(sizeof(mutex) <= sizeof(pthread_mutex_t), "klock::mutex must not be larger than std::mutex");
#endif

} // namespace klock
