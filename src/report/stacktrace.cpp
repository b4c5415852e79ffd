// Stack capture with the unwinder that glibc's backtrace() uses; symbols through dladdr and
// the C++ demangler. Functions the dynamic symbol table does not export print as module+offset,
// which addr2line resolves (file:line symbolization is lockdep's stack depot's job).
#include <klock/detail/stacktrace.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <dlfcn.h>
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
    char line[512];
    for (int i = 0; i < trace.depth; ++i) {
        // A return address points after the call; look up the call instruction itself.
        auto ip = reinterpret_cast<std::uintptr_t>(trace.ip[i]);
        Dl_info info{};
        if (::dladdr(reinterpret_cast<void*>(ip - 1), &info) == 0) {
            std::snprintf(line, sizeof line, " 0x%" PRIxPTR "\n", ip);
            out += line;
            continue;
        }
        const char* module = info.dli_fname ? info.dli_fname : "?";
        if (const char* slash = __builtin_strrchr(module, '/'))
            module = slash + 1;
        if (info.dli_sname != nullptr) {
            int status = 0;
            char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
            const char* name = status == 0 && demangled ? demangled : info.dli_sname;
            std::snprintf(line, sizeof line, " %s+0x%" PRIxPTR " [%s]\n", name,
                ip - reinterpret_cast<std::uintptr_t>(info.dli_saddr), module);
            std::free(demangled);
        } else {
            std::snprintf(line, sizeof line, " %s+0x%" PRIxPTR "\n", module,
                ip - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
        }
        out += line;
    }
    return out;
}

} // namespace klock::detail
