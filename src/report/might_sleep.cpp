// The "sleeping function called from invalid context" splat (kernel/sched/core.c).
#include <klock/might_sleep.hpp>

#include <klock/detail/stacktrace.hpp>
#include <klock/report.hpp>

#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace klock::detail {

void report_sleep_in_atomic(const sleep_in_atomic_info& in)
{
    // One report per call site.
    static std::mutex lock;
    static auto* seen = new std::set<std::pair<std::string, unsigned>>;
    {
        std::lock_guard<std::mutex> g(lock);
        if (!seen->emplace(in.file, in.line).second)
            return;
    }
    char buf[768];
    std::string text;
    std::snprintf(buf, sizeof buf, "BUG: sleeping function called from invalid context at %s:%u\n", in.file, in.line);
    text += buf;
    std::snprintf(buf, sizeof buf, "in_atomic(): %d, irqs_disabled(): %d, non_block: 0, pid: %d, name: %s\n",
        in.preempt_count != 0 ? 1 : 0, in.irqs_disabled ? 1 : 0, in.pid, in.comm);
    text += buf;
    std::snprintf(buf, sizeof buf, "preempt_count: %x, expected: 0\n", in.preempt_count);
    text += buf;
    std::snprintf(buf, sizeof buf, "CPU: %d PID: %d Comm: %s\n", in.cpu, in.pid, in.comm);
    text += buf;
    text += format_stack(capture_stack(1));
    report_emit(std::move(text));
}

} // namespace klock::detail
