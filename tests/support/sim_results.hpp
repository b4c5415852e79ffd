// What the simulator tests print when a run is not what they expected: the stop reason and every
// failed check's report.
#pragma once

#include <klock/sim/trace.hpp>

#include <string>

namespace klock::test {

inline std::string failures(const klock::sim::run_result& r)
{
    std::string s = "stop: " + r.stop_reason + "\n";
    for (const klock::sim::check_result& c : r.checks)
        if (!c.passed)
            s += "FAILED " + c.name + ": " + c.report;
    return s;
}

} // namespace klock::test
