// JSON text for klock's machine-readable outputs (lockdep reports, klock bench, klock sim's
// trace, klock run's sink): one quoting function, so every output escapes alike.
#pragma once

#include <string>
#include <string_view>

namespace klock::detail {

// `s` as a JSON string literal, quotes included: ", \ and control characters escaped (\n, \t,
// \r by name, the rest as \u00XX). Bytes >= 0x80 pass through (UTF-8 stays UTF-8).
std::string json_quote(std::string_view s);

} // namespace klock::detail
