// Preemption and interrupt state as the kernel tracks it (include/linux/preempt.h,
// include/linux/irqflags.h), for the current task of an Env.
//
// In the os world these are bookkeeping that the checks read (might_sleep, lockdep):
// preempt_disable() does not stop the OS from preempting a thread. local_irq_disable() does
// block asynchronous signals, since signal handlers are klock's hardirq context. In the
// simulator the same counters are enforced by the simulated scheduler, which is why
// preempt_enable() calls Env::preempt_schedule() when the count drops to zero with a
// reschedule pending - the seeds' "task switch on unlock".
#pragma once

#include <cstdint>

#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/thread_info.hpp>

#if KLOCK_LOCKDEP
#include <klock/detail/lockdep_hooks.hpp>
#endif

namespace klock {

using irq_flags = unsigned long;

namespace kernel {

template <env::Env E> [[gnu::always_inline]] inline void preempt_count_add(std::uint32_t n) noexcept
{
    E::info(E::current()).preempt_count += n;
    std::atomic_signal_fence(std::memory_order_seq_cst); // barrier(): keep the section inside
}

template <env::Env E> [[gnu::always_inline]] inline void preempt_count_sub(std::uint32_t n) noexcept
{
    std::atomic_signal_fence(std::memory_order_seq_cst);
    E::info(E::current()).preempt_count -= n;
}

template <env::Env E> [[gnu::always_inline]] inline bool preemptible() noexcept
{
    const thread_info& ti = E::info(E::current());
    return ti.preempt_count == 0 && !ti.irqs_disabled;
}

template <env::Env E> [[gnu::always_inline]] inline void preempt_disable() noexcept
{
    preempt_count_add<E>(PREEMPT_OFFSET);
}

// Lowers the count and, like the kernel's preempt_enable(), reschedules if it reached zero
// with a reschedule pending and interrupts are on.
template <env::Env E> [[gnu::always_inline]] inline void preempt_enable() noexcept
{
    typename E::task* t = E::current();
    thread_info& ti = E::info(t);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (--ti.preempt_count == 0 && __builtin_expect(ti.need_resched, 0) && !ti.irqs_disabled)
        E::preempt_schedule();
}

template <env::Env E> [[gnu::always_inline]] inline void preempt_enable_no_resched() noexcept
{
    preempt_count_sub<E>(PREEMPT_OFFSET);
}

template <env::Env E> inline void local_irq_disable() noexcept
{
    typename E::task* t = E::current();
    thread_info& ti = E::info(t);
    if (!ti.irqs_disabled) {
        E::irq_disable(t);
        ti.irqs_disabled = true;
#if KLOCK_LOCKDEP
        // trace_hardirqs_off(): after the fact, so lockdep never sees irqs "on" with them off.
        if constexpr (detail::lockdep_tracks<E>)
            if (__builtin_expect(lockdep::enabled(), 0))
                lockdep::hardirqs_off();
#endif
    }
}

template <env::Env E> inline void local_irq_enable() noexcept
{
    typename E::task* t = E::current();
    thread_info& ti = E::info(t);
    if (ti.irqs_disabled) {
#if KLOCK_LOCKDEP
        // trace_hardirqs_on(): before the fact, so an interrupt arriving right after enabling
        // already finds the held locks marked HARDIRQ-ON.
        if constexpr (detail::lockdep_tracks<E>)
            if (__builtin_expect(lockdep::enabled(), 0))
                lockdep::hardirqs_on();
#endif
        ti.irqs_disabled = false;
        E::irq_enable(t);
    }
}

// flags records whether interrupts were disabled before; restore returns to that state, so
// save/restore pairs nest.
template <env::Env E> inline irq_flags local_irq_save() noexcept
{
    irq_flags flags = E::info(E::current()).irqs_disabled ? 1 : 0;
    local_irq_disable<E>();
    return flags;
}

template <env::Env E> inline void local_irq_restore(irq_flags flags) noexcept
{
    if (flags == 0)
        local_irq_enable<E>();
    else
        local_irq_disable<E>();
}

#if KLOCK_LOCKDEP
// lockdep_softirqs_off(): called right after a softirq-disable add; traces only the first one
// (the softirq count left zero), as __local_bh_disable_ip() does.
template <env::Env E> [[gnu::always_inline]] inline void lockdep_trace_bh_disabled(std::uint32_t added) noexcept
{
    if constexpr (detail::lockdep_tracks<E>)
        if (__builtin_expect(lockdep::enabled(), 0)
            && (E::info(E::current()).preempt_count & SOFTIRQ_MASK) == (added & SOFTIRQ_MASK))
            lockdep::softirqs_off();
}
#else
template <env::Env E> inline void lockdep_trace_bh_disabled(std::uint32_t) noexcept { }
#endif

template <env::Env E> inline void local_bh_disable() noexcept
{
    preempt_count_add<E>(SOFTIRQ_DISABLE_OFFSET);
    lockdep_trace_bh_disabled<E>(SOFTIRQ_DISABLE_OFFSET);
}

template <env::Env E> inline void local_bh_enable() noexcept
{
#if KLOCK_LOCKDEP
    // lockdep_softirqs_on(): before the count returns to zero (__local_bh_enable_ip()).
    if constexpr (detail::lockdep_tracks<E>)
        if (__builtin_expect(lockdep::enabled(), 0)
            && (E::info(E::current()).preempt_count & SOFTIRQ_MASK) == SOFTIRQ_DISABLE_OFFSET)
            lockdep::softirqs_on();
#endif
    preempt_count_sub<E>(SOFTIRQ_DISABLE_OFFSET);
    thread_info& ti = E::info(E::current());
    if (ti.preempt_count == 0 && ti.need_resched && !ti.irqs_disabled)
        E::preempt_schedule();
}

} // namespace kernel

// ---- the os world: kernel names for the calling thread ----

inline std::uint32_t preempt_count() noexcept { return env::os::info(env::os::current()).preempt_count; }
inline bool in_atomic() noexcept { return preempt_count() != 0; }
inline bool irqs_disabled() noexcept { return env::os::info(env::os::current()).irqs_disabled; }
inline bool preemptible() noexcept { return kernel::preemptible<env::os>(); }
inline bool in_hardirq() noexcept { return klock::in_hardirq(preempt_count()); }
inline bool in_softirq() noexcept { return (preempt_count() & SOFTIRQ_MASK) != 0; }
inline bool in_interrupt() noexcept { return irq_count(preempt_count()) != 0; }
inline bool in_task() noexcept { return klock::in_task(preempt_count()); }

inline void preempt_disable() noexcept { kernel::preempt_disable<env::os>(); }
inline void preempt_enable() noexcept { kernel::preempt_enable<env::os>(); }
inline void preempt_enable_no_resched() noexcept { kernel::preempt_enable_no_resched<env::os>(); }
inline void local_irq_disable() noexcept { kernel::local_irq_disable<env::os>(); }
inline void local_irq_enable() noexcept { kernel::local_irq_enable<env::os>(); }
inline irq_flags local_irq_save() noexcept { return kernel::local_irq_save<env::os>(); }
inline void local_irq_restore(irq_flags flags) noexcept { kernel::local_irq_restore<env::os>(flags); }
inline void local_bh_disable() noexcept { kernel::local_bh_disable<env::os>(); }
inline void local_bh_enable() noexcept { kernel::local_bh_enable<env::os>(); }

} // namespace klock
