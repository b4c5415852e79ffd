// lockdep's internal data structures and the functions its files share.
//
// Storage is static, sized by the kernel's limits, and never freed (reset() reinitialises the used
// part): a class, a dependency entry or a chain is named by its index, so the hit path can read a
// class through a 32-bit number cached in the lock, and a stale number is caught by the generation.
//
//   classes      lock_class[MAX_LOCKDEP_KEYS]            one per (key, subclass)
//   class hash   open addressing, key pointer -> index   lock-free lookup, insert under graph lock
//   entries      lock_list[MAX_LOCKDEP_ENTRIES]          each dependency twice: in prev's
//                                                        locks_after and in next's locks_before
//   chains       lock_chain[MAX_LOCKDEP_CHAINS]          + chain_hlocks (class ids, 5 per chain)
//   chain hash   open addressing of 64-bit chain keys    lock-free lookup (the hit path)
//   stack depot  deduplicated raw return addresses       handle = 32-bit record number
//
// Everything that is not atomic is written only with the graph lock held. Readers without the
// lock (the hit paths) read only atomics: a class's usage mask, the two hash tables, g_state.
#pragma once

#include <klock/detail/json.hpp>
#include <klock/lockdep.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace klock::lockdep::detail {

// printf onto the end of a string (any length): the report and /proc builders' formatter.
[[gnu::format(printf, 2, 3)]] void appendf(std::string& out, const char* fmt, ...);

// ---- usage bits (kernel/locking/lockdep_states.h, lockdep_internals.h) ----
// bit 0: read, bit 1: direction (0 used in irq, 1 irq enabled), bits 2+: the irq state.
enum usage_bit : int {
    USED_IN_HARDIRQ = 0,
    USED_IN_HARDIRQ_READ = 1,
    ENABLED_HARDIRQ = 2,
    ENABLED_HARDIRQ_READ = 3,
    USED_IN_SOFTIRQ = 4,
    USED_IN_SOFTIRQ_READ = 5,
    ENABLED_SOFTIRQ = 6,
    ENABLED_SOFTIRQ_READ = 7,
    USED = 8,
    USED_READ = 9,
    USAGE_STATES = 10,
};
inline constexpr int USAGE_READ_MASK = 1;
inline constexpr int USAGE_DIR_MASK = 2;
inline constexpr int USAGE_STATE_MASK = ~(USAGE_READ_MASK | USAGE_DIR_MASK);
inline constexpr int TRACE_STATES = 9; // irq bits 0..7 and USED keep the stack that set them

constexpr std::uint32_t flag(int bit) { return 1u << bit; }
inline constexpr std::uint32_t LOCKF_USED_IN_IRQ_ALL
    = flag(USED_IN_HARDIRQ) | flag(USED_IN_HARDIRQ_READ) | flag(USED_IN_SOFTIRQ) | flag(USED_IN_SOFTIRQ_READ);
inline constexpr std::uint32_t LOCKF_ENABLED_IRQ_ALL
    = flag(ENABLED_HARDIRQ) | flag(ENABLED_HARDIRQ_READ) | flag(ENABLED_SOFTIRQ) | flag(ENABLED_SOFTIRQ_READ);
inline constexpr std::uint32_t LOCKF_IRQ
    = flag(USED_IN_HARDIRQ) | flag(ENABLED_HARDIRQ) | flag(USED_IN_SOFTIRQ) | flag(ENABLED_SOFTIRQ);
inline constexpr std::uint32_t LOCKF_IRQ_READ = LOCKF_IRQ << 1;
inline constexpr std::uint32_t LOCKF_USED = flag(USED);

// ---- irq context of a held lock / chain ----
inline constexpr std::uint8_t CTX_SOFTIRQ = 1;
inline constexpr std::uint8_t CTX_HARDIRQ = 2;

// ---- dependency kinds on an edge prev -> next (DEP_*_BIT) ----
// bit0: prev is exclusive (read == 0); bit1: next is non-recursive (read != 2).
inline constexpr std::uint8_t DEP_SR = 1u << 0; // shared prev, recursive next
inline constexpr std::uint8_t DEP_ER = 1u << 1; // exclusive prev, recursive next
inline constexpr std::uint8_t DEP_SN = 1u << 2; // shared prev, non-recursive next
inline constexpr std::uint8_t DEP_EN = 1u << 3; // exclusive prev, non-recursive next

struct lock_list;

struct lock_class {
    const void* key = nullptr; // &lock_class_key::subkeys[subclass]
    const char* name = nullptr;
    unsigned subclass = 0;
    int name_version = 0;
    std::atomic<std::uint32_t> usage_mask{0};
    std::uint32_t usage_traces[TRACE_STATES] = {};
    lock_list* after_head = nullptr; // locks_after: classes taken while holding this one
    lock_list* after_tail = nullptr;
    lock_list* before_head = nullptr; // locks_before: classes held while this one was taken
    lock_list* before_tail = nullptr;
    std::uint32_t dep_gen_id = 0; // BFS visit mark
};

struct lock_list {
    lock_class* cls = nullptr;      // the class at the other end
    lock_class* links_to = nullptr; // the class whose list this entry is in
    lock_list* next = nullptr;
    lock_list* parent = nullptr; // BFS tree
    std::uint32_t trace = 0;     // where the dependency was first seen
    std::uint16_t distance = 0;
    std::uint8_t dep = 0;
    bool only_xr = false; // BFS: the path so far reaches this entry only through -(*R)-> edges
};

struct lock_chain {
    std::uint64_t chain_key = 0;
    std::uint32_t base = 0;
    std::uint16_t depth = 0;
    std::uint8_t irq_context = 0;
};

// ---- global state (state.cpp) ----

struct limits {
    unsigned keys = MAX_LOCKDEP_KEYS;
    unsigned entries = MAX_LOCKDEP_ENTRIES;
    unsigned chains = MAX_LOCKDEP_CHAINS;
    unsigned chain_hlocks = MAX_LOCKDEP_CHAIN_HLOCKS;
    unsigned stack_trace_entries = MAX_STACK_TRACE_ENTRIES;
    unsigned lock_depth = MAX_LOCK_DEPTH;
};

// Counters changed under the graph lock (the kernel's debug_atomic_* that are not per task).
struct graph_counters {
    std::uint64_t chain_lookup_misses = 0;
    std::uint64_t cyclic_checks = 0;
    std::uint64_t find_usage_forwards_checks = 0;
    std::uint64_t find_usage_backwards_checks = 0;
    unsigned nr_hardirq_chains = 0, nr_softirq_chains = 0, nr_process_chains = 0;
    unsigned max_bfs_queue_depth = 0;
};

struct graph_state {
    std::mutex lock;
    limits lim;
    graph_counters counters;
    unsigned nr_classes = 0;
    unsigned nr_entries = 0;
    unsigned nr_chains = 0;
    unsigned nr_chain_hlocks = 0;
    std::uint32_t bfs_gen = 0;
    bool user_on = true; // set_enabled()
    bool debug_locks = true;
    bool one_shot = false;
    bool count_ops = false;
    bool stat_on = false; // lock_stat::set_enabled()
    std::uint32_t generation = 1;
    std::vector<std::string> pending_text; // reports built under the lock, emitted after it
    std::vector<std::string> pending_json;
};
graph_state& graph() noexcept;

extern lock_class g_classes[MAX_LOCKDEP_KEYS];
extern lock_list g_entries[MAX_LOCKDEP_ENTRIES];
extern lock_chain g_chains[MAX_LOCKDEP_CHAINS];
extern std::uint16_t g_chain_hlocks[MAX_LOCKDEP_CHAIN_HLOCKS];
extern std::atomic<std::uint64_t> g_class_ops[MAX_LOCKDEP_KEYS];
extern std::atomic<unsigned> g_max_lock_depth;
extern std::atomic<unsigned> g_depth_limit; // limits::lock_depth, read by the hit path
// The os world's task state (os.cpp).
extern thread_local constinit task_state tls_state __attribute__((tls_model("initial-exec")));

inline std::uint32_t state_gen(std::uint32_t s) { return s >> STATE_GEN_SHIFT; }
inline lock_class* class_at(unsigned idx) { return &g_classes[idx]; }
inline unsigned class_index(const lock_class* c) { return static_cast<unsigned>(c - g_classes); }

// Recompute g_state from the graph state's switches (graph lock held).
void publish_state_locked() noexcept;
// debug_locks_off(): returns true if this call switched it off (graph lock held).
bool debug_locks_off_locked() noexcept;

// The graph lock, with reports flushed after unlocking. Returns false (and holds nothing) when
// lockdep was switched off meanwhile, like the kernel's graph_lock().
class graph_guard {
public:
    graph_guard() noexcept;
    ~graph_guard();
    graph_guard(const graph_guard&) = delete;
    graph_guard& operator=(const graph_guard&) = delete;
    bool locked() const noexcept { return locked_; }
    void unlock() noexcept;

private:
    bool locked_ = false;
};

// The task's generation is stale: drop its state (registering it on first use).
void task_sync(task_state& ts, std::uint32_t gen) noexcept;
void task_unregister(task_state& ts) noexcept;
// Sum the task counters of all live and exited tasks.
void sum_task_counters(task_counters& out) noexcept;
// The registry of live task states: its lock (task_unregister() takes it too, so no state goes
// away while it is held) and its first entry (then reg_next).
std::mutex& registry_mutex() noexcept;
task_state* registry_first() noexcept;

// ---- classes (classes.cpp) ----
// The class of (lock, subclass) if it is known in generation `gen`, without locking.
[[gnu::always_inline]] inline lock_class* cached_class(
    const lockdep_map& lock, unsigned subclass, std::uint32_t gen) noexcept
{
    if (subclass >= NR_LOCKDEP_CACHING_CLASSES)
        return nullptr;
    const std::uint64_t v = lock.class_cache[subclass].load(std::memory_order_acquire);
    if ((v >> 32) != gen || (v & 0xffffffffu) == 0)
        return nullptr;
    return class_at(static_cast<unsigned>(v & 0xffffffffu) - 1);
}
lock_class* lookup_class(const lockdep_map& lock, unsigned subclass) noexcept;
// A dynamic lock without a key: refused at acquire, so its releases are not imbalances either.
bool lock_without_class(const lockdep_map& lock) noexcept;
// Find or create the class; nullptr if lockdep is (or got) switched off or the lock has no key.
lock_class* register_lock_class(task_state& ts, const thread_info& ti, lockdep_map& lock, unsigned subclass) noexcept;
void reset_classes_locked() noexcept;
// "name", "name#2", "name/1" (__print_lock_name).
std::string class_name(const lock_class* c);
std::string map_name(const lockdep_map& m); // print_lockdep_cache

// ---- chains (chains.cpp) ----
[[gnu::always_inline]] inline std::uint32_t rol32(std::uint32_t w, unsigned s) noexcept
{
    return (w << s) | (w >> (32 - s));
}

// Bob Jenkins' lookup3 mix (the kernel's __jhash_mix) of a class id into the two halves of the key.
[[gnu::always_inline]] inline std::uint64_t iterate_chain_key(std::uint64_t key, std::uint32_t id) noexcept
{
    std::uint32_t a = id, b = static_cast<std::uint32_t>(key), c = static_cast<std::uint32_t>(key >> 32);
    a -= c;
    a ^= rol32(c, 4);
    c += b;
    b -= a;
    b ^= rol32(a, 6);
    a += c;
    c -= b;
    c ^= rol32(b, 8);
    b += a;
    a -= c;
    a ^= rol32(c, 16);
    c += b;
    b -= a;
    b ^= rol32(a, 19);
    a += c;
    c -= b;
    c ^= rol32(b, 4);
    b += a;
    return std::uint64_t(b) | (std::uint64_t(c) << 32);
}
inline std::uint16_t hlock_id(const held_lock& h) noexcept
{
    return static_cast<std::uint16_t>(h.class_idx | (h.read << MAX_LOCKDEP_KEYS_BITS));
}
inline unsigned chain_hlock_class_idx(std::uint16_t id) noexcept { return id & MAX_LOCKDEP_KEYS; }
inline constexpr unsigned CHAINHASH_SIZE = 2 * MAX_LOCKDEP_CHAINS;
extern std::atomic<std::uint64_t> g_chain_hash[CHAINHASH_SIZE];
[[gnu::always_inline]] inline std::uint64_t chain_slot_key(std::uint64_t key) noexcept { return key != 0 ? key : 1; }
[[gnu::always_inline]] inline unsigned chain_slot(std::uint64_t key) noexcept
{
    return static_cast<unsigned>((key ^ (key >> 29)) * 0x9e3779b97f4a7c15ull >> 47) & (CHAINHASH_SIZE - 1);
}
// Has this chain been validated? Lock-free: acquire loads of the open-addressed table.
[[gnu::always_inline]] inline bool chain_cache_lookup(std::uint64_t key) noexcept
{
    const std::uint64_t k = chain_slot_key(key);
    for (unsigned i = chain_slot(k);; i = (i + 1) & (CHAINHASH_SIZE - 1)) {
        const std::uint64_t v = g_chain_hash[i].load(std::memory_order_acquire);
        if (v == k)
            return true;
        if (v == 0)
            return false;
    }
}
// Add the task's current chain ending in `h` (graph lock held); false: a limit was hit and
// lockdep is off.
bool add_chain_cache_locked(
    const task_state& ts, const thread_info& ti, const held_lock& h, std::uint64_t key) noexcept;
void reset_chains_locked() noexcept;
unsigned first_held_lock_of_context(const task_state& ts, const held_lock& h) noexcept;

// ---- graph (graph.cpp) ----
// Validate a new chain ending in held lock `h` (not yet pushed); graph lock held.
void validate_new_chain_locked(task_state& ts, const thread_info& ti, held_lock& h, bool chain_head) noexcept;
void reset_graph_locked() noexcept;

enum class bfs_result { invalid_node = -2, queue_full = -1, match = 0, no_match = 1 };
using bfs_match_fn = bool (*)(lock_list* entry, void* data);
bfs_result bfs_forwards(lock_list* root, void* data, bfs_match_fn match, lock_list** target) noexcept;
bfs_result bfs_backwards(lock_list* root, void* data, bfs_match_fn match, lock_list** target) noexcept;
void bfs_init_root(lock_list* root, const held_lock& h) noexcept;  // forwards
void bfs_init_rootb(lock_list* root, const held_lock& h) noexcept; // backwards
int lock_depth(lock_list* e) noexcept;
unsigned long count_forward_deps(lock_class* c) noexcept;
unsigned long count_backward_deps(lock_class* c) noexcept;
// A BFS error: warn and switch off (print_bfs_bug).
void bfs_bug_locked(const task_state& ts, const thread_info& ti, bfs_result r) noexcept;

// ---- usage states (usage.cpp) ----
// Mark the usage bits an acquisition implies; called with the graph lock held when the fast test
// (needed_usage & ~class usage) found new bits. false: lockdep got switched off.
bool mark_usage_locked(task_state& ts, const thread_info& ti, held_lock& h) noexcept;
// The usage bits an acquisition implies (mark_usage's choice of bits, computed without marking).
[[gnu::always_inline]] inline std::uint32_t needed_usage(const held_lock& h, const thread_info& ti) noexcept
{
    const int r = h.read != 0 ? USAGE_READ_MASK : 0;
    std::uint32_t m = flag(USED + r); // USED_READ == USED + 1
    if (!h.check)
        return m;
    if (!h.trylock) {
        if (h.irq_context & CTX_HARDIRQ)
            m |= flag(USED_IN_HARDIRQ + r);
        if (h.irq_context & CTX_SOFTIRQ)
            m |= flag(USED_IN_SOFTIRQ + r);
    }
    if (!h.hardirqs_off) {
        m |= flag(ENABLED_HARDIRQ + r);
        if ((ti.preempt_count & SOFTIRQ_MASK) == 0)
            m |= flag(ENABLED_SOFTIRQ + r);
    }
    return m;
}
// check_irq_usage(): would prev -> next connect an irq-safe lock to an irq-unsafe one?
bool check_irq_usage_locked(task_state& ts, const thread_info& ti, held_lock& prev, held_lock& next) noexcept;
void usage_chars(const lock_class* c, char out[5]) noexcept;
const char* usage_str(int bit) noexcept;

// ---- stack depot (stack_depot.cpp) ----
// Capture the current stack (trimmed to start at the task's entry into lockdep) and store it
// deduplicated; 0 when the depot is full (which switches lockdep off, graph lock held).
std::uint32_t save_trace_locked(const task_state& ts, const thread_info& ti) noexcept;
struct trace_view {
    void* const* ip = nullptr;
    unsigned n = 0;
};
trace_view trace_get(std::uint32_t handle) noexcept;
unsigned stack_trace_entries() noexcept;
void reset_depot_locked() noexcept;
// Capture the current stack now (for "stack backtrace:"), trimmed like save_trace.
unsigned capture_current(const task_state& ts, void** out, unsigned max) noexcept;
// "function+0xoff/0xsize" (or "module+0xoff"); return addresses are looked up at ip - 1.
std::string symbolize(std::uintptr_t ip, bool return_address = true);

// ---- reports (reports.cpp) ----
enum class problem {
    circular,
    recursive,
    usage,
    irq_inversion,
    bad_irq_dependency,
    unlock_imbalance,
    freed,
    held_at_exit,
    nested_not_held,
    non_static_key,
    bad_subclass,
    limit,
    bfs_error,
};
// Decide whether to report (dedup / one-shot); may switch lockdep off. Graph lock held.
bool report_begin_locked(problem kind, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0) noexcept;
// Queue a finished report (graph lock held): emitted when the graph lock is released.
void report_queue_locked(std::string text, std::string json) noexcept;
// Emit reports taken off the queue (no lock held).
void report_flush_lists(std::vector<std::string>& text, std::vector<std::string>& json) noexcept;
// Forget which problems were reported (reset()).
void reset_reports_locked() noexcept;
// The "BUG: MAX_... too low!" message; switches lockdep off. Graph lock held.
void limit_exhausted_locked(const task_state& ts, const thread_info& ti, const char* what) noexcept;

void report_circular_locked(task_state& ts, const thread_info& ti, lock_list* root, lock_list* target,
    const held_lock& src, const held_lock& tgt) noexcept;
void report_recursive_locked(
    task_state& ts, const thread_info& ti, const held_lock& prev, const held_lock& next) noexcept;
void report_usage_locked(task_state& ts, const thread_info& ti, const held_lock& h, int prev_bit, int new_bit) noexcept;
void report_irq_inversion_locked(task_state& ts, const thread_info& ti, lock_list* root, lock_list* other,
    const held_lock& h, bool forwards, const char* irqclass) noexcept;
void report_bad_irq_dependency_locked(task_state& ts, const thread_info& ti, lock_list* prev_root, lock_list* next_root,
    lock_list* backwards_entry, lock_list* forwards_entry, const held_lock& prev, const held_lock& next, int bit1,
    int bit2, const char* irqclass) noexcept;
void report_unlock_imbalance_locked(
    task_state& ts, const thread_info& ti, const lockdep_map& lock, std::uintptr_t ip) noexcept;
void report_freed_locked(
    task_state& ts, const thread_info& ti, const void* from, const void* to, const held_lock& h) noexcept;
void report_held_at_exit_locked(task_state& ts, const thread_info& ti) noexcept;
void report_nested_not_held_locked(task_state& ts, const thread_info& ti, const held_lock& h) noexcept;
void report_non_static_key_locked(task_state& ts, const thread_info& ti, const lockdep_map& lock) noexcept;
void report_bad_subclass_locked(task_state& ts, const thread_info& ti, unsigned subclass) noexcept;
void report_max_depth_locked(task_state& ts, const thread_info& ti) noexcept;

// ---- JSON (json.cpp) ----
using klock::detail::json_quote;
void json_emit(const std::string& json) noexcept;

// ---- dumps (proc.cpp) ----
void register_dump_at_exit() noexcept;

// ---- lock_stat (lock_stat.cpp) ----
// The hot parts are inline here so that held_locks.cpp's acquire and release paths carry them
// without a call; the tables, clear(), the fold at task exit and the output live in lock_stat.cpp.

inline constexpr unsigned LOCKSTAT_POINTS = 4;
enum bounce_type : unsigned {
    bounce_acquired_write,
    bounce_acquired_read,
    bounce_contended_write,
    bounce_contended_read,
    nr_bounce_types,
};

// Plain integers, read and written through __atomic builtins (relaxed): one writer (the task)
// and readers that sum them; the memory comes zeroed from mmap.
struct lock_time_stat {
    std::uint64_t min, max, total, nr; // clock ticks (see stat_clock)
};
struct class_stats {
    lock_time_stat read_waittime, write_waittime, read_holdtime, write_holdtime;
    std::uint64_t bounces[nr_bounce_types];
    std::uint64_t contention_point[LOCKSTAT_POINTS]; // counts; the ips are per class (stat_points)
    std::uint64_t contending_point[LOCKSTAT_POINTS];
};
inline constexpr unsigned STAT_CHUNK_CLASSES = 64;
inline constexpr unsigned STAT_CHUNKS = (MAX_LOCKDEP_KEYS + STAT_CHUNK_CLASSES - 1) / STAT_CHUNK_CLASSES;
struct stat_chunk {
    class_stats cls[STAT_CHUNK_CLASSES];
};
// A task's counters: chunks of 64 classes, mapped when the task first counts one of them.
struct stat_table {
    std::uint32_t epoch;            // the lock_stat epoch the counts belong to
    stat_chunk* chunk[STAT_CHUNKS]; // written by the owner (release), read by summers (acquire)
};
// Where each class was waited for / held by the task waited for; the kernel's
// lock_class::contention_point / contending_point, filled first come first served.
struct stat_points {
    std::atomic<std::uintptr_t> contention[LOCKSTAT_POINTS];
    std::atomic<std::uintptr_t> contending[LOCKSTAT_POINTS];
};
extern stat_points g_stat_points[MAX_LOCKDEP_KEYS];
// Bumped by clear() and reset(): a task table of an older epoch counts as zero, and its task
// zeroes it before counting again (nobody else writes a task's table).
extern std::atomic<std::uint32_t> g_stat_epoch;

// The clock: the TSC where the kernel itself uses it as clocksource (constant rate, synchronised
// across CPUs; ~3x cheaper than clock_gettime here), converted to ns when printed; otherwise
// CLOCK_MONOTONIC in ns. A test may install its own.
enum : std::uint32_t { STAT_CLOCK_MONO = 0, STAT_CLOCK_TSC = 1, STAT_CLOCK_TEST = 2 };
extern std::atomic<std::uint32_t> g_stat_clock_mode;
std::uint64_t stat_clock_slow() noexcept;
[[gnu::always_inline]] inline std::uint64_t stat_clock() noexcept
{
#if defined(__x86_64__)
    if (__builtin_expect(g_stat_clock_mode.load(std::memory_order_relaxed) == STAT_CLOCK_TSC, 1))
        return __builtin_ia32_rdtsc();
#endif
    return stat_clock_slow();
}
int stat_cpu() noexcept; // sched_getcpu(), 0 when unknown

// stat_word layout (lockdep_map)
inline constexpr unsigned STAT_CPU_SHIFT = 48;
inline constexpr std::uint64_t STAT_IP_MASK = (1ull << STAT_CPU_SHIFT) - 1;
inline constexpr std::uint64_t stat_word_make(unsigned cpu1, std::uintptr_t ip) noexcept
{
    return (std::uint64_t(cpu1 & 0x7fffu) << STAT_CPU_SHIFT) | (std::uint64_t(ip) & STAT_IP_MASK);
}
inline constexpr unsigned stat_word_cpu(std::uint64_t w) noexcept
{
    return static_cast<unsigned>(w >> STAT_CPU_SHIFT) & 0x7fffu;
}
inline constexpr std::uintptr_t stat_word_ip(std::uint64_t w) noexcept
{
    return static_cast<std::uintptr_t>(w & STAT_IP_MASK);
}

// held_lock::stat_flags
inline constexpr std::uint8_t HSTAT_BOUNCE = 1; // the acquisition moved the lock: count at release

[[gnu::always_inline]] inline std::uint64_t stat_load(const std::uint64_t& v) noexcept
{
    return __atomic_load_n(&v, __ATOMIC_RELAXED);
}
[[gnu::always_inline]] inline void stat_store(std::uint64_t& v, std::uint64_t x) noexcept
{
    __atomic_store_n(&v, x, __ATOMIC_RELAXED);
}
[[gnu::always_inline]] inline void stat_inc(std::uint64_t& v) noexcept { stat_store(v, stat_load(v) + 1); }
// lock_time_inc(): single writer, so load + store (no locked instruction).
[[gnu::always_inline]] inline void stat_time_inc(lock_time_stat& t, std::uint64_t d) noexcept
{
    const std::uint64_t n = stat_load(t.nr);
    if (d > stat_load(t.max))
        stat_store(t.max, d);
    if (n == 0 || d < stat_load(t.min))
        stat_store(t.min, d);
    stat_store(t.total, stat_load(t.total) + d);
    stat_store(t.nr, n + 1);
}
// Clock differences: a (virtual) TSC that steps back between CPUs counts as 0, never as 2^64.
[[gnu::always_inline]] inline std::uint64_t stat_delta(std::uint64_t from, std::uint64_t to) noexcept
{
    return to > from ? to - from : 0;
}

class_stats* task_class_stats_slow(task_state& ts, unsigned idx) noexcept;
// The task's counters for class idx; nullptr when it has none (unregistered task, no memory).
[[gnu::always_inline]] inline class_stats* task_class_stats(task_state& ts, unsigned idx) noexcept
{
    const stat_table* t = ts.stat;
    if (__builtin_expect(t != nullptr, 1)
        && __builtin_expect(t->epoch == g_stat_epoch.load(std::memory_order_relaxed), 1)) {
        stat_chunk* c = t->chunk[idx / STAT_CHUNK_CLASSES];
        if (__builtin_expect(c != nullptr, 1))
            return &c->cls[idx % STAT_CHUNK_CLASSES];
    }
    return task_class_stats_slow(ts, idx);
}

// A new hold begins (lock_acquire pushed `h`, the lock is not taken yet). Publish this
// acquisition's ip and CPU in the lock's word for the waiters that may come, remembering what it
// said: if this task ends up waiting, lock_contended() takes the holder from there.
[[gnu::always_inline]] inline void stat_acquire(held_lock& h, lockdep_map& lock) noexcept
{
    h.waittime_stamp = 0;
    h.holdtime_stamp = stat_clock();
    const std::uint64_t prev = lock.stat_word.load(std::memory_order_relaxed);
    const unsigned cpu1 = static_cast<unsigned>(stat_cpu()) + 1;
    const std::uint64_t mine = stat_word_make(cpu1, h.acquire_ip);
    const unsigned last = stat_word_cpu(prev);
    h.stat_prev = prev;
    h.stat_flags = last != 0 && last != cpu1 ? HSTAT_BOUNCE : 0;
    if (prev != mine)
        lock.stat_word.store(mine, std::memory_order_relaxed);
}

// The hold of `h` ends: the hold time (whose count is also the acquisition count, as in the
// kernel) and the acquisition's bounce.
[[gnu::always_inline]] inline void stat_release(task_state& ts, const held_lock& h) noexcept
{
    if (h.holdtime_stamp == 0)
        return; // taken while lock_stat was off
    const std::uint64_t now = stat_clock();
    if (class_stats* cs = task_class_stats(ts, h.class_idx)) {
        stat_time_inc(h.read != 0 ? cs->read_holdtime : cs->write_holdtime, stat_delta(h.holdtime_stamp, now));
        if (__builtin_expect(h.stat_flags & HSTAT_BOUNCE, 0))
            stat_inc(cs->bounces[h.read != 0 ? bounce_acquired_read : bounce_acquired_write]);
    }
}

void stat_contended(task_state& ts, held_lock& h, lockdep_map& lock, std::uintptr_t ip) noexcept;
void stat_acquired(task_state& ts, held_lock& h, lockdep_map& lock, std::uintptr_t ip) noexcept;
// Task exit (registry lock held): fold the task's counters into the total and unmap them.
void stat_task_exit_locked(task_state& ts) noexcept;
// reset(): forget everything counted (class indices are about to be reused).
void stat_reset(unsigned classes_used) noexcept; // classes [0, classes_used) may have counts
// KLOCK_LOCK_STAT_DUMP at exit (called from the exit dump).
void stat_dump_at_exit() noexcept;

// ---- os world (os.cpp) ----
// The task's CPU for reports: its host's, or the calling thread's.
int report_cpu(const task_state& ts) noexcept;
// Before registering a task: false for an os thread that is past its exit hook (its state must
// not stay in the registry); otherwise arms the exit hook of an os thread.
bool os_may_register(task_state& ts) noexcept;

} // namespace klock::lockdep::detail
