// The held-lock stack: acquire, release, downgrade, and the checks that only need the stack
// (held lock freed, locks held at exit).
//
// lock_acquire() on a known chain, step by step (kernel: __lock_acquire):
//   1. g_state: validating? which generation?               one relaxed load
//   2. the task's generation matches (else drop its stack)
//   3. class from the lock's class_cache                    one load, generation compared
//   4. push a held_lock; the usage bits this acquisition     one load of the class's usage mask
//      implies are already set in the class
//   5. chain key = mix(previous key, class id)               (restarted on an irq-context change)
//   6. the chain key is in the chain cache                   one probe of a lock-free table
//   7. store the new key and depth
// Any "no" in 3, 4 or 6 takes the slow path: the graph lock, then registration, usage marking or
// chain validation (graph.cpp). lock_release() of the innermost lock pops it and restores the
// saved chain key; releasing a lock below the top rebuilds the stack above it (the kernel's
// reacquire_held_locks), which revalidates the new, shorter chains.
//
// lock_stat rides on the same stack. With lock_stat on, each push stamps the hold (and, when the
// lock looks free, accounts the acquisition: bounce, the lock's last ip and CPU); each pop adds
// the hold time; lock_contended()/lock_acquired() time the wait and record where it happened
// (lock_stat.cpp has the details). With lock_stat on and validation off (lock_stat-only mode)
// a push records only what the statistics need: no usage bits, chain key, chain cache or report.
//
// While a task is inside lockdep its `recursion` flag is set, so an interrupt (a signal handler
// in the os world) that takes locks on the same task is ignored by lockdep rather than corrupting
// the stack; its releases are ignored the same way, so they stay balanced.
#include "internal.hpp"

#include <klock/env/os.hpp>

namespace klock::lockdep {

using namespace detail;

namespace {

struct acquire_args {
    lockdep_map* lock;
    lock_class* cls;
    bool trylock;
    std::uint8_t read;
    bool check;
    bool hardirqs_off;
    std::uint8_t irq_context;
    lockdep_map* nest;
    std::uintptr_t ip;
    std::uint16_t references;
};

[[gnu::always_inline]] inline std::uint8_t task_irq_context(const thread_info& ti)
{
    const std::uint32_t pc = ti.preempt_count;
    return static_cast<std::uint8_t>((in_hardirq(pc) ? CTX_HARDIRQ : 0) | (in_serving_softirq(pc) ? CTX_SOFTIRQ : 0));
}

[[gnu::always_inline]] inline void bump(std::atomic<std::uint64_t>& c)
{
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

bool is_held(const task_state& ts, const lockdep_map& lock, int read, std::uint32_t gen);

[[gnu::noinline]] bool slow_mark_usage(task_state& ts, const thread_info& ti, held_lock& h)
{
    graph_guard g;
    if (!g.locked())
        return false;
    return mark_usage_locked(ts, ti, h);
}

// A chain-cache miss: validate under the graph lock. false: lockdep is off now.
[[gnu::noinline]] bool slow_validate_chain(
    task_state& ts, const thread_info& ti, held_lock& h, std::uint64_t chain_key, bool chain_head)
{
    graph_guard g;
    if (!g.locked())
        return false;
    if (chain_cache_lookup(chain_key)) { // validated by another task meanwhile
        bump(ts.counters.chain_lookup_hits);
        return true;
    }
    if (!add_chain_cache_locked(ts, ti, h, chain_key))
        return false;
    ++graph().counters.chain_lookup_misses;
    validate_new_chain_locked(ts, ti, h, chain_head);
    return graph().debug_locks;
}

[[gnu::noinline]] void slow_nest_not_held(task_state& ts, const thread_info& ti, const held_lock& h)
{
    graph_guard g;
    if (g.locked())
        report_nested_not_held_locked(ts, ti, h);
}

[[gnu::noinline]] void slow_max_depth(task_state& ts, const thread_info& ti)
{
    graph_guard g;
    if (g.locked())
        report_max_depth_locked(ts, ti);
}

// lock_stat's part of a push.
[[gnu::always_inline]] inline void push_stat(
    held_lock& h, const acquire_args& a, std::uint32_t s, const held_lock* again)
{
    if (__builtin_expect((s & STATE_STAT) == 0, 1))
        return;
    if (again != nullptr) {
        h.waittime_stamp = again->waittime_stamp;
        h.holdtime_stamp = again->holdtime_stamp;
        h.stat_flags = again->stat_flags;
        h.stat_prev = again->stat_prev;
        return;
    }
    stat_acquire(h, *a.lock);
}

// The part of a push both modes share: the merge into the top entry under a nest lock, and
// filling the new entry (not yet counted in ts.depth). Returns the entry, or nullptr with
// *result = 0 (no room) or 2 (merged into the top entry).
[[gnu::always_inline]] inline held_lock* prepare_push(
    task_state& ts, const acquire_args& a, std::uint32_t s, int* result)
{
    const auto idx = static_cast<std::uint16_t>(class_index(a.cls));
    if (__builtin_expect((s & STATE_OPS) != 0, 0))
        bump(g_class_ops[idx]);
    const unsigned depth = ts.depth;
    *result = 0;
    if (__builtin_expect(depth >= MAX_LOCK_DEPTH, 0))
        return nullptr;
    if (a.nest != nullptr && depth != 0) {
        // Same class as the lock on top, under a nest lock: count it there instead of pushing
        // (the kernel's references, e.g. many locks of one class taken under one mutex).
        held_lock& top = ts.held_locks[depth - 1];
        if (top.class_idx == idx) {
            const unsigned refs = (a.references != 0 ? a.references : 1u) + (top.references != 0 ? top.references : 1u);
            if (refs > 0xffffu)
                return nullptr;
            top.references = static_cast<std::uint16_t>(refs);
            *result = 2;
            return nullptr;
        }
    }
    held_lock& h = ts.held_locks[depth];
    h.class_idx = idx;
    h.acquire_ip = a.ip;
    h.instance = a.lock;
    h.nest_lock = a.nest;
    h.irq_context = a.irq_context;
    h.trylock = a.trylock;
    h.read = a.read;
    h.check = a.check;
    h.hardirqs_off = a.hardirqs_off;
    h.references = a.references;
    h.waittime_stamp = 0;
    h.holdtime_stamp = 0;
    h.stat_flags = 0;
    h.stat_prev = 0;
    return &h;
}

// lock_stat-only mode: push what the statistics need, validate nothing.
[[gnu::always_inline]] inline int do_acquire_untracked(
    task_state& ts, const acquire_args& a, std::uint32_t s, const held_lock* again)
{
    int result;
    held_lock* hp = prepare_push(ts, a, s, &result);
    if (hp == nullptr)
        return result;
    hp->prev_chain_key = ts.curr_chain_key; // the chain key is not maintained without validation
    ts.depth = ts.depth + 1;
    push_stat(*hp, a, s, again);
    return 1;
}

// Returns 0: not pushed (lockdep off), 1: pushed, 2: merged into the top entry (nest_lock).
// `again`: the entry being pushed again after a release below it (reacquire), whose lock_stat
// stamps carry over.
[[gnu::always_inline]] inline int do_acquire(
    task_state& ts, const thread_info& ti, const acquire_args& a, std::uint32_t s, const held_lock* again)
{
    int result;
    held_lock* hp = prepare_push(ts, a, s, &result);
    if (hp == nullptr)
        return result;
    held_lock& h = *hp;
    const unsigned depth = ts.depth;

    const std::uint32_t need = needed_usage(h, ti);
    if (__builtin_expect((a.cls->usage_mask.load(std::memory_order_relaxed) & need) != need, 0)) {
        if (!slow_mark_usage(ts, ti, h))
            return 0;
    }

    std::uint64_t base = ts.curr_chain_key;
    bool chain_head = depth == 0;
    h.prev_chain_key = base;
    if (depth != 0 && ts.held_locks[depth - 1].irq_context != h.irq_context) {
        base = INITIAL_CHAIN_KEY; // a new irq context starts a new chain
        chain_head = true;
    }
    const std::uint16_t id = hlock_id(h);

    if (__builtin_expect(a.nest != nullptr, 0) && !is_held(ts, *a.nest, -1, state_gen(s))) {
        slow_nest_not_held(ts, ti, h);
        if (!(g_state.load(std::memory_order_relaxed) & STATE_ON))
            return 0;
    }

    std::uint64_t chain_key;
    // A trylock cannot deadlock, so it adds no dependency into itself; unchecked locks neither.
    if (!h.trylock && h.check) {
        if (h.memo_id == id && h.memo_base == base) {
            chain_key = h.memo_key; // this depth's last chain again: validated, in the cache
            bump(ts.counters.chain_lookup_hits);
        } else {
            chain_key = iterate_chain_key(base, id);
            if (__builtin_expect(chain_cache_lookup(chain_key), 1))
                bump(ts.counters.chain_lookup_hits);
            else if (!slow_validate_chain(ts, ti, h, chain_key, chain_head))
                return 0;
            h.memo_id = id;
            h.memo_base = base;
            h.memo_key = chain_key;
        }
    } else {
        chain_key = iterate_chain_key(base, id);
    }

    ts.curr_chain_key = chain_key;
    ts.depth = depth + 1;
    push_stat(h, a, s, again);
    if (__builtin_expect(depth + 1 >= g_depth_limit.load(std::memory_order_relaxed), 0)) {
        slow_max_depth(ts, ti);
        return 0;
    }
    if (__builtin_expect(depth + 1 > g_max_lock_depth.load(std::memory_order_relaxed), 0))
        g_max_lock_depth.store(depth + 1, std::memory_order_relaxed);
    return 1;
}

[[gnu::always_inline]] inline int acquire_any(
    task_state& ts, const thread_info& ti, const acquire_args& a, std::uint32_t s, const held_lock* again)
{
    if (__builtin_expect((s & STATE_ON) != 0, 1))
        return do_acquire(ts, ti, a, s, again);
    return do_acquire_untracked(ts, a, s, again);
}

bool match_held_lock(const held_lock& h, const lockdep_map& lock, std::uint32_t gen)
{
    if (h.instance == &lock)
        return true;
    if (h.references != 0) {
        const lock_class* c = cached_class(lock, 0, gen);
        if (c == nullptr)
            c = lookup_class(lock, 0);
        return c != nullptr && h.class_idx == class_index(c);
    }
    return false;
}

// Index of the held entry for `lock`, searching down from the top without crossing into another
// irq context; -1 if none.
int find_held_lock(const task_state& ts, const lockdep_map& lock, std::uint32_t gen)
{
    int i = static_cast<int>(ts.depth) - 1;
    if (i < 0)
        return -1;
    if (match_held_lock(ts.held_locks[i], lock, gen))
        return i;
    for (--i; i >= 0; --i) {
        if (ts.held_locks[i + 1].irq_context != ts.held_locks[i].irq_context)
            return -1;
        if (match_held_lock(ts.held_locks[i], lock, gen))
            return i;
    }
    return -1;
}

bool is_held(const task_state& ts, const lockdep_map& lock, int read, std::uint32_t gen)
{
    for (unsigned i = 0; i < ts.depth; ++i) {
        const held_lock& h = ts.held_locks[i];
        if (match_held_lock(h, lock, gen))
            return read == -1 || (h.read != 0) == (read != 0);
    }
    return false;
}

// Push again the entries [from, old_depth) after the stack was cut at ts.depth (the kernel's
// reacquire_held_locks). Entries are copied out first: pushing writes slots at or below them.
bool reacquire(task_state& ts, const thread_info& ti, unsigned old_depth, unsigned from, std::uint32_t s)
{
    for (unsigned i = from; i < old_depth; ++i) {
        const held_lock h = ts.held_locks[i];
        const acquire_args a{h.instance, class_at(h.class_idx), h.trylock, h.read, h.check, h.hardirqs_off,
            h.irq_context, h.nest_lock, h.acquire_ip, h.references};
        if (acquire_any(ts, ti, a, s, &h) == 0)
            return false;
    }
    return true;
}

[[gnu::noinline]] void unlock_imbalance(
    task_state& ts, const thread_info& ti, const lockdep_map& lock, std::uintptr_t ip)
{
    if (ts.resync)
        return; // may be a lock taken before this task's state was dropped
    if (lock_without_class(lock))
        return; // never tracked (reported when it was taken)
    graph_guard g;
    if (g.locked())
        report_unlock_imbalance_locked(ts, ti, lock, ip);
}

[[gnu::noinline]] void slow_release(
    task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip, std::uint32_t s)
{
    const unsigned depth = ts.depth;
    const int i = find_held_lock(ts, lock, state_gen(s));
    if (i < 0) {
        if (s & STATE_ON)
            unlock_imbalance(ts, ti, lock, ip);
        return;
    }
    held_lock& h = ts.held_locks[i];
    if ((s & STATE_STAT) != 0 && h.instance == &lock)
        stat_release(ts, h);
    if (h.references != 0) {
        if (--h.references != 0)
            return; // other same-class locks merged here are still held
    }
    ts.depth = static_cast<unsigned>(i);
    ts.curr_chain_key = h.prev_chain_key;
    if (static_cast<unsigned>(i) + 1 != depth)
        reacquire(ts, ti, depth, static_cast<unsigned>(i) + 1, s);
}

struct entry_guard {
    task_state& ts;
    entry_guard(task_state& t, std::uintptr_t ra, std::uint32_t s) noexcept : ts(t)
    {
        ts.recursion = 1;
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (__builtin_expect(ts.gen != state_gen(s), 0))
            task_sync(ts, state_gen(s));
        ts.entry_ip = ra;
    }
    ~entry_guard()
    {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        ts.recursion = 0;
    }
    entry_guard(const entry_guard&) = delete;
    entry_guard& operator=(const entry_guard&) = delete;
};

[[gnu::always_inline]] inline void acquire_entry(task_state& ts, const thread_info& ti, lockdep_map& lock,
    unsigned subclass, int trylock, int read, int check, lockdep_map* nest, std::uintptr_t ip, std::uintptr_t ra)
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (__builtin_expect(!(s & STATE_TRACK) || ts.recursion != 0, 0))
        return;
    entry_guard eg(ts, ra, s);
    lock_class* c = cached_class(lock, subclass, state_gen(s));
    if (__builtin_expect(c == nullptr, 0)) {
        c = register_lock_class(ts, ti, lock, subclass);
        if (c == nullptr)
            return;
    }
    const acquire_args a{&lock, c, trylock != 0, static_cast<std::uint8_t>(read & 3), check != 0, ti.irqs_disabled,
        task_irq_context(ti), nest, ip != 0 ? ip : ra, 0};
    acquire_any(ts, ti, a, s, nullptr);
}

[[gnu::always_inline]] inline void release_entry(
    task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip, std::uintptr_t ra)
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (__builtin_expect(!(s & STATE_TRACK) || ts.recursion != 0, 0))
        return;
    entry_guard eg(ts, ra, s);
    const unsigned depth = ts.depth;
    if (__builtin_expect(depth != 0, 1)) {
        held_lock& top = ts.held_locks[depth - 1];
        if (__builtin_expect(top.instance == &lock && top.references == 0, 1)) {
            ts.depth = depth - 1;
            ts.curr_chain_key = top.prev_chain_key;
            if (s & STATE_STAT)
                stat_release(ts, top);
            return;
        }
        slow_release(ts, ti, lock, ip != 0 ? ip : ra, s);
        return;
    }
    if (s & STATE_ON)
        unlock_imbalance(ts, ti, lock, ip != 0 ? ip : ra);
}

} // namespace

// ---- explicit task ----

void lock_acquire(task_state& ts, const thread_info& ti, lockdep_map& lock, unsigned subclass, int trylock, int read,
    int check, lockdep_map* nest_lock, std::uintptr_t ip) noexcept
{
    acquire_entry(ts, ti, lock, subclass, trylock, read, check, nest_lock, ip,
        reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

void lock_release(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    release_entry(ts, ti, lock, ip, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

void lock_downgrade(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (!(s & STATE_TRACK) || ts.recursion != 0)
        return;
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    entry_guard eg(ts, ra, s);
    const unsigned depth = ts.depth;
    const int i = find_held_lock(ts, lock, state_gen(s));
    if (i < 0) {
        if (s & STATE_ON)
            unlock_imbalance(ts, ti, lock, ip != 0 ? ip : ra);
        return;
    }
    held_lock& h = ts.held_locks[i];
    ts.depth = static_cast<unsigned>(i);
    ts.curr_chain_key = h.prev_chain_key;
    h.read = READ;
    h.acquire_ip = ip != 0 ? ip : ra;
    // The kernel restarts the hold here (its reacquire stamps it anew): the rest counts as a read
    // hold, the write part is not counted.
    if ((s & STATE_STAT) != 0 && h.holdtime_stamp != 0)
        h.holdtime_stamp = stat_clock();
    reacquire(ts, ti, depth, static_cast<unsigned>(i), s);
}

void lock_contended(task_state& ts, const thread_info&, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (__builtin_expect(!(s & STATE_STAT) || ts.recursion != 0 || ts.gen != state_gen(s), 1))
        return;
    entry_guard eg(ts, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)), s);
    const int i = find_held_lock(ts, lock, state_gen(s));
    if (i >= 0 && ts.held_locks[i].instance == &lock)
        stat_contended(ts, ts.held_locks[i], lock, ip);
}

void lock_acquired(task_state& ts, const thread_info&, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (__builtin_expect(!(s & STATE_STAT) || ts.recursion != 0 || ts.gen != state_gen(s), 1))
        return;
    entry_guard eg(ts, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)), s);
    const int i = find_held_lock(ts, lock, state_gen(s));
    if (i >= 0 && ts.held_locks[i].instance == &lock)
        stat_acquired(ts, ts.held_locks[i], lock, ip);
}

bool lock_is_held(const task_state& ts, const lockdep_map& lock, int read) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (!(s & STATE_ON) || ts.gen != state_gen(s))
        return true; // unknown: do not fail lockdep_assert_held()
    return is_held(ts, lock, read, state_gen(s));
}

void debug_check_no_locks_freed(
    task_state& ts, const thread_info& ti, const void* mem, std::size_t len, std::uintptr_t ip) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (!(s & STATE_ON) || ts.recursion != 0 || ts.gen != state_gen(s))
        return;
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    entry_guard eg(ts, ra, s);
    (void)ip;
    const auto from = reinterpret_cast<std::uintptr_t>(mem);
    for (unsigned i = 0; i < ts.depth; ++i) {
        const auto lock = reinterpret_cast<std::uintptr_t>(ts.held_locks[i].instance);
        if (lock + sizeof(lockdep_map) <= from || from + len <= lock)
            continue;
        graph_guard g;
        if (g.locked())
            report_freed_locked(ts, ti, mem, static_cast<const char*>(mem) + len, ts.held_locks[i]);
        break;
    }
}

void debug_check_no_locks_held(task_state& ts, const thread_info& ti) noexcept
{
    const std::uint32_t s = g_state.load(std::memory_order_relaxed);
    if (!(s & STATE_ON) || ts.recursion != 0 || ts.gen != state_gen(s) || ts.depth == 0)
        return;
    const auto ra = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    entry_guard eg(ts, ra, s);
    graph_guard g;
    if (g.locked())
        report_held_at_exit_locked(ts, ti);
}

void task_exit(task_state& ts, const thread_info& ti) noexcept
{
    debug_check_no_locks_held(ts, ti);
    task_unregister(ts);
    ts.depth = 0;
    ts.curr_chain_key = INITIAL_CHAIN_KEY;
    ts.resync = false;
    ts.gen = 0;
}

void task_forget(task_state& ts) noexcept
{
    task_unregister(ts);
    ts.depth = 0;
    ts.curr_chain_key = INITIAL_CHAIN_KEY;
    ts.resync = false;
    ts.gen = 0;
}

// ---- the os world ----

void lock_acquire(lockdep_map& lock, unsigned subclass, int trylock, int read, int check, lockdep_map* nest_lock,
    std::uintptr_t ip) noexcept
{
    acquire_entry(tls_state, env::os::info(env::os::current()), lock, subclass, trylock, read, check, nest_lock, ip,
        reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

void lock_release(lockdep_map& lock, std::uintptr_t ip) noexcept
{
    release_entry(tls_state, env::os::info(env::os::current()), lock, ip,
        reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

} // namespace klock::lockdep
