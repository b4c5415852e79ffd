// Where klock's reports go.
//
// Every report (a might_sleep splat, a lock-misuse BUG, later lockdep's warnings) is one
// block of text handed to report_emit(). It goes to stderr unless the program chose a file
// (set_report_file) or the environment does (KLOCK_REPORT_FILE) - never to stdout, so reports
// do not mix with the program's output. A report_capture, while alive, collects the reports
// instead of printing them; tests use it to check that a misuse was reported.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace klock {

// nullptr or "" restores stderr. Returns false (and keeps the old destination) if the file
// cannot be opened for appending.
bool set_report_file(const char* path);

// Reports emitted since the program started (captured ones included).
std::uint64_t report_count() noexcept;

class report_capture {
public:
    report_capture();
    ~report_capture();
    report_capture(const report_capture&) = delete;
    report_capture& operator=(const report_capture&) = delete;

    std::vector<std::string> reports() const;
    std::size_t count() const;
    // True if some captured report contains `needle`.
    bool contains(std::string_view needle) const;
};

namespace detail {
void report_emit(std::string text);
} // namespace detail

} // namespace klock
