// A simulator scenario as data: CPUs, locks, IRQs and tasks with their scripts. Built by the
// text-format parser (scenario_parser.hpp), by the built-in scenarios, or directly by C++ code
// (tests); run by klock::sim::machine. Plain aggregates, so that every producer fills in the
// same thing and every consumer reads it the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace klock::sim {

// Scheduling classes (the kernel's SCHED_FIFO, SCHED_RR, SCHED_NORMAL).
enum class policy : std::uint8_t { fifo, rr, other };

// The klock lock types a scenario can declare; each runs klock's own algorithm over the sim Env.
enum class lock_type : std::uint8_t {
    spinlock,        // klock::basic_spinlock (queued)
    ticket_spinlock, // klock::basic_ticket_spinlock
    qspinlock,       // klock::basic_qspinlock
    rwlock,          // klock::basic_rwlock (queued rwlock)
    mutex,           // klock::basic_mutex
    rt_mutex,        // klock::basic_rt_mutex (priority inheritance)
    rw_semaphore,    // klock::basic_rw_semaphore
};

// What one step of a script does. Durations are virtual nanoseconds.
enum class op : std::uint8_t {
    lock,              // lock L (spin_lock, mutex_lock, down_write, write_lock, ...)
    unlock,            // unlock L
    trylock,           // trylock L (the step does not wait; the result is traced)
    lock_read,         // down_read / read_lock L
    unlock_read,       // up_read / read_unlock L
    lock_irqsave,      // spin_lock_irqsave L
    unlock_irqrestore, // spin_unlock_irqrestore L
    work,              // run on the CPU for `ns` (preemptible unless preempt/irqs are off)
    sleep,             // block for `ns` (schedule_timeout)
    preempt_disable,
    preempt_enable,
    local_irq_disable,
    local_irq_enable,
    local_bh_disable,
    local_bh_enable,
    raise_irq,       // raise IRQ `irq` on `cpu` (-1: the current CPU)
    recurse,         // call `count` nested frames of `bytes` stack each, then return (stack use)
    no_switch_begin, // from here to no_switch_end, a task switch caused by this task is reported
    no_switch_end,
    loop, // repeat the steps up to the matching end_loop `count` times (0: forever)
    end_loop,
};

struct step {
    op kind = op::work;
    int lock = -1;         // index into scenario::locks for lock operations
    std::uint64_t ns = 0;  // work / sleep
    unsigned count = 0;    // recurse frames, loop iterations
    std::size_t bytes = 0; // recurse: stack bytes per frame
    int irq = -1;          // raise_irq: index into scenario::irqs
    int cpu = -1;          // raise_irq: target CPU, -1 = current
    unsigned line = 0;     // where it came from in a scenario file (0: built in code)
    unsigned column = 0;
};

struct task_spec {
    std::string name;
    policy sched = policy::other;
    int prio = 0;                               // 1..99 for fifo/rr; ignored for other
    int nice = 0;                               // other: -20..19
    std::uint64_t affinity = ~std::uint64_t(0); // bit n: may run on CPU n
    std::size_t stack_size = 16 * 1024;
    std::uint64_t start_ns = 0; // becomes runnable at this virtual time
    int start_cpu = -1;         // -1: lowest allowed CPU
    std::vector<step> steps;
    unsigned line = 0;
};

// A device interrupt: fires at `at_ns` (and every `period_ns` if non-zero) on `cpu`, and when a
// raise_irq step names it. The handler runs in hardirq context.
struct irq_spec {
    std::string name;
    int cpu = 0;
    // true: a softirq. Raised (at_ns/period_ns or by raise_irq) it runs at the next point where
    // softirqs may run on `cpu`: on interrupt exit, or as soon as the CPU is outside interrupt
    // context with bottom halves and interrupts enabled; with SOFTIRQ_OFFSET in preempt_count.
    bool softirq = false;
    std::uint64_t at_ns = 0; // 0 with period 0: only when raised by a step
    std::uint64_t period_ns = 0;
    std::vector<step> handler;
    unsigned line = 0;
};

struct lock_spec {
    std::string name;
    lock_type type = lock_type::spinlock;
    unsigned line = 0;
};

// Where interrupt handlers run: on the interrupted task's stack (32-bit arm) or on a per-CPU
// irq stack (arm64, x86-64).
enum class irq_stack_mode : std::uint8_t { task_stack, per_cpu };

struct scenario {
    std::string name;
    std::string description;
    std::string file;                  // the file it was read from ("" when built in code): reports cite its lines
    unsigned cpus = 1;                 // 1..64
    std::uint64_t tick_ns = 4'000'000; // periodic timer tick (250 Hz); 0: none
    std::uint64_t rr_timeslice_ns = 100'000'000;  // SCHED_RR quantum
    std::uint64_t time_limit_ns = 10'000'000'000; // stop the run here (virtual time)
    std::uint64_t soft_lockup_ns = 2'000'000'000; // soft lockup watchdog threshold (virtual)
    std::uint64_t seed = 1;
    irq_stack_mode irq_stacks = irq_stack_mode::per_cpu;
    std::size_t irq_stack_size = 16 * 1024;
    std::vector<lock_spec> locks;
    std::vector<irq_spec> irqs;
    std::vector<task_spec> tasks;
    // Checks this scenario is meant to fail (it demonstrates that bug): `klock sim` exits 0 when
    // exactly these fail. Names as in check_result::name (sim.hpp, check_names).
    std::vector<std::string> expect;
    // Marker events with the lock word after every lock operation (the seeds' ticket walk-through).
    bool trace_lock_words = false;
};

const char* to_string(policy p) noexcept;
const char* to_string(lock_type t) noexcept;
const char* to_string(op o) noexcept;

} // namespace klock::sim
