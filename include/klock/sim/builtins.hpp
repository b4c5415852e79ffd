// The simulator's built-in scenarios (docs/sim.md, "Built-in scenarios"): the seeds' stories,
// runnable by name (`klock sim NAME`, `klock sim --list`). A scenario that demonstrates a bug
// lists the check it must fail in scenario::expect; run_result::as_expected() then holds when
// exactly those checks fail.
#pragma once

#include <span>
#include <string_view>

#include <klock/sim/scenario.hpp>

namespace klock::sim {

struct builtin {
    const char* name;
    const char* summary; // one line, for --list
    scenario (*make)();
};

std::span<const builtin> builtins() noexcept;
const builtin* find_builtin(std::string_view name) noexcept;

// The main job's pair: the seeds/003 priority inversion with a plain mutex and with an rt_mutex.
inline constexpr const char* main_job_mutex = "priority-inversion-mutex";
inline constexpr const char* main_job_rt_mutex = "priority-inversion-rt_mutex";

} // namespace klock::sim
