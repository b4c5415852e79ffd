// Exploration: run a scenario under many schedules, looking for one that fails a check
// (docs/sim.md, "Exploration"). The machine asks a schedule_chooser (sim.hpp) at every
// scheduling point where more than one CPU could execute the next step; CPUs then run at
// arbitrary relative speeds, and every interleaving of their atomic steps is a schedule.
//
//   random  each choice uniformly at random (seeded).
//   pct     probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random distinct
//           priorities for the CPUs, the highest-priority one runs, and at depth-1 random
//           points the running CPU drops to the lowest priority. Finds a bug of depth d with
//           probability >= 1/(n k^(d-1)) per run.
//   dfs     systematic depth-first search of all schedules with at most `preemption_bound`
//           preemptions (switching away from a CPU that could have continued; CHESS's
//           bound); switches forced by a CPU blocking, spinning or finishing are free.
//
// A schedule is written as its deviations from the non-preemptive default (continue the CPU
// that ran last, else the lowest-numbered one): choice point index and CPU. A replay token is
// that list ("k1:12.1,40.0"); replaying it reproduces the run exactly. On a failure the
// schedule is minimized: deviations are dropped one at a time for as long as the same check
// still fails.
//
// Exploration runs with park_after = 1: a spin that re-reads words nobody wrote parks at once
// (ARM's wfe), so that a spinning CPU does not multiply the choice points. Spin loops bounded
// by an iteration count then count iterations per store rather than per unit of time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <klock/sim/scenario.hpp>
#include <klock/sim/sim.hpp>
#include <klock/sim/trace.hpp>

namespace klock::sim {

enum class strategy : std::uint8_t { random, pct, dfs };
const char* to_string(strategy s) noexcept;

struct explore_options {
    strategy how = strategy::random;
    std::uint64_t seed = 1;
    unsigned runs = 1000;          // random, pct: schedules to try; dfs: at most this many (0: no limit)
    unsigned depth = 3;            // pct: the bug depth d
    unsigned preemption_bound = 2; // dfs
    bool minimize = true;
    options base; // run options (planted bug, costs); chooser and park_after are set here
    // Called after each run with (runs done, runs planned; 0 when unknown).
    std::function<void(unsigned, unsigned)> progress;
};

// One deviation from the default schedule: at choice point `point`, run CPU `cpu`.
using schedule = std::vector<std::pair<std::uint64_t, int>>;

struct explore_result {
    unsigned runs = 0;
    bool found = false;          // a run failed a check the scenario does not expect
    bool exhausted = false;      // dfs: every schedule within the bound was run
    std::string check;           // the first failed check of the failing run
    schedule failing;            // the failing schedule (minimized if asked)
    std::size_t unminimized = 0; // deviations before minimization
    std::string token;           // its replay token
    run_result run;              // the failing run, replayed from `failing` (else the last run)
    std::uint64_t steps = 0;     // steps over all runs
};

explore_result explore(const scenario& s, const explore_options& o);

std::string to_token(const schedule& sch);
// False (with `err` set) if the token is malformed.
bool from_token(const std::string& token, schedule& sch, std::string& err);

// Runs the scenario under the given schedule (exploration's run mode).
run_result replay(const scenario& s, const schedule& sch, const options& base = {});

// The first check that failed and is not expected by the scenario ("" if none).
std::string unexpected_failure(const run_result& r);

} // namespace klock::sim
