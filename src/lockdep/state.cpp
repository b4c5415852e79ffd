// lockdep's switches and lifecycle: the state word the hooks test, the graph lock, the registry of
// task states (for statistics), reset(), and the generation that makes stale caches harmless.
//
// A generation names one lifetime of the tables. reset() and switching validation back on start a
// new one: class indices cached in lockdep_maps and held-lock stacks kept by tasks carry the
// generation they were made in, and anything from an older one is ignored (a task drops its stack
// and from then on tolerates releases it cannot match, since it may hold locks taken while lockdep
// was not tracking them).
#include "internal.hpp"

#include <cstring>
#include <pthread.h>

namespace klock::lockdep {

namespace detail {

std::atomic<std::uint32_t> g_state{STATE_ON | (1u << STATE_GEN_SHIFT)};

lock_class g_classes[MAX_LOCKDEP_KEYS];
lock_list g_entries[MAX_LOCKDEP_ENTRIES];
lock_chain g_chains[MAX_LOCKDEP_CHAINS];
std::uint16_t g_chain_hlocks[MAX_LOCKDEP_CHAIN_HLOCKS];
std::atomic<std::uint64_t> g_class_ops[MAX_LOCKDEP_KEYS];
std::atomic<unsigned> g_max_lock_depth{0};
std::atomic<unsigned> g_depth_limit{MAX_LOCK_DEPTH};

namespace {
// fork() while another thread holds the graph lock would leave the child's copy locked for good.
void fork_prepare() { graph().lock.lock(); }
void fork_release() { graph().lock.unlock(); }
} // namespace

graph_state& graph() noexcept
{
    // Never destroyed: threads may call in after exit().
    static graph_state* g = [] {
        auto* p = new graph_state;
        ::pthread_atfork(fork_prepare, fork_release, fork_release);
        return p;
    }();
    return *g;
}

void publish_state_locked() noexcept
{
    graph_state& g = graph();
    std::uint32_t s = g.generation << STATE_GEN_SHIFT;
    if (g.user_on && g.debug_locks)
        s |= STATE_ON;
    if (g.count_ops)
        s |= STATE_OPS;
    if (g.stat_on && g.debug_locks)
        s |= STATE_STAT;
    g_state.store(s, std::memory_order_release);
}

bool debug_locks_off_locked() noexcept
{
    graph_state& g = graph();
    if (!g.debug_locks)
        return false;
    g.debug_locks = false;
    publish_state_locked();
    return true;
}

graph_guard::graph_guard() noexcept
{
    graph().lock.lock();
    if (!graph().debug_locks) {
        graph().lock.unlock();
        return;
    }
    locked_ = true;
}

void graph_guard::unlock() noexcept
{
    if (!locked_)
        return;
    locked_ = false;
    graph_state& g = graph();
    std::vector<std::string> text, json;
    if (!g.pending_text.empty()) {
        text.swap(g.pending_text);
        json.swap(g.pending_json);
    }
    g.lock.unlock();
    if (!text.empty())
        report_flush_lists(text, json);
}

graph_guard::~graph_guard() { unlock(); }

// ---- task registry ----

namespace {

struct registry {
    std::mutex lock;
    task_state* head = nullptr;
    task_counters exited; // counters of tasks that have ended
};

registry& reg()
{
    static registry* r = new registry;
    return *r;
}
} // namespace

std::mutex& registry_mutex() noexcept { return reg().lock; }
task_state* registry_first() noexcept { return reg().head; }

namespace {

void add_counter(std::atomic<std::uint64_t>& to, const std::atomic<std::uint64_t>& from)
{
    to.store(to.load(std::memory_order_relaxed) + from.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void add_counters(task_counters& to, const task_counters& from)
{
    add_counter(to.chain_lookup_hits, from.chain_lookup_hits);
    add_counter(to.hardirqs_on_events, from.hardirqs_on_events);
    add_counter(to.hardirqs_off_events, from.hardirqs_off_events);
    add_counter(to.redundant_hardirqs_on, from.redundant_hardirqs_on);
    add_counter(to.redundant_hardirqs_off, from.redundant_hardirqs_off);
    add_counter(to.softirqs_on_events, from.softirqs_on_events);
    add_counter(to.softirqs_off_events, from.softirqs_off_events);
    add_counter(to.redundant_softirqs_on, from.redundant_softirqs_on);
    add_counter(to.redundant_softirqs_off, from.redundant_softirqs_off);
}

void zero_counters(task_counters& c)
{
    for (auto* a : {&c.chain_lookup_hits, &c.hardirqs_on_events, &c.hardirqs_off_events, &c.redundant_hardirqs_on,
             &c.redundant_hardirqs_off, &c.softirqs_on_events, &c.softirqs_off_events, &c.redundant_softirqs_on,
             &c.redundant_softirqs_off})
        a->store(0, std::memory_order_relaxed);
}

// Drop the held-lock stack and the chain memos (they name chains of an older generation).
void clear_task(task_state& ts)
{
    ts.depth = 0;
    ts.curr_chain_key = INITIAL_CHAIN_KEY;
    for (held_lock& h : ts.held_locks)
        h.memo_id = 0xffff;
}

} // namespace

void task_sync(task_state& ts, std::uint32_t gen) noexcept
{
    if (ts.gen == 0) {
        // A task's first call: it cannot hold anything lockdep should know about.
        clear_task(ts);
        ts.resync = false;
        if (!ts.registered && os_may_register(ts)) {
            registry& r = reg();
            std::lock_guard<std::mutex> g(r.lock);
            ts.reg_prev = nullptr;
            ts.reg_next = r.head;
            if (r.head != nullptr)
                r.head->reg_prev = &ts;
            r.head = &ts;
            ts.registered = true;
        }
        register_dump_at_exit();
    } else {
        clear_task(ts);
        ts.resync = true;
    }
    ts.gen = gen;
}

void task_unregister(task_state& ts) noexcept
{
    if (!ts.registered)
        return;
    registry& r = reg();
    std::lock_guard<std::mutex> g(r.lock);
    add_counters(r.exited, ts.counters);
    zero_counters(ts.counters);
    stat_task_exit_locked(ts);
    if (ts.reg_prev != nullptr)
        ts.reg_prev->reg_next = ts.reg_next;
    else
        r.head = ts.reg_next;
    if (ts.reg_next != nullptr)
        ts.reg_next->reg_prev = ts.reg_prev;
    ts.reg_prev = ts.reg_next = nullptr;
    ts.registered = false;
    ts.gen = 0;
}

void sum_task_counters(task_counters& out) noexcept
{
    registry& r = reg();
    std::lock_guard<std::mutex> g(r.lock);
    zero_counters(out);
    add_counters(out, r.exited);
    for (task_state* t = r.head; t != nullptr; t = t->reg_next)
        add_counters(out, t->counters);
}

namespace {
void reset_task_counters() noexcept
{
    registry& r = reg();
    std::lock_guard<std::mutex> g(r.lock);
    zero_counters(r.exited);
    for (task_state* t = r.head; t != nullptr; t = t->reg_next)
        zero_counters(t->counters);
}
} // namespace

} // namespace detail

using namespace detail;

void reset() noexcept
{
    graph_state& g = graph();
    unsigned classes_used = 0;
    {
        std::lock_guard<std::mutex> guard(g.lock);
        classes_used = g.nr_classes;
        reset_graph_locked();
        reset_chains_locked();
        reset_classes_locked();
        reset_depot_locked();
        g.counters = graph_counters{};
        g.lim = limits{};
        g_depth_limit.store(g.lim.lock_depth, std::memory_order_relaxed);
        g.debug_locks = true;
        g.user_on = true;
        g.pending_text.clear();
        g.pending_json.clear();
        reset_reports_locked();
        if (++g.generation >= (1u << (32 - STATE_GEN_SHIFT)))
            g.generation = 1;
        g_max_lock_depth.store(0, std::memory_order_relaxed);
        publish_state_locked();
    }
    reset_task_counters();
    stat_reset(classes_used);
    // The caller starts clean in the new generation (it is the one resetting, so it is not
    // holding anything it expects lockdep to remember).
    task_state& ts = current_task_state();
    clear_task(ts);
    ts.resync = false;
    ts.recursion = 0;
    ts.gen = g.generation;
    if (!ts.registered) {
        ts.gen = 0;
        task_sync(ts, g.generation);
    }
}

void set_enabled(bool on) noexcept
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    if (on && !g.user_on) {
        // Locks taken while off were not tracked: start a new generation so every task drops its
        // stack and tolerates the releases it cannot match.
        if (++g.generation >= (1u << (32 - STATE_GEN_SHIFT)))
            g.generation = 1;
    }
    g.user_on = on;
    publish_state_locked();
}

bool debug_locks() noexcept
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    return g.debug_locks;
}

void set_one_shot(bool on) noexcept
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    g.one_shot = on;
}

void set_count_ops(bool on) noexcept
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    g.count_ops = on;
    publish_state_locked();
}

stats get_stats() noexcept
{
    task_counters t;
    sum_task_counters(t);
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    stats s{};
    s.lock_classes = g.nr_classes;
    s.direct_dependencies = g.nr_entries;
    s.dependency_chains = g.nr_chains;
    s.chain_hlocks = g.nr_chain_hlocks;
    s.stack_trace_entries = stack_trace_entries();
    s.chain_lookup_hits = t.chain_lookup_hits.load(std::memory_order_relaxed);
    s.chain_lookup_misses = g.counters.chain_lookup_misses;
    s.cyclic_checks = g.counters.cyclic_checks;
    s.max_lock_depth = g_max_lock_depth.load(std::memory_order_relaxed);
    s.max_bfs_queue_depth = g.counters.max_bfs_queue_depth;
    return s;
}

namespace test {
void set_limit(limit which, unsigned value) noexcept
{
    graph_state& g = graph();
    std::lock_guard<std::mutex> guard(g.lock);
    auto lower = [value](unsigned& l, unsigned max) { l = value < max ? value : max; };
    switch (which) {
    case limit::keys:
        lower(g.lim.keys, MAX_LOCKDEP_KEYS);
        break;
    case limit::entries:
        lower(g.lim.entries, MAX_LOCKDEP_ENTRIES);
        break;
    case limit::chains:
        lower(g.lim.chains, MAX_LOCKDEP_CHAINS);
        break;
    case limit::chain_hlocks:
        lower(g.lim.chain_hlocks, MAX_LOCKDEP_CHAIN_HLOCKS);
        break;
    case limit::stack_trace_entries:
        lower(g.lim.stack_trace_entries, MAX_STACK_TRACE_ENTRIES);
        break;
    case limit::lock_depth:
        lower(g.lim.lock_depth, MAX_LOCK_DEPTH);
        g_depth_limit.store(g.lim.lock_depth, std::memory_order_relaxed);
        break;
    }
}
} // namespace test

} // namespace klock::lockdep
