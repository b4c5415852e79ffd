// The environment a lock algorithm runs in (DESIGN.md, "One algorithm source, two worlds").
//
// Every klock lock is a template over an Env: a stateless type whose static members supply
// what the kernel's lock code takes from the machine around it. `klock::env::os` is the world
// of real threads (std::atomic, futex, gettid); the simulator supplies another, in which each
// atomic access is a scheduling point. Tests add a third that counts atomic accesses, which
// keeps this seam honest: a lock that reached past its Env for an atomic or a futex would not
// be counted.
//
// An Env provides
//   atomic<T>                     std::atomic-compatible type for lock words (load, store,
//                                 exchange, compare_exchange_*, fetch_add/sub/or/and)
//   task                          the task record type; current() never returns null
//   info(task*)                   the task's klock::thread_info (preempt_count, irq flag, ...)
//   task_pid / task_comm          identity for reports and for the PI futex word (TID)
//   task_on_cpu(task*)            false when the task is known to be asleep (spin hint)
//   task_from_slot(slot)          inverse of thread_info::slot, for queued locks' tail codes
//   current_cpu()                 the CPU the caller runs on (reports, lock_stat bounces)
//   current_prio()                scheduling priority of the caller: 1..99 for SCHED_FIFO/RR,
//                                 0 otherwise
//   cpu_relax()                   pause inside a spin loop
//   now_ns()                      monotonic clock
//   futex_wait(w, val, deadline)  sleep while w == val; deadline is absolute now_ns() time,
//                                 0 = none. Returns 0, -EAGAIN (w != val), -ETIMEDOUT, -EINTR.
//                                 Spurious returns are allowed: callers loop.
//   futex_wake(w, n)              wake up to n sleepers on w; returns the number woken
//   futex_lock_pi / futex_trylock_pi / futex_unlock_pi
//                                 the kernel's PI-futex protocol on a word holding
//                                 TID | FUTEX_WAITERS | FUTEX_OWNER_DIED; return 0 or -errno
//   preempt_schedule()            preempt_enable() reached zero with a reschedule pending
//   irq_disable(task*) / irq_enable(task*)
//                                 the hardware side of local_irq_*: block / unblock
//                                 asynchronous interrupts (signals in the os world)
#pragma once

#include <concepts>
#include <cstdint>

#include <klock/thread_info.hpp>

namespace klock::env {

// PI futex word bits (FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK in
// include/uapi/linux/futex.h; lower-case here so that the macros of <linux/futex.h> do not
// clash with them).
inline constexpr std::uint32_t futex_waiters = 0x80000000u;
inline constexpr std::uint32_t futex_owner_died = 0x40000000u;
inline constexpr std::uint32_t futex_tid_mask = 0x3fffffffu;

template <class E>
concept Env = requires(
    typename E::task* t, typename E::template atomic<std::uint32_t>& w, std::uint32_t v, std::uint64_t deadline)
{
    {
        E::current()
    }
    noexcept->std::same_as<typename E::task*>;
    {
        E::info(t)
    }
    noexcept->std::same_as<thread_info&>;
    {
        E::task_pid(t)
    }
    noexcept->std::same_as<int>;
    {
        E::task_comm(t)
    }
    noexcept->std::same_as<const char*>;
    {
        E::task_on_cpu(t)
    }
    noexcept->std::same_as<bool>;
    {
        E::task_from_slot(v)
    }
    noexcept->std::same_as<typename E::task*>;
    {
        E::current_cpu()
    }
    noexcept->std::same_as<int>;
    {
        E::current_prio()
    }
    noexcept->std::same_as<int>;
    {
        E::cpu_relax()
    }
    noexcept;
    {
        E::now_ns()
    }
    noexcept->std::same_as<std::uint64_t>;
    {
        E::futex_wait(w, v, deadline)
    }
    noexcept->std::same_as<int>;
    {
        E::futex_wake(w, 1)
    }
    noexcept->std::same_as<int>;
    {
        E::futex_lock_pi(w, deadline)
    }
    noexcept->std::same_as<int>;
    {
        E::futex_trylock_pi(w)
    }
    noexcept->std::same_as<int>;
    {
        E::futex_unlock_pi(w)
    }
    noexcept->std::same_as<int>;
    {
        E::preempt_schedule()
    }
    noexcept;
    {
        E::irq_disable(t)
    }
    noexcept;
    {
        E::irq_enable(t)
    }
    noexcept;
    w.load(std::memory_order_relaxed);
    w.compare_exchange_strong(v, v, std::memory_order_acquire, std::memory_order_relaxed);
    w.fetch_add(v, std::memory_order_acq_rel);
};

} // namespace klock::env
