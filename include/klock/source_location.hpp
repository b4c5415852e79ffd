// The caller's file and line, for reports such as might_sleep()'s "at FILE:LINE".
//
// std::source_location would do, but Clang 14 cannot compile libstdc++ 12's version (it lacks
// __builtin_source_location). __builtin_FILE()/__builtin_LINE() as default arguments work in
// both compilers and, like std::source_location::current(), take the values of the outermost
// call that leaves the argument defaulted.
#pragma once

namespace klock {

class source_location {
public:
    static constexpr source_location current(
        const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) noexcept
    {
        return source_location(file, line);
    }
    constexpr const char* file_name() const noexcept { return file_; }
    constexpr unsigned line() const noexcept { return line_; }

private:
    constexpr source_location(const char* file, unsigned line) noexcept : file_(file), line_(line) { }
    const char* file_;
    unsigned line_;
};

} // namespace klock
