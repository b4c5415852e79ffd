#include <klock/detail/lock_debug.hpp>

#include <klock/detail/stacktrace.hpp>
#include <klock/report.hpp>

#include <cstdio>
#include <string>

namespace klock::detail {

void report_lock_bug(
    std::string_view what, const void* lock, task_desc current, task_desc owner, std::string_view extra)
{
    char buf[512];
    std::string text;
    std::snprintf(buf, sizeof buf, "BUG: %.*s on CPU#%d, %s/%d\n", int(what.size()), what.data(), current.cpu,
        current.comm, current.pid);
    text += buf;
    if (owner.pid != 0)
        std::snprintf(
            buf, sizeof buf, " lock: %p, .owner: %s/%d, .owner_cpu: %d\n", lock, owner.comm, owner.pid, owner.cpu);
    else
        std::snprintf(buf, sizeof buf, " lock: %p, .owner: <none>/-1, .owner_cpu: -1\n", lock);
    text += buf;
    if (!extra.empty()) {
        text.append(extra);
        if (text.back() != '\n')
            text.push_back('\n');
    }
    text += format_stack(capture_stack(2));
    report_emit(std::move(text));
}

} // namespace klock::detail
