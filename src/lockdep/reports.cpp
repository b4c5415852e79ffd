// lockdep's reports, in the kernel's layouts (kernel/locking/lockdep.c: print_circular_bug,
// print_deadlock_bug, print_usage_bug, print_irq_inversion_bug, print_bad_irq_dependency,
// print_unlock_imbalance_bug, print_freed_lock_bug, print_held_locks_bug, print_lockdep_off).
//
// Each report is built twice at once: the text a kernel developer expects, and a JSON object with
// the same facts (task, locks, dependency chain with stacks, held locks, backtrace) plus the text.
// Reports are built under the graph lock (they read the graph) and queued; the graph guard emits
// them after unlocking, so a report sink that takes locks cannot deadlock against lockdep.
//
// Which reports are made: each distinct problem once (a set of keys such as "circular, prev class,
// next class"), or, in one-shot mode, only the first one, which also clears debug_locks.
#include "internal.hpp"

#include <array>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

#include <klock/report.hpp>

namespace klock::lockdep {

using namespace detail;

namespace detail {

void appendf(std::string& out, const char* fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (static_cast<std::size_t>(n) < sizeof buf) {
        out.append(buf, static_cast<std::size_t>(n));
        return;
    }
    std::string big(static_cast<std::size_t>(n) + 1, '\0');
    va_start(ap, fmt);
    std::vsnprintf(big.data(), big.size(), fmt, ap);
    va_end(ap);
    big.pop_back();
    out += big;
}

namespace {

constexpr const char* IDENT = "klock 0.1.0 Not tainted";

std::atomic<std::uint64_t> g_report_count{0};

std::set<std::array<std::uint64_t, 4>>& seen()
{
    static auto* s = new std::set<std::array<std::uint64_t, 4>>;
    return *s;
}

std::string hex_ptr(std::uintptr_t p)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016" PRIxPTR, p);
    return buf;
}

std::string jhex(std::uintptr_t p)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "\"0x%" PRIxPTR "\"", p);
    return buf;
}

std::string usage_of(const lock_class* c)
{
    char u[5];
    usage_chars(c, u);
    return u;
}

// " (name){usage}" (print_lock_name)
std::string lock_name_usage(const lock_class* c) { return " (" + class_name(c) + "){" + usage_of(c) + "}"; }

// One report: text and JSON side by side.
class report {
public:
    report(const char* type, std::string title, const task_state& ts, const thread_info& ti)
        : ts_(ts), ti_(ti), title_(std::move(title))
    {
        json_ = "{\"type\":" + json_quote(type) + ",\"title\":" + json_quote(title_);
        json_ += ",\"task\":{\"comm\":" + json_quote(ti.comm) + ",\"pid\":" + std::to_string(ti.pid)
            + ",\"cpu\":" + std::to_string(report_cpu(ts)) + "}";
    }

    std::string text;

    // Names and addresses as the task's host sees them (a simulated task's are its script's).
    std::string sym(std::uintptr_t ip, bool return_address = true) const
    {
        return ts_.host != nullptr ? ts_.host->symbol(*ts_.host, ip, return_address) : symbolize(ip, return_address);
    }
    std::uintptr_t addr(const void* object) const noexcept
    {
        return ts_.host != nullptr ? ts_.host->address(*ts_.host, object) : reinterpret_cast<std::uintptr_t>(object);
    }

    // blank line, '=' rule, title, version line, '-' rule
    void header(std::size_t rule = 0)
    {
        if (rule == 0)
            rule = title_.size();
        text += "\n" + std::string(rule, '=') + "\n" + title_ + "\n" + IDENT + "\n" + std::string(rule, '-') + "\n";
    }

    void field(const char* key, const std::string& raw) { json_ += std::string(",") + json_quote(key) + ":" + raw; }

    // print_lock(): "instance (name){usage}, at: symbol"
    void lock(const char* key, const held_lock& h)
    {
        text += lock_line(h);
        field(key, lock_json(h));
    }

    // "comm/pid is trying to acquire lock:" <acquiring> "but task is already holding lock:"
    // <holding>: the opening of the circular and the recursive reports.
    void acquiring_while_holding(const held_lock& acquiring, const held_lock& holding)
    {
        appendf(text, "%s/%d is trying to acquire lock:\n", ti_.comm, ti_.pid);
        lock("acquiring", acquiring);
        text += "\nbut task is already holding lock:\n";
        lock("holding", holding);
    }

    std::string lock_line(const held_lock& h) const
    {
        const lock_class* c = class_at(h.class_idx);
        return hex_ptr(addr(h.instance)) + lock_name_usage(c) + ", at: " + sym(h.acquire_ip) + "\n";
    }

    std::string lock_json(const held_lock& h) const
    {
        const lock_class* c = class_at(h.class_idx);
        std::string j = "{\"class\":" + json_quote(class_name(c)) + ",\"usage\":" + json_quote(usage_of(c));
        j += ",\"instance\":" + jhex(addr(h.instance));
        j += ",\"read\":" + std::to_string(h.read) + ",\"trylock\":" + (h.trylock ? "true" : "false");
        j += ",\"ip\":" + jhex(h.acquire_ip) + ",\"at\":" + json_quote(sym(h.acquire_ip)) + "}";
        return j;
    }

    static std::string class_json(const lock_class* c)
    {
        return "{\"class\":" + json_quote(class_name(c)) + ",\"usage\":" + json_quote(usage_of(c)) + "}";
    }

    // lockdep_print_held_locks()
    void held_locks()
    {
        const unsigned depth = ts_.depth;
        if (depth == 0)
            appendf(text, "no locks held by %s/%d.\n", ti_.comm, ti_.pid);
        else
            appendf(text, "%u lock%s held by %s/%d:\n", depth, depth > 1 ? "s" : "", ti_.comm, ti_.pid);
        std::string arr = "[";
        for (unsigned i = 0; i < depth; ++i) {
            appendf(text, " #%u: ", i);
            text += lock_line(ts_.held_locks[i]);
            if (i != 0)
                arr += ",";
            arr += lock_json(ts_.held_locks[i]);
        }
        field("held_locks", arr + "]");
    }

    // print_lock_trace(trace, spaces): one frame per line, indented by 1 + spaces.
    std::string trace(std::uint32_t handle, int spaces)
    {
        const trace_view v = trace_get(handle);
        std::string arr = "[";
        for (unsigned i = 0; i < v.n; ++i) {
            const auto ip = reinterpret_cast<std::uintptr_t>(v.ip[i]);
            const std::string name = sym(ip);
            text += std::string(static_cast<std::size_t>(1 + spaces), ' ') + name + "\n";
            if (i != 0)
                arr += ",";
            arr += "{\"ip\":" + jhex(ip) + ",\"symbol\":" + json_quote(name) + "}";
        }
        return arr + "]";
    }

    // dump_stack() of the current task
    void backtrace()
    {
        void* frames[32];
        const unsigned n = capture_current(ts_, frames, 32);
        appendf(text, "CPU: %d PID: %d Comm: %s\nCall Trace:\n", report_cpu(ts_), ti_.pid, ti_.comm);
        std::string arr = "[";
        for (unsigned i = 0; i < n; ++i) {
            const auto ip = reinterpret_cast<std::uintptr_t>(frames[i]);
            const std::string name = sym(ip);
            text += " " + name + "\n";
            if (i != 0)
                arr += ",";
            arr += "{\"ip\":" + jhex(ip) + ",\"symbol\":" + json_quote(name) + "}";
        }
        field("stack", arr + "]");
    }

    void irqtrace_events()
    {
        appendf(text, "irq event stamp: %u\n", ts_.irq_events);
        auto one = [this](const char* what, std::uint32_t ev, std::uintptr_t ip) {
            appendf(text, "%s at (%u): [<%s>] %s\n", what, ev, hex_ptr(ip).c_str(), sym(ip).c_str());
        };
        one("hardirqs last  enabled", ts_.hardirq_enable_event, ts_.hardirq_enable_ip);
        one("hardirqs last disabled", ts_.hardirq_disable_event, ts_.hardirq_disable_ip);
        one("softirqs last  enabled", ts_.softirq_enable_event, ts_.softirq_enable_ip);
        one("softirqs last disabled", ts_.softirq_disable_event, ts_.softirq_disable_ip);
        field("irq_events",
            "{\"stamp\":" + std::to_string(ts_.irq_events)
                + ",\"hardirq_enable\":" + std::to_string(ts_.hardirq_enable_event)
                + ",\"hardirq_disable\":" + std::to_string(ts_.hardirq_disable_event)
                + ",\"softirq_enable\":" + std::to_string(ts_.softirq_enable_event)
                + ",\"softirq_disable\":" + std::to_string(ts_.softirq_disable_event) + "}");
    }

    // [HC0[0]:SC0[0]:HE1:SE1]
    std::string context() const
    {
        const std::uint32_t pc = ti_.preempt_count;
        char buf[64];
        std::snprintf(buf, sizeof buf, "[HC%u[%u]:SC%u[%u]:HE%u:SE%u]", in_hardirq(pc) ? 1u : 0u,
            (pc & HARDIRQ_MASK) >> HARDIRQ_SHIFT, in_serving_softirq(pc) ? 1u : 0u,
            (pc & SOFTIRQ_MASK) >> SOFTIRQ_SHIFT, ti_.irqs_disabled ? 0u : 1u, (pc & SOFTIRQ_MASK) == 0 ? 1u : 0u);
        return buf;
    }

    // Every report ends the kernel's way: "stack backtrace:" and the current task's stack.
    void finish_with_backtrace()
    {
        text += "\nstack backtrace:\n";
        backtrace();
        finish();
    }

    void finish()
    {
        json_ += ",\"text\":" + json_quote(text) + "}";
        report_queue_locked(std::move(text), std::move(json_));
    }

    const task_state& ts_;
    const thread_info& ti_;

private:
    std::string title_;
    std::string json_;
};

// print_lock_class_header()
void lock_class_header(report& r, const lock_class* c, int depth)
{
    appendf(r.text, "%*s->", depth, "");
    r.text += lock_name_usage(c) + " {\n";
    const std::uint32_t u = c->usage_mask.load(std::memory_order_relaxed);
    for (int bit = 0; bit < TRACE_STATES; ++bit) {
        if (!(u & flag(bit)))
            continue;
        const std::size_t before = r.text.size();
        appendf(r.text, "%*s   %s", depth, "", usage_str(bit));
        const int len = depth + static_cast<int>(r.text.size() - before) + 5;
        r.text += " at:\n";
        r.trace(c->usage_traces[bit], len);
    }
    appendf(r.text, "%*s }\n", depth, "");
    appendf(r.text, "%*s ... key      at: [<%s>] %s\n", depth, "", hex_ptr(r.addr(c->key)).c_str(),
        r.sym(r.addr(c->key), false).c_str());
}

std::string shortest_dependencies(report& r, lock_list* leaf, lock_list* root)
{
    std::string arr = "[";
    lock_list* e = leaf;
    int depth = lock_depth(leaf);
    bool first = true;
    do {
        lock_class_header(r, e->cls, depth);
        appendf(r.text, "%*s ... acquired at:\n", depth, "");
        const std::string st = r.trace(e->trace, 2);
        r.text += "\n";
        arr += std::string(first ? "" : ",") + "{\"class\":" + json_quote(class_name(e->cls)) + ",\"stack\":" + st
            + "}";
        first = false;
        if (depth == 0 && e != root) {
            r.text += "lockdep:print_shortest_lock_dependencies bad path found in chain graph\n";
            break;
        }
        e = e->parent;
        --depth;
    } while (e != nullptr && depth >= 0);
    return arr + "]";
}

std::string shortest_dependencies_backwards(report& r, lock_list* leaf, lock_list* root)
{
    std::string arr = "[";
    lock_list* e = leaf;
    std::uint32_t trace = 0;
    int depth = lock_depth(leaf);
    bool first = true;
    do {
        lock_class_header(r, e->cls, depth);
        std::string st = "[]";
        if (trace != 0) {
            appendf(r.text, "%*s ... acquired at:\n", depth, "");
            st = r.trace(trace, 2);
            r.text += "\n";
        }
        arr += std::string(first ? "" : ",") + "{\"class\":" + json_quote(class_name(e->cls)) + ",\"stack\":" + st
            + "}";
        first = false;
        trace = e->trace;
        if (depth == 0 && e != root) {
            r.text += "lockdep:print_shortest_lock_dependencies_backwards bad path found in chain graph\n";
            break;
        }
        e = e->parent;
        --depth;
    } while (e != nullptr && depth >= 0);
    return arr + "]";
}

void irq_lock_scenario(
    report& r, lock_list* safe_entry, lock_list* unsafe_entry, lock_class* prev_class, lock_class* next_class)
{
    lock_class* safe = safe_entry->cls;
    lock_class* unsafe = unsafe_entry->cls;
    lock_class* middle = prev_class == safe ? next_class : prev_class;
    if (middle != unsafe)
        r.text += "Chain exists of:\n  " + class_name(safe) + " --> " + class_name(middle) + " --> "
            + class_name(unsafe) + "\n\n";
    r.text += " Possible interrupt unsafe locking scenario:\n\n";
    r.text += "       CPU0                    CPU1\n";
    r.text += "       ----                    ----\n";
    r.text += "  lock(" + class_name(unsafe) + ");\n";
    r.text += "                               local_irq_disable();\n";
    r.text += "                               lock(" + class_name(safe) + ");\n";
    r.text += "                               lock(" + class_name(middle) + ");\n";
    r.text += "  <Interrupt>\n";
    r.text += "    lock(" + class_name(safe) + ");\n";
    r.text += "\n *** DEADLOCK ***\n\n";
}

std::uint64_t ptr_key(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

} // namespace

bool report_begin_locked(problem kind, std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept
{
    graph_state& g = graph();
    if (!g.debug_locks)
        return false;
    if (g.one_shot)
        return debug_locks_off_locked();
    try {
        return seen().insert({static_cast<std::uint64_t>(kind), a, b, c}).second;
    } catch (...) {
        return false;
    }
}

void report_queue_locked(std::string text, std::string json) noexcept
{
    try {
        graph().pending_text.push_back(std::move(text));
        graph().pending_json.push_back(std::move(json));
        g_report_count.fetch_add(1, std::memory_order_relaxed);
    } catch (...) { }
}

void report_flush_lists(std::vector<std::string>& text, std::vector<std::string>& json) noexcept
{
    for (std::size_t i = 0; i < text.size(); ++i) {
        try {
            klock::detail::report_emit(std::move(text[i]));
        } catch (...) { }
        if (i < json.size())
            json_emit(json[i]);
    }
}

void reset_reports_locked() noexcept { seen().clear(); }

void limit_exhausted_locked(const task_state& ts, const thread_info& ti, const char* what) noexcept
{
    if (!debug_locks_off_locked())
        return;
    report r("limit", what, ts, ti);
    r.text = std::string(what) + "\nturning off the locking correctness validator.\n";
    r.field("limit", json_quote(what));
    r.backtrace();
    r.finish();
}

void bfs_bug_locked(const task_state& ts, const thread_info& ti, bfs_result res) noexcept
{
    if (!debug_locks_off_locked())
        return;
    report r("bfs_error", "lockdep bfs error", ts, ti);
    appendf(r.text, "lockdep bfs error:%d\nturning off the locking correctness validator.\n", static_cast<int>(res));
    r.backtrace();
    r.finish();
}

// ---- the reports ----

void report_circular_locked(task_state& ts, const thread_info& ti, lock_list* root, lock_list* target,
    const held_lock& src, const held_lock& tgt) noexcept
{
    if (!report_begin_locked(problem::circular, tgt.class_idx, src.class_idx))
        return;
    root->trace = save_trace_locked(ts, ti);
    if (root->trace == 0)
        return;
    try {
        report r("circular_locking", "WARNING: possible circular locking dependency detected", ts, ti);
        r.header();
        r.acquiring_while_holding(src, tgt);
        r.text += "\nwhich lock already depends on the new lock.\n\n";
        r.text += "\nthe existing dependency chain (in reverse order) is:\n";
        std::string chain = "[";
        int depth = lock_depth(target);
        auto entry = [&](lock_list* e, int d) {
            appendf(r.text, "\n-> #%d", d);
            r.text += lock_name_usage(e->cls) + ":\n";
            const std::string st = r.trace(e->trace, 6);
            if (chain.size() > 1)
                chain += ",";
            chain += "{\"index\":" + std::to_string(d) + ",\"class\":" + json_quote(class_name(e->cls))
                + ",\"usage\":" + json_quote(usage_of(e->cls)) + ",\"stack\":" + st + "}";
        };
        entry(target, depth);
        lock_list* parent = target->parent;
        lock_list* first_parent = parent;
        while (parent != nullptr) {
            entry(parent, --depth);
            parent = parent->parent;
        }
        r.field("chain", chain + "]");
        r.text += "\nother info that might help us debug this:\n\n";

        // print_circular_lock_scenario()
        const lock_class* source = class_at(src.class_idx);
        const lock_class* tclass = class_at(tgt.class_idx);
        const lock_class* pclass = first_parent != nullptr ? first_parent->cls : source;
        if (pclass != source)
            r.text += "Chain exists of:\n  " + class_name(source) + " --> " + class_name(pclass) + " --> "
                + class_name(tclass) + "\n\n";
        r.text += " Possible unsafe locking scenario:\n\n";
        r.text += "       CPU0                    CPU1\n";
        r.text += "       ----                    ----\n";
        r.text += std::string(tgt.read != 0 ? "  rlock(" : "  lock(") + class_name(tclass) + ");\n";
        r.text += "                               lock(" + class_name(pclass) + ");\n";
        r.text += "                               lock(" + class_name(tclass) + ");\n";
        r.text += std::string(src.read != 0 ? "  rlock(" : "  lock(") + class_name(source) + ");\n";
        r.text += "\n *** DEADLOCK ***\n\n";

        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_recursive_locked(
    task_state& ts, const thread_info& ti, const held_lock& prev, const held_lock& next) noexcept
{
    if (!report_begin_locked(problem::recursive, next.class_idx))
        return;
    try {
        report r("recursive_locking", "WARNING: possible recursive locking detected", ts, ti);
        r.header();
        r.acquiring_while_holding(next, prev);
        r.text += "\nother info that might help us debug this:\n";
        r.text += " Possible unsafe locking scenario:\n\n";
        r.text += "       CPU0\n";
        r.text += "       ----\n";
        r.text += "  lock(" + class_name(class_at(prev.class_idx)) + ");\n";
        r.text += "  lock(" + class_name(class_at(next.class_idx)) + ");\n";
        r.text += "\n *** DEADLOCK ***\n\n";
        r.text += " May be due to missing lock nesting notation\n\n";
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_usage_locked(task_state& ts, const thread_info& ti, const held_lock& h, int prev_bit, int new_bit) noexcept
{
    if (!report_begin_locked(
            problem::usage, h.class_idx, static_cast<std::uint64_t>(prev_bit), static_cast<std::uint64_t>(new_bit)))
        return;
    try {
        const lock_class* c = class_at(h.class_idx);
        report r("inconsistent_lock_state", "WARNING: inconsistent lock state", ts, ti);
        r.header();
        appendf(r.text, "inconsistent {%s} -> {%s} usage.\n", usage_str(prev_bit), usage_str(new_bit));
        r.field("from", json_quote(usage_str(prev_bit)));
        r.field("to", json_quote(usage_str(new_bit)));
        appendf(r.text, "%s/%d %s takes:\n", ti.comm, ti.pid, r.context().c_str());
        r.lock("lock", h);
        appendf(r.text, "{%s} state was registered at:\n", usage_str(prev_bit));
        r.field("registered_at", r.trace(prev_bit < TRACE_STATES ? c->usage_traces[prev_bit] : 0, 1));
        r.irqtrace_events();
        r.text += "\nother info that might help us debug this:\n";
        const std::string n = class_name(c);
        r.text += " Possible unsafe locking scenario:\n\n";
        r.text += "       CPU0\n";
        r.text += "       ----\n";
        r.text += "  lock(" + n + ");\n";
        r.text += "  <Interrupt>\n";
        r.text += "    lock(" + n + ");\n";
        r.text += "\n *** DEADLOCK ***\n\n";
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_irq_inversion_locked(task_state& ts, const thread_info& ti, lock_list* root, lock_list* other,
    const held_lock& h, bool forwards, const char* irqclass) noexcept
{
    if (!report_begin_locked(problem::irq_inversion, h.class_idx, class_index(other->cls), forwards ? 1 : 0))
        return;
    try {
        report r("irq_lock_inversion", "WARNING: possible irq lock inversion dependency detected", ts, ti);
        r.header();
        appendf(r.text, "%s/%d just changed the state of lock:\n", ti.comm, ti.pid);
        r.lock("lock", h);
        if (forwards)
            appendf(r.text, "but this lock took another, %s-unsafe lock in the past:\n", irqclass);
        else
            appendf(r.text, "but this lock was taken by another, %s-safe lock in the past:\n", irqclass);
        r.text += lock_name_usage(other->cls);
        r.field("other", report::class_json(other->cls));
        r.field("irqclass", json_quote(irqclass));
        r.text += "\n\nand interrupts could create inverse lock ordering between them.\n\n";
        r.text += "\nother info that might help us debug this:\n";
        lock_list* entry = other;
        lock_list* middle = nullptr;
        int depth = lock_depth(other);
        do {
            if (depth == 0 && entry != root) {
                r.text += "lockdep:print_irq_inversion_bug bad path found in chain graph\n";
                break;
            }
            middle = entry;
            entry = entry->parent;
            --depth;
        } while (entry != nullptr && entry != root && depth >= 0);
        if (forwards)
            irq_lock_scenario(r, root, other, middle != nullptr ? middle->cls : root->cls, other->cls);
        else
            irq_lock_scenario(r, other, root, middle != nullptr ? middle->cls : other->cls, root->cls);
        r.held_locks();
        r.text += "\nthe shortest dependencies between 2nd lock and 1st lock:\n";
        root->trace = save_trace_locked(ts, ti);
        if (root->trace == 0)
            return;
        r.field("dependencies", shortest_dependencies(r, other, root));
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_bad_irq_dependency_locked(task_state& ts, const thread_info& ti, lock_list* prev_root, lock_list* next_root,
    lock_list* backwards_entry, lock_list* forwards_entry, const held_lock& prev, const held_lock& next, int bit1,
    int bit2, const char* irqclass) noexcept
{
    if (!report_begin_locked(problem::bad_irq_dependency, class_index(backwards_entry->cls),
            class_index(forwards_entry->cls), static_cast<std::uint64_t>(bit1)))
        return;
    try {
        std::string title
            = std::string("WARNING: ") + irqclass + "-safe -> " + irqclass + "-unsafe lock order detected";
        report r("irq_safe_unsafe_order", title, ts, ti);
        r.header(53);
        appendf(r.text, "%s/%d %s is trying to acquire:\n", ti.comm, ti.pid, r.context().c_str());
        r.lock("acquiring", next);
        r.text += "\nand this task is already holding:\n";
        r.lock("holding", prev);
        r.text += "which would create a new lock dependency:\n";
        r.text += lock_name_usage(class_at(prev.class_idx)) + " ->" + lock_name_usage(class_at(next.class_idx)) + "\n";
        appendf(r.text, "\nbut this new dependency connects a %s-irq-safe lock:\n", irqclass);
        r.text += lock_name_usage(backwards_entry->cls);
        appendf(r.text, "\n... which became %s-irq-safe at:\n", irqclass);
        r.field("safe", report::class_json(backwards_entry->cls));
        r.field("safe_at", r.trace(backwards_entry->cls->usage_traces[bit1], 1));
        appendf(r.text, "\nto a %s-irq-unsafe lock:\n", irqclass);
        r.text += lock_name_usage(forwards_entry->cls);
        appendf(r.text, "\n... which became %s-irq-unsafe at:\n", irqclass);
        r.text += "...\n";
        r.field("unsafe", report::class_json(forwards_entry->cls));
        r.field("unsafe_at", r.trace(forwards_entry->cls->usage_traces[bit2], 1));
        r.text += "\nother info that might help us debug this:\n\n";
        irq_lock_scenario(r, backwards_entry, forwards_entry, class_at(prev.class_idx), class_at(next.class_idx));
        r.held_locks();
        appendf(r.text, "\nthe dependencies between %s-irq-safe lock and the holding lock:\n", irqclass);
        r.field("safe_dependencies", shortest_dependencies_backwards(r, backwards_entry, prev_root));
        r.text += "\nthe dependencies between the lock to be acquired\n";
        appendf(r.text, " and %s-irq-unsafe lock:\n", irqclass);
        next_root->trace = save_trace_locked(ts, ti);
        if (next_root->trace == 0)
            return;
        r.field("unsafe_dependencies", shortest_dependencies(r, forwards_entry, next_root));
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_unlock_imbalance_locked(
    task_state& ts, const thread_info& ti, const lockdep_map& lock, std::uintptr_t ip) noexcept
{
    // One report per class of lock (a loop or an unrolled copy of the bad release is one problem).
    if (!report_begin_locked(problem::unlock_imbalance, lock.key != nullptr ? ptr_key(lock.key) : ptr_key(&lock)))
        return;
    try {
        report r("bad_unlock_balance", "WARNING: bad unlock balance detected!", ts, ti);
        r.header();
        appendf(r.text, "%s/%d is trying to release lock (%s) at:\n", ti.comm, ti.pid, map_name(lock).c_str());
        appendf(r.text, "[<%s>] %s\n", hex_ptr(ip).c_str(), r.sym(ip).c_str());
        r.text += "but there are no more locks to release!\n";
        r.field("lock",
            "{\"name\":" + json_quote(map_name(lock)) + ",\"instance\":" + jhex(r.addr(&lock)) + ",\"ip\":" + jhex(ip)
                + ",\"at\":" + json_quote(r.sym(ip)) + "}");
        r.text += "\nother info that might help us debug this:\n";
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_freed_locked(
    task_state& ts, const thread_info& ti, const void* from, const void* to, const held_lock& h) noexcept
{
    if (!report_begin_locked(problem::freed, h.class_idx, h.acquire_ip))
        return;
    try {
        report r("held_lock_freed", "WARNING: held lock freed!", ts, ti);
        r.header();
        appendf(r.text, "%s/%d is freeing memory %s-%s, with a lock still held there!\n", ti.comm, ti.pid,
            hex_ptr(ptr_key(from)).c_str(), hex_ptr(ptr_key(to) - 1).c_str());
        r.field("memory", "{\"from\":" + jhex(ptr_key(from)) + ",\"to\":" + jhex(ptr_key(to) - 1) + "}");
        r.lock("lock", h);
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_held_at_exit_locked(task_state& ts, const thread_info& ti) noexcept
{
    std::uint64_t classes = 0;
    for (unsigned i = 0; i < ts.depth; ++i)
        classes = iterate_chain_key(classes, ts.held_locks[i].class_idx);
    if (!report_begin_locked(problem::held_at_exit, classes, ts.depth))
        return;
    try {
        std::string title
            = "WARNING: " + std::string(ti.comm) + "/" + std::to_string(ti.pid) + " still has locks held!";
        report r("locks_held_at_exit", title, ts, ti);
        r.header(36);
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_nested_not_held_locked(task_state& ts, const thread_info& ti, const held_lock& h) noexcept
{
    if (!report_begin_locked(problem::nested_not_held, h.class_idx))
        return;
    try {
        report r("nested_lock_not_taken", "WARNING: Nested lock was not taken", ts, ti);
        r.header();
        appendf(r.text, "%s/%d is trying to lock:\n", ti.comm, ti.pid);
        r.lock("lock", h);
        r.text += "\nbut this task is not holding:\n";
        const std::string nest = h.nest_lock != nullptr ? map_name(*h.nest_lock) : std::string("(null)");
        r.text += nest + "\n";
        r.field("nest_lock", json_quote(nest));
        r.text += "\nother info that might help us debug this:\n";
        r.held_locks();
        r.finish_with_backtrace();
    } catch (...) { }
}

void report_non_static_key_locked(task_state& ts, const thread_info& ti, const lockdep_map& lock) noexcept
{
    if (!report_begin_locked(problem::non_static_key, ptr_key(lock.name)))
        return;
    try {
        report r("non_static_key", "INFO: trying to register non-static key.", ts, ti);
        r.text = "INFO: trying to register non-static key.\n";
        r.text += "The code is fine but needs lockdep annotation, or maybe\n";
        r.text += "you didn't initialize this object before use?\n";
        if (!graph().debug_locks)
            r.text += "turning off the locking correctness validator.\n";
        r.field("lock", "{\"name\":" + json_quote(map_name(lock)) + ",\"instance\":" + jhex(ptr_key(&lock)) + "}");
        r.backtrace();
        r.finish();
    } catch (...) { }
}

void report_bad_subclass_locked(task_state& ts, const thread_info& ti, unsigned subclass) noexcept
{
    if (!debug_locks_off_locked())
        return;
    try {
        report r("invalid_subclass", "BUG: looking up invalid subclass", ts, ti);
        appendf(
            r.text, "BUG: looking up invalid subclass: %u\nturning off the locking correctness validator.\n", subclass);
        r.field("subclass", std::to_string(subclass));
        r.backtrace();
        r.finish();
    } catch (...) { }
}

void report_max_depth_locked(task_state& ts, const thread_info& ti) noexcept
{
    if (!debug_locks_off_locked())
        return;
    try {
        report r("limit", "BUG: MAX_LOCK_DEPTH too low!", ts, ti);
        r.text = "BUG: MAX_LOCK_DEPTH too low!\nturning off the locking correctness validator.\n";
        appendf(r.text, "depth: %u  max: %u!\n", ts.depth, graph().lim.lock_depth);
        r.field("limit", json_quote("BUG: MAX_LOCK_DEPTH too low!"));
        r.held_locks();
        r.backtrace();
        r.finish();
    } catch (...) { }
}

} // namespace detail

std::uint64_t report_count() noexcept { return g_report_count.load(std::memory_order_relaxed); }

} // namespace klock::lockdep
