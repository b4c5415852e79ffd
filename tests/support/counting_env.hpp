// A test-only Env: the os world, except that every atomic operation on a lock word is
// counted. Instantiating a lock over it proves the lock reaches atomics and futexes only
// through its Env (a stray std::atomic would not be counted, and a stray futex call on a
// counted word would not compile).
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/env/os.hpp>

namespace klock::test {

struct counting_env {
    static inline std::atomic<std::uint64_t> atomic_ops{0};
    static inline std::atomic<std::uint64_t> futex_calls{0};
    static void count() noexcept { atomic_ops.fetch_add(1, std::memory_order_relaxed); }
    static void reset() noexcept
    {
        atomic_ops.store(0);
        futex_calls.store(0);
    }

    template <class T> class atomic {
    public:
        constexpr atomic() noexcept : v_{} { }
        constexpr atomic(T v) noexcept : v_{v} { }
        atomic(const atomic&) = delete;
        atomic& operator=(const atomic&) = delete;

        T load(std::memory_order mo = std::memory_order_seq_cst) const noexcept { return count(), v_.load(mo); }
        void store(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept { count(), v_.store(v, mo); }
        T exchange(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.exchange(v, mo);
        }
        bool compare_exchange_strong(T& e, T d, std::memory_order s, std::memory_order f) noexcept
        {
            return count(), v_.compare_exchange_strong(e, d, s, f);
        }
        bool compare_exchange_strong(T& e, T d, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.compare_exchange_strong(e, d, mo);
        }
        bool compare_exchange_weak(T& e, T d, std::memory_order s, std::memory_order f) noexcept
        {
            return count(), v_.compare_exchange_weak(e, d, s, f);
        }
        bool compare_exchange_weak(T& e, T d, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.compare_exchange_weak(e, d, mo);
        }
        T fetch_add(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.fetch_add(v, mo);
        }
        T fetch_sub(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.fetch_sub(v, mo);
        }
        T fetch_or(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.fetch_or(v, mo);
        }
        T fetch_and(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.fetch_and(v, mo);
        }
        T fetch_xor(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept
        {
            return count(), v_.fetch_xor(v, mo);
        }

        std::atomic<T>& underlying() noexcept { return v_; }

    private:
        std::atomic<T> v_;
    };

    using task = env::os::task;
    static task* current() noexcept { return env::os::current(); }
    static thread_info& info(task* t) noexcept { return env::os::info(t); }
    static int task_pid(task* t) noexcept { return env::os::task_pid(t); }
    static const char* task_comm(task* t) noexcept { return env::os::task_comm(t); }
    static bool task_on_cpu(task* t) noexcept { return env::os::task_on_cpu(t); }
    static task* task_from_slot(std::uint32_t s) noexcept { return env::os::task_from_slot(s); }
    static int current_cpu() noexcept { return env::os::current_cpu(); }
    static int current_prio() noexcept { return env::os::current_prio(); }
    static void cpu_relax() noexcept { env::os::cpu_relax(); }
    static std::uint64_t now_ns() noexcept { return env::os::now_ns(); }
    static int futex_wait(atomic<std::uint32_t>& w, std::uint32_t v, std::uint64_t d) noexcept
    {
        futex_calls.fetch_add(1, std::memory_order_relaxed);
        return env::os::futex_wait(w.underlying(), v, d);
    }
    static int futex_wake(atomic<std::uint32_t>& w, int n) noexcept
    {
        futex_calls.fetch_add(1, std::memory_order_relaxed);
        return env::os::futex_wake(w.underlying(), n);
    }
    static int futex_lock_pi(atomic<std::uint32_t>& w, std::uint64_t d) noexcept
    {
        futex_calls.fetch_add(1, std::memory_order_relaxed);
        return env::os::futex_lock_pi(w.underlying(), d);
    }
    static int futex_trylock_pi(atomic<std::uint32_t>& w) noexcept
    {
        futex_calls.fetch_add(1, std::memory_order_relaxed);
        return env::os::futex_trylock_pi(w.underlying());
    }
    static int futex_unlock_pi(atomic<std::uint32_t>& w) noexcept
    {
        futex_calls.fetch_add(1, std::memory_order_relaxed);
        return env::os::futex_unlock_pi(w.underlying());
    }
    static void preempt_schedule() noexcept { }
    static void irq_disable(task* t) noexcept { env::os::irq_disable(t); }
    static void irq_enable(task* t) noexcept { env::os::irq_enable(t); }
};

static_assert(env::Env<counting_env>);

} // namespace klock::test
