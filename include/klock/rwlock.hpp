// rwlock_t: the kernel's reader-writer spinlock (include/linux/rwlock.h, rwlock_api_smp.h,
// kernel/locking/spinlock.c and spinlock_debug.c) over arch::qrwlock.
//
// Layers as for spinlocks (klock/spinlock.hpp):
//
//   read_lock()/write_lock()   preempt_disable (+ irq/bh variants)   _raw_read_lock, ...
//                              [KLOCK_LOCKDEP: rwlock_acquire_read / _acquire, in do_raw_*()]
//   do_raw_*()                 debug checks, arch lock, owner          do_raw_read_lock, ...
//   arch::qrwlock              the queued rwlock algorithm             queued_read_lock, ...
//
// Readers may recurse from interrupt context even with a writer waiting (qrwlock.hpp); in task
// context a recursive read_lock() deadlocks behind a waiting writer, as in the kernel, and is
// not detected here (no per-reader tracking; lockdep's job).
//
// Debug checks (always on; the writer's task sits beside the 8-byte arch lock, so sizeof is
// 16 on LP64). Reports, leaving the lock as it was:
//   "rwlock recursion"                  write_lock/read_lock by the task holding it for write
//                                       (refused; the matching unlock only undoes the
//                                       preempt/irq side, as for "spinlock recursion")
//   "rwlock wrong owner"                write_unlock by a task that does not hold it for write
//   "rwlock already unlocked"           write_unlock while nobody holds it for write
//   "rwlock read_unlock without readers" read_unlock with a zero reader count
//   "rwlock destroyed while held"
// Misused unlocks change neither the lock nor preempt_count; _irqrestore still restores the
// interrupt state.
//
// Lockable names: lock/try_lock/unlock = write side; SharedLockable: lock_shared/
// try_lock_shared/unlock_shared = read side.
#pragma once

#include <cstdint>

#include <klock/arch/qrwlock.hpp>
#include <klock/detail/lock_debug.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/preempt.hpp>
#include <klock/spinlock.hpp>
#include <klock/thread_safety.hpp>

namespace klock {

template <env::Env E> class KLOCK_CAPABILITY("mutex") basic_rwlock {
    using task = typename E::task;
    using owner_t = detail::lock_owner<E>;

public:
    using env_type = E;

    // rwlock_init(): the lockdep class is the construction site (a constant-initialised static
    // lock: its own address); the second form names an explicit class.
    constexpr basic_rwlock(klock::source_location loc = klock::source_location::current()) noexcept
        : owner_(0), dep_("rwlock", loc)
    { }
    basic_rwlock(lock_class_key& key, const char* name) noexcept : owner_(0), dep_(key, name) { }
    basic_rwlock(const basic_rwlock&) = delete;
    basic_rwlock& operator=(const basic_rwlock&) = delete;
    ~basic_rwlock()
    {
        dep_.freed(this, sizeof *this);
        if (__builtin_expect(arch_.is_locked(), 0))
            bug("rwlock destroyed while held");
    }

    // ---- read side ----

    [[gnu::always_inline]] void read_lock() noexcept KLOCK_ACQUIRE_SHARED()
    {
        kernel::preempt_disable<E>();
        do_raw_read_lock();
    }
    [[gnu::always_inline]] bool read_trylock() noexcept KLOCK_TRY_ACQUIRE_SHARED(true)
    {
        kernel::preempt_disable<E>();
        if (arch_.try_read_lock()) {
            ld_acquire_read(1);
            return true;
        }
        kernel::preempt_enable<E>();
        return false;
    }
    [[gnu::always_inline]] void read_unlock() noexcept KLOCK_RELEASE_SHARED()
    {
        if (__builtin_expect(do_raw_read_unlock(), 1))
            kernel::preempt_enable<E>();
    }

    [[gnu::always_inline]] irq_flags read_lock_irqsave() noexcept KLOCK_ACQUIRE_SHARED()
    {
        const irq_flags flags = kernel::local_irq_save<E>();
        kernel::preempt_disable<E>();
        do_raw_read_lock();
        return flags;
    }
    [[gnu::always_inline]] void read_unlock_irqrestore(irq_flags flags) noexcept KLOCK_RELEASE_SHARED()
    {
        const bool released = do_raw_read_unlock();
        kernel::local_irq_restore<E>(flags);
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }
    [[gnu::always_inline]] void read_lock_irq() noexcept KLOCK_ACQUIRE_SHARED()
    {
        kernel::local_irq_disable<E>();
        kernel::preempt_disable<E>();
        do_raw_read_lock();
    }
    [[gnu::always_inline]] void read_unlock_irq() noexcept KLOCK_RELEASE_SHARED()
    {
        const bool released = do_raw_read_unlock();
        kernel::local_irq_enable<E>();
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }
    [[gnu::always_inline]] void read_lock_bh() noexcept KLOCK_ACQUIRE_SHARED()
    {
        kernel::preempt_count_add<E>(SOFTIRQ_DISABLE_OFFSET + PREEMPT_OFFSET);
        kernel::lockdep_trace_bh_disabled<E>(SOFTIRQ_DISABLE_OFFSET);
        do_raw_read_lock();
    }
    [[gnu::always_inline]] void read_unlock_bh() noexcept KLOCK_RELEASE_SHARED()
    {
        if (__builtin_expect(do_raw_read_unlock(), 1)) {
            kernel::preempt_count_sub<E>(PREEMPT_OFFSET);
            kernel::local_bh_enable<E>();
        }
    }

    // ---- write side ----

    [[gnu::always_inline]] void write_lock() noexcept KLOCK_ACQUIRE()
    {
        kernel::preempt_disable<E>();
        do_raw_write_lock();
    }
    [[gnu::always_inline]] bool write_trylock() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        kernel::preempt_disable<E>();
        if (arch_.try_write_lock()) {
            owner_.store(owner_t::encode(E::current()), std::memory_order_relaxed);
            ld_acquire_write(1);
            return true;
        }
        kernel::preempt_enable<E>();
        return false;
    }
    [[gnu::always_inline]] void write_unlock() noexcept KLOCK_RELEASE()
    {
        if (__builtin_expect(do_raw_write_unlock(), 1))
            kernel::preempt_enable<E>();
    }

    [[gnu::always_inline]] irq_flags write_lock_irqsave() noexcept KLOCK_ACQUIRE()
    {
        const irq_flags flags = kernel::local_irq_save<E>();
        kernel::preempt_disable<E>();
        do_raw_write_lock();
        return flags;
    }
    [[gnu::always_inline]] void write_unlock_irqrestore(irq_flags flags) noexcept KLOCK_RELEASE()
    {
        const bool released = do_raw_write_unlock();
        kernel::local_irq_restore<E>(flags);
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }
    [[gnu::always_inline]] void write_lock_irq() noexcept KLOCK_ACQUIRE()
    {
        kernel::local_irq_disable<E>();
        kernel::preempt_disable<E>();
        do_raw_write_lock();
    }
    [[gnu::always_inline]] void write_unlock_irq() noexcept KLOCK_RELEASE()
    {
        const bool released = do_raw_write_unlock();
        kernel::local_irq_enable<E>();
        if (__builtin_expect(released, 1))
            kernel::preempt_enable<E>();
    }
    [[gnu::always_inline]] void write_lock_bh() noexcept KLOCK_ACQUIRE()
    {
        kernel::preempt_count_add<E>(SOFTIRQ_DISABLE_OFFSET + PREEMPT_OFFSET);
        kernel::lockdep_trace_bh_disabled<E>(SOFTIRQ_DISABLE_OFFSET);
        do_raw_write_lock();
    }
    [[gnu::always_inline]] void write_unlock_bh() noexcept KLOCK_RELEASE()
    {
        if (__builtin_expect(do_raw_write_unlock(), 1)) {
            kernel::preempt_count_sub<E>(PREEMPT_OFFSET);
            kernel::local_bh_enable<E>();
        }
    }

    // ---- std Lockable / SharedLockable ----

    void lock() noexcept KLOCK_ACQUIRE() { write_lock(); }
    bool try_lock() noexcept KLOCK_TRY_ACQUIRE(true) { return write_trylock(); }
    void unlock() noexcept KLOCK_RELEASE() { write_unlock(); }
    void lock_shared() noexcept KLOCK_ACQUIRE_SHARED() { read_lock(); }
    bool try_lock_shared() noexcept KLOCK_TRY_ACQUIRE_SHARED(true) { return read_trylock(); }
    void unlock_shared() noexcept KLOCK_RELEASE_SHARED() { read_unlock(); }

    // ---- state ----

    bool is_locked() const noexcept { return arch_.is_locked(); }
    bool is_write_locked() const noexcept { return arch_.is_write_locked(); }
    std::uint32_t readers() const noexcept { return arch_.readers(); }
    std::uint32_t raw() const noexcept { return arch_.raw(); }
    task* write_owner() const noexcept { return owner_t::decode(owner_.load(std::memory_order_relaxed)); }
    const arch::qrwlock<E>& arch() const noexcept { return arch_; }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

private:
    // The lockdep hooks (rwlock_acquire_read / rwlock_acquire / rwlock_release), called by the
    // do_raw_* layer so that every variant gets them; empty without KLOCK_LOCKDEP. Readers are
    // recursive only in irq context (queued rwlocks).
    [[gnu::always_inline]] void ld_acquire_read(int trylock) noexcept
    {
        dep_.acquire(0, trylock, dep_.rwlock_read_mode());
    }
    [[gnu::always_inline]] void ld_acquire_write(int trylock) noexcept { dep_.acquire(0, trylock, lockdep::WRITE); }
    [[gnu::always_inline]] bool refuse_recursion() noexcept
    {
        task* const me = E::current();
        if (__builtin_expect(owner_t::decode(owner_.load(std::memory_order_relaxed)) != me, 1))
            return false;
        bug("rwlock recursion");
        owner_.store(owner_t::push(owner_.load(std::memory_order_relaxed)), std::memory_order_relaxed);
        return true;
    }

    [[gnu::always_inline]] void do_raw_read_lock() noexcept
    {
        ld_acquire_read(0);
        if (refuse_recursion())
            return;
        arch_.read_lock();
    }

    [[gnu::always_inline]] void do_raw_write_lock() noexcept
    {
        ld_acquire_write(0);
        if (refuse_recursion())
            return;
        arch_.write_lock();
        owner_.store(owner_t::encode(E::current()), std::memory_order_relaxed);
    }

    [[gnu::always_inline]] bool do_raw_read_unlock() noexcept
    {
        dep_.release();
        // A tagged owner that is us: this unlock pairs with a refused read_lock().
        if (__builtin_expect(owner_.load(std::memory_order_relaxed) != 0, 0) && pairs_with_refused())
            return true;
        if (__builtin_expect(arch_.readers() == 0, 0)) {
            bug("rwlock read_unlock without readers");
            return false;
        }
        arch_.read_unlock();
        return true;
    }

    [[gnu::always_inline]] bool do_raw_write_unlock() noexcept
    {
        dep_.release();
        if (__builtin_expect(owner_.load(std::memory_order_relaxed) != owner_t::encode(E::current()), 0))
            return write_unlock_misuse();
        owner_.store(0, std::memory_order_relaxed);
        arch_.write_unlock();
        return true;
    }

    [[gnu::cold, gnu::noinline]] bool pairs_with_refused() noexcept { return owner_t::pop(owner_, E::current()); }

    [[gnu::cold, gnu::noinline]] bool write_unlock_misuse() noexcept
    {
        if (pairs_with_refused())
            return true;
        const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        bug(o == 0 ? "rwlock already unlocked" : "rwlock wrong owner");
        return false;
    }

    [[gnu::cold, gnu::noinline]] void bug(const char* what) const noexcept
    {
        detail::lock_bug<E>(what, this, write_owner());
    }

    arch::qrwlock<E> arch_;
    typename E::template atomic<std::uintptr_t> owner_;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

using rwlock = basic_rwlock<env::os>;

template <class L> class KLOCK_SCOPED_CAPABILITY read_lock_irqsave_guard {
public:
    explicit read_lock_irqsave_guard(L& l) KLOCK_ACQUIRE_SHARED(l) : lock_(l), flags_(l.read_lock_irqsave()) { }
    ~read_lock_irqsave_guard() KLOCK_RELEASE() { lock_.read_unlock_irqrestore(flags_); }
    read_lock_irqsave_guard(const read_lock_irqsave_guard&) = delete;
    read_lock_irqsave_guard& operator=(const read_lock_irqsave_guard&) = delete;

private:
    L& lock_;
    irq_flags flags_;
};

template <class L> class KLOCK_SCOPED_CAPABILITY write_lock_irqsave_guard {
public:
    explicit write_lock_irqsave_guard(L& l) KLOCK_ACQUIRE(l) : lock_(l), flags_(l.write_lock_irqsave()) { }
    ~write_lock_irqsave_guard() KLOCK_RELEASE() { lock_.write_unlock_irqrestore(flags_); }
    write_lock_irqsave_guard(const write_lock_irqsave_guard&) = delete;
    write_lock_irqsave_guard& operator=(const write_lock_irqsave_guard&) = delete;

private:
    L& lock_;
    irq_flags flags_;
};

} // namespace klock
