// might_sleep(): the kernel's check that a function which can sleep is not called in atomic
// context (kernel/sched/core.c, __might_sleep). Sleeping locks call it on entry.
//
// A violation prints, in the kernel's layout,
//   BUG: sleeping function called from invalid context at FILE:LINE
//   in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 4242, name: worker
//   preempt_count: 1, expected: 0
//   CPU: 1 PID: 4242 Comm: worker
//   Call Trace:
//    ...
// once per call site (the kernel rate-limits the same way a user would want: one splat per
// bug, not one per call), and never changes any state.
#pragma once

#include <klock/source_location.hpp>

#include <klock/env/env.hpp>
#include <klock/env/os.hpp>

namespace klock {

namespace detail {
struct sleep_in_atomic_info {
    const char* file;
    unsigned line;
    std::uint32_t preempt_count;
    bool irqs_disabled;
    int pid;
    const char* comm;
    int cpu;
};
[[gnu::cold]] void report_sleep_in_atomic(const sleep_in_atomic_info& info);
} // namespace detail

namespace kernel {
template <env::Env E> [[gnu::always_inline]] inline void might_sleep(const char* file, unsigned line) noexcept
{
    typename E::task* t = E::current();
    const thread_info& ti = E::info(t);
    if (__builtin_expect(ti.preempt_count != 0 || ti.irqs_disabled, 0))
        detail::report_sleep_in_atomic(
            {file, line, ti.preempt_count, ti.irqs_disabled, E::task_pid(t), E::task_comm(t), E::current_cpu()});
}
} // namespace kernel

inline void might_sleep(klock::source_location loc = klock::source_location::current()) noexcept
{
    kernel::might_sleep<env::os>(loc.file_name(), loc.line());
}

} // namespace klock
