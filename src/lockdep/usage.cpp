// Usage states and irq safety (kernel: mark_usage, mark_lock, mark_lock_irq, check_irq_usage,
// check_usage_forwards/backwards, lockdep_hardirqs_on/off, lockdep_softirqs_on/off).
//
// Each class accumulates usage bits, two directions per irq state (HARDIRQ, SOFTIRQ), each in a
// write and a read flavour:
//   USED_IN_<irq>[_READ]   taken inside that irq context             -> the class is irq-safe
//   ENABLED_<irq>[_READ]   taken (or held) with that irq enabled      -> the class is irq-unsafe
//   USED / USED_READ       taken at all
// A class may not be both: that is an "inconsistent lock state" (an interrupt may arrive while the
// lock is held and take it again). Across the graph, a path from an irq-safe class to an irq-unsafe
// one is a deadlock too (the unsafe lock's holder is interrupted by a handler waiting for the safe
// lock, whose holder waits for the unsafe one): checked when a new bit is set (irq lock inversion,
// BFS from the class) and when a new edge is added (safe -> unsafe lock order, BFS from both ends).
// The first time a bit is set its stack is kept for the report.
//
// Only a class's first acquisition in each context pays for this: the hit path compares the bits
// an acquisition implies with the class's mask (one load) and comes here only when one is new.
#include "internal.hpp"

#include <klock/env/os.hpp>

namespace klock::lockdep {

using namespace detail;

namespace detail {

namespace {

const char* const k_usage_str[USAGE_STATES] = {
    "IN-HARDIRQ-W",
    "IN-HARDIRQ-R",
    "HARDIRQ-ON-W",
    "HARDIRQ-ON-R",
    "IN-SOFTIRQ-W",
    "IN-SOFTIRQ-R",
    "SOFTIRQ-ON-W",
    "SOFTIRQ-ON-R",
    "INITIAL USE",
    "INITIAL READ USE",
};

const char* state_name(int bit)
{
    static const char* const names[] = {"HARDIRQ", "SOFTIRQ"};
    static const char* const rnames[] = {"HARDIRQ-READ", "SOFTIRQ-READ"};
    return (bit & USAGE_READ_MASK) ? rnames[bit >> 2] : names[bit >> 2];
}

// Keep the state, flip the direction, drop read.
int exclusive_bit(int new_bit)
{
    const int state = new_bit & USAGE_STATE_MASK;
    const int dir = new_bit & USAGE_DIR_MASK;
    return state | (dir ^ USAGE_DIR_MASK);
}

std::uint32_t invert_dir_mask(std::uint32_t mask)
{
    std::uint32_t excl = 0;
    excl |= (mask & LOCKF_ENABLED_IRQ_ALL) >> USAGE_DIR_MASK;
    excl |= (mask & LOCKF_USED_IN_IRQ_ALL) << USAGE_DIR_MASK;
    return excl;
}

// Bits that conflict with `mask`: the opposite direction, read or not (a read usage conflicts with
// a write usage of the other direction and with a read one).
std::uint32_t exclusive_mask(std::uint32_t mask)
{
    std::uint32_t excl = invert_dir_mask(mask);
    excl |= (excl & LOCKF_IRQ_READ) >> USAGE_READ_MASK;
    excl |= (excl & LOCKF_IRQ) << USAGE_READ_MASK;
    return excl;
}

std::uint32_t original_mask(std::uint32_t mask) { return exclusive_mask(mask); }

bool find_exclusive_match(std::uint32_t mask, std::uint32_t excl_mask, int& bitp, int& excl_bitp)
{
    for (int bit = 0; bit < USED; ++bit) {
        if (!(mask & flag(bit)))
            continue;
        const int excl = exclusive_bit(bit);
        const int excl_read = excl | USAGE_READ_MASK;
        if (excl_mask & flag(excl)) {
            bitp = bit;
            excl_bitp = excl;
            return true;
        }
        if (excl_mask & flag(excl_read)) {
            bitp = bit;
            excl_bitp = excl_read;
            return true;
        }
    }
    return false;
}

// Backwards: which usages of A matter for a path A -> ... -> B. Only the write ones when the path
// starts with a shared hold (-(S*)->).
bool usage_accumulate(lock_list* entry, void* mask)
{
    const std::uint32_t u = entry->cls->usage_mask.load(std::memory_order_relaxed);
    *static_cast<std::uint32_t*>(mask) |= entry->only_xr ? (u & LOCKF_IRQ) : u;
    return false;
}

bool usage_match(lock_list* entry, void* mask)
{
    const std::uint32_t u = entry->cls->usage_mask.load(std::memory_order_relaxed);
    const std::uint32_t m = *static_cast<std::uint32_t*>(mask);
    return ((entry->only_xr ? (u & LOCKF_IRQ) : u) & m) != 0;
}

bool bfs_ok(task_state& ts, const thread_info& ti, bfs_result r)
{
    if (static_cast<int>(r) < 0) {
        bfs_bug_locked(ts, ti, r);
        return false;
    }
    return true;
}

bool valid_state(task_state& ts, const thread_info& ti, held_lock& h, int new_bit, int bad_bit)
{
    if (class_at(h.class_idx)->usage_mask.load(std::memory_order_relaxed) & flag(bad_bit)) {
        report_usage_locked(ts, ti, h, bad_bit, new_bit);
        return false;
    }
    return true;
}

// No class reachable forwards from h's may have the usages in `bit` (and its read flavour).
bool check_usage_forwards(task_state& ts, const thread_info& ti, held_lock& h, int bit)
{
    const int read_bit = bit + USAGE_READ_MASK;
    std::uint32_t mask = flag(bit) | flag(read_bit);
    lock_list root;
    bfs_init_root(&root, h);
    ++graph().counters.find_usage_forwards_checks;
    lock_list* target = nullptr;
    const bfs_result r = bfs_forwards(&root, &mask, usage_match, &target);
    if (!bfs_ok(ts, ti, r))
        return false;
    if (r == bfs_result::no_match)
        return true;
    const bool write = target->cls->usage_mask.load(std::memory_order_relaxed) & flag(bit);
    report_irq_inversion_locked(ts, ti, &root, target, h, true, state_name(write ? bit : read_bit));
    return false;
}

bool check_usage_backwards(task_state& ts, const thread_info& ti, held_lock& h, int bit)
{
    const int read_bit = bit + USAGE_READ_MASK;
    std::uint32_t mask = flag(bit) | flag(read_bit);
    lock_list root;
    bfs_init_rootb(&root, h);
    ++graph().counters.find_usage_backwards_checks;
    lock_list* target = nullptr;
    const bfs_result r = bfs_backwards(&root, &mask, usage_match, &target);
    if (!bfs_ok(ts, ti, r))
        return false;
    if (r == bfs_result::no_match)
        return true;
    const bool write = target->cls->usage_mask.load(std::memory_order_relaxed) & flag(bit);
    report_irq_inversion_locked(ts, ti, &root, target, h, false, state_name(write ? bit : read_bit));
    return false;
}

void mark_lock_irq(task_state& ts, const thread_info& ti, held_lock& h, int new_bit)
{
    const int excl_bit = exclusive_bit(new_bit);
    const int read = new_bit & USAGE_READ_MASK;
    const int dir = new_bit & USAGE_DIR_MASK;
    if (!valid_state(ts, ti, h, new_bit, excl_bit))
        return;
    if (!read && !valid_state(ts, ti, h, new_bit, excl_bit + USAGE_READ_MASK))
        return;
    // Marking ENABLED looks backwards for a USED_IN class that leads here; marking USED_IN looks
    // forwards for an ENABLED class this one leads to.
    if (dir)
        check_usage_backwards(ts, ti, h, excl_bit);
    else
        check_usage_forwards(ts, ti, h, excl_bit);
}

// Set one usage bit; false only when lockdep got switched off (a limit, or a one-shot report).
bool mark_lock(task_state& ts, const thread_info& ti, held_lock& h, int new_bit)
{
    if (new_bit == USED && h.read != 0)
        new_bit = USED_READ;
    lock_class* c = class_at(h.class_idx);
    const std::uint32_t mask = flag(new_bit);
    if (c->usage_mask.load(std::memory_order_relaxed) & mask)
        return true;
    c->usage_mask.fetch_or(mask, std::memory_order_relaxed);
    if (new_bit < TRACE_STATES) {
        c->usage_traces[new_bit] = save_trace_locked(ts, ti);
        if (c->usage_traces[new_bit] == 0)
            return false;
    }
    if (new_bit < USED)
        mark_lock_irq(ts, ti, h, new_bit);
    return graph().debug_locks;
}

// Mark every checked held lock with base_bit (its read flavour for read holds).
void mark_held_locks(task_state& ts, const thread_info& ti, int base_bit)
{
    bool any = false;
    for (unsigned i = 0; i < ts.depth && !any; ++i) {
        const held_lock& h = ts.held_locks[i];
        const int bit = base_bit + (h.read != 0 ? USAGE_READ_MASK : 0);
        any = h.check && !(class_at(h.class_idx)->usage_mask.load(std::memory_order_relaxed) & flag(bit));
    }
    if (!any)
        return;
    graph_guard g;
    if (!g.locked())
        return;
    for (unsigned i = 0; i < ts.depth; ++i) {
        held_lock& h = ts.held_locks[i];
        if (!h.check)
            continue;
        if (!mark_lock(ts, ti, h, base_bit + (h.read != 0 ? USAGE_READ_MASK : 0)))
            return;
    }
}

bool softirqs_enabled(const thread_info& ti) { return (ti.preempt_count & SOFTIRQ_MASK) == 0; }

void bump(std::atomic<std::uint64_t>& c) { c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

// The shared prologue of the irq-tracing hooks: same rules as an acquire (validating, not
// re-entered, current generation).
class hook_scope {
public:
    hook_scope(task_state& ts, std::uintptr_t ra) noexcept : ts_(ts)
    {
        const std::uint32_t s = g_state.load(std::memory_order_relaxed);
        if (!(s & STATE_ON) || ts.recursion != 0)
            return;
        ts.recursion = 1;
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (ts.gen != state_gen(s))
            task_sync(ts, state_gen(s));
        ts.entry_ip = ra;
        active_ = true;
    }
    ~hook_scope()
    {
        if (!active_)
            return;
        std::atomic_signal_fence(std::memory_order_seq_cst);
        ts_.recursion = 0;
    }
    hook_scope(const hook_scope&) = delete;
    hook_scope& operator=(const hook_scope&) = delete;
    bool active() const noexcept { return active_; }

private:
    task_state& ts_;
    bool active_ = false;
};

} // namespace

bool mark_usage_locked(task_state& ts, const thread_info& ti, held_lock& h) noexcept
{
    const int r = h.read != 0 ? USAGE_READ_MASK : 0;
    if (h.check) {
        if (!h.trylock) {
            if ((h.irq_context & CTX_HARDIRQ) && !mark_lock(ts, ti, h, USED_IN_HARDIRQ + r))
                return false;
            if ((h.irq_context & CTX_SOFTIRQ) && !mark_lock(ts, ti, h, USED_IN_SOFTIRQ + r))
                return false;
        }
        if (!h.hardirqs_off) {
            if (!mark_lock(ts, ti, h, ENABLED_HARDIRQ + r))
                return false;
            if (softirqs_enabled(ti) && !mark_lock(ts, ti, h, ENABLED_SOFTIRQ + r))
                return false;
        }
    }
    return mark_lock(ts, ti, h, USED);
}

bool check_irq_usage_locked(task_state& ts, const thread_info& ti, held_lock& prev, held_lock& next) noexcept
{
    // 1. Every irq-safe usage that reaches prev backwards.
    lock_list this_root;
    bfs_init_rootb(&this_root, prev);
    std::uint32_t usage = 0;
    bfs_result r = bfs_backwards(&this_root, &usage, usage_accumulate, nullptr);
    if (!bfs_ok(ts, ti, r))
        return false;
    usage &= LOCKF_USED_IN_IRQ_ALL;
    if (usage == 0)
        return true;
    // 2. An irq-unsafe usage reachable forwards from next that conflicts with one of them.
    std::uint32_t forward_mask = exclusive_mask(usage);
    lock_list that_root;
    bfs_init_root(&that_root, next);
    lock_list* target1 = nullptr;
    ++graph().counters.find_usage_forwards_checks;
    r = bfs_forwards(&that_root, &forward_mask, usage_match, &target1);
    if (!bfs_ok(ts, ti, r))
        return false;
    if (r == bfs_result::no_match)
        return true;
    // 3. The safe class behind prev that the unsafe one conflicts with (only its ENABLED bits
    //    count: a lock that is merely safe for another irq is no partner).
    std::uint32_t backward_mask
        = original_mask(target1->cls->usage_mask.load(std::memory_order_relaxed) & LOCKF_ENABLED_IRQ_ALL);
    lock_list* target = nullptr;
    ++graph().counters.find_usage_backwards_checks;
    r = bfs_backwards(&this_root, &backward_mask, usage_match, &target);
    if (!bfs_ok(ts, ti, r))
        return false;
    if (r == bfs_result::no_match)
        return true;
    // 4. The pair of bits to name in the report.
    int backward_bit = 0, forward_bit = 0;
    if (!find_exclusive_match(target->cls->usage_mask.load(std::memory_order_relaxed),
            target1->cls->usage_mask.load(std::memory_order_relaxed), backward_bit, forward_bit))
        return true;
    report_bad_irq_dependency_locked(ts, ti, &this_root, &that_root, target, target1, prev, next, backward_bit,
        forward_bit, state_name(backward_bit));
    return false;
}

void usage_chars(const lock_class* c, char out[5]) noexcept
{
    const std::uint32_t u = c->usage_mask.load(std::memory_order_relaxed);
    auto one = [u](int bit) {
        if (u & flag(bit + USAGE_DIR_MASK))
            return (u & flag(bit)) ? '?' : '+';
        return (u & flag(bit)) ? '-' : '.';
    };
    out[0] = one(USED_IN_HARDIRQ);
    out[1] = one(USED_IN_HARDIRQ_READ);
    out[2] = one(USED_IN_SOFTIRQ);
    out[3] = one(USED_IN_SOFTIRQ_READ);
    out[4] = '\0';
}

const char* usage_str(int bit) noexcept { return bit >= 0 && bit < USAGE_STATES ? k_usage_str[bit] : "?"; }

} // namespace detail

// ---- irq-state tracing hooks ----

void hardirqs_on(task_state& ts, const thread_info& ti, std::uintptr_t ip) noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    hook_scope scope(ts, ra);
    if (!scope.active())
        return;
    if (!ts.hardirqs_traced_off) {
        bump(ts.counters.redundant_hardirqs_on);
        return;
    }
    // Everything held now will be held with hardirqs (and maybe softirqs) enabled.
    mark_held_locks(ts, ti, ENABLED_HARDIRQ);
    if (softirqs_enabled(ti))
        mark_held_locks(ts, ti, ENABLED_SOFTIRQ);
    ts.hardirqs_traced_off = false;
    ts.hardirq_enable_ip = ip != 0 ? ip : ra;
    ts.hardirq_enable_event = ++ts.irq_events;
    bump(ts.counters.hardirqs_on_events);
}

void hardirqs_off(task_state& ts, const thread_info&, std::uintptr_t ip) noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    hook_scope scope(ts, ra);
    if (!scope.active())
        return;
    if (ts.hardirqs_traced_off) {
        bump(ts.counters.redundant_hardirqs_off);
        return;
    }
    ts.hardirqs_traced_off = true;
    ts.hardirq_disable_ip = ip != 0 ? ip : ra;
    ts.hardirq_disable_event = ++ts.irq_events;
    bump(ts.counters.hardirqs_off_events);
}

void softirqs_on(task_state& ts, const thread_info& ti, std::uintptr_t ip) noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    hook_scope scope(ts, ra);
    if (!scope.active())
        return;
    if (!ts.softirqs_traced_off) {
        bump(ts.counters.redundant_softirqs_on);
        return;
    }
    ts.softirqs_traced_off = false;
    ts.softirq_enable_ip = ip != 0 ? ip : ra;
    ts.softirq_enable_event = ++ts.irq_events;
    bump(ts.counters.softirqs_on_events);
    if (!ti.irqs_disabled)
        mark_held_locks(ts, ti, ENABLED_SOFTIRQ);
}

void softirqs_off(task_state& ts, const thread_info&, std::uintptr_t ip) noexcept
{
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    hook_scope scope(ts, ra);
    if (!scope.active())
        return;
    if (ts.softirqs_traced_off) {
        bump(ts.counters.redundant_softirqs_off);
        return;
    }
    ts.softirqs_traced_off = true;
    ts.softirq_disable_ip = ip != 0 ? ip : ra;
    ts.softirq_disable_event = ++ts.irq_events;
    bump(ts.counters.softirqs_off_events);
}

} // namespace klock::lockdep
