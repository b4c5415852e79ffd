// klock::sim::env: the simulator's Env (include/klock/env/env.hpp). klock's lock templates run
// over it unchanged - basic_mutex<sim::env> is the mutex that ships, on simulated CPUs.
//
// The Env is stateless: its static members reach "the current machine" through a thread-local
// pointer (several machines may exist; one runs per OS thread at a time).
//
// Every atomic access is a scheduling point. It first advances the virtual clock of the CPU
// executing it by a cost; once that clock passes the time at which another CPU (or a timed
// event) is due, control returns to the machine, which lets the CPU with the smallest clock run
// next. CPUs therefore interleave at atomic granularity, deterministically, and an access is
// performed at its place in global virtual-time order. Then pending interrupts are delivered,
// and on their return the task may be preempted, as on a real CPU. All accesses are
// sequentially consistent (the simulator does not model weak memory; memory_order arguments are
// accepted and ignored).
//
// cpu_relax() is a scheduling point too. A spin that keeps re-reading words nobody writes
// (`park_after` relaxes in a row, each after a read with no store anywhere since) is parked, like ARM's wfe: the CPU
// stops executing until some store, an interrupt for it, or the event-stream period wakes it, and virtual time passes
// meanwhile. Spins bounded by an iteration count (klock's spin budgets are at most a few thousand) end before parking,
// so parking changes no algorithm's behaviour, only the simulator's cost of a long spin.
//
// futex_wait blocks the simulated task (it sleeps, and the CPU runs something else) - unless it
// is called in atomic context (preempt_count != 0 or interrupts off), where sleeping is not
// allowed: then the CPU halts with the task still current, like pv_wait in a paravirtual
// kernel, until futex_wake, the deadline or an interrupt. The PI futex operations are served by
// the machine with the kernel's rt_mutex algorithm (see machine.hpp).
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/env/env.hpp>
#include <klock/thread_info.hpp>

namespace klock::sim {

class machine;

// The Env's task record. The machine's task derives from it.
struct task_base {
    thread_info ti{};
    bool on_cpu = false; // current on some CPU (task_on_cpu: the mutex/rwsem spinners' hint)
};

namespace detail {

// The running machine's hot state, read inline by the Env. Only the OS thread running the
// machine touches it.
struct hot_state {
    std::uint64_t now = 0;          // virtual clock (ns) of the CPU now executing
    std::uint64_t yield_at = 0;     // the executing CPU returns to the machine's loop once now >= this
    std::uint64_t steps = 0;        // scheduling points executed
    std::uint64_t epoch = 0;        // bumped by every store that changes a word (and by scheduler changes)
    std::uint64_t access_epoch = 0; // epoch at this CPU's latest atomic access
    std::uint32_t pure_relaxes = 0; // relaxes in a row that followed a read of unchanged memory
    std::uint32_t park_after = 8192;
    task_base* current = nullptr;
    int cpu = 0;
    std::uint32_t atomic_ns = 10;
    std::uint32_t relax_ns = 20;
    std::uint32_t quiet = 1;   // > 0: not inside a simulated CPU (or the machine peeking): no scheduling point
    bool watch_stores = false; // some CPU is parked in a spin: stores must wake it
    bool accessed = false;     // an atomic access since this CPU's previous cpu_relax()
    bool faults = false;       // fault injection active (exploration's planted bugs)
    machine* m = nullptr;
};

extern thread_local constinit hot_state* tls_hot __attribute__((tls_model("initial-exec")));

void step_slow() noexcept;
void store_slow() noexcept;
void relax_park() noexcept;
// Fault injection: may change the operand of a read-modify-write (kind: 0 fetch_add, 1 CAS desired).
std::uint64_t fault_operand(const void* word, int kind, std::uint64_t expected, std::uint64_t operand) noexcept;

[[gnu::always_inline]] inline void step(std::uint32_t cost) noexcept
{
    hot_state* h = tls_hot;
    if (__builtin_expect(h == nullptr || h->quiet != 0, 0))
        return;
    h->now += cost;
    ++h->steps;
    if (__builtin_expect(h->now >= h->yield_at, 0))
        step_slow();
}

[[gnu::always_inline]] inline void step_atomic() noexcept
{
    hot_state* h = tls_hot;
    if (__builtin_expect(h == nullptr || h->quiet != 0, 0))
        return;
    h->now += h->atomic_ns;
    ++h->steps;
    h->accessed = true;
    h->access_epoch = h->epoch;
    if (__builtin_expect(h->now >= h->yield_at, 0))
        step_slow();
}

[[gnu::always_inline]] inline void stored() noexcept
{
    hot_state* h = tls_hot;
    if (h == nullptr)
        return;
    ++h->epoch;
    if (__builtin_expect(h->watch_stores, 0))
        store_slow();
}

[[gnu::always_inline]] inline bool faults_on() noexcept
{
    hot_state* h = tls_hot;
    return h != nullptr && h->faults && h->quiet == 0;
}

inline void relax() noexcept
{
    hot_state* h = tls_hot;
    if (__builtin_expect(h == nullptr || h->quiet != 0, 0))
        return;
    h->now += h->relax_ns;
    ++h->steps;
    // A pure spin read memory after the latest store anywhere and is pausing to read it
    // again: until somebody stores, it will read the same. Pauses with no access in between
    // (a backoff) tell nothing either way.
    if (h->accessed) {
        h->accessed = false;
        if (h->access_epoch != h->epoch) {
            h->pure_relaxes = 0;
        } else if (__builtin_expect(++h->pure_relaxes >= h->park_after, 0)) {
            relax_park();
            return;
        }
    }
    if (__builtin_expect(h->now >= h->yield_at, 0))
        step_slow();
}

task_base* task_from_slot(std::uint32_t slot) noexcept;
int current_prio() noexcept;
int futex_wait(void* word, std::uint32_t val, std::uint64_t deadline) noexcept;
int futex_wake(void* word, int n) noexcept;
int futex_lock_pi(void* word, std::uint64_t deadline) noexcept;
int futex_trylock_pi(void* word) noexcept;
int futex_unlock_pi(void* word) noexcept;
void preempt_schedule() noexcept;
void irq_enabled() noexcept;

} // namespace detail

// A lock word in the simulator: a plain value whose every access is a scheduling point.
template <class T> class atomic {
public:
    constexpr atomic() noexcept : v_{} { }
    constexpr atomic(T v) noexcept : v_{v} { }
    atomic(const atomic&) = delete;
    atomic& operator=(const atomic&) = delete;

    T load(std::memory_order = std::memory_order_seq_cst) const noexcept
    {
        detail::step_atomic();
        return v_;
    }
    void store(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        set(v);
    }
    T exchange(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        const T old = v_;
        set(v);
        return old;
    }
    bool compare_exchange_strong(T& expected, T desired, std::memory_order, std::memory_order) noexcept
    {
        return cas(expected, desired);
    }
    bool compare_exchange_strong(T& expected, T desired, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        return cas(expected, desired);
    }
    // Never fails spuriously: a spurious failure is one more loop iteration, which exploration
    // does not need to tell apart from a real one.
    bool compare_exchange_weak(T& expected, T desired, std::memory_order, std::memory_order) noexcept
    {
        return cas(expected, desired);
    }
    bool compare_exchange_weak(T& expected, T desired, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        return cas(expected, desired);
    }
    T fetch_add(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        if (__builtin_expect(detail::faults_on(), 0))
            v = static_cast<T>(
                detail::fault_operand(&v_, 0, static_cast<std::uint64_t>(v_), static_cast<std::uint64_t>(v)));
        const T old = v_;
        set(static_cast<T>(old + v));
        return old;
    }
    T fetch_sub(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        const T old = v_;
        set(static_cast<T>(old - v));
        return old;
    }
    T fetch_or(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        const T old = v_;
        set(static_cast<T>(old | v));
        return old;
    }
    T fetch_and(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        const T old = v_;
        set(static_cast<T>(old & v));
        return old;
    }
    T fetch_xor(T v, std::memory_order = std::memory_order_seq_cst) noexcept
    {
        detail::step_atomic();
        const T old = v_;
        set(static_cast<T>(old ^ v));
        return old;
    }

    // The machine's view: no scheduling point, no cost.
    T peek() const noexcept { return v_; }
    void poke(T v) noexcept
    {
        if (v != v_) {
            v_ = v;
            detail::stored();
        }
    }

private:
    bool cas(T& expected, T desired) noexcept
    {
        detail::step_atomic();
        if (v_ != expected) {
            expected = v_;
            return false;
        }
        if (__builtin_expect(detail::faults_on(), 0))
            desired = static_cast<T>(detail::fault_operand(
                &v_, 1, static_cast<std::uint64_t>(expected), static_cast<std::uint64_t>(desired)));
        set(desired);
        return true;
    }
    void set(T v) noexcept
    {
        if (v != v_) {
            v_ = v;
            detail::stored();
        }
    }

    T v_;
};

struct env {
    template <class T> using atomic = sim::atomic<T>;
    using task = task_base;

    static task* current() noexcept { return detail::tls_hot->current; }
    static thread_info& info(task* t) noexcept { return t->ti; }
    static int task_pid(task* t) noexcept { return t->ti.pid; }
    static const char* task_comm(task* t) noexcept { return t->ti.comm; }
    static bool task_on_cpu(task* t) noexcept { return t->on_cpu; }
    static task* task_from_slot(std::uint32_t slot) noexcept { return detail::task_from_slot(slot); }
    static int current_cpu() noexcept { return detail::tls_hot->cpu; }
    static int current_prio() noexcept { return detail::current_prio(); }
    static void cpu_relax() noexcept { detail::relax(); }
    static std::uint64_t now_ns() noexcept { return detail::tls_hot->now; }

    static int futex_wait(atomic<std::uint32_t>& w, std::uint32_t val, std::uint64_t deadline) noexcept
    {
        return detail::futex_wait(&w, val, deadline);
    }
    static int futex_wake(atomic<std::uint32_t>& w, int n) noexcept { return detail::futex_wake(&w, n); }
    static int futex_lock_pi(atomic<std::uint32_t>& w, std::uint64_t deadline) noexcept
    {
        return detail::futex_lock_pi(&w, deadline);
    }
    static int futex_trylock_pi(atomic<std::uint32_t>& w) noexcept { return detail::futex_trylock_pi(&w); }
    static int futex_unlock_pi(atomic<std::uint32_t>& w) noexcept { return detail::futex_unlock_pi(&w); }

    static void preempt_schedule() noexcept { detail::preempt_schedule(); }
    // The CPU's interrupt flag is the task's thread_info::irqs_disabled (preempt.hpp writes it);
    // disabling needs nothing more, enabling delivers what arrived meanwhile.
    static void irq_disable(task*) noexcept { }
    static void irq_enable(task*) noexcept { detail::irq_enabled(); }
};

static_assert(klock::env::Env<env>);

} // namespace klock::sim
