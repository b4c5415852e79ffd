// The scenario text format (docs/sim.md): parse a scenario file into klock::sim::scenario.
// Errors name the file, line and column of the problem.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include <klock/sim/scenario.hpp>

namespace klock::sim {

struct parse_error {
    std::string file;
    unsigned line = 0;
    unsigned column = 0;
    std::string message;
    // "file:line:column: error: message"
    std::string what() const;
};

std::optional<scenario> parse_scenario(std::string_view text, std::string_view file_name, parse_error& err);
std::optional<scenario> load_scenario_file(const std::string& path, parse_error& err);

// Prints a scenario in the text format (canonical spelling, defaults left out), so that
// parse_scenario(write_scenario(s)) gives back `s` (line and column fields aside): built-in
// scenarios can be dumped, edited and loaded again.
void write_scenario(const scenario& s, std::ostream& out);

} // namespace klock::sim
