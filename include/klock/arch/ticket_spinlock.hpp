// klock::arch::ticket_spinlock<E>: the ARM ticket spinlock the seeds walk through
// (arch/arm/include/asm/spinlock.h; seeds/001 and seeds/002).
//
// One 32-bit word seen as two 16-bit tickets:
//
//   bits  0-15  owner: the ticket now being served
//   bits 16-31  next:  the ticket the next arrival will draw (TICKET_SHIFT = 16)
//
//   0x00010001  next 1, owner 1: free
//   lock        fetch_add(1 << 16), keeping the old word: my ticket is its `next`
//   0x00020001  next 2, owner 1: held (my ticket 1 == owner)
//   0x00030001  a second arrival drew ticket 2 and waits for owner == 2
//   unlock      owner + 1
//   0x00030002  ticket 2 is served
//
// Invariants: free <=> owner == next; the number of tasks holding or waiting is
// (next - owner) mod 2^16, so contended <=> next - owner > 1; only the holder writes the
// owner half, so the holder knows its value; waiters are served strictly in ticket order.
// At most 65535 tasks may hold or wait at once.
//
// Unlock must add 1 to the owner half without disturbing `next`, which arrivals are
// incrementing concurrently. The kernel stores the 16-bit half (strh / stlrh); an Env offers
// only a 32-bit atomic, so unlock is one RMW on the whole word: fetch_add(1), or, when the
// owner half is 0xffff and would carry into `next`, fetch_sub(0xffff), which wraps the owner
// half to 0 and leaves `next` alone. The holder can pick the right one without a race
// because nobody else writes the owner half. Both are release operations.
//
// Pure spinning: a waiter whose turn comes while it is preempted holds up everyone behind it,
// so with more runnable threads than cores the ticket lock collapses. That is the behaviour
// the seeds describe and the benchmark shows; klock::arch::qspinlock is the answer to it.
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/env/env.hpp>

namespace klock::arch {

inline constexpr std::uint32_t TICKET_SHIFT = 16;
inline constexpr std::uint32_t TICKET_MASK = 0xffffu;

template <env::Env E> class ticket_spinlock {
    using atomic_u32 = typename E::template atomic<std::uint32_t>;

public:
    struct no_watch {
        static constexpr bool enabled = false;
        void poll() noexcept { }
    };

    // A fresh lock: owner == next == 0. (The seeds' walk-through starts from 0x00010001,
    // which any word with owner == next equals in meaning; see from_raw.)
    constexpr ticket_spinlock() noexcept : slock_(0) { }
    ticket_spinlock(const ticket_spinlock&) = delete;
    ticket_spinlock& operator=(const ticket_spinlock&) = delete;

    // Starts from an arbitrary word, e.g. 0x00010001, for walk-throughs and wrap-around tests.
    explicit constexpr ticket_spinlock(std::uint32_t raw_word) noexcept : slock_(raw_word) { }

    [[gnu::always_inline]] void lock() noexcept
    {
        no_watch w;
        lock(w);
    }

    template <class Watch> [[gnu::always_inline]] void lock(Watch& w) noexcept
    {
        const std::uint32_t old = slock_.fetch_add(1u << TICKET_SHIFT, std::memory_order_acquire);
        const std::uint32_t ticket = old >> TICKET_SHIFT;
        if (__builtin_expect((old & TICKET_MASK) == ticket, 1))
            return;
        wait_for_turn(ticket, w);
    }

    // One CAS, and only when the lock is free.
    [[gnu::always_inline]] bool try_lock() noexcept
    {
        std::uint32_t v = slock_.load(std::memory_order_relaxed);
        if ((v >> TICKET_SHIFT) != (v & TICKET_MASK))
            return false;
        return slock_.compare_exchange_strong(
            v, v + (1u << TICKET_SHIFT), std::memory_order_acquire, std::memory_order_relaxed);
    }

    [[gnu::always_inline]] void unlock() noexcept
    {
        if (__builtin_expect((slock_.load(std::memory_order_relaxed) & TICKET_MASK) != TICKET_MASK, 1))
            slock_.fetch_add(1, std::memory_order_release);
        else
            slock_.fetch_sub(TICKET_MASK, std::memory_order_release); // owner 0xffff -> 0, no carry
    }

    bool is_locked() const noexcept
    {
        const std::uint32_t v = slock_.load(std::memory_order_relaxed);
        return (v >> TICKET_SHIFT) != (v & TICKET_MASK);
    }
    bool is_contended() const noexcept
    {
        const std::uint32_t v = slock_.load(std::memory_order_relaxed);
        return (((v >> TICKET_SHIFT) - v) & TICKET_MASK) > 1;
    }
    std::uint32_t raw() const noexcept { return slock_.load(std::memory_order_relaxed); }
    std::uint16_t owner() const noexcept { return static_cast<std::uint16_t>(raw() & TICKET_MASK); }
    std::uint16_t next() const noexcept { return static_cast<std::uint16_t>(raw() >> TICKET_SHIFT); }

private:
    // The seeds' wfe loop: re-read the owner half until it shows my ticket.
    template <class Watch> [[gnu::noinline]] void wait_for_turn(std::uint32_t ticket, Watch& w) noexcept
    {
        for (unsigned spins = 1; (slock_.load(std::memory_order_acquire) & TICKET_MASK) != ticket; ++spins) {
            if constexpr (Watch::enabled)
                if ((spins & 1023) == 0)
                    w.poll();
            E::cpu_relax();
        }
    }

    atomic_u32 slock_;
};

} // namespace klock::arch
