// Writers for a simulator run (klock::sim::run_result): what a person reads or opens.
#pragma once

#include <ostream>
#include <span>

#include <klock/sim/trace.hpp>

namespace klock::sim {

// ftrace-style text (the format of /sys/kernel/tracing/trace: sched_switch, sched_wakeup,
// lock events, irq_handler_entry/exit, sched_pi_setprio) that Perfetto opens.
void write_ftrace(const run_result& run, std::ostream& out);
// Chrome trace-event JSON (Perfetto's and chrome://tracing's legacy JSON format).
void write_trace_json(const run_result& run, std::ostream& out);
// A self-contained SVG timeline: one row per CPU, time across, a colour per task, lock hold
// spans, priority boosts. Several runs (e.g. mutex vs rt_mutex) are stacked in one picture.
void write_svg_timeline(std::span<const run_result* const> runs, std::ostream& out);
// The summary on stdout: per task run/wait/blocked time, worst wait per lock, checks.
void write_summary(const run_result& run, std::ostream& out);
// Two summaries in two columns, titled (the main job: mutex vs rt_mutex).
void write_summaries_side_by_side(const run_result& left, const run_result& right, std::ostream& out);

} // namespace klock::sim
