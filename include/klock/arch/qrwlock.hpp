// klock::arch::qrwlock<E>: the kernel's queued reader-writer spinlock (kernel/locking/qrwlock.c,
// include/asm-generic/qrwlock.h). Raw arch layer: no preempt_count, no debug checks.
//
//   cnts (32 bits)
//     bits 0-7   writer byte: Q_W_LOCKED (0xff) while a writer holds the lock
//     bit  8     Q_W_WAITING: a writer holds wait_lock and waits for the readers to drain
//     bits 9-31  reader count, in units of Q_R_BIAS (0x200)
//   wait_lock    an arch::qspinlock that orders contending readers and writers
//
// Readers optimistically add Q_R_BIAS; if no writer holds or waits, they are in. Otherwise they
// back the bias out, queue on wait_lock, and once at its front add the bias again and wait for
// the writer byte to clear. A writer CASes 0 -> Q_W_LOCKED, or queues on wait_lock, announces
// itself with Q_W_WAITING (which turns away new optimistic readers), waits until the count is
// exactly Q_W_WAITING (all readers gone) and swaps it for Q_W_LOCKED.
//
// Fairness comes from wait_lock: contenders are served in the qspinlock's order, and a
// writer at its front blocks later readers. The exception is interrupt context (hardirq,
// softirq or NMI bits in the caller's preempt_count): a reader there keeps its bias and only
// waits for the writer byte to clear, ignoring Q_W_WAITING. A read_lock in an interrupt that
// arrived while its task held the lock for reading therefore never deadlocks behind a
// waiting writer; in task context the same recursion can deadlock, exactly as in the kernel.
//
// Invariants: the writer byte is Q_W_LOCKED only while exactly one writer holds the lock and
// no reader bias belongs to a holder; Q_W_WAITING is set and cleared only by the wait_lock
// holder; a reader holds the lock iff its bias is in cnts and the writer byte is 0.
//
// Waiting on cnts is spinning (as in the kernel); only the wait_lock holder and interrupt
// readers spin there, everyone else waits - and, past a bound, sleeps - inside wait_lock.
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/arch/qspinlock.hpp>
#include <klock/env/env.hpp>
#include <klock/thread_info.hpp>

namespace klock::arch {

inline constexpr std::uint32_t Q_W_LOCKED = 0x0ffu;
inline constexpr std::uint32_t Q_W_WAITING = 0x100u;
inline constexpr std::uint32_t Q_W_WMASK = 0x1ffu;
inline constexpr std::uint32_t Q_R_SHIFT = 9;
inline constexpr std::uint32_t Q_R_BIAS = 1u << Q_R_SHIFT;

template <env::Env E> class qrwlock {
    using atomic_u32 = typename E::template atomic<std::uint32_t>;

public:
    constexpr qrwlock() noexcept : cnts_(0) { }
    qrwlock(const qrwlock&) = delete;
    qrwlock& operator=(const qrwlock&) = delete;

    [[gnu::always_inline]] void read_lock() noexcept
    {
        const std::uint32_t c = cnts_.fetch_add(Q_R_BIAS, std::memory_order_acquire) + Q_R_BIAS;
        if (__builtin_expect((c & Q_W_WMASK) == 0, 1))
            return;
        read_lock_slow();
    }

    [[gnu::always_inline]] bool try_read_lock() noexcept
    {
        if (cnts_.load(std::memory_order_relaxed) & Q_W_WMASK)
            return false;
        const std::uint32_t c = cnts_.fetch_add(Q_R_BIAS, std::memory_order_acquire) + Q_R_BIAS;
        if ((c & Q_W_WMASK) == 0)
            return true;
        cnts_.fetch_sub(Q_R_BIAS, std::memory_order_relaxed);
        return false;
    }

    [[gnu::always_inline]] void read_unlock() noexcept { cnts_.fetch_sub(Q_R_BIAS, std::memory_order_release); }

    [[gnu::always_inline]] void write_lock() noexcept
    {
        std::uint32_t c = 0;
        if (__builtin_expect(
                cnts_.compare_exchange_strong(c, Q_W_LOCKED, std::memory_order_acquire, std::memory_order_relaxed), 1))
            return;
        write_lock_slow();
    }

    [[gnu::always_inline]] bool try_write_lock() noexcept
    {
        std::uint32_t c = cnts_.load(std::memory_order_relaxed);
        if (c != 0)
            return false;
        return cnts_.compare_exchange_strong(c, Q_W_LOCKED, std::memory_order_acquire, std::memory_order_relaxed);
    }

    // The kernel stores 0 to the writer byte; a 32-bit RMW is the Env equivalent (readers in
    // interrupt context may be adding their bias at the same time).
    [[gnu::always_inline]] void write_unlock() noexcept { cnts_.fetch_sub(Q_W_LOCKED, std::memory_order_release); }

    bool is_locked() const noexcept { return cnts_.load(std::memory_order_relaxed) != 0; }
    bool is_write_locked() const noexcept { return (cnts_.load(std::memory_order_relaxed) & Q_W_LOCKED) == Q_W_LOCKED; }
    std::uint32_t readers() const noexcept { return cnts_.load(std::memory_order_relaxed) >> Q_R_SHIFT; }
    bool is_contended() const noexcept { return wait_lock_.is_locked(); }
    std::uint32_t raw() const noexcept { return cnts_.load(std::memory_order_relaxed); }
    const qspinlock<E>& wait_lock() const noexcept { return wait_lock_; }

private:
    void wait_writer_gone() noexcept
    {
        while (cnts_.load(std::memory_order_acquire) & Q_W_LOCKED)
            E::cpu_relax();
    }

    [[gnu::noinline]] void read_lock_slow() noexcept
    {
        if (irq_count(E::info(E::current()).preempt_count) != 0) {
            // Interrupt context: keep the bias, wait only for a writer that holds the lock.
            wait_writer_gone();
            return;
        }
        cnts_.fetch_sub(Q_R_BIAS, std::memory_order_relaxed);
        wait_lock_.lock();
        cnts_.fetch_add(Q_R_BIAS, std::memory_order_relaxed);
        wait_writer_gone();
        wait_lock_.unlock(); // the next in line (reader or writer) may now try
    }

    [[gnu::noinline]] void write_lock_slow() noexcept
    {
        wait_lock_.lock();
        std::uint32_t c = cnts_.load(std::memory_order_relaxed);
        if (c == 0
            && cnts_.compare_exchange_strong(c, Q_W_LOCKED, std::memory_order_acquire, std::memory_order_relaxed)) {
            wait_lock_.unlock();
            return;
        }
        cnts_.fetch_or(Q_W_WAITING, std::memory_order_relaxed);
        for (;;) {
            c = cnts_.load(std::memory_order_relaxed);
            if (c == Q_W_WAITING
                && cnts_.compare_exchange_weak(c, Q_W_LOCKED, std::memory_order_acquire, std::memory_order_relaxed))
                break;
            E::cpu_relax();
        }
        wait_lock_.unlock();
    }

    atomic_u32 cnts_;
    qspinlock<E> wait_lock_;
};

} // namespace klock::arch
