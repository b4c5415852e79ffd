// The stack depot: raw return addresses, captured only on slow paths (a new dependency, a new
// usage bit, a report), stored once per distinct trace, and symbolized only when a report or a
// dump prints them.
//
// Entries live in one array sized by MAX_STACK_TRACE_ENTRIES (the limit counts stored addresses,
// as the kernel's does); each distinct trace is a record {hash, offset, length} found through a
// chained hash table, so the thousands of dependencies recorded from one call site share one copy.
// All of it is changed under the graph lock; records are never moved, so a handle (record number
// + 1) stays valid until reset().
//
// Traces start at the frame that called into lockdep (the task's entry_ip), so the engine's own
// frames never show up in reports.
#include "internal.hpp"

#include <klock/detail/symbolize.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <link.h>

namespace klock::lockdep::detail {

namespace {

constexpr unsigned MAX_FRAMES = 32;
constexpr unsigned HASH_BUCKETS = 16384;

struct trace_record {
    std::uint32_t hash;
    std::uint32_t offset;
    std::uint32_t n;
    std::uint32_t next; // next record in the bucket, +1
};

// Static, like everything lockdep stores, so that saving a trace never allocates (it may run in
// an interrupt: a signal handler in the os world).
constexpr unsigned MAX_TRACE_RECORDS = 65536;

void* g_trace_entries[MAX_STACK_TRACE_ENTRIES];
unsigned g_nr_entries = 0;

struct depot {
    trace_record records[MAX_TRACE_RECORDS];
    unsigned nr_records = 0;
    std::uint32_t buckets[HASH_BUCKETS] = {};
};
depot g_depot;

depot& the_depot() { return g_depot; }

std::uint32_t trace_hash(void* const* ip, unsigned n)
{
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < n; ++i) {
        h ^= reinterpret_cast<std::uintptr_t>(ip[i]);
        h *= 0x100000001b3ull;
    }
    return static_cast<std::uint32_t>(h ^ (h >> 32));
}

// glibc's backtrace() loads the unwinder (dlopen, malloc) on its first call: make that call early,
// from an ordinary context, rather than in whatever context first needs a stack.
const int g_unwinder_loaded = [] {
    void* one[1];
    return ::backtrace(one, 1);
}();

// Capture, and drop the frames above the caller of the lockdep entry point.
unsigned capture(const task_state& ts, void** out, unsigned max)
{
    if (ts.host != nullptr) {
        std::uintptr_t ips[MAX_FRAMES];
        const unsigned n = ts.host->stack(*ts.host, ips, max < MAX_FRAMES ? max : MAX_FRAMES);
        for (unsigned i = 0; i < n; ++i)
            out[i] = reinterpret_cast<void*>(ips[i]);
        return n;
    }
    (void)g_unwinder_loaded;
    void* buf[MAX_FRAMES + 16];
    const int got = ::backtrace(buf, MAX_FRAMES + 16);
    int first = 1; // capture() itself
    if (ts.entry_ip != 0) {
        for (int i = 1; i < got; ++i) {
            if (reinterpret_cast<std::uintptr_t>(buf[i]) == ts.entry_ip) {
                first = i;
                break;
            }
        }
    }
    unsigned n = 0;
    for (int i = first; i < got && n < max; ++i)
        out[n++] = buf[i];
    return n;
}

} // namespace

std::uint32_t save_trace_locked(const task_state& ts, const thread_info& ti) noexcept
{
    void* frames[MAX_FRAMES];
    const unsigned n = capture(ts, frames, MAX_FRAMES);
    const std::uint32_t h = trace_hash(frames, n);
    depot& d = the_depot();
    for (std::uint32_t r = d.buckets[h % HASH_BUCKETS]; r != 0; r = d.records[r - 1].next) {
        const trace_record& rec = d.records[r - 1];
        if (rec.hash != h || rec.n != n)
            continue;
        bool same = true;
        for (unsigned i = 0; i < n && same; ++i)
            same = g_trace_entries[rec.offset + i] == frames[i];
        if (same)
            return r;
    }
    if (g_nr_entries + n >= graph().lim.stack_trace_entries || d.nr_records >= MAX_TRACE_RECORDS) {
        limit_exhausted_locked(ts, ti, "BUG: MAX_STACK_TRACE_ENTRIES too low!");
        return 0;
    }
    d.records[d.nr_records++] = {h, g_nr_entries, n, d.buckets[h % HASH_BUCKETS]};
    for (unsigned i = 0; i < n; ++i)
        g_trace_entries[g_nr_entries + i] = frames[i];
    g_nr_entries += n;
    const auto handle = static_cast<std::uint32_t>(d.nr_records);
    d.buckets[h % HASH_BUCKETS] = handle;
    return handle;
}

trace_view trace_get(std::uint32_t handle) noexcept
{
    depot& d = the_depot();
    if (handle == 0 || handle > d.nr_records)
        return {};
    const trace_record& rec = d.records[handle - 1];
    return {&g_trace_entries[rec.offset], rec.n};
}

unsigned stack_trace_entries() noexcept { return g_nr_entries; }

void reset_depot_locked() noexcept
{
    depot& d = the_depot();
    d.nr_records = 0;
    for (auto& b : d.buckets)
        b = 0;
    g_nr_entries = 0;
}

unsigned capture_current(const task_state& ts, void** out, unsigned max) noexcept { return capture(ts, out, max); }

std::string symbolize(std::uintptr_t ip, bool return_address)
{
    return klock::detail::format_symbol(ip, return_address);
}

} // namespace klock::lockdep::detail
