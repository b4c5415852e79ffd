// Stack traces for reports: captured as raw return addresses (cheap), symbolized only when a
// report is printed.
#pragma once

#include <string>

namespace klock::detail {

struct stack_trace {
    static constexpr int max_depth = 32;
    void* ip[max_depth];
    int depth = 0;
};

// Capture the caller's stack, leaving out `skip` innermost frames of klock itself.
stack_trace capture_stack(int skip = 0) noexcept;

// The kernel's "Call Trace:" block: one " symbol+0xoff (module)" line per frame.
std::string format_stack(const stack_trace& trace);

} // namespace klock::detail
