// The /proc/lockdep, /proc/lockdep_chains and /proc/lockdep_stats views
// (kernel/locking/lockdep_proc.c), as strings or written to a FILE*, and the dump at exit that
// KLOCK_LOCKDEP_DUMP=path asks for (and KLOCK_LOCK_STAT_DUMP's, lock_stat.cpp).
//
// The dumps take the graph lock (even when lockdep is off, so a post-mortem dump still works) and
// read only what the graph lock protects, plus the per-task counters.
#include "internal.hpp"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace klock::lockdep {

using namespace detail;

namespace {

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

void write_file(std::FILE* out, const std::string& s)
{
    if (out != nullptr)
        std::fwrite(s.data(), 1, s.size(), out);
}

// label padded to the kernel's 32 columns, then %11lu
void stat_line(std::string& out, const char* label, unsigned long v) { appendf(out, " %-31s%11lu\n", label, v); }

void stat_line_max(std::string& out, const char* label, unsigned long v, unsigned long max)
{
    appendf(out, " %-31s%11lu [max: %lu]\n", label, v, max);
}

void dump_at_exit()
{
    stat_dump_at_exit(); // KLOCK_LOCK_STAT_DUMP
    const char* path = std::getenv("KLOCK_LOCKDEP_DUMP");
    if (path == nullptr || *path == '\0')
        return;
    std::FILE* f = std::fopen(path, "w");
    if (f == nullptr)
        return;
    std::fputs("==> /proc/lockdep <==\n", f);
    proc_lockdep(f);
    std::fputs("\n==> /proc/lockdep_chains <==\n", f);
    proc_lockdep_chains(f);
    std::fputs("\n==> /proc/lockdep_stats <==\n", f);
    proc_lockdep_stats(f);
    std::fclose(f);
}

} // namespace

namespace detail {
void register_dump_at_exit() noexcept
{
    static std::once_flag once;
    try {
        // The variable is read at exit, so a program (or a forked child) may set it late.
        std::call_once(once, [] { std::atexit(dump_at_exit); });
    } catch (...) { }
}
} // namespace detail

std::string proc_lockdep()
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    std::string out = "all lock classes:\n";
    for (unsigned i = 0; i < g.nr_classes; ++i) {
        lock_class* c = class_at(i);
        appendf(out, "%016" PRIxPTR, addr(c->key));
        if (g.count_ops)
            appendf(out, " OPS:%8lu", static_cast<unsigned long>(g_class_ops[i].load(std::memory_order_relaxed)));
        appendf(out, " FD:%5lu BD:%5lu", count_forward_deps(c), count_backward_deps(c));
        char usage[5];
        usage_chars(c, usage);
        out += " " + std::string(usage) + ": " + class_name(c) + "\n";
        for (lock_list* e = c->after_head; e != nullptr; e = e->next) {
            if (e->distance != 1)
                continue;
            appendf(out, " -> [%016" PRIxPTR "] ", addr(e->cls->key));
            out += class_name(e->cls) + "\n";
        }
        out += "\n";
    }
    return out;
}

std::string proc_lockdep_chains()
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    std::string out = "all lock chains:\n";
    for (unsigned n = 0; n < g.nr_chains; ++n) {
        const lock_chain& ch = g_chains[n];
        appendf(out, "irq_context: %d\n", ch.irq_context);
        for (unsigned i = 0; i < ch.depth; ++i) {
            const lock_class* c = class_at(chain_hlock_class_idx(g_chain_hlocks[ch.base + i]));
            if (c->key == nullptr)
                continue;
            appendf(out, "[%016" PRIxPTR "] ", addr(c->key));
            out += class_name(c) + "\n";
        }
        out += "\n";
    }
    return out;
}

std::string proc_lockdep_stats()
{
    task_counters t;
    sum_task_counters(t);
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);

    constexpr std::uint32_t USED_IN_IRQ = flag(USED_IN_HARDIRQ) | flag(USED_IN_SOFTIRQ);
    constexpr std::uint32_t ENABLED_IRQ = flag(ENABLED_HARDIRQ) | flag(ENABLED_SOFTIRQ);
    constexpr std::uint32_t USED_IN_IRQ_READ = flag(USED_IN_HARDIRQ_READ) | flag(USED_IN_SOFTIRQ_READ);
    constexpr std::uint32_t ENABLED_IRQ_READ = flag(ENABLED_HARDIRQ_READ) | flag(ENABLED_SOFTIRQ_READ);
    unsigned long nr_unused = 0, nr_uncategorized = 0, nr_irq_safe = 0, nr_irq_unsafe = 0, nr_softirq_safe = 0,
                  nr_softirq_unsafe = 0, nr_hardirq_safe = 0, nr_hardirq_unsafe = 0, nr_irq_read_safe = 0,
                  nr_irq_read_unsafe = 0, nr_softirq_read_safe = 0, nr_softirq_read_unsafe = 0,
                  nr_hardirq_read_safe = 0, nr_hardirq_read_unsafe = 0, sum_forward_deps = 0;
    for (unsigned i = 0; i < g.nr_classes; ++i) {
        lock_class* c = class_at(i);
        const std::uint32_t u = c->usage_mask.load(std::memory_order_relaxed);
        nr_unused += u == 0;
        nr_uncategorized += u == LOCKF_USED;
        nr_irq_safe += (u & USED_IN_IRQ) != 0;
        nr_irq_unsafe += (u & ENABLED_IRQ) != 0;
        nr_softirq_safe += (u & flag(USED_IN_SOFTIRQ)) != 0;
        nr_softirq_unsafe += (u & flag(ENABLED_SOFTIRQ)) != 0;
        nr_hardirq_safe += (u & flag(USED_IN_HARDIRQ)) != 0;
        nr_hardirq_unsafe += (u & flag(ENABLED_HARDIRQ)) != 0;
        nr_irq_read_safe += (u & USED_IN_IRQ_READ) != 0;
        nr_irq_read_unsafe += (u & ENABLED_IRQ_READ) != 0;
        nr_softirq_read_safe += (u & flag(USED_IN_SOFTIRQ_READ)) != 0;
        nr_softirq_read_unsafe += (u & flag(ENABLED_SOFTIRQ_READ)) != 0;
        nr_hardirq_read_safe += (u & flag(USED_IN_HARDIRQ_READ)) != 0;
        nr_hardirq_read_unsafe += (u & flag(ENABLED_HARDIRQ_READ)) != 0;
        sum_forward_deps += count_forward_deps(c);
    }
    const graph_counters& k = g.counters;
    auto rd = [](const std::atomic<std::uint64_t>& a) {
        return static_cast<unsigned long>(a.load(std::memory_order_relaxed));
    };

    std::string out;
    stat_line_max(out, "lock-classes:", g.nr_classes, g.lim.keys);
    stat_line_max(out, "direct dependencies:", g.nr_entries, g.lim.entries);
    stat_line(out, "indirect dependencies:", sum_forward_deps);
    stat_line(out,
        "all direct dependencies:", nr_irq_unsafe * nr_irq_safe + nr_hardirq_unsafe * nr_hardirq_safe + g.nr_entries);
    stat_line_max(out, "dependency chains:", g.nr_chains, g.lim.chains);
    stat_line_max(out, "dependency chain hlocks:", g.nr_chain_hlocks, g.lim.chain_hlocks);
    stat_line(out, "in-hardirq chains:", k.nr_hardirq_chains);
    stat_line(out, "in-softirq chains:", k.nr_softirq_chains);
    stat_line(out, "in-process chains:", k.nr_process_chains);
    stat_line_max(out, "stack-trace entries:", stack_trace_entries(), g.lim.stack_trace_entries);
    stat_line(out, "combined max dependencies:",
        static_cast<unsigned long>(k.nr_hardirq_chains + 1) * (k.nr_softirq_chains + 1) * (k.nr_process_chains + 1));
    stat_line(out, "hardirq-safe locks:", nr_hardirq_safe);
    stat_line(out, "hardirq-unsafe locks:", nr_hardirq_unsafe);
    stat_line(out, "softirq-safe locks:", nr_softirq_safe);
    stat_line(out, "softirq-unsafe locks:", nr_softirq_unsafe);
    stat_line(out, "irq-safe locks:", nr_irq_safe);
    stat_line(out, "irq-unsafe locks:", nr_irq_unsafe);
    stat_line(out, "hardirq-read-safe locks:", nr_hardirq_read_safe);
    stat_line(out, "hardirq-read-unsafe locks:", nr_hardirq_read_unsafe);
    stat_line(out, "softirq-read-safe locks:", nr_softirq_read_safe);
    stat_line(out, "softirq-read-unsafe locks:", nr_softirq_read_unsafe);
    stat_line(out, "irq-read-safe locks:", nr_irq_read_safe);
    stat_line(out, "irq-read-unsafe locks:", nr_irq_read_unsafe);
    stat_line(out, "uncategorized locks:", nr_uncategorized);
    stat_line(out, "unused locks:", nr_unused);
    stat_line(out, "max locking depth:", g_max_lock_depth.load(std::memory_order_relaxed));
    stat_line(out, "max bfs queue depth:", k.max_bfs_queue_depth);
    stat_line(out, "chain lookup misses:", static_cast<unsigned long>(k.chain_lookup_misses));
    stat_line(out, "chain lookup hits:", rd(t.chain_lookup_hits));
    stat_line(out, "cyclic checks:", static_cast<unsigned long>(k.cyclic_checks));
    stat_line(out, "redundant checks:", 0);
    stat_line(out, "redundant links:", 0);
    stat_line(out, "find-mask forwards checks:", static_cast<unsigned long>(k.find_usage_forwards_checks));
    stat_line(out, "find-mask backwards checks:", static_cast<unsigned long>(k.find_usage_backwards_checks));
    stat_line(out, "hardirq on events:", rd(t.hardirqs_on_events));
    stat_line(out, "hardirq off events:", rd(t.hardirqs_off_events));
    stat_line(out, "redundant hardirq ons:", rd(t.redundant_hardirqs_on));
    stat_line(out, "redundant hardirq offs:", rd(t.redundant_hardirqs_off));
    stat_line(out, "softirq on events:", rd(t.softirqs_on_events));
    stat_line(out, "softirq off events:", rd(t.softirqs_off_events));
    stat_line(out, "redundant softirq ons:", rd(t.redundant_softirqs_on));
    stat_line(out, "redundant softirq offs:", rd(t.redundant_softirqs_off));
    stat_line(out, "debug_locks:", g.debug_locks ? 1 : 0);
    return out;
}

void proc_lockdep(std::FILE* out) { write_file(out, proc_lockdep()); }
void proc_lockdep_chains(std::FILE* out) { write_file(out, proc_lockdep_chains()); }
void proc_lockdep_stats(std::FILE* out) { write_file(out, proc_lockdep_stats()); }

} // namespace klock::lockdep
