// Lock-misuse reports, in the style of the kernel's spinlock_debug.c:
//
//   BUG: spinlock wrong owner on CPU#1, worker/4242
//    lock: 0x7ffd5c2e1a40, .owner: main/4241, .owner_cpu: 0
//   Call Trace:
//    ...
//
// One function formats them for every lock type, so that all misuse reads alike. A report
// never changes the lock: the caller decides what to do (normally: leave the lock as it was).
#pragma once

#include <string_view>

#include <klock/env/env.hpp>

namespace klock::detail {

struct task_desc {
    int pid = 0; // 0: no task (e.g. an unlocked lock has no owner)
    const char* comm = "";
    int cpu = -1;
};

void report_lock_bug(
    std::string_view what, const void* lock, task_desc current, task_desc owner, std::string_view extra = {});

template <env::Env E> task_desc describe_task(typename E::task* t, int cpu = -1) noexcept
{
    if (t == nullptr)
        return {};
    return {E::task_pid(t), E::task_comm(t), cpu};
}

// Report `what` about `lock`, naming the current task and `owner` (may be null).
template <env::Env E>
[[gnu::cold, gnu::noinline]] void lock_bug(
    std::string_view what, const void* lock, typename E::task* owner, int owner_cpu = -1, std::string_view extra = {})
{
    report_lock_bug(
        what, lock, describe_task<E>(E::current(), E::current_cpu()), describe_task<E>(owner, owner_cpu), extra);
}

} // namespace klock::detail
