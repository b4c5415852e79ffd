// klock::rw_semaphore: the kernel's sleeping reader-writer semaphore
// (kernel/locking/rwsem.c, include/linux/rwsem.h), over an Env.
//
// State
// -----
// count (64 bits):
//     bit 0      RWSEM_WRITER_LOCKED  a writer holds the lock
//     bit 1      RWSEM_FLAG_WAITERS   the wait list is not empty: releasers must look at it
//     bit 2      RWSEM_FLAG_HANDOFF   the lock is reserved for the head of the queue
//     bits 8-63  reader count, one RWSEM_READER_BIAS (0x100) per reader
// The reader count includes readers that are only *trying*: a reader adds its bias first and
// looks second, then takes the bias back if it must queue. So "readers > 0" means "a writer
// cannot get in right now", not "somebody holds a read lock".
//
// owner: the writer's task pointer while write-locked; while read-locked, the last reader to
// get in with RWSEM_READER_OWNED (bit 0) set. The reader pointer is a hint only (that reader
// may be gone), so reports never dereference it; the writer pointer names the holder in
// misuse reports and is what optimistic spinners watch.
//
// wait_lock (an arch::qspinlock) protects the FIFO wait list of waiter records, which live on
// the waiters' stacks, and every change of the WAITERS and HANDOFF bits.
//
// Fast paths (one atomic each)
// ----------------------------
//   down_read:  fetch_add(READER_BIAS); success unless WRITER_LOCKED, WAITERS or HANDOFF was set.
//   up_read:    fetch_sub(READER_BIAS); if the result is "no lock bits, WAITERS set", rwsem_wake.
//   down_write: CAS 0 -> WRITER_LOCKED.
//   up_write:   fetch_sub(WRITER_LOCKED); if WAITERS was set, rwsem_wake.
// up_read and up_write first load count / owner to catch misuse (below); the kernel does so
// only under CONFIG_DEBUG_RWSEMS.
//
// Slow paths
// ----------
// Reader (rwsem_down_read_slowpath): with its bias already in count, a reader may still
// *steal* the lock past queued waiters when no writer holds it and no handoff is pending -
// unless the lock is visibly reader-owned by others (count shows more than our bias), in which
// case it queues: that is what keeps a continuous overlapping stream of readers from starving
// a queued writer (the stream joins the queue behind the writer and the old readers drain).
// A reader that queues takes its bias back, and if that leaves the lock without a writer it
// runs the wakeup itself (rwsem_cond_wake_waiter), because the bias it just removed may have
// been the only thing that made a releaser skip the wakeup.
//
// Writer (rwsem_down_write_slowpath): first a bounded optimistic spin while the owner is a
// writer that is not known to be asleep (E::task_on_cpu; user space cannot see on_cpu, so the
// spin is capped at RWSEM_SPIN_LIMIT rounds), stealing the lock if it frees. Then it queues and
// loops under wait_lock: try to take the lock (rwsem_try_write_lock); on failure sleep until a
// releaser wakes it. A writer is never handed the lock; it always takes it itself, so between
// the wakeup and the retry another writer may steal it - unless HANDOFF is set.
//
// rwsem_mark_wake (under wait_lock, from releasers and from the queueing paths above):
//   * head is a writer: wake it (only for "wake any"); it retries by itself.
//   * head is a reader: add one bias for it first - if a writer stole the lock meanwhile, take
//     it back and stop - then move up to RWSEM_MAX_READERS_WAKEUP readers from anywhere in the
//     queue (phase-fair, as the kernel: writers keep their places) to a private list, add
//     their biases in one atomic, and only then mark each record WOKEN. Counting before
//     granting is essential: a granted reader may run and call up_read before the waker has
//     finished, and its fetch_sub must find its bias already there.
//
// Anti-starvation (handoff): a waiter that has waited longer than RWSEM_WAIT_TIMEOUT (4 ms, the
// kernel's value at HZ=250/1000) - or at once, for a real-time writer - sets HANDOFF. With
// HANDOFF set, readers stop stealing, writers stop stealing and the fast paths fail (they
// already fail on WAITERS), so the next release goes to the head of the queue. A writer sets
// it in rwsem_try_write_lock when the lock is busy; a reader head sets it in rwsem_mark_wake
// when a writer stole the lock. It is cleared when the head gets the lock, or when the queue
// empties. A waiter whose deadline passes leaves the queue under wait_lock and, if it was the
// head, runs rwsem_mark_wake for the new head (rwsem_del_wake_waiter), so that readers queued
// behind a departing writer are not stranded. Writers therefore get in within one reader "generation" plus 4 ms however
// many readers keep coming, and readers within 4 ms plus one writer critical section however many writers keep coming.
//
// Sleeping, lost wakeups, and the waker touching a dead record
// -------------------------------------------------------------
// A waiter sleeps with E::futex_wait on `state` in its own waiter record (rwsem_waiter.hpp).
// It sleeps only after moving state WAITING -> SLEEPING with a CAS, and futex_wait sleeps only
// while the word still reads SLEEPING; the waker makes the word WOKEN with an exchange before
// it calls futex_wake. So either the waker's exchange comes first (the CAS or futex_wait sees
// WOKEN and the waiter does not sleep), or the waiter is (or is about to be) asleep on
// SLEEPING and the exchange tells the waker to futex_wake it. No interleaving loses the wakeup,
// and every return from futex_wait re-reads the word, so spurious returns are harmless.
// Writers reset their word to WAITING under wait_lock after each failed attempt, and wakers
// write it only under wait_lock, so a stale WOKEN never skips a sleep it should not.
//
// The exchange that makes a record WOKEN is the waker's last access to the record: a reader
// that sees WOKEN returns at once, a writer may take the lock and return before it ever
// sleeps, and the stack frame - the record - is reused. The futex_wake
// that follows (issued after wait_lock is dropped, from the wake queue) therefore may name an
// address that no longer holds that record. This is safe because futex_wake only uses the
// address as a key and never reads or writes the memory behind it (an unmapped address is an
// error return, which we ignore), and the worst it can do to a new occupant of the address is
// a spurious wakeup, which every futex_wait caller must tolerate (the Env contract). The
// waker reads the word's address out of the record before the exchange and nothing from the
// record after it. The kernel solves the same problem by pinning the task_struct
// (get_task_struct) before clearing waiter->task; here the futex key plays that role.
//
// Misuse (reported with detail::lock_bug; lock state unchanged)
//   up_read without a read lock, up_write/downgrade_write when not write-locked or by another
//   task, destruction while locked or with waiters. A down_write or down_read by the task that
//   holds the write lock would deadlock in the kernel; here it is reported and then counted as
//   a nesting level of the write hold (no second acquisition, no hang): the matching up_write /
//   up_read only drops that level, and the lock is released by the outermost up_write.
//   Recursive *read* locking is not detectable without per-task lock tracking (lockdep's job):
//   it works until a writer queues between the two down_reads, then deadlocks, as in the kernel;
//   so does down_write by a task that holds a read lock (count knows how many readers, not who).
//   up_read cannot tell a stray call from a legitimate one while some other reader's bias is
//   in count (count has no per-reader identity); it catches the common case, an unlocked or
//   write-locked semaphore.
//
// Deviations from the kernel
//   * count is 64-bit everywhere and there is no RWSEM_FLAG_READFAIL (2^56 readers cannot
//     happen); no RWSEM_NONSPINNABLE: writers never spin on reader-owned locks (the kernel does
//     for a bounded time), and there is no OSQ: the spin is short and bounded instead.
//   * Wakeup is a futex on the waiter record instead of wake_up_process(); see above.
//   * The write-owner's recursion is reported and survived (see Misuse).
//   * Timed variants (try_lock_for/until, try_lock_shared_for/until) use the kernel's
//     killable-path removal (rwsem_del_wake_waiter) when the deadline passes.
//   * up_write does not disable preemption around the owner clear + release.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <klock/source_location.hpp>

#include <klock/arch/qspinlock.hpp>
#include <klock/detail/lock_debug.hpp>
#include <klock/detail/rwsem_waiter.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/might_sleep.hpp>
#include <klock/thread_safety.hpp>

#include <klock/detail/lock_dep.hpp>

namespace klock {

// count
inline constexpr std::uint64_t RWSEM_WRITER_LOCKED = 1u << 0;
inline constexpr std::uint64_t RWSEM_FLAG_WAITERS = 1u << 1;
inline constexpr std::uint64_t RWSEM_FLAG_HANDOFF = 1u << 2;
inline constexpr unsigned RWSEM_READER_SHIFT = 8;
inline constexpr std::uint64_t RWSEM_READER_BIAS = std::uint64_t(1) << RWSEM_READER_SHIFT;
inline constexpr std::uint64_t RWSEM_READER_MASK = ~(RWSEM_READER_BIAS - 1);
inline constexpr std::uint64_t RWSEM_WRITER_MASK = RWSEM_WRITER_LOCKED;
inline constexpr std::uint64_t RWSEM_LOCK_MASK = RWSEM_WRITER_MASK | RWSEM_READER_MASK;
inline constexpr std::uint64_t RWSEM_READ_FAILED_MASK = RWSEM_WRITER_MASK | RWSEM_FLAG_WAITERS | RWSEM_FLAG_HANDOFF;

// owner
inline constexpr std::uintptr_t RWSEM_READER_OWNED = 1u << 0;
inline constexpr std::uintptr_t RWSEM_OWNER_FLAGS_MASK = 0x7;

// How long a waiter waits before it may demand a handoff (the kernel: 4 ms at HZ=250).
inline constexpr std::uint64_t RWSEM_WAIT_TIMEOUT_NS = 4'000'000;
// Rounds of the writers' optimistic spin (each: a load or two and a cpu_relax).
inline constexpr unsigned RWSEM_SPIN_LIMIT = 512;

template <env::Env E> class KLOCK_CAPABILITY("rw_semaphore") basic_rw_semaphore {
public:
    using env_type = E;
    using task = typename E::task;

    // init_rwsem(): the lockdep class is the construction site (a constant-initialised static
    // rwsem: its own address); the second form names an explicit class.
    constexpr basic_rw_semaphore(klock::source_location loc = klock::source_location::current()) noexcept
        : count_(0), owner_(0), dep_("rw_semaphore", loc)
    { }
    basic_rw_semaphore(lock_class_key& key, const char* name) noexcept : count_(0), owner_(0), dep_(key, name) { }
    basic_rw_semaphore(const basic_rw_semaphore&) = delete;
    basic_rw_semaphore& operator=(const basic_rw_semaphore&) = delete;

    ~basic_rw_semaphore()
    {
        dep_.freed(this, sizeof *this);
        if (__builtin_expect((count_.load(std::memory_order_relaxed) & (RWSEM_LOCK_MASK | RWSEM_FLAG_WAITERS)) != 0, 0))
            misuse("rw_semaphore destroyed while locked", write_owner());
    }

    // ---- kernel API ----

    // Sleeps until the read lock is granted.
    void down_read(klock::source_location loc = klock::source_location::current())
        KLOCK_ACQUIRE_SHARED() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(0, 0, 1);
        raw_down_read(0);
    }

    // down_read_nested(): the same class at another level (subclass < 8).
    void down_read_nested(unsigned subclass, klock::source_location loc = klock::source_location::current())
        KLOCK_ACQUIRE_SHARED() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(subclass, 0, 1);
        raw_down_read(0);
    }

    // Never sleeps. Fails whenever a writer holds the lock *or anyone is queued*.
    bool down_read_trylock() KLOCK_TRY_ACQUIRE_SHARED(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if (!raw_down_read_trylock())
            return false;
        ld_acquire(0, 1, 1);
        return true;
    }

    void up_read() KLOCK_RELEASE_SHARED() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        dep_.release();
        raw_up_read();
    }

    // Sleeps until the write lock is taken.
    void down_write(klock::source_location loc = klock::source_location::current())
        KLOCK_ACQUIRE() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(0, 0, 0);
        raw_down_write(0);
    }

    // down_write_nested(): the same class at another level (subclass < 8).
    void down_write_nested(unsigned subclass, klock::source_location loc = klock::source_location::current())
        KLOCK_ACQUIRE() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(subclass, 0, 0);
        raw_down_write(0);
    }

    bool down_write_trylock() KLOCK_TRY_ACQUIRE(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if (!raw_down_write_trylock())
            return false;
        ld_acquire(0, 1, 0);
        return true;
    }

    void up_write() KLOCK_RELEASE() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        dep_.release();
        raw_up_write();
    }

    // Turns the caller's write hold into a read hold without letting a writer in between, and
    // lets the readers queued in front of the next writer in with it.
    void downgrade_write() KLOCK_RELEASE() KLOCK_ACQUIRE_SHARED() KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        dep_.downgrade();
        raw_downgrade_write();
    }

    // ---- std names: Lockable, SharedLockable, and their timed forms ----

    void lock(klock::source_location loc = klock::source_location::current()) KLOCK_ACQUIRE() { down_write(loc); }
    bool try_lock() KLOCK_TRY_ACQUIRE(true) { return down_write_trylock(); }
    void unlock() KLOCK_RELEASE() { up_write(); }
    void lock_shared(klock::source_location loc = klock::source_location::current()) KLOCK_ACQUIRE_SHARED()
    {
        down_read(loc);
    }
    bool try_lock_shared() KLOCK_TRY_ACQUIRE_SHARED(true) { return down_read_trylock(); }
    void unlock_shared() KLOCK_RELEASE_SHARED() { up_read(); }

    template <class Rep, class Period>
    bool try_lock_for(
        const std::chrono::duration<Rep, Period>& rel, klock::source_location loc = klock::source_location::current())
        KLOCK_TRY_ACQUIRE(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed(deadline_after(rel), 0);
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs,
        klock::source_location loc = klock::source_location::current())
        KLOCK_TRY_ACQUIRE(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed(deadline_after(abs - Clock::now()), 0);
    }
    template <class Rep, class Period>
    bool try_lock_shared_for(
        const std::chrono::duration<Rep, Period>& rel, klock::source_location loc = klock::source_location::current())
        KLOCK_TRY_ACQUIRE_SHARED(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed(deadline_after(rel), 1);
    }
    template <class Clock, class Duration>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& abs,
        klock::source_location loc = klock::source_location::current())
        KLOCK_TRY_ACQUIRE_SHARED(true) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        return timed(deadline_after(abs - Clock::now()), 1);
    }

    // ---- observers (racy snapshots, for assertions and debugging) ----

    // rwsem_is_locked(): held for read or write (or a reader is momentarily trying).
    bool is_locked() const noexcept { return (count_.load(std::memory_order_relaxed) & RWSEM_LOCK_MASK) != 0; }
    bool is_write_locked() const noexcept
    {
        return (count_.load(std::memory_order_relaxed) & RWSEM_WRITER_LOCKED) != 0;
    }
    // rwsem_is_contended(): somebody is queued.
    bool is_contended() const noexcept { return (count_.load(std::memory_order_relaxed) & RWSEM_FLAG_WAITERS) != 0; }
    // The writer holding the lock, or null (also when read-locked).
    task* write_owner() const noexcept
    {
        std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        return (o & RWSEM_READER_OWNED) ? nullptr : owner_task(o);
    }
    // Queued waiters, counted under wait_lock.
    std::size_t waiter_count() noexcept
    {
        std::size_t n = 0;
        wait_lock_.lock();
        for (waiter* w = head_; w != nullptr; w = w->next)
            ++n;
        wait_lock_.unlock();
        return n;
    }
    std::uint64_t raw_count() const noexcept { return count_.load(std::memory_order_relaxed); }
    std::uintptr_t raw_owner() const noexcept { return owner_.load(std::memory_order_relaxed); }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

private:
    using waiter = detail::rwsem_waiter<E>;
    using wake_q = detail::rwsem_wake_q<E>;
    enum class wake_type { any, readers, read_owned };

    static_assert(alignof(task) > RWSEM_OWNER_FLAGS_MASK, "owner flags live in the task pointer's low bits");

    // rwsem_acquire / rwsem_acquire_read: rw_semaphore readers are non-recursive (read = 1).
    [[gnu::always_inline]] void ld_acquire(unsigned subclass, int trylock, int read) noexcept
    {
        dep_.acquire(subclass, trylock, read);
    }
    // A timed attempt holds lockdep's acquire while it waits and gives it back if it fails.
    bool timed(std::uint64_t deadline, int read) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        ld_acquire(0, 0, read);
        if (read ? raw_down_read(deadline) : raw_down_write(deadline))
            return true;
        dep_.release();
        return false;
    }

    static task* owner_task(std::uintptr_t o) noexcept { return reinterpret_cast<task*>(o & ~RWSEM_OWNER_FLAGS_MASK); }
    static std::uintptr_t owner_value(task* t) noexcept { return reinterpret_cast<std::uintptr_t>(t); }
    static std::uint64_t add(std::int64_t v) noexcept { return static_cast<std::uint64_t>(v); }

    // A deadline on E's clock, never 0 (0 means "no deadline"). Durations beyond a century
    // are treated as "forever".
    template <class Rep, class Period>
    static std::uint64_t deadline_after(const std::chrono::duration<Rep, Period>& rel)
    {
        const std::uint64_t now = E::now_ns();
        if (std::chrono::duration<long double>(rel).count() > 3.2e9L)
            return 0;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(rel).count();
        const std::uint64_t d = now + (ns > 0 ? static_cast<std::uint64_t>(ns) : 0);
        return d == 0 ? 1 : d;
    }

    void set_owner(task* t) noexcept { owner_.store(owner_value(t), std::memory_order_release); }
    void set_reader_owned(task* t) noexcept
    {
        owner_.store(owner_value(t) | RWSEM_READER_OWNED, std::memory_order_relaxed);
    }
    bool is_write_owner(task* t) const noexcept { return owner_.load(std::memory_order_relaxed) == owner_value(t); }

    // ================= read side =================

    [[gnu::always_inline]] bool raw_down_read(std::uint64_t deadline)
    {
        const std::uint64_t c = count_.fetch_add(RWSEM_READER_BIAS, std::memory_order_acquire) + RWSEM_READER_BIAS;
        if (__builtin_expect(!(c & RWSEM_READ_FAILED_MASK), 1)) {
            set_reader_owned(E::current());
            return true;
        }
        dep_.contended();
        const bool ok = down_read_slowpath(c, deadline);
        if (ok)
            dep_.acquired();
        return ok;
    }

    [[gnu::always_inline]] bool raw_down_read_trylock() noexcept
    {
        std::uint64_t c = count_.load(std::memory_order_relaxed);
        while (!(c & RWSEM_READ_FAILED_MASK)) {
            if (count_.compare_exchange_weak(
                    c, c + RWSEM_READER_BIAS, std::memory_order_acquire, std::memory_order_relaxed)) {
                set_reader_owned(E::current());
                return true;
            }
        }
        return false;
    }

    [[gnu::always_inline]] void raw_up_read()
    {
        // A legitimate reader's own bias is in count, and no writer can hold the lock beside
        // it; anything else is a stray up_read, caught here before it touches count.
        const std::uint64_t seen = count_.load(std::memory_order_relaxed);
        if (__builtin_expect((seen & RWSEM_WRITER_LOCKED) || !(seen & RWSEM_READER_MASK), 0)) {
            up_read_unowned(seen);
            return;
        }
        const std::uint64_t c = count_.fetch_sub(RWSEM_READER_BIAS, std::memory_order_release) - RWSEM_READER_BIAS;
        if (__builtin_expect((c & (RWSEM_LOCK_MASK | RWSEM_FLAG_WAITERS)) == RWSEM_FLAG_WAITERS, 0))
            rwsem_wake();
    }

    [[gnu::noinline]] bool down_read_slowpath(std::uint64_t c, std::uint64_t deadline)
    {
        task* const cur = E::current();
        const std::uint64_t rcnt = c >> RWSEM_READER_SHIFT;

        if ((c & RWSEM_WRITER_LOCKED) && is_write_owner(cur)) {
            // We hold it for write: waiting would never end. Our bias cannot have made anyone
            // skip a wakeup (the lock stays write-held by us), so taking it back is enough.
            count_.fetch_sub(RWSEM_READER_BIAS, std::memory_order_relaxed);
            ++nested_read_;
            misuse("rw_semaphore recursion", cur,
                "down_read by the task holding it for write would deadlock; counted as nested in the write hold");
            return true;
        }

        // Readers already hold it and our bias is not alone: queue, so that a stream of
        // overlapping readers cannot keep a queued writer out forever.
        const bool crowded
            = (owner_.load(std::memory_order_relaxed) & RWSEM_READER_OWNED) && rcnt > 1 && !(c & RWSEM_WRITER_LOCKED);
        if (!crowded && !(c & (RWSEM_WRITER_LOCKED | RWSEM_FLAG_HANDOFF))) {
            // Reader lock stealing: no writer, no handoff pending; our bias already counts.
            set_reader_owned(cur);
            if (rcnt == 1 && (c & RWSEM_FLAG_WAITERS)) {
                // First reader in: bring the queued readers at the head with us.
                wake_q wq;
                wait_lock_.lock();
                if (head_ != nullptr)
                    mark_wake(wake_type::read_owned, wq);
                wait_lock_.unlock();
                wq.wake_up();
            }
            return true;
        }

        waiter w(cur, false, E::now_ns() + RWSEM_WAIT_TIMEOUT_NS);
        std::int64_t adjustment = -std::int64_t(RWSEM_READER_BIAS);
        wake_q wq;

        wait_lock_.lock();
        if (head_ == nullptr) {
            // Nobody queued: unless a writer holds it, our bias already makes us a reader.
            // (HANDOFF is never set with an empty queue.) Acquire pairs with the writer's
            // release that may have cleared WRITER_LOCKED since our fetch_add.
            if (!(count_.load(std::memory_order_acquire) & RWSEM_WRITER_MASK)) {
                wait_lock_.unlock();
                set_reader_owned(cur);
                return true;
            }
            adjustment += std::int64_t(RWSEM_FLAG_WAITERS);
        }
        enqueue(&w);
        c = count_.fetch_add(add(adjustment), std::memory_order_acq_rel) + add(adjustment);
        cond_wake(c, wq);
        wait_lock_.unlock();
        wq.wake_up();

        for (;;) {
            std::uint32_t s = w.state.load(std::memory_order_acquire);
            if (s == detail::RWSEM_WAITER_WOKEN)
                return true; // granted: our bias was added by the waker
            if (s == detail::RWSEM_WAITER_WAITING
                && !w.state.compare_exchange_strong(
                    s, detail::RWSEM_WAITER_SLEEPING, std::memory_order_acquire, std::memory_order_acquire))
                continue;
            const int rc = E::futex_wait(w.state, detail::RWSEM_WAITER_SLEEPING, deadline);
            if (deadline != 0 && (rc == -ETIMEDOUT || E::now_ns() >= deadline)) {
                wait_lock_.lock();
                // Grants happen under wait_lock, so this answer is final.
                if (w.state.load(std::memory_order_acquire) == detail::RWSEM_WAITER_WOKEN) {
                    wait_lock_.unlock();
                    return true;
                }
                del_wake_waiter(&w, wq);
                wait_lock_.unlock();
                wq.wake_up();
                return false;
            }
        }
    }

    // ================= write side =================

    [[gnu::always_inline]] bool raw_down_write(std::uint64_t deadline)
    {
        std::uint64_t expected = 0;
        if (__builtin_expect(count_.compare_exchange_strong(
                                 expected, RWSEM_WRITER_LOCKED, std::memory_order_acquire, std::memory_order_relaxed),
                1)) {
            set_owner(E::current());
            return true;
        }
        dep_.contended();
        const bool ok = down_write_slowpath(deadline);
        if (ok)
            dep_.acquired();
        return ok;
    }

    [[gnu::always_inline]] bool raw_down_write_trylock() noexcept
    {
        std::uint64_t expected = 0;
        if (count_.compare_exchange_strong(
                expected, RWSEM_WRITER_LOCKED, std::memory_order_acquire, std::memory_order_relaxed)) {
            set_owner(E::current());
            return true;
        }
        return false;
    }

    [[gnu::always_inline]] void raw_up_write()
    {
        task* const cur = E::current();
        // owner == current proves a write hold by us (only we store our bare pointer there,
        // and we clear it before releasing); the nesting counters are ours to read only then.
        if (__builtin_expect(!is_write_owner(cur) || (nested_write_ | nested_read_) != 0, 0)) {
            up_write_slow(cur);
            return;
        }
        release_write();
    }

    [[gnu::always_inline]] void release_write()
    {
        owner_.store(0, std::memory_order_relaxed);
        const std::uint64_t old = count_.fetch_sub(RWSEM_WRITER_LOCKED, std::memory_order_release);
        if (__builtin_expect(old & RWSEM_FLAG_WAITERS, 0))
            rwsem_wake();
    }

    void raw_downgrade_write()
    {
        task* const cur = E::current();
        if (!is_write_owner(cur)) {
            const bool locked = (count_.load(std::memory_order_relaxed) & RWSEM_WRITER_LOCKED) != 0;
            misuse(
                locked ? "rw_semaphore downgrade_write: wrong owner" : "rw_semaphore downgrade_write: not write-locked",
                locked ? write_owner() : nullptr);
            return;
        }
        // A nested (reported) write or read level cannot survive the change of mode: drop it;
        // its matching release will be reported as unbalanced.
        nested_write_ = 0;
        nested_read_ = 0;
        const std::uint64_t old = count_.fetch_add(RWSEM_READER_BIAS - RWSEM_WRITER_LOCKED, std::memory_order_release);
        set_reader_owned(cur);
        if (old & RWSEM_FLAG_WAITERS) {
            wake_q wq;
            wait_lock_.lock();
            if (head_ != nullptr)
                mark_wake(wake_type::read_owned, wq);
            wait_lock_.unlock();
            wq.wake_up();
        }
    }

    [[gnu::noinline]] bool down_write_slowpath(std::uint64_t deadline)
    {
        task* const cur = E::current();
        if (is_write_owner(cur) && (count_.load(std::memory_order_relaxed) & RWSEM_WRITER_LOCKED)) {
            ++nested_write_;
            misuse("rw_semaphore recursion", cur,
                "down_write by the task holding it for write would deadlock; counted as nested in the write hold");
            return true;
        }

        if (optimistic_spin(cur))
            return true;

        waiter w(cur, true, E::now_ns() + RWSEM_WAIT_TIMEOUT_NS);
        wake_q wq;

        wait_lock_.lock();
        enqueue(&w);
        if (head_ != &w) {
            // Others were queued before us. If the lock is not write-held, the readers at the
            // head may be grantable now (they might have queued behind a writer that is gone).
            cond_wake(count_.load(std::memory_order_relaxed), wq);
            if (!wq.empty()) {
                wait_lock_.unlock();
                wq.wake_up();
                wait_lock_.lock();
            }
        } else {
            count_.fetch_or(RWSEM_FLAG_WAITERS, std::memory_order_relaxed);
        }

        for (;;) {
            if (try_write_lock_queued(&w, cur))
                break;
            w.state.store(detail::RWSEM_WAITER_WAITING, std::memory_order_relaxed);
            wait_lock_.unlock();

            // The head that demanded a handoff spins on a running writer: the lock is about to
            // become ours, and a sleep/wake round trip would only add latency.
            const bool unlocked = w.handoff_set && spin_until_unlocked();
            if (!unlocked) {
                std::uint32_t s = detail::RWSEM_WAITER_WAITING;
                int rc = 0;
                if (w.state.compare_exchange_strong(
                        s, detail::RWSEM_WAITER_SLEEPING, std::memory_order_acquire, std::memory_order_acquire))
                    rc = E::futex_wait(w.state, detail::RWSEM_WAITER_SLEEPING, deadline);
                if (deadline != 0 && (rc == -ETIMEDOUT || E::now_ns() >= deadline)) {
                    wait_lock_.lock();
                    if (try_write_lock_queued(&w, cur))
                        break;
                    del_wake_waiter(&w, wq);
                    wait_lock_.unlock();
                    wq.wake_up();
                    return false;
                }
            }
            wait_lock_.lock();
        }
        wait_lock_.unlock();
        return true;
    }

    // rwsem_try_write_lock_unqueued() in a bounded owner spin (rwsem_optimistic_spin without
    // the OSQ): steal the lock when it frees while its writer owner looks runnable.
    bool optimistic_spin(task* cur) noexcept
    {
        for (unsigned i = 0; i < RWSEM_SPIN_LIMIT; ++i) {
            std::uint64_t c = count_.load(std::memory_order_relaxed);
            if (!(c & (RWSEM_LOCK_MASK | RWSEM_FLAG_HANDOFF))) {
                if (count_.compare_exchange_weak(
                        c, c | RWSEM_WRITER_LOCKED, std::memory_order_acquire, std::memory_order_relaxed)) {
                    set_owner(cur);
                    return true;
                }
                continue;
            }
            if (c & RWSEM_FLAG_HANDOFF)
                return false; // reserved for the queue head
            if (!owner_looks_running(c))
                return false;
            E::cpu_relax();
        }
        return false;
    }

    // rwsem_spin_on_owner() for the handoff head: true once the lock has no holder.
    bool spin_until_unlocked() noexcept
    {
        for (unsigned i = 0; i < RWSEM_SPIN_LIMIT; ++i) {
            const std::uint64_t c = count_.load(std::memory_order_relaxed);
            if (!(c & RWSEM_LOCK_MASK))
                return true;
            if (!owner_looks_running(c))
                return false;
            E::cpu_relax();
        }
        return false;
    }

    // Worth spinning for: a writer that is not known to be asleep, or a writer that has set
    // WRITER_LOCKED and not yet published itself. Readers are not spun on: we cannot tell
    // how many there are or whether they run.
    bool owner_looks_running(std::uint64_t c) const noexcept
    {
        if (!(c & RWSEM_WRITER_LOCKED))
            return false;
        const std::uintptr_t o = owner_.load(std::memory_order_acquire);
        if (o == 0 || (o & RWSEM_READER_OWNED))
            return true; // between the writer's CAS and its set_owner()
        // As the kernel reads owner->on_cpu under RCU, we read the hint of a task that may have
        // released the lock meanwhile: task records of the os world outlive a lock hold (thread
        // storage, recycled with cached stacks), and a stale answer only ends the spin early
        // or late, never decides ownership.
        return E::task_on_cpu(owner_task(o));
    }

    // rwsem_try_write_lock(): under wait_lock, by the queued writer `w` itself. Takes the lock
    // (and leaves the queue), or sets HANDOFF when `w` has waited long enough, or fails.
    bool try_write_lock_queued(waiter* w, task* cur) noexcept
    {
        waiter* const first = head_;
        std::uint64_t c = count_.load(std::memory_order_relaxed);
        std::uint64_t nc;
        do {
            const bool has_handoff = (c & RWSEM_FLAG_HANDOFF) != 0;
            if (has_handoff && first->handoff_set && w != first)
                return false; // reserved for the head, which asked for it
            nc = c;
            if (c & RWSEM_LOCK_MASK) {
                if (has_handoff || !may_demand_handoff(w))
                    return false;
                nc |= RWSEM_FLAG_HANDOFF;
            } else {
                nc |= RWSEM_WRITER_LOCKED;
                nc &= ~RWSEM_FLAG_HANDOFF;
                if (head_ == tail_)
                    nc &= ~RWSEM_FLAG_WAITERS; // we are the only waiter
            }
        } while (!count_.compare_exchange_weak(c, nc, std::memory_order_acquire, std::memory_order_relaxed));

        if (nc & RWSEM_FLAG_HANDOFF) {
            first->handoff_set = true;
            return false;
        }
        dequeue(w);
        set_owner(cur);
        return true;
    }

    bool may_demand_handoff(waiter* w) noexcept
    {
        if (w->rt < 0)
            w->rt = E::current_prio() > 0 ? 1 : 0; // only w's own task runs this
        return w->rt > 0 || E::now_ns() > w->timeout;
    }

    // ================= wakeups (wait_lock held unless noted) =================

    // rwsem_wake(): a release found waiters. Called without wait_lock.
    [[gnu::noinline]] void rwsem_wake()
    {
        wake_q wq;
        wait_lock_.lock();
        if (head_ != nullptr)
            mark_wake(wake_type::any, wq);
        wait_lock_.unlock();
        wq.wake_up();
    }

    // rwsem_cond_wake_waiter()
    void cond_wake(std::uint64_t c, wake_q& wq) noexcept
    {
        if (c & RWSEM_WRITER_MASK)
            return;
        mark_wake((c & RWSEM_READER_MASK) ? wake_type::readers : wake_type::any, wq);
    }

    // rwsem_mark_wake(); head_ != nullptr.
    void mark_wake(wake_type type, wake_q& wq) noexcept
    {
        waiter* w = head_;
        if (w->writer) {
            if (type == wake_type::any)
                wq.wake_one(&w->state);
            return;
        }

        std::int64_t adjustment = 0;
        if (type != wake_type::read_owned) {
            // Grant the head first, so that a writer that stole the lock meanwhile is noticed
            // before any reader is moved.
            adjustment = std::int64_t(RWSEM_READER_BIAS);
            const std::uint64_t old = count_.fetch_add(RWSEM_READER_BIAS, std::memory_order_acq_rel);
            if (old & RWSEM_WRITER_MASK) {
                if (E::now_ns() > w->timeout) {
                    if (!(old & RWSEM_FLAG_HANDOFF))
                        adjustment -= std::int64_t(RWSEM_FLAG_HANDOFF);
                    w->handoff_set = true;
                }
                count_.fetch_add(add(-adjustment), std::memory_order_relaxed);
                return;
            }
            set_reader_owned(w->owner_task);
        }

        // Pass 1: take up to RWSEM_MAX_READERS_WAKEUP readers off the queue (writers keep their
        // places) and count them into the lock before any of them can run.
        unsigned woken = 0;
        for (waiter* it = head_; it != nullptr;) {
            waiter* const next = it->next;
            if (!it->writer) {
                dequeue(it);
                wq.add_pending(&it->state);
                if (++woken >= detail::RWSEM_MAX_READERS_WAKEUP)
                    break;
            }
            it = next;
        }
        adjustment = std::int64_t(woken) * std::int64_t(RWSEM_READER_BIAS) - adjustment;
        // WAITERS and HANDOFF change only under wait_lock, which we hold: this read is stable.
        const std::uint64_t c = count_.load(std::memory_order_relaxed);
        if (head_ == nullptr) {
            adjustment -= std::int64_t(RWSEM_FLAG_WAITERS);
            if (c & RWSEM_FLAG_HANDOFF)
                adjustment -= std::int64_t(RWSEM_FLAG_HANDOFF);
        } else if (woken != 0 && (c & RWSEM_FLAG_HANDOFF)) {
            adjustment -= std::int64_t(RWSEM_FLAG_HANDOFF); // the readers it was for are in
        }
        if (adjustment != 0)
            count_.fetch_add(add(adjustment), std::memory_order_relaxed);

        // Pass 2: grant. From here on the records may vanish; only their word addresses remain.
        wq.grant_pending();
    }

    // rwsem_del_wake_waiter() without the unlock: a waiter gives up (deadline passed).
    void del_wake_waiter(waiter* w, wake_q& wq) noexcept
    {
        const bool was_first = head_ == w;
        dequeue(w);
        if (head_ == nullptr) {
            count_.fetch_and(~(RWSEM_FLAG_WAITERS | RWSEM_FLAG_HANDOFF), std::memory_order_relaxed);
            return;
        }
        // The new head may be grantable now (readers behind a departing writer), or must at
        // least learn that it is the head.
        if (was_first)
            mark_wake(wake_type::any, wq);
    }

    void enqueue(waiter* w) noexcept
    {
        w->prev = tail_;
        w->next = nullptr;
        if (tail_ != nullptr)
            tail_->next = w;
        else
            head_ = w;
        tail_ = w;
    }

    void dequeue(waiter* w) noexcept
    {
        if (w->prev != nullptr)
            w->prev->next = w->next;
        else
            head_ = w->next;
        if (w->next != nullptr)
            w->next->prev = w->prev;
        else
            tail_ = w->prev;
        w->prev = w->next = nullptr;
    }

    // ================= misuse =================

    [[gnu::cold, gnu::noinline]] void up_read_unowned(std::uint64_t seen)
    {
        task* const cur = E::current();
        if ((seen & RWSEM_WRITER_LOCKED) && is_write_owner(cur)) {
            if (nested_read_ != 0) {
                --nested_read_; // the down_read it pairs with was reported already
                return;
            }
        }
        misuse("rw_semaphore up_read: not read-locked", write_owner());
    }

    [[gnu::cold, gnu::noinline]] void up_write_slow(task* cur)
    {
        if (is_write_owner(cur)) {
            if (nested_write_ != 0) {
                --nested_write_;
                return;
            }
            // Leaving the write hold ends any read nesting inside it; a later up_read for it is
            // then reported as unbalanced.
            nested_read_ = 0;
            release_write();
            return;
        }
        const bool locked = (count_.load(std::memory_order_relaxed) & RWSEM_WRITER_LOCKED) != 0;
        misuse(locked ? "rw_semaphore up_write: wrong owner" : "rw_semaphore up_write: not write-locked",
            locked ? write_owner() : nullptr);
    }

    // One report per misuse: lock_debug's header and owner line, then the state in the style
    // of the kernel's DEBUG_RWSEMS_WARN_ON (count, owner, queue), then a note.
    [[gnu::cold, gnu::noinline]] void misuse(const char* what, task* owner, const char* note = nullptr) const
    {
        const std::uint64_t c = count_.load(std::memory_order_relaxed);
        const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        char extra[320];
        int n = std::snprintf(extra, sizeof extra,
            " count: 0x%llx (readers: %llu, writer: %d, waiters: %d, handoff: %d), owner: 0x%llx%s\n%s%s",
            static_cast<unsigned long long>(c), static_cast<unsigned long long>(c >> RWSEM_READER_SHIFT),
            int(c & RWSEM_WRITER_LOCKED), int((c & RWSEM_FLAG_WAITERS) != 0), int((c & RWSEM_FLAG_HANDOFF) != 0),
            static_cast<unsigned long long>(o), (o & RWSEM_READER_OWNED) ? " (reader-owned)" : "", note ? " " : "",
            note ? note : "");
        if (n < 0)
            n = 0;
        detail::lock_bug<E>(
            what, this, owner, -1, std::string_view(extra, std::size_t(n) < sizeof extra ? n : sizeof extra - 1));
    }

    // ---- data: count and owner share a cache line, as in the kernel ----
    typename E::template atomic<std::uint64_t> count_;
    typename E::template atomic<std::uintptr_t> owner_;
    arch::qspinlock<E> wait_lock_;
    waiter* head_ = nullptr; // wait_lock
    waiter* tail_ = nullptr; // wait_lock
    // Reported recursions of the write owner still open; touched only by that owner.
    std::uint32_t nested_write_ = 0;
    std::uint32_t nested_read_ = 0;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

using rw_semaphore = basic_rw_semaphore<env::os>;

} // namespace klock
