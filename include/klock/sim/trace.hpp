// What a simulator run leaves behind: the event log in virtual time, the tasks and locks it
// names, per-task accounting and the verdict of each check. The machine writes it; the output
// writers (ftrace-style text, Chrome/Perfetto JSON, SVG timeline, the summary) only read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <klock/sim/scenario.hpp>

namespace klock::sim {

enum class event_kind : std::uint8_t {
    sched_switch,   // cpu: task -> task2 (prev_state in `state`)
    sched_wakeup,   // task woken (task2: the waker, -1 if none); cpu = target CPU
    prio_change,    // task's effective prio: prio -> prio2 (PI boost / deboost)
    lock_acquire,   // task starts acquiring lock (trylock: value = 1)
    lock_contended, // task found lock held and waits (task2: the owner if known)
    lock_acquired,  // task holds lock
    lock_release,   // task releases lock
    irq_entry,      // irq handler `irq` starts on cpu
    irq_exit,
    softirq_entry,
    softirq_exit,
    task_exit,
    marker,         // free text in `text` (a check's report, a scenario note)
};

struct event {
    std::uint64_t t_ns = 0;
    event_kind kind = event_kind::marker;
    int cpu = 0;
    int task = -1;  // index into run_result::tasks (-1: none / idle)
    int task2 = -1; // second task (switch target, waker, owner)
    int lock = -1;  // index into scenario::locks
    int irq = -1;   // index into scenario::irqs
    int prio = 0;   // kernel prio numbering for sched_switch/prio_change (see task_record::prio)
    int prio2 = 0;
    std::int64_t value = 0; // trylock result, prev_state code, ...
    char state = 'R';       // sched_switch prev_state: R, S (sleeping), D (blocked on a lock), X (dead)
    std::string text;
    // lock_acquired: the lock word after the operation; lock_release: before it. A mutex's owner
    // word shows the owner's pid in place of its task pointer: pid << 3 | MUTEX_FLAG_*.
    std::uint64_t word = 0;
};

// A simulated task as the outputs name it. The idle tasks are included (pid 0, "swapper/N").
struct task_record {
    std::string comm;
    int pid = 0;
    int policy_prio = 0; // the scenario's priority (1..99, 0 for SCHED_OTHER)
    int prio = 120;      // the kernel's internal prio: 99 - rt_priority for RT, 120 + nice otherwise
    bool idle = false;
    // accounting, virtual ns
    std::uint64_t run_ns = 0;     // on a CPU
    std::uint64_t wait_ns = 0;    // runnable, not on a CPU
    std::uint64_t blocked_ns = 0; // sleeping on a lock or a timer
    std::uint64_t max_lock_wait_ns = 0;
    std::size_t stack_size = 0; // bytes above STACK_END_MAGIC
    std::size_t stack_used = 0; // deepest use seen (fill-pattern high-water mark)
    int cpu = -1;               // the CPU it last ran on
    bool exited = false;        // ran its script to the end
};

struct check_result {
    std::string name;  // one of klock::sim::check_names (sim.hpp): "mutual exclusion", "deadlock", ...
    bool passed = true;
    std::string report; // the full report text when it failed (kernel-style splat)
    std::uint64_t t_ns = 0;
};

struct lock_summary {
    std::uint64_t acquisitions = 0;
    std::uint64_t contentions = 0;
    std::uint64_t max_wait_ns = 0;
    int max_wait_task = -1;
    std::uint64_t word = 0; // the lock word at the end of the run
};

struct run_result {
    scenario scn;
    std::vector<task_record> tasks;
    std::vector<event> events;
    std::vector<check_result> checks;
    std::vector<lock_summary> locks; // parallel to scn.locks
    std::uint64_t end_ns = 0;
    std::uint64_t steps = 0; // simulated atomic steps (scheduling points) executed
    std::uint64_t seed = 0;  // the seed the run used
    std::string stop_reason; // "all tasks exited", "time limit", "deadlock", ...
    bool passed() const noexcept
    {
        for (const check_result& c : checks)
            if (!c.passed)
                return false;
        return true;
    }
    // The failed checks are exactly the ones the scenario expects (scenario::expect): true for a
    // correct scenario that passes and for a demonstration that shows its bug.
    bool as_expected() const
    {
        for (const check_result& c : checks) {
            bool expected = false;
            for (const std::string& e : scn.expect)
                expected = expected || e == c.name;
            if (c.passed == expected)
                return false;
        }
        return true;
    }
};

} // namespace klock::sim
