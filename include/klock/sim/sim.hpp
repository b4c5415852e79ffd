// klock::sim: the deterministic multi-CPU kernel simulator (docs/sim.md).
//
//   klock::sim::scenario s = ...;                 // scenario.hpp: CPUs, locks, IRQs, task scripts
//   klock::sim::run_result r = klock::sim::run(s); // trace.hpp: events, tasks, checks, lock summaries
//
// A run is a pure function of (scenario, options): the same inputs give the same event log,
// byte for byte. The machine (machine.hpp) runs klock's real lock templates over the simulator's
// Env (env.hpp) on simulated CPUs with a scheduler, interrupts and virtual time, and checks every
// run for mutual exclusion, deadlock, lost wakeups, soft lockups, priority inversion, task
// switches inside "no task switch" regions, stack overflow and klock's own misuse reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <klock/sim/scenario.hpp>
#include <klock/sim/trace.hpp>

namespace klock::sim {

// Planted bugs (fault injection), for proving that the checks and the explorer find real bugs.
// Each imitates a broken lock without touching the lock code: the machine bends the effect of
// one Env operation.
enum class fault : std::uint8_t {
    none,
    mutex_lost_wakeup, // a mutex unlock's futex_wake wakes nobody (the kernel's forgotten wake_up_q)
    mutex_no_handoff,  // a mutex's MUTEX_FLAG_HANDOFF is never set (anti-starvation gone)
    rt_mutex_no_boost, // the PI futex queues waiters but never boosts the owner
    ticket_skip,       // a ticket unlock advances `owner` by two: one ticket is never served
    ticket_no_next,    // taking a ticket does not advance `next`: two tasks hold the same ticket
};
const char* to_string(fault f) noexcept;

// The scheduling-decision hook: the machine asks it whenever more than one CPU may execute the
// next step. Exploration strategies (explore.hpp) implement it.
class schedule_chooser {
public:
    virtual ~schedule_chooser() = default;
    // true: every scheduling point is a choice among all CPUs able to run (exploration: CPUs run
    // at arbitrary relative speeds); false: only CPUs tied at the smallest virtual clock.
    virtual bool every_step() const noexcept { return false; }
    // candidates: CPU numbers, ascending (size >= 2). last: the CPU that executed the previous
    // step (-1: none). Returns an index into candidates.
    virtual std::size_t choose(std::span<const int> candidates, int last) = 0;
};

struct options {
    std::uint64_t seed = 0; // 0: the scenario's seed. Breaks ties between CPUs at equal clocks.
    unsigned cpus = 0;      // > 0: overrides scenario::cpus
    // Virtual cost of each kind of step, ns.
    std::uint32_t atomic_ns = 10;   // an access to a lock word
    std::uint32_t relax_ns = 20;    // cpu_relax()
    std::uint32_t futex_ns = 200;   // a futex call (the system call)
    std::uint32_t switch_ns = 1000; // a context switch
    std::uint32_t irq_ns = 500;     // interrupt entry + exit
    // A spin with no store anywhere for this many cpu_relax() in a row is parked (env.hpp), and
    // then re-runs one iteration every park_period_ns.
    std::uint32_t park_after = 8192;
    std::uint64_t park_period_ns = 50000;
    // Priority inversions shorter than this are bounded ones: recorded, not a failure.
    std::uint64_t inversion_threshold_ns = 1000000;
    // The kernel's softlockup_panic: end the run at the first soft lockup report.
    bool stop_on_soft_lockup = true;
    // Marker events with the lock word after every lock operation (all lock types).
    bool trace_lock_words = false;
    schedule_chooser* chooser = nullptr;
    fault planted = fault::none;
    std::uint64_t max_steps = 0; // > 0: stop the run after this many steps (a marker says so)
};

// How deeply loop steps may nest.
inline constexpr int max_loop_nesting = 16;

// Checks a scenario for what the machine cannot run (an unknown lock index, a read lock on a
// spinlock, unbalanced loops, ...). Returns "" when it can run, else the first problem.
std::string validate(const scenario& s);

// Runs the scenario to the end: every task exited, nothing can move any more (deadlock, lost
// wakeup), the time limit, or a fatal check (stack overflow; soft lockup with
// stop_on_soft_lockup). Throws std::invalid_argument if validate() finds a problem.
run_result run(const scenario& s, const options& o = {});

// The names of the checks, as in check_result::name.
inline constexpr const char* check_names[] = {
    "mutual exclusion",
    "deadlock",
    "lost wakeup",
    "soft lockup",
    "priority inversion",
    "no task switch",
    "stack overflow",
    "lock bug",
    "starvation",
    "lockdep",
};

// The result's check of that name (null if absent).
const check_result* find_check(const run_result& r, const char* name) noexcept;

} // namespace klock::sim
