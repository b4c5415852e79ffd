// The built-in scenarios (builtins.hpp). Each is the seeds' story in scenario form; the comment
// above each says what a run shows.
#include <klock/sim/builtins.hpp>

#include <klock/sim/build.hpp>

#include <string>

namespace klock::sim {

namespace {

using namespace build;

// What every built-in sets first.
scenario base(const char* name, const char* description, unsigned cpus, std::uint64_t time_limit_ns)
{
    scenario s;
    s.name = name;
    s.description = description;
    s.cpus = cpus;
    s.time_limit_ns = time_limit_ns;
    return s;
}

// seeds/003: high-priority A (cpu#1) waits for a lock held by low-priority C (cpu#0); medium B
// preempts C. With a mutex A waits for all of B's 200 ms (unbounded inversion); with an
// rt_mutex C inherits A's priority, B cannot preempt it, and A waits only for the rest of C's
// 5 ms critical section. The numbers are REFERENCE.md's recipe (L holds 5 ms, M spins 200 ms).
scenario priority_inversion(lock_type t)
{
    scenario s;
    const bool pi = t == lock_type::rt_mutex;
    s.name = pi ? main_job_rt_mutex : main_job_mutex;
    s.description = pi ? "seeds/003 with an rt_mutex: C inherits A's priority, A waits ~4 ms"
                       : "seeds/003 with a mutex: B preempts lock holder C, A waits ~200 ms (unbounded inversion)";
    s.cpus = 2;
    s.time_limit_ns = 1000 * ms(1);
    const int L = add_lock(s, "L", t);
    add_task(s, "C", policy::fifo, 10, {lock(L), work(ms(5)), unlock(L)}).affinity = cpu(0);
    task_spec& a = add_task(s, "A", policy::fifo, 90, {lock(L), work(ms(1)), unlock(L)});
    a.affinity = cpu(1);
    a.start_ns = ms(1);
    task_spec& b = add_task(s, "B", policy::fifo, 50, {work(ms(200))});
    b.affinity = cpu(0);
    b.start_ns = ms(2);
    if (!pi)
        s.expect = {"priority inversion"};
    return s;
}

scenario pi_mutex() { return priority_inversion(lock_type::mutex); }
scenario pi_rt_mutex() { return priority_inversion(lock_type::rt_mutex); }

// seeds/000: low-priority L runs a region that must not switch tasks. High-priority H wakes on
// the same CPU while L holds a spinlock: need_resched is set, but preemption is off. L's
// spin_unlock -> preempt_enable() reaches zero with a reschedule pending and switches to H
// inside the region.
scenario switch_spin_unlock()
{
    scenario s = base("switch-on-spin-unlock",
        "seeds/000: spin_unlock's preempt_enable() switches to a woken task inside a no-switch region", 2, ms(100));
    const int S = add_lock(s, "S", lock_type::spinlock);
    add_task(
        s, "L", policy::fifo, 10, {no_switch_begin(), lock(S), work(ms(2)), unlock(S), work(ms(1)), no_switch_end()})
        .affinity
        = cpu(0);
    task_spec& h = add_task(s, "H", policy::fifo, 50, {work(ms(1))});
    h.affinity = cpu(0);
    h.start_ns = ms(1);
    s.expect = {"no task switch"};
    return s;
}

// seeds/000, the fix for spinlocks: with interrupts disabled too, preempt_enable() does not
// reschedule (preemptible() is false) and the reschedule IPI waits; H runs only after the
// region, when local_irq_enable() lets the IPI in.
scenario no_switch_irqs_off()
{
    scenario s = base("no-switch-irqs-off",
        "seeds/000: the same with interrupts off - spin_unlock does not switch; H runs after the region", 2, ms(100));
    const int S = add_lock(s, "S", lock_type::spinlock);
    add_task(s, "L", policy::fifo, 10,
        {no_switch_begin(), irq_disable(), lock(S), work(ms(2)), unlock(S), work(ms(1)), no_switch_end(), irq_enable()})
        .affinity
        = cpu(0);
    task_spec& h = add_task(s, "H", policy::fifo, 50, {work(ms(1))});
    h.affinity = cpu(0);
    h.start_ns = ms(1);
    return s;
}

// seeds/000, mutexes: H sleeps on the mutex L holds; L's mutex_unlock wakes H, which preempts L
// at once (try_to_wake_up's preempt_enable) - inside the region. Interrupts off would not help:
// a mutex must not be used there at all.
scenario switch_mutex_unlock()
{
    scenario s = base("switch-on-mutex-unlock",
        "seeds/000: mutex_unlock wakes a higher-priority waiter, which runs at once, inside the region", 2, ms(100));
    const int M = add_lock(s, "M", lock_type::mutex);
    add_task(
        s, "L", policy::fifo, 10, {lock(M), work(ms(2)), no_switch_begin(), unlock(M), work(ms(1)), no_switch_end()})
        .affinity
        = cpu(0);
    task_spec& h = add_task(s, "H", policy::fifo, 50, {lock(M), work(ms(1)), unlock(M)});
    h.affinity = cpu(0);
    h.start_ns = ms(1);
    s.expect = {"no task switch"};
    return s;
}

// seeds/001-002: the ARM ticket lock. Four tasks on four CPUs arrive one microsecond apart;
// each takes a ticket (next + 1) and waits for `owner` to reach it. The lock word is printed
// after every operation: tickets are served strictly in arrival order.
scenario ticket_fifo()
{
    scenario s = base("ticket-fifo",
        "seeds/001-002: ticket spinlock hand-over in FIFO order, with the lock word at every step", 4, ms(10));
    s.trace_lock_words = true;
    const int T = add_lock(s, "T", lock_type::ticket_spinlock);
    const char* names[] = {"A", "B", "C", "D"};
    for (unsigned i = 0; i < 4; ++i) {
        task_spec& t = add_task(s, names[i], policy::other, 0, {lock(T), work(us(10)), unlock(T)});
        t.affinity = cpu(i);
        t.start_ns = us(i);
    }
    return s;
}

// seeds/003: ABBA. A takes L1 then L2, B takes L2 then L1: both sleep forever.
scenario abba()
{
    scenario s = base("abba",
        "seeds/003: ABBA deadlock between two tasks on two mutexes (the wait-for cycle is printed)", 2, ms(100));
    const int L1 = add_lock(s, "L1", lock_type::mutex);
    const int L2 = add_lock(s, "L2", lock_type::mutex);
    add_task(s, "A", policy::other, 0, {lock(L1), work(ms(1)), lock(L2), unlock(L2), unlock(L1)}).affinity = cpu(0);
    add_task(s, "B", policy::other, 0, {lock(L2), work(ms(1)), lock(L1), unlock(L1), unlock(L2)}).affinity = cpu(1);
    s.expect = {"deadlock", "lockdep"};
    return s;
}

// lockdep's point: the same ABBA order, but B starts after A is done, so this run cannot
// deadlock - and lockdep still proves that some run can, from the two orders it saw.
scenario lockdep_abba()
{
    scenario s = base("lockdep-abba",
        "ABBA order in two tasks that never overlap: no deadlock in this run, lockdep reports the cycle", 2, ms(100));
    const int L1 = add_lock(s, "L1", lock_type::mutex);
    const int L2 = add_lock(s, "L2", lock_type::mutex);
    add_task(s, "A", policy::other, 0, {lock(L1), work(ms(1)), lock(L2), unlock(L2), unlock(L1)}).affinity = cpu(0);
    task_spec& b = add_task(s, "B", policy::other, 0, {lock(L2), work(ms(1)), lock(L1), unlock(L1), unlock(L2)});
    b.affinity = cpu(1);
    b.start_ns = ms(5);
    s.expect = {"lockdep"};
    return s;
}

// lockdep's irq-safety proof: A takes L with interrupts on, the handler takes L later, when A
// no longer holds it - no deadlock in this run, but an interrupt during A's hold would spin
// forever ("inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage"). spin_lock_irqsave in A fixes it.
scenario lockdep_irq()
{
    scenario s = base("lockdep-irq",
        "spinlock taken with irqs on and in a hardirq at another time: lockdep reports the irq inversion", 1, ms(100));
    const int L = add_lock(s, "L", lock_type::spinlock);
    add_irq(s, "dev", 0, {lock(L), work(us(5)), unlock(L)}).at_ns = ms(3);
    add_task(s, "A", policy::other, 0, {lock(L), work(ms(1)), unlock(L), work(ms(5))});
    s.expect = {"lockdep"};
    return s;
}

// seeds/003: taking the same spinlock twice. Without debugging the task spins forever on its
// own lock; klock's debug layer reports "spinlock recursion" and refuses the second lock.
scenario aa()
{
    scenario s = base(
        "aa", "seeds/003: the same spinlock taken twice (self-deadlock; klock reports spinlock recursion)", 1, ms(100));
    const int L = add_lock(s, "L", lock_type::spinlock);
    add_task(s, "A", policy::other, 0, {lock(L), work(us(10)), lock(L), work(us(10)), unlock(L), unlock(L)});
    s.expect = {"deadlock", "lock bug", "lockdep"};
    return s;
}

// seeds/003: interrupt safety. A holds L with interrupts enabled; an interrupt on the same CPU
// takes L in its handler, which would spin forever: the CPU never returns to A.
scenario irq_safety()
{
    scenario s = base("irq-safety",
        "seeds/003: an irq handler takes a spinlock its CPU's interrupted task holds (spin_lock, not _irqsave)", 1,
        ms(100));
    const int L = add_lock(s, "L", lock_type::spinlock);
    add_irq(s, "dev", 0, {lock(L), work(us(5)), unlock(L)}).at_ns = ms(1);
    add_task(s, "A", policy::other, 0, {lock(L), work(ms(2)), unlock(L)});
    s.expect = {"deadlock", "lock bug", "lockdep"};
    return s;
}

// seeds/001: a spinlock holder that never lets go; the other CPU spins until the soft-lockup
// watchdog fires (the seeds' "watchdog reset"). klock's debug spinlock reports "lockup
// suspected" first.
scenario soft_lockup()
{
    scenario s = base("soft-lockup",
        "seeds/001: a spinlock never released; the waiter's CPU is caught by the soft-lockup watchdog", 2,
        10 * 1000 * ms(1));
    s.soft_lockup_ns = 2 * 1000 * ms(1);
    const int L = add_lock(s, "L", lock_type::spinlock);
    add_task(s, "A", policy::other, 0, {lock(L), loop(0), work(ms(1)), end_loop(), unlock(L)}).affinity = cpu(0);
    task_spec& b = add_task(s, "B", policy::other, 0, {lock(L), unlock(L)});
    b.affinity = cpu(1);
    b.start_ns = ms(1);
    s.expect = {"soft lockup", "lock bug"};
    return s;
}

// seeds/003: a task whose call chain needs more than its 16 KiB kernel stack; the magic word at
// the end of the stack is overwritten, and the next switch finds it.
scenario stack_overflow()
{
    scenario s = base("stack-overflow",
        "seeds/003: a task overruns its 16 KiB stack; STACK_END_MAGIC is found overwritten at the switch", 1, ms(100));
    add_task(s, "A", policy::other, 0, {work(us(10)), recurse(6, 3 * 1024), work(us(10))}).stack_size = 16 * 1024;
    s.expect = {"stack overflow"};
    return s;
}

// Exploration's workload (the benchmark): three tasks on three CPUs take one lock twice
// each. Correct locks pass every schedule: `klock sim explore-mutex --explore dfs`.
scenario three_by_two(lock_type t, const char* name)
{
    scenario s;
    s.name = name;
    s.description = std::string("3 tasks x 2 acquisitions of one ") + to_string(t) + " on 3 CPUs, for --explore";
    s.cpus = 3;
    s.tick_ns = 0;
    s.time_limit_ns = ms(100);
    const int L = add_lock(s, "L", t);
    for (unsigned i = 0; i < 3; ++i)
        add_task(s, std::string(1, static_cast<char>('A' + i)), policy::other, 0,
            {lock(L), work(100), unlock(L), lock(L), work(100), unlock(L)})
            .affinity
            = cpu(i);
    return s;
}

scenario explore_ticket() { return three_by_two(lock_type::ticket_spinlock, "explore-ticket"); }
scenario explore_qspinlock() { return three_by_two(lock_type::qspinlock, "explore-qspinlock"); }
scenario explore_mutex() { return three_by_two(lock_type::mutex, "explore-mutex"); }

constexpr builtin table[] = {
    {main_job_mutex, "priority inversion, mutex: A waits for medium B's whole run (seeds/003)", &pi_mutex},
    {main_job_rt_mutex, "priority inversion, rt_mutex: C inherits A's priority (seeds/003)", &pi_rt_mutex},
    {"switch-on-spin-unlock", "task switch inside spin_unlock's preempt_enable() (seeds/000)", &switch_spin_unlock},
    {"no-switch-irqs-off", "no switch on spin_unlock with interrupts disabled (seeds/000)", &no_switch_irqs_off},
    {"switch-on-mutex-unlock", "task switch inside mutex_unlock: the woken waiter runs at once (seeds/000)",
        &switch_mutex_unlock},
    {"ticket-fifo", "ticket spinlock FIFO hand-over, lock word at every step (seeds/001-002)", &ticket_fifo},
    {"abba", "ABBA deadlock on two mutexes, wait-for cycle printed (seeds/003)", &abba},
    {"aa", "AA: the same spinlock taken twice (seeds/003)", &aa},
    {"irq-safety", "irq handler takes a spinlock held by the task it interrupted (seeds/003)", &irq_safety},
    {"lockdep-abba", "ABBA order without a deadlock in this run, proven by lockdep", &lockdep_abba},
    {"lockdep-irq", "spinlock taken with irqs on and in a hardirq at different times: lockdep", &lockdep_irq},
    {"soft-lockup", "spinlock never released, caught by the soft-lockup watchdog (seeds/001)", &soft_lockup},
    {"stack-overflow", "stack overrun caught by STACK_END_MAGIC at the next switch (seeds/003)", &stack_overflow},
    {"explore-ticket", "3 tasks x 2 ticket_spinlock acquisitions on 3 CPUs (for --explore)", &explore_ticket},
    {"explore-qspinlock", "3 tasks x 2 qspinlock acquisitions on 3 CPUs (for --explore)", &explore_qspinlock},
    {"explore-mutex", "3 tasks x 2 mutex acquisitions on 3 CPUs (for --explore)", &explore_mutex},
};

} // namespace

std::span<const builtin> builtins() noexcept { return table; }

const builtin* find_builtin(std::string_view name) noexcept
{
    for (const builtin& b : table)
        if (name == b.name)
            return &b;
    return nullptr;
}

} // namespace klock::sim
