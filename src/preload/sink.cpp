// Where `klock run` reports go: the report file (KLOCK_REPORT_FILE, default stderr), the JSON file
// (KLOCK_LOCKDEP_JSON, one object per line), through the suppression rules (KLOCK_SUPPRESS), and
// optionally abort() after the first one (KLOCK_ABORT_ON_REPORT).
//
// lockdep's reports reach this file through its JSON callback: every lockdep report has a JSON
// object whose "text" member is the report's text. The engine's own text output is sent to
// /dev/null, so that each report is written once, here, after the suppression rules had their
// say. The interposers' misuse reports are built here in the layout of
// include/klock/detail/lock_debug.hpp and take the same way out.
//
// Writing uses write(2) under a spinlock that remembers its holder: a report made inside a signal
// handler that interrupted a report on the same thread is written without waiting (the two may
// interleave) rather than deadlocking.
#include "preload.hpp"

#include <klock/detail/json.hpp>
#include "suppress.hpp"

#include <klock/detail/stacktrace.hpp>
#include <klock/report.hpp>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <vector>

namespace klock::preload {

namespace {

int g_text_fd = 2;
int g_json_fd = -1;
std::vector<suppress::rule>* g_rules = nullptr;
std::atomic<int> g_sink_owner{0}; // tid holding the sink, 0: free
std::atomic<std::uint64_t> g_suppressed{0};

constexpr unsigned SEEN_SIZE = 4096;
std::uint64_t g_seen[SEEN_SIZE]; // misuse reports made (hash of what + site), under the sink lock

class sink_guard {
public:
    sink_guard() noexcept
    {
        const int me = current_tid();
        int expected = 0;
        while (!g_sink_owner.compare_exchange_weak(expected, me, std::memory_order_acquire)) {
            if (expected == me)
                return; // re-entered from a signal handler on this thread
            expected = 0;
            ::sched_yield();
        }
        owner_ = true;
    }
    ~sink_guard()
    {
        if (owner_)
            g_sink_owner.store(0, std::memory_order_release);
    }
    sink_guard(const sink_guard&) = delete;
    sink_guard& operator=(const sink_guard&) = delete;

private:
    bool owner_ = false;
};

void write_all(int fd, const char* p, std::size_t n)
{
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

int open_append(const char* path) { return ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); }

// The "text" member of a lockdep report's JSON object (the last member the engine writes).
std::string json_text(std::string_view json)
{
    const std::size_t at = json.rfind(",\"text\":\"");
    if (at == std::string_view::npos)
        return {};
    std::string out;
    for (std::size_t i = at + 9; i < json.size(); ++i) {
        const char c = json[i];
        if (c == '"')
            break;
        if (c != '\\' || i + 1 >= json.size()) {
            out += c;
            continue;
        }
        const char e = json[++i];
        switch (e) {
        case 'n':
            out += '\n';
            break;
        case 't':
            out += '\t';
            break;
        case 'r':
            out += '\r';
            break;
        case 'u':
            if (i + 4 < json.size()) {
                out += static_cast<char>(std::strtol(std::string(json.substr(i + 1, 4)).c_str(), nullptr, 16));
                i += 4;
            }
            break;
        default:
            out += e;
        }
    }
    return out;
}

void lockdep_json(std::string_view json, void*)
{
    tool_scope scope;
    try {
        emit(json_text(json), json);
    } catch (...) { }
}

void load_rules(const char* path)
{
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        std::string msg
            = std::string("klock: cannot read suppression file ") + path + ": " + std::strerror(errno) + "\n";
        write_all(2, msg.data(), msg.size());
        return;
    }
    std::string text;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    auto* rules = new std::vector<suppress::rule>;
    suppress::error err;
    if (!suppress::parse(text, *rules, err)) {
        // `klock run` checks the file first; this is a program started some other way.
        std::string msg = std::string("klock: ") + path + ":" + std::to_string(err.line) + ": " + err.message
            + " (suppressions ignored)\n";
        write_all(2, msg.data(), msg.size());
        delete rules;
        return;
    }
    g_rules = rules;
}

bool first_time(std::uint64_t key)
{
    key |= 1;
    for (unsigned i = static_cast<unsigned>(key % SEEN_SIZE), n = 0; n < SEEN_SIZE; ++n, i = (i + 1) % SEEN_SIZE) {
        if (g_seen[i] == key)
            return false;
        if (g_seen[i] == 0) {
            g_seen[i] = key;
            return true;
        }
    }
    return false; // full: enough is enough
}

std::string task_comm(int tid)
{
    if (tid == current_tid())
        return current_comm();
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "?";
    char buf[32] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!s.empty() && s.back() == '\n')
        s.pop_back();
    return s.empty() ? "?" : s;
}

} // namespace

void sink_init() noexcept
{
    const config& c = g_config;
    if (c.report_file != nullptr) {
        const int fd = open_append(c.report_file);
        if (fd >= 0)
            g_text_fd = fd;
    }
    if (c.json_file != nullptr)
        g_json_fd = open_append(c.json_file);
    if (c.suppress_file != nullptr)
        load_rules(c.suppress_file);
    // lockdep's text goes nowhere: each report comes here once, through the JSON callback.
    klock::set_report_file("/dev/null");
    lockdep::set_json_file(nullptr);
    lockdep::set_json_callback(lockdep_json, nullptr);
}

void sink_atfork_prepare() noexcept
{
    int expected = 0;
    const int me = current_tid();
    while (!g_sink_owner.compare_exchange_weak(expected, me, std::memory_order_acquire)) {
        expected = 0;
        ::sched_yield();
    }
}

void sink_atfork_release() noexcept { g_sink_owner.store(0, std::memory_order_release); }

void emit(std::string_view text, std::string_view json) noexcept
{
    tool_scope scope;
    try {
        if (g_rules != nullptr && suppress::matches(*g_rules, text)) {
            g_suppressed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        {
            sink_guard g;
            write_all(g_text_fd, text.data(), text.size());
            if (text.empty() || text.back() != '\n')
                write_all(g_text_fd, "\n", 1);
            if (g_json_fd >= 0) {
                std::string line(json);
                line += '\n';
                write_all(g_json_fd, line.data(), line.size());
            }
        }
    } catch (...) { }
    if (g_config.abort_on_report)
        std::abort();
}

void emit_raw(std::string_view text) noexcept
{
    tool_scope scope;
    sink_guard g;
    write_all(g_text_fd, text.data(), text.size());
}

void misuse(const char* what, const void* lock, int owner_tid, const record* rec, std::uintptr_t ip) noexcept
{
    tool_scope scope;
    {
        sink_guard g;
        std::uint64_t key = reinterpret_cast<std::uintptr_t>(what) * 0x9e3779b97f4a7c15ull;
        key ^= ip != 0 ? ip : reinterpret_cast<std::uintptr_t>(lock);
        if (!first_time(key * 0x100000001b3ull))
            return;
    }
    try {
        const int me = current_tid();
        const int cpu = ::sched_getcpu();
        std::string text;
        char buf[512];
        std::snprintf(buf, sizeof buf, "BUG: %s on CPU#%d, %s/%d\n", what, cpu, current_comm(), me);
        text += buf;
        std::string owner_json = "null";
        if (owner_tid != 0) {
            const std::string oc = task_comm(owner_tid);
            std::snprintf(
                buf, sizeof buf, " lock: %p, .owner: %s/%d, .owner_cpu: %d\n", lock, oc.c_str(), owner_tid, -1);
            owner_json = "{\"comm\":" + klock::detail::json_quote(oc) + ",\"pid\":" + std::to_string(owner_tid) + "}";
        } else {
            std::snprintf(buf, sizeof buf, " lock: %p, .owner: <none>/-1, .owner_cpu: -1\n", lock);
        }
        text += buf;
        const char* cls = rec != nullptr && rec->map.name != nullptr ? rec->map.name : "?";
        text += std::string(" class: ") + cls + "\n";
        // The stack from the interposer outwards (the frames of this library above it are noise).
        klock::detail::stack_trace t = klock::detail::capture_stack(0);
        int first = 0;
        while (first + 1 < t.depth && in_self_ip(reinterpret_cast<std::uintptr_t>(t.ip[first + 1])))
            ++first;
        klock::detail::stack_trace trimmed;
        for (int i = first; i < t.depth; ++i)
            trimmed.ip[trimmed.depth++] = t.ip[i];
        const std::string stack = klock::detail::format_stack(trimmed);
        text += stack;
        std::string frames = "[";
        std::string_view sv = stack;
        sv.remove_prefix(std::min(sv.size(), sv.find('\n') + 1)); // "Call Trace:"
        for (int i = 0; !sv.empty(); ++i) {
            const std::size_t nl = sv.find('\n');
            frames += (i != 0 ? "," : "") + klock::detail::json_quote(suppress::trim(sv.substr(0, nl)));
            sv = nl == std::string_view::npos ? std::string_view() : sv.substr(nl + 1);
        }
        frames += "]";
        char addr[32];
        std::snprintf(addr, sizeof addr, "\"%p\"", lock);
        std::string json = "{\"type\":\"lock_bug\",\"title\":" + klock::detail::json_quote(std::string("BUG: ") + what)
            + ",\"task\":{\"comm\":" + klock::detail::json_quote(current_comm()) + ",\"pid\":" + std::to_string(me)
            + ",\"cpu\":" + std::to_string(cpu) + "},\"lock\":{\"address\":" + addr
            + ",\"class\":" + klock::detail::json_quote(cls) + "},\"owner\":" + owner_json + ",\"stack\":" + frames
            + ",\"text\":" + klock::detail::json_quote(text) + "}";
        emit(text, json);
    } catch (...) { }
}

std::uint64_t suppressed_count() noexcept { return g_suppressed.load(std::memory_order_relaxed); }

} // namespace klock::preload
