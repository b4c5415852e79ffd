// Kernel spinlocks (include/linux/spinlock.h, spinlock_api_smp.h, kernel/locking/spinlock.c and
// spinlock_debug.c) over an arch lock: klock::ticket_spinlock (the seeds' ARM ticket lock) and
// klock::qspinlock = klock::spinlock (the modern kernel's queued spinlock).
//
// The layers follow the kernel's chain, one job each:
//
//   lock()         preempt_disable                        spin_lock -> __raw_spin_lock
//                  [lockdep acquire; contended/acquired around the slow path: KLOCK_LOCKDEP]
//   do_raw_lock()  debug checks, arch lock, record owner  do_raw_spin_lock (+ spinlock_debug.c)
//   Arch::lock()   the algorithm                          arch_spin_lock
//
//   unlock()       [lockdep release: KLOCK_LOCKDEP] do_raw_unlock, then preempt_enable, which may
//                  reschedule (the seeds' "task switch on unlock": only when preempt_count
//                  drops to 0 with interrupts enabled).
//
// The _irqsave/_irq variants disable interrupts (signals, in the os world) before
// preempt_disable and restore them after the unlock; _bh adds SOFTIRQ_LOCK_OFFSET
// (SOFTIRQ_DISABLE_OFFSET + PREEMPT_OFFSET) to preempt_count as the kernel does.
//
// Debug checks (CONFIG_DEBUG_SPINLOCK, always on here, kept cheap: a relaxed owner store on
// lock; a relaxed load, compare and clear on unlock; over a qspinlock the recursion check runs
// only once the fast path has failed, since an owner's own lock() must fail it). The owner task
// lives beside the arch word, so sizeof(basic_raw_spinlock) is the arch word plus one pointer
// (16 bytes on LP64, against the kernel's 4 without debug). The owner's CPU is not recorded
// (sched_getcpu on every lock is not cheap), so reports print .owner_cpu: -1, and the kernel's
// "wrong CPU" / "cpu recursion" checks have no equivalent. Reports, through detail::lock_bug,
// with the kernel's texts:
//   "spinlock already unlocked"  unlock of a lock nobody holds
//   "spinlock wrong owner"       unlock by a task that does not hold it
//   "spinlock recursion"         the owner locks it again (a certain self-deadlock)
//   "spinlock lockup suspected"  a lock() has spun longer than spin_lockup_threshold_ns()
//                                (reported once per wait, naming the owner; it keeps spinning)
//   "spinlock destroyed while held"
// Every report leaves the lock as it was. For recursion that means: report and return without
// taking the lock again, and remember the phantom acquisition so that the matching unlock by the
// owner only undoes the preempt/irq side of the failed lock (the real hold stays intact and is
// released by the outer unlock). Already-unlocked and wrong-owner unlocks change neither the
// lock nor preempt_count (the matching preempt_disable never happened in this task); the
// _irqrestore variants still restore the caller's interrupt state.
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/arch/qspinlock.hpp>
#include <klock/arch/ticket_spinlock.hpp>
#include <klock/detail/lock_debug.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/preempt.hpp>
#include <klock/thread_safety.hpp>

#include <klock/detail/lock_dep.hpp>

namespace klock {

namespace detail {
// Default 1 s, the kernel's old loops_per_jiffy * HZ worth of spinning.
inline std::atomic<std::uint64_t> spin_lockup_threshold{1000000000u};
} // namespace detail

// How long a lock() may spin before "spinlock lockup suspected" is reported (0 disables).
inline std::uint64_t spin_lockup_threshold_ns() noexcept
{
    return detail::spin_lockup_threshold.load(std::memory_order_relaxed);
}
inline void set_spin_lockup_threshold_ns(std::uint64_t ns) noexcept
{
    detail::spin_lockup_threshold.store(ns, std::memory_order_relaxed);
}

namespace detail {

// The owner word of the debug layer: the owning task, whose pointer's alignment bits count
// the owner's refused recursive lock() calls (saturating at alignof(task) - 1: 63 for os).
template <env::Env E> struct lock_owner {
    using task = typename E::task;
    static_assert(alignof(task) >= 2, "the low bits of a task pointer count refused recursion");
    static constexpr std::uintptr_t depth_mask = alignof(task) - 1;

    static std::uintptr_t encode(task* t) noexcept { return reinterpret_cast<std::uintptr_t>(t); }
    static task* decode(std::uintptr_t v) noexcept { return reinterpret_cast<task*>(v & ~depth_mask); }
    // One more refused recursion by the owner.
    static std::uintptr_t push(std::uintptr_t v) noexcept { return (v & depth_mask) == depth_mask ? v : v + 1; }
    // If v is `me` with refusals outstanding, consume one; the caller's unlock pairs with it.
    static bool pop(typename E::template atomic<std::uintptr_t>& owner, task* me) noexcept
    {
        const std::uintptr_t v = owner.load(std::memory_order_relaxed);
        if (decode(v) != me || (v & depth_mask) == 0)
            return false;
        owner.store(v - 1, std::memory_order_relaxed);
        return true;
    }
};

// Watches a long lock() wait: reports a suspected lockup once, naming the owner the debug layer
// recorded, and keeps waiting (the kernel's __spin_lock_debug, in spirit).
template <env::Env E> class lockup_watch {
public:
    static constexpr bool enabled = true;
    // Sleeping waiters wake this often to look at the clock.
    static constexpr std::uint64_t sleep_slice_ns = 50000000u;

    // Cheap to build (the fast path constructs one): the clock starts at the first poll,
    // which comes after Q_POLL_MASK+1 spins, a few microseconds into the wait.
    lockup_watch(const char* what, const void* lock, const typename E::template atomic<std::uintptr_t>* owner) noexcept
        : what_(what), lock_(lock), owner_(owner)
    { }
    void poll() noexcept
    {
        if (reported_)
            return;
        const std::uint64_t now = E::now_ns();
        if (start_ == 0) {
            start_ = now;
            return;
        }
        const std::uint64_t limit = spin_lockup_threshold_ns();
        if (limit == 0 || now - start_ < limit)
            return;
        reported_ = true;
        lock_bug<E>(what_, lock_, lock_owner<E>::decode(owner_->load(std::memory_order_relaxed)));
    }
    std::uint64_t deadline() const noexcept { return reported_ ? 0 : E::now_ns() + sleep_slice_ns; }

private:
    const char* what_;
    const void* lock_;
    const typename E::template atomic<std::uintptr_t>* owner_;
    std::uint64_t start_ = 0;
    bool reported_ = false;
};

} // namespace detail

template <class Arch, env::Env E> class KLOCK_CAPABILITY("mutex") basic_raw_spinlock {
    using task = typename E::task;
    using owner_t = detail::lock_owner<E>;

public:
    using arch_type = Arch;
    using env_type = E;

    // spin_lock_init(): the lockdep class is the construction site (or, for a constant-initialised
    // static lock, the lock's own address); the second form names an explicit class.
    constexpr basic_raw_spinlock(klock::source_location loc = klock::source_location::current()) noexcept
        : owner_(0), dep_("spinlock", loc)
    { }
    basic_raw_spinlock(lock_class_key& key, const char* name) noexcept : owner_(0), dep_(key, name) { }
    basic_raw_spinlock(const basic_raw_spinlock&) = delete;
    basic_raw_spinlock& operator=(const basic_raw_spinlock&) = delete;
    ~basic_raw_spinlock()
    {
        dep_.freed(this, sizeof *this);
        if (__builtin_expect(owner_.load(std::memory_order_relaxed) != 0, 0))
            bug("spinlock destroyed while held");
    }

    // ---- spin_lock / spin_unlock / spin_trylock ----

    [[gnu::always_inline]] void lock() noexcept KLOCK_ACQUIRE()
    {
        kernel::preempt_disable<E>();
        ld_acquire(0);
        do_raw_lock();
    }

    // spin_lock_nested(): the same class at another level (subclass < 8), for locks of one class
    // that are nested in a fixed order.
    [[gnu::always_inline]] void lock_nested(unsigned subclass) noexcept KLOCK_ACQUIRE()
    {
        kernel::preempt_disable<E>();
        ld_acquire(subclass);
        do_raw_lock();
    }

    [[gnu::always_inline]] bool try_lock() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        kernel::preempt_disable<E>();
        if (do_raw_trylock()) {
            ld_acquire(0, 1);
            return true;
        }
        kernel::preempt_enable<E>();
        return false;
    }

    [[gnu::always_inline]] void unlock() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        if (__builtin_expect(do_raw_unlock(), 1))
            kernel::preempt_enable<E>();
    }

    // ---- _irqsave / _irqrestore ----

    [[gnu::always_inline]] irq_flags lock_irqsave() noexcept KLOCK_ACQUIRE()
    {
        const irq_flags flags = kernel::local_irq_save<E>();
        kernel::preempt_disable<E>();
        ld_acquire(0);
        do_raw_lock();
        return flags;
    }

    [[gnu::always_inline]] bool try_lock_irqsave(irq_flags& flags) noexcept KLOCK_TRY_ACQUIRE(true)
    {
        flags = kernel::local_irq_save<E>();
        kernel::preempt_disable<E>();
        if (do_raw_trylock()) {
            ld_acquire(0, 1);
            return true;
        }
        kernel::preempt_enable<E>();
        kernel::local_irq_restore<E>(flags);
        return false;
    }

    [[gnu::always_inline]] void unlock_irqrestore(irq_flags flags) noexcept KLOCK_RELEASE()
    {
        dep_.release();
        const bool released = do_raw_unlock();
        kernel::local_irq_restore<E>(flags);
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }

    // ---- _irq ----

    [[gnu::always_inline]] void lock_irq() noexcept KLOCK_ACQUIRE()
    {
        kernel::local_irq_disable<E>();
        kernel::preempt_disable<E>();
        ld_acquire(0);
        do_raw_lock();
    }

    [[gnu::always_inline]] void unlock_irq() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        const bool released = do_raw_unlock();
        kernel::local_irq_enable<E>();
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }

    // ---- _bh ----

    [[gnu::always_inline]] void lock_bh() noexcept KLOCK_ACQUIRE()
    {
        kernel::preempt_count_add<E>(SOFTIRQ_DISABLE_OFFSET + PREEMPT_OFFSET);
        kernel::lockdep_trace_bh_disabled<E>(SOFTIRQ_DISABLE_OFFSET);
        ld_acquire(0);
        do_raw_lock();
    }

    [[gnu::always_inline]] bool try_lock_bh() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        kernel::preempt_count_add<E>(SOFTIRQ_DISABLE_OFFSET + PREEMPT_OFFSET);
        kernel::lockdep_trace_bh_disabled<E>(SOFTIRQ_DISABLE_OFFSET);
        if (do_raw_trylock()) {
            ld_acquire(0, 1);
            return true;
        }
        kernel::preempt_count_sub<E>(PREEMPT_OFFSET);
        kernel::local_bh_enable<E>();
        return false;
    }

    [[gnu::always_inline]] void unlock_bh() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        if (__builtin_expect(do_raw_unlock(), 1)) {
            kernel::preempt_count_sub<E>(PREEMPT_OFFSET);
            kernel::local_bh_enable<E>();
        }
    }

    // ---- state ----

    // spin_is_locked(): the arch word's view (for a qspinlock: held or about to be).
    bool is_locked() const noexcept { return arch_.is_locked(); }
    bool is_contended() const noexcept { return arch_.is_contended(); }
    std::uint32_t raw() const noexcept { return arch_.raw(); }
    // The debug layer's owner (null when free); for reports and assertions.
    task* owner() const noexcept { return owner_t::decode(owner_.load(std::memory_order_relaxed)); }
    bool held_by_current() const noexcept { return owner() == E::current(); }
    const Arch& arch() const noexcept { return arch_; }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

private:
    // spin_acquire(): lockdep's view of a spinlock is a writer.
    [[gnu::always_inline]] void ld_acquire(unsigned subclass, int trylock = 0) noexcept
    {
        dep_.acquire(subclass, trylock, lockdep::WRITE);
    }
    [[gnu::always_inline]] void do_raw_lock() noexcept KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if constexpr (requires(Arch & a) { a.lock_fast(); }) {
            // The arch lock can fail its fast path without side effects (qspinlock): a task
            // that already holds the lock must fail it, so the recursion check can wait for
            // the contended path and the uncontended path reads no debug field.
            if (__builtin_expect(arch_.lock_fast(), 1))
                owner_.store(owner_t::encode(E::current()), std::memory_order_relaxed);
            else
                lock_contended();
        } else {
            // Taking a ticket cannot be undone: check before.
            task* const me = E::current();
            if (__builtin_expect(owner_t::decode(owner_.load(std::memory_order_relaxed)) == me, 0)) {
                recursion();
                return;
            }
            detail::lockup_watch<E> w("spinlock lockup suspected", this, &owner_);
            arch_.lock(w);
            owner_.store(owner_t::encode(me), std::memory_order_relaxed);
        }
    }

    [[gnu::noinline]] void lock_contended() noexcept
    {
        task* const me = E::current();
        if (owner_t::decode(owner_.load(std::memory_order_relaxed)) == me) {
            recursion();
            return;
        }
        detail::lockup_watch<E> w("spinlock lockup suspected", this, &owner_);
        dep_.contended();
        arch_.lock_slowpath(w);
        owner_.store(owner_t::encode(me), std::memory_order_relaxed);
        dep_.acquired();
    }

    [[gnu::always_inline]] bool do_raw_trylock() noexcept KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if (!arch_.try_lock())
            return false;
        owner_.store(owner_t::encode(E::current()), std::memory_order_relaxed);
        return true;
    }

    // True when the caller must still undo the preempt/irq side of its lock(): after a real
    // release, or when this unlock pairs with a refused recursive lock(). False after a
    // reported misuse.
    [[gnu::always_inline]] bool do_raw_unlock() noexcept KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if (__builtin_expect(owner_.load(std::memory_order_relaxed) != owner_t::encode(E::current()), 0))
            return unlock_misuse();
        owner_.store(0, std::memory_order_relaxed);
        arch_.unlock();
        return true;
    }

    [[gnu::cold, gnu::noinline]] void recursion() noexcept
    {
        bug("spinlock recursion");
        owner_.store(owner_t::push(owner_.load(std::memory_order_relaxed)), std::memory_order_relaxed);
    }

    // The slow side of unlock. Returns true when the caller should still undo the preempt /
    // irq side of its lock (the refused-recursion case), false after a reported misuse.
    [[gnu::cold, gnu::noinline]] bool unlock_misuse() noexcept
    {
        if (owner_t::pop(owner_, E::current()))
            return true;
        bug(owner_.load(std::memory_order_relaxed) == 0 ? "spinlock already unlocked" : "spinlock wrong owner");
        return false;
    }

    [[gnu::cold, gnu::noinline]] void bug(const char* what) const noexcept { detail::lock_bug<E>(what, this, owner()); }

    Arch arch_;
    typename E::template atomic<std::uintptr_t> owner_;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

template <env::Env E> using basic_ticket_spinlock = basic_raw_spinlock<arch::ticket_spinlock<E>, E>;
template <env::Env E> using basic_qspinlock = basic_raw_spinlock<arch::qspinlock<E>, E>;
template <env::Env E> using basic_spinlock = basic_qspinlock<E>;

using ticket_spinlock = basic_ticket_spinlock<env::os>;
using qspinlock = basic_qspinlock<env::os>;
using spinlock = qspinlock; // spinlock_t: the queued flavour, as on x86 and arm64

// ---- guards ----

template <class L> class KLOCK_SCOPED_CAPABILITY spin_lock_irqsave_guard {
public:
    explicit spin_lock_irqsave_guard(L& l) KLOCK_ACQUIRE(l) : lock_(l), flags_(l.lock_irqsave()) { }
    ~spin_lock_irqsave_guard() KLOCK_RELEASE() { lock_.unlock_irqrestore(flags_); }
    spin_lock_irqsave_guard(const spin_lock_irqsave_guard&) = delete;
    spin_lock_irqsave_guard& operator=(const spin_lock_irqsave_guard&) = delete;
    irq_flags flags() const noexcept { return flags_; }

private:
    L& lock_;
    irq_flags flags_;
};

template <class L> class KLOCK_SCOPED_CAPABILITY spin_lock_irq_guard {
public:
    explicit spin_lock_irq_guard(L& l) KLOCK_ACQUIRE(l) : lock_(l) { lock_.lock_irq(); }
    ~spin_lock_irq_guard() KLOCK_RELEASE() { lock_.unlock_irq(); }
    spin_lock_irq_guard(const spin_lock_irq_guard&) = delete;
    spin_lock_irq_guard& operator=(const spin_lock_irq_guard&) = delete;

private:
    L& lock_;
};

template <class L> class KLOCK_SCOPED_CAPABILITY spin_lock_bh_guard {
public:
    explicit spin_lock_bh_guard(L& l) KLOCK_ACQUIRE(l) : lock_(l) { lock_.lock_bh(); }
    ~spin_lock_bh_guard() KLOCK_RELEASE() { lock_.unlock_bh(); }
    spin_lock_bh_guard(const spin_lock_bh_guard&) = delete;
    spin_lock_bh_guard& operator=(const spin_lock_bh_guard&) = delete;

private:
    L& lock_;
};

} // namespace klock
