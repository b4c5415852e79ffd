// Internal to the output writers: a run's event log turned into spans.
//
// The machine logs instants (a switch, an acquire, an irq entry); the JSON trace and the SVG
// picture draw intervals (a task on a CPU, a lock held, a handler running). build_timeline()
// pairs the instants once, so both pictures agree on what happened:
//   sched_switch          closes the previous task's run span on that CPU, opens the next one's
//   irq_entry/irq_exit    a handler span on the CPU (nested entries pair last-in first-out)
//   lock_contended        opens a wait span (task, lock), closed by lock_acquired
//   lock_acquired         opens a hold span, closed by the matching lock_release
//   prio_change           starts a priority segment of the task (boosted while != its base)
// Whatever is still open at the end of the run is closed at run_result::end_ns.
#pragma once

#include <klock/sim/trace.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace klock::sim::detail {

struct span {
    std::uint64_t t0 = 0;
    std::uint64_t t1 = 0;
    int cpu = -1;
    int task = -1; // holds and waits: -1 in interrupt context (then `irq` and `soft` say which)
    int lock = -1;
    int irq = -1;      // index into scenario::irqs; -1: the timer tick
    bool soft = false; // a softirq rather than a hardirq
    bool read = false; // holds and waits: a reader
};

struct prio_segment {
    std::uint64_t t0 = 0;
    std::uint64_t t1 = 0;
    int task = -1;
    int from = 0; // the previous effective prio
    int prio = 0; // the effective prio during the segment
};

struct instant {
    std::uint64_t t = 0;
    int cpu = -1;
    int task = -1;
    int task2 = -1;
};

struct timeline {
    std::uint64_t end = 0;
    std::vector<span> runs; // idle tasks left out
    std::vector<span> irqs;
    std::vector<span> holds;
    std::vector<span> waits;
    std::vector<prio_segment> prios; // only tasks whose prio changed; segments where prio != base
    std::vector<instant> wakeups;
};

// The run's end: end_ns, or the last event if the machine left end_ns at 0.
std::uint64_t run_end(const run_result& run);

timeline build_timeline(const run_result& run);

// Names as the outputs print them.
bool is_idle(const run_result& run, int task);
std::string task_label(const run_result& run, int task); // comm, or "idle"/"?"
std::string lock_label(const run_result& run, int lock);
std::string irq_label(const run_result& run, int irq);            // scenario name, "timer" for -1
std::string irq_span_label(const run_result& run, const span& s); // "irq eth0", "softirq tasklet"

// "fifo 90", "rr 5", "other", "other nice 5": the scenario's policy of a task (by name).
std::string policy_label(const run_result& run, int task);

// Fixed-point milliseconds with three decimals ("12.345"), and microseconds ("12345.678").
std::string ms3(std::uint64_t ns);
std::string us3(std::uint64_t ns);

} // namespace klock::sim::detail
