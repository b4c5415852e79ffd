// klock::arch::qspinlock<E> - interim version (the full queued algorithm follows shortly).
//
// The interface below is stable: one 32-bit lock word, locked byte in bits 0-7.
// Interim algorithm: CAS 0 -> 1 fast path; contended waiters spin briefly, then mark the
// locked byte "sleepers present" (3) and futex-wait on the word; unlock exchanges 0 and
// wakes one sleeper when the byte was 3.
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/env/env.hpp>

namespace klock::arch {

template <env::Env E> class qspinlock {
public:
    constexpr qspinlock() noexcept : val_(0) { }
    qspinlock(const qspinlock&) = delete;
    qspinlock& operator=(const qspinlock&) = delete;

    [[gnu::always_inline]] void lock() noexcept
    {
        std::uint32_t expected = 0;
        if (__builtin_expect(
                val_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed), 1))
            return;
        lock_slow();
    }
    [[gnu::always_inline]] bool try_lock() noexcept
    {
        std::uint32_t expected = 0;
        return val_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
    }
    [[gnu::always_inline]] void unlock() noexcept
    {
        if (__builtin_expect(val_.exchange(0, std::memory_order_release) != 1, 0))
            E::futex_wake(val_, 1);
    }
    bool is_locked() const noexcept { return val_.load(std::memory_order_relaxed) != 0; }
    bool is_contended() const noexcept { return val_.load(std::memory_order_relaxed) > 1; }
    std::uint32_t raw() const noexcept { return val_.load(std::memory_order_relaxed); }

private:
    [[gnu::noinline]] void lock_slow() noexcept
    {
        for (int i = 0; i < 1000; ++i) {
            E::cpu_relax();
            if (val_.load(std::memory_order_relaxed) == 0 && try_lock())
                return;
        }
        while (val_.exchange(3, std::memory_order_acquire) != 0)
            E::futex_wait(val_, 3, 0);
    }

    typename E::template atomic<std::uint32_t> val_;
};

} // namespace klock::arch
