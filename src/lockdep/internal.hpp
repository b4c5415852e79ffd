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
std::string json_quote(std::string_view s);
void json_emit(const std::string& json) noexcept;

// ---- dumps (proc.cpp) ----
void register_dump_at_exit() noexcept;

// ---- os world (os.cpp) ----
int report_cpu() noexcept;
// Before registering a task: false for an os thread that is past its exit hook (its state must
// not stay in the registry); otherwise arms the exit hook of an os thread.
bool os_may_register(task_state& ts) noexcept;

} // namespace klock::lockdep::detail
