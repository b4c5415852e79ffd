// The torture run itself: kernel/locking/locktorture.c's lock_torture_writer / _reader
// threads, its statistics and the torture framework's stutter and shuffle
// (kernel/torture.c), over real threads.
//
// WHAT A RUN DOES
//   Writers loop: maybe take nested locks, take the main lock, check nobody else holds it,
//   hold it for the type's delay, release, release the nested locks, maybe pause (stutter).
//   Readers (reader-writer types) loop the same way on the read side. The calling thread is
//   the controller: it toggles the stutter pause, shuffles the threads between CPUs, prints
//   the statistics every --stat-interval, watches every thread's progress, and after
//   --duration stops and joins them.
//
// THE CHECKS (each one a FAILURE)
//   - exclusion, as the kernel: a writer that finds lock_is_write_held set or readers inside,
//     and a reader that finds a writer inside, count n_lock_fail.
//   - the critical section's data: writers also write plain (non-atomic) data under the lock -
//     their id, and a counter - and check the id is still theirs when they leave; readers check
//     the counter did not move under them; at the end the counter must equal the number of
//     write acquisitions (a lost update is an overlap the flags missed, or a lock without
//     acquire/release ordering). Each nested lock gets the same id and counter checks. Under TSan these
//     plain accesses are what exposes a lock that does not order its critical sections.
//   - progress: a thread whose loop has not gone round for config::stall_bound() (outside a
//     stutter pause) is reported by role, index and where it is stuck, and the run ends early.
//   - stopping: a thread that has not stopped within config::join_bound() after the end is
//     reported and left running (run() returns; the command then _exit()s).
//   - klock's own reports (BUG: splats, lockdep) issued during the run. The spinlock lockup
//     report's threshold is raised to the stall bound for the run: a user-space spinlock holder
//     can be preempted, so the kernel's 1 s would misfire on a loaded machine, and the stall
//     check covers the same ground.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "torture_ops.hpp"
#include "torture_options.hpp"

namespace klock::tool::torture {

// __torture_print_stats(): "Writes:  Total: %lld  Max/Min: %ld/%ld %s  Fail: %ld %s\n" ("Reads "
// for readers), "???" when max / 2 > min, "!!!" when any thread failed. Fail counts failures
// (the kernel prints 0 or 1).
std::string stats_line(bool write, std::span<const long> acquired, std::span<const long> fails);

struct run_state;

struct result {
    bool success = false;
    long writes = 0;
    long reads = 0;
    long write_fails = 0;
    long read_fails = 0;
    int stalls = 0;            // threads reported for lack of progress
    long lost_updates = 0;     // critical-section counters that disagree with the acquisitions
    std::uint64_t reports = 0; // klock reports during the run
    int left_running = 0;      // threads that did not stop in time
    std::shared_ptr<run_state> state;

    // Waits until every torture thread of this run has returned; true if all did in time.
    bool wait_stopped(double timeout_s) const;
};

// Runs one torture of `ops` with `cfg` (thread counts resolved), printing the start line,
// stats lines, findings and the end line to `out`.
result run(const config& cfg, std::unique_ptr<lock_ops> ops, std::FILE* out);

} // namespace klock::tool::torture
