// lockdep in the os world: each thread's task_state is a thread_local (initial-exec, constant
// initialised, trivially destructible, so the hot paths reach it with one %fs-relative address),
// a thread-exit hook that checks for locks still held and unregisters the state, the wrappers that
// pass the calling thread's state and thread_info to the engine, and the kernel's irq-entry names.
//
// The exit hook is a separate thread_local with a destructor, touched only on a thread's first
// registration, so that the accesses on the hot path need no TLS initialisation guard.
#include "internal.hpp"

#include <klock/env/os.hpp>

#include <sched.h>

namespace klock::lockdep {

namespace detail {

thread_local constinit task_state tls_state __attribute__((tls_model("initial-exec"))) = {};

namespace {

thread_local constinit bool tls_exited = false;

struct exit_hook {
    bool armed = false;
    ~exit_hook()
    {
        if (!armed)
            return;
        tls_exited = true;
        task_exit(tls_state, env::os::info(env::os::current()));
    }
};
thread_local exit_hook tls_exit_hook;

} // namespace

bool os_may_register(task_state& ts) noexcept
{
    if (&ts != &tls_state)
        return true;
    if (tls_exited)
        return false;
    tls_exit_hook.armed = true;
    return true;
}

int report_cpu(const task_state& ts) noexcept
{
    if (ts.host != nullptr)
        return ts.host->cpu(*ts.host);
    const int cpu = ::sched_getcpu();
    return cpu < 0 ? 0 : cpu;
}

} // namespace detail

using namespace detail;

task_state& current_task_state() noexcept { return tls_state; }

namespace {
const thread_info& cur_ti() { return env::os::info(env::os::current()); }
std::uintptr_t caller_or(std::uintptr_t ip, void* ra) { return ip != 0 ? ip : reinterpret_cast<std::uintptr_t>(ra); }
} // namespace

void lock_downgrade(lockdep_map& lock, std::uintptr_t ip) noexcept
{
    lock_downgrade(tls_state, cur_ti(), lock, caller_or(ip, __builtin_return_address(0)));
}

// ip 0 stays 0: the engine then uses the ip lock_acquire() recorded (the waiter's call site, not
// the lock's slow path that makes this call).
void lock_contended(lockdep_map& lock, std::uintptr_t ip) noexcept
{
    if (__builtin_expect(!(g_state.load(std::memory_order_relaxed) & STATE_STAT), 1))
        return;
    lock_contended(tls_state, cur_ti(), lock, ip);
}

void lock_acquired(lockdep_map& lock, std::uintptr_t ip) noexcept
{
    if (__builtin_expect(!(g_state.load(std::memory_order_relaxed) & STATE_STAT), 1))
        return;
    lock_acquired(tls_state, cur_ti(), lock, ip);
}

bool lock_is_held(const lockdep_map& lock, int read) noexcept { return lock_is_held(tls_state, lock, read); }

void hardirqs_on(std::uintptr_t ip) noexcept
{
    hardirqs_on(tls_state, cur_ti(), caller_or(ip, __builtin_return_address(0)));
}

void hardirqs_off(std::uintptr_t ip) noexcept
{
    hardirqs_off(tls_state, cur_ti(), caller_or(ip, __builtin_return_address(0)));
}

void softirqs_on(std::uintptr_t ip) noexcept
{
    softirqs_on(tls_state, cur_ti(), caller_or(ip, __builtin_return_address(0)));
}

void softirqs_off(std::uintptr_t ip) noexcept
{
    softirqs_off(tls_state, cur_ti(), caller_or(ip, __builtin_return_address(0)));
}

void debug_check_no_locks_held() noexcept { debug_check_no_locks_held(tls_state, cur_ti()); }

} // namespace klock::lockdep

namespace klock {

void hardirq_enter() noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    env::os::task* t = env::os::current();
    thread_info& ti = env::os::info(t);
    lockdep::task_state& ts = lockdep::detail::tls_state;
    const unsigned level = (ti.preempt_count & HARDIRQ_MASK) >> HARDIRQ_SHIFT;
    const auto bit = static_cast<std::uint16_t>(1u << (level & 15));
    // A handler runs with interrupts off; remember whether they were on in the interrupted code.
    if (!ti.irqs_disabled) {
        ts.hardirq_irqs_were_on = static_cast<std::uint16_t>(ts.hardirq_irqs_were_on | bit);
        env::os::irq_disable(t);
        ti.irqs_disabled = true;
        lockdep::hardirqs_off(ts, ti, ra);
    } else {
        ts.hardirq_irqs_were_on = static_cast<std::uint16_t>(ts.hardirq_irqs_were_on & ~bit);
    }
    ti.preempt_count += HARDIRQ_OFFSET;
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

void hardirq_exit() noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    env::os::task* t = env::os::current();
    thread_info& ti = env::os::info(t);
    lockdep::task_state& ts = lockdep::detail::tls_state;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    ti.preempt_count -= HARDIRQ_OFFSET;
    const unsigned level = (ti.preempt_count & HARDIRQ_MASK) >> HARDIRQ_SHIFT;
    const auto bit = static_cast<std::uint16_t>(1u << (level & 15));
    if (ts.hardirq_irqs_were_on & bit) {
        ts.hardirq_irqs_were_on = static_cast<std::uint16_t>(ts.hardirq_irqs_were_on & ~bit);
        lockdep::hardirqs_on(ts, ti, ra);
        ti.irqs_disabled = false;
        env::os::irq_enable(t);
    }
}

void softirq_enter() noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    thread_info& ti = env::os::info(env::os::current());
    ti.preempt_count += SOFTIRQ_OFFSET;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if ((ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_OFFSET)
        lockdep::softirqs_off(lockdep::detail::tls_state, ti, ra);
}

void softirq_exit() noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    thread_info& ti = env::os::info(env::os::current());
    if ((ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_OFFSET)
        lockdep::softirqs_on(lockdep::detail::tls_state, ti, ra);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    ti.preempt_count -= SOFTIRQ_OFFSET;
}

void debug_check_no_locks_freed(const void* mem, std::size_t len) noexcept
{
    lockdep::debug_check_no_locks_freed(lockdep::detail::tls_state, env::os::info(env::os::current()), mem, len,
        reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

} // namespace klock
