// Stack capture with the unwinder that glibc's backtrace() uses; symbolized by
// klock/detail/symbolize.hpp only when printed.
#include <klock/detail/stacktrace.hpp>
#include <klock/detail/symbolize.hpp>

#include <cstdint>
#include <execinfo.h>

namespace klock::detail {

stack_trace capture_stack(int skip) noexcept
{
    stack_trace t;
    void* buf[stack_trace::max_depth + 8];
    int n = ::backtrace(buf, stack_trace::max_depth + 8);
    int first = 1 + skip; // leave out capture_stack itself
    for (int i = first; i < n && t.depth < stack_trace::max_depth; ++i)
        t.ip[t.depth++] = buf[i];
    return t;
}

std::string format_stack(const stack_trace& trace)
{
    std::string out = "Call Trace:\n";
    for (int i = 0; i < trace.depth; ++i)
        out += " " + format_symbol(reinterpret_cast<std::uintptr_t>(trace.ip[i])) + "\n";
    return out;
}

} // namespace klock::detail
