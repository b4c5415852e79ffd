// lockdep: the kernel's runtime locking correctness validator (kernel/locking/lockdep.c,
// Documentation/locking/lockdep-design.rst), as an engine that klock's locks call into.
//
// WHAT IT PROVES
//   Locks are grouped into *classes* (one per lock_class_key - a static object, normally one per
//   initialisation site - not one per lock object). Whenever a task acquires a lock of class N
//   while it holds a lock of class P, the dependency P -> N is recorded in a global graph, with the
//   stack where it was first seen. A new dependency that closes a cycle is reported at once, even
//   if the tasks that created the other edges never ran at the same time: the order itself is the
//   bug. The same graph carries irq-usage bits (was the class taken inside a hardirq/softirq, was
//   it held with that irq enabled), so irq-safety inversions are proven the same way.
//
// THE HIT PATH (a chain seen before)
//   Each task keeps a stack of held locks and a 64-bit *chain key*: a running hash of the class ids
//   of the locks it holds in the current irq context (reset when the context changes; every held
//   lock remembers the key before it, so a release restores the key in O(1)). A chain key that is
//   already in the chain cache (a lock-free open-addressed table) means this exact sequence has
//   been validated before: acquire costs one hash probe and a few task-local stores, release pops
//   the stack. No global lock, no allocation, no stack capture on that path. Only a miss takes the
//   graph lock, validates the new chain (recursion, cycles by BFS over strong paths, irq safety)
//   and adds the edges from the held locks since the last non-trylock in the same context.
//
// READ SEMANTICS: read = 0 writer, 1 non-recursive reader, 2 recursive reader. A cycle counts only
//   along a *strong path* (no edge into a recursive reader followed by an edge out of a shared
//   hold), so read-read cycles of recursive readers are not deadlocks, while a cycle through a
//   writer or a non-recursive reader is.
//
// ENVIRONMENT
//   The engine never looks up "current": every entry point takes the task's lockdep state
//   (task_state) and its klock::thread_info, from which it reads the context exactly as the kernel
//   does - hardirq = in_hardirq(preempt_count), softirq = in_serving_softirq(preempt_count),
//   irqs enabled = !irqs_disabled, softirqs enabled = no SOFTIRQ bits. The os world's wrappers
//   (the overloads without a task_state) use a thread_local task_state and env::os::current().
//   The simulator embeds a task_state in each simulated task and calls the explicit overloads.
//
// REPORTS go through klock::detail::report_emit (stderr, KLOCK_REPORT_FILE, set_report_file,
//   report_capture) in the kernel's layouts, and each is also one JSON object for the JSON sink
//   (set_json_file / set_json_callback / KLOCK_LOCKDEP_JSON). Each distinct problem is reported
//   once; set_one_shot(true) gives the kernel's behaviour instead (the first report clears
//   debug_locks and lockdep stops). Exhausting a limit prints the kernel's "BUG: MAX_... too low!"
//   and switches lockdep off; the program goes on.
//
// CONCURRENCY: the hit paths touch only the task's own state and read shared tables with atomic
//   loads; the graph, the class table's mutable parts and the stack depot are changed only under
//   one graph mutex. reset() and the limit test hook require that no other thread is inside
//   lockdep at the time (tests call them between cases).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <klock/thread_info.hpp>

namespace klock {

namespace lockdep {

// ---- limits (include/linux/lockdep_types.h, kernel/locking/lockdep_internals.h) ----
inline constexpr unsigned MAX_LOCKDEP_SUBCLASSES = 8;
inline constexpr unsigned NR_LOCKDEP_CACHING_CLASSES = 2;
inline constexpr unsigned MAX_LOCK_DEPTH = 48;
inline constexpr unsigned MAX_LOCKDEP_KEYS_BITS = 13;
inline constexpr unsigned MAX_LOCKDEP_KEYS = (1u << MAX_LOCKDEP_KEYS_BITS) - 1; // 8191
inline constexpr unsigned MAX_LOCKDEP_ENTRIES = 32768;
inline constexpr unsigned MAX_LOCKDEP_CHAINS_BITS = 16;
inline constexpr unsigned MAX_LOCKDEP_CHAINS = 1u << MAX_LOCKDEP_CHAINS_BITS; // 65536
inline constexpr unsigned MAX_LOCKDEP_CHAIN_HLOCKS = 5 * MAX_LOCKDEP_CHAINS;
inline constexpr unsigned MAX_STACK_TRACE_ENTRIES = 524288;

// The chain key of an empty chain (the kernel's INITIAL_CHAIN_KEY).
inline constexpr std::uint64_t INITIAL_CHAIN_KEY = ~std::uint64_t(0);

// Values of the `read` argument.
inline constexpr int WRITE = 0;
inline constexpr int READ = 1;           // non-recursive reader (rw_semaphore, queued rwlock in task context)
inline constexpr int READ_RECURSIVE = 2; // recursive reader (rwlock read side in irq context)

} // namespace lockdep

// A class's identity. Must outlive every lock that uses it: give it static storage (a namespace
// scope or function-local static), or get one from lockdep::site_key(). One byte per subclass:
// &subkeys[n] identifies subclass n of the class.
struct lock_class_key {
    char subkeys[lockdep::MAX_LOCKDEP_SUBCLASSES] = {};

    constexpr lock_class_key() noexcept = default;
    lock_class_key(const lock_class_key&) = delete;
    lock_class_key& operator=(const lock_class_key&) = delete;
};

// What each lock embeds: its class key and name, plus a cache of the classes of subclasses 0 and 1
// so that the hit path never searches for the class. A null key makes the lock's own address the
// key, which is right only for locks with static storage (the kernel's rule); a dynamic lock
// without a key is reported once ("trying to register non-static key") and gets no validation.
struct lockdep_map {
    const lock_class_key* key = nullptr;
    const char* name = nullptr;
    // (generation << 32) | (class index + 1); 0 = not cached. Written by any task that resolves
    // the class, read by all.
    std::atomic<std::uint64_t> class_cache[lockdep::NR_LOCKDEP_CACHING_CLASSES] = {};
    // lock_stat's view of the instance (the kernel's lockdep_map::cpu and ::ip in one word):
    // bits 0..47 the ip where it was last acquired (the contending point a waiter records),
    // bits 48..62 that acquisition's CPU + 1 (0: none yet; a change is a bounce). Written only
    // while lock_stat is on.
    std::atomic<std::uint64_t> stat_word{0};

    constexpr lockdep_map() noexcept = default;
    constexpr lockdep_map(const char* n, const lock_class_key* k) noexcept : key(k), name(n) { }
    lockdep_map(const lockdep_map&) = delete;
    lockdep_map& operator=(const lockdep_map&) = delete;

    // lockdep_init_map(): (re)name and (re)key a lock that is not held; forgets the cached classes.
    void init(const char* n, const lock_class_key* k) noexcept
    {
        name = n;
        key = k;
        for (auto& c : class_cache)
            c.store(0, std::memory_order_relaxed);
        stat_word.store(0, std::memory_order_relaxed);
    }
};

namespace lockdep {

// One entry of a task's held-lock stack (the kernel's struct held_lock).
struct held_lock {
    std::uint64_t prev_chain_key = 0; // the task's chain key before this lock was pushed
    std::uintptr_t acquire_ip = 0;
    lockdep_map* instance = nullptr;
    lockdep_map* nest_lock = nullptr;
    std::uint64_t waittime_stamp = 0; // lock_stat clock at lock_contended(); 0: did not wait
    std::uint64_t holdtime_stamp = 0; // lock_stat clock when the hold began; 0: not timed
    std::uint16_t class_idx = 0;
    std::uint16_t references = 0; // >0: several same-class locks merged under a nest_lock
    std::uint8_t irq_context = 0; // bit 0 softirq, bit 1 hardirq
    std::uint8_t read = 0;
    bool trylock = false;
    bool check = false;
    bool hardirqs_off = false;
    std::uint8_t stat_flags = 0; // lock_stat: this acquisition changed CPU (a bounce to count)
    // A one-entry memo of the last validated chain pushed at this depth (not part of the held
    // lock; pushes leave it alone): chain key memo_key = mix(memo_base, memo_id) is in the chain
    // cache. A loop that takes the same locks again skips the hash and the probe.
    std::uint16_t memo_id = 0; // invalidated (0xffff: no id has bit 15 set) when a task starts
    std::uint64_t memo_base = 0;
    std::uint64_t memo_key = 0;
    // lock_stat: the lock's stat_word before this acquisition overwrote it - the holder that a
    // wait starting now waits for.
    std::uint64_t stat_prev = 0;
};

namespace detail {
struct stat_table; // a task's lock_stat counters (src/lockdep/lock_stat.cpp)
} // namespace detail

// Per-task counters that the hit paths bump (summed by lockdep_stats). Relaxed load+store by the
// owner only: no locked instruction, and readers on other threads see a recent value.
struct task_counters {
    std::atomic<std::uint64_t> chain_lookup_hits{0};
    std::atomic<std::uint64_t> hardirqs_on_events{0};
    std::atomic<std::uint64_t> hardirqs_off_events{0};
    std::atomic<std::uint64_t> redundant_hardirqs_on{0};
    std::atomic<std::uint64_t> redundant_hardirqs_off{0};
    std::atomic<std::uint64_t> softirqs_on_events{0};
    std::atomic<std::uint64_t> softirqs_off_events{0};
    std::atomic<std::uint64_t> redundant_softirqs_on{0};
    std::atomic<std::uint64_t> redundant_softirqs_off{0};
};

struct task_host;

// A task's lockdep state: held locks, chain key, irq event stamps (the kernel keeps these in
// task_struct). The fields belong to the engine; an environment only embeds one per task (all
// zero: the engine sets it up on the task's first call), passes it to every call, and calls
// task_exit() when the task ends. Identity (pid, comm) and context (preempt_count,
// irqs_disabled) come from the task's thread_info. All-zero defaults keep the os world's
// thread_local in .tbss (nothing to copy when a thread starts).
struct task_state {
    std::uint64_t curr_chain_key = 0; // INITIAL_CHAIN_KEY once set up
    std::uint32_t depth = 0;
    std::uint32_t gen = 0;      // lockdep generation this state belongs to; 0 = never used
    std::uint8_t recursion = 0; // inside lockdep (an interrupt that calls in is ignored)
    bool resync = false;        // state was dropped by reset()/re-enable: ignore unmatched releases
    bool registered = false;
    bool hardirqs_traced_off = false; // lockdep's view, for event stamps and redundancy counting
    bool softirqs_traced_off = false;
    std::uint16_t hardirq_irqs_were_on = 0; // klock::hardirq_enter(): irq state per nesting level
    std::uintptr_t entry_ip = 0;            // the current entry's return address (trims traces)

    // irq event stamps (print_irqtrace_events)
    std::uint32_t irq_events = 0;
    std::uint32_t hardirq_enable_event = 0, hardirq_disable_event = 0;
    std::uint32_t softirq_enable_event = 0, softirq_disable_event = 0;
    std::uintptr_t hardirq_enable_ip = 0, hardirq_disable_ip = 0;
    std::uintptr_t softirq_enable_ip = 0, softirq_disable_ip = 0;

    task_counters counters;
    task_state* reg_prev = nullptr; // registry of live tasks (statistics, reset)
    task_state* reg_next = nullptr;
    detail::stat_table* stat = nullptr; // lock_stat counters, allocated on the task's first event
    const task_host* host = nullptr;    // set by an environment whose tasks are not OS threads

    held_lock held_locks[MAX_LOCK_DEPTH];
};

namespace detail {
// bit 0: validating (switched on and debug_locks); bit 1: count per-class OPS; bit 2: lock_stat
// collecting (switched on and debug_locks); bits 8..31: the generation (bumped by reset(), by
// switching validation back on, and by switching lock_stat on while nothing was tracking).
inline constexpr std::uint32_t STATE_ON = 1u;
inline constexpr std::uint32_t STATE_OPS = 2u;
inline constexpr std::uint32_t STATE_STAT = 4u;
inline constexpr std::uint32_t STATE_TRACK = STATE_ON | STATE_STAT;
inline constexpr std::uint32_t STATE_GEN_SHIFT = 8;
extern std::atomic<std::uint32_t> g_state;
} // namespace detail

// Validation on? One relaxed load and a test.
[[gnu::always_inline]] inline bool enabled() noexcept
{
    return (detail::g_state.load(std::memory_order_relaxed) & detail::STATE_ON) != 0;
}

// Validation or lock_stat on: the branch a lock's hooks take (one relaxed load and a test, and
// the only cost of the hooks while both are off). With lock_stat alone the engine keeps the
// held-lock stack (hold times, contending points) but validates nothing.
[[gnu::always_inline]] inline bool active() noexcept
{
    return (detail::g_state.load(std::memory_order_relaxed) & detail::STATE_TRACK) != 0;
}

// What the engine asks about a task that is not the calling OS thread (a simulated task, whose
// CPU is not sched_getcpu()'s and whose stack is a script, not the machine stack): an environment
// sets task_state::host before the task's first call. Reports and saved traces of that task then
// take the CPU, the stack, the names of ips and the addresses printed for locks and keys from here
// instead of from sched_getcpu(), backtrace(), the ELF symbolizer and the objects' real addresses,
// so a simulated run's reports are the same in every run, byte for byte.
// An operations table rather than virtual functions (the kernel's way, too): the engine is also
// linked into the preload library, which C programs load, where sanitizers' C++ type checks of a
// virtual call would find no C++ runtime.
struct task_host {
    int (*cpu)(const task_host& self) noexcept;
    // The task's stack now, innermost frame first; at most `max` frames.
    unsigned (*stack)(const task_host& self, std::uintptr_t* out, unsigned max) noexcept;
    // A name for an ip this host handed out (in a stack or as an acquire ip), or for an address()
    // of a key; `return_address` as in klock::detail::format_symbol.
    std::string (*symbol)(const task_host& self, std::uintptr_t ip, bool return_address);
    // The address a report prints for a lock instance or a lock_class_key.
    std::uintptr_t (*address)(const task_host& self, const void* object) noexcept;
};

// ---- entry points, explicit task (any environment) ----
// `ip` is the caller's address for "at:" lines; 0 means the return address of this call.
// check = 0 tracks the lock without validating it (the kernel's check argument).

void lock_acquire(task_state& ts, const thread_info& ti, lockdep_map& lock, unsigned subclass, int trylock, int read,
    int check, lockdep_map* nest_lock, std::uintptr_t ip = 0) noexcept;
void lock_release(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
// downgrade_write(): the held writer becomes a (non-recursive) reader.
void lock_downgrade(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
// lock_stat hooks, between lock_acquire() and the lock's success: lock_contended() when the task
// is about to wait for the lock, lock_acquired() when a wait ends with the lock. No-ops unless
// lock_stat is on. Here `ip` 0 means the ip recorded by lock_acquire() (the kernel passes the
// same _RET_IP_ to all three), which is where the waiter called the lock function.
void lock_contended(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
void lock_acquired(task_state& ts, const thread_info& ti, lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
// lock_is_held_type(): read = -1 any, 0 held for write, 1 held for read. Unknown (lockdep off): true.
bool lock_is_held(const task_state& ts, const lockdep_map& lock, int read = -1) noexcept;

// irq-state tracing (the kernel's lockdep_hardirqs_on/off, lockdep_softirqs_on/off):
//   hardirqs_off  right after the task's interrupts became disabled
//   hardirqs_on   right before they are enabled again
//   softirqs_off  right after bottom halves became disabled (softirq count left zero)
//   softirqs_on   right before the softirq count returns to zero
// Enabling marks every held lock as taken with that irq enabled, which is how a lock taken with
// irqs off and held across local_irq_enable() becomes irq-unsafe.
void hardirqs_on(task_state& ts, const thread_info& ti, std::uintptr_t ip = 0) noexcept;
void hardirqs_off(task_state& ts, const thread_info& ti, std::uintptr_t ip = 0) noexcept;
void softirqs_on(task_state& ts, const thread_info& ti, std::uintptr_t ip = 0) noexcept;
void softirqs_off(task_state& ts, const thread_info& ti, std::uintptr_t ip = 0) noexcept;

// debug_check_no_locks_freed(): memory [mem, mem+len) is being freed or reused; report a lock in it
// that the task still holds ("held lock freed!").
void debug_check_no_locks_freed(
    task_state& ts, const thread_info& ti, const void* mem, std::size_t len, std::uintptr_t ip = 0) noexcept;
// debug_check_no_locks_held(): the task must hold no locks here ("still has locks held!").
void debug_check_no_locks_held(task_state& ts, const thread_info& ti) noexcept;
// The task is ending: checks that it holds no locks, folds its counters into the totals and
// unregisters it. The state may be reused afterwards as a fresh task.
void task_exit(task_state& ts, const thread_info& ti) noexcept;
// The state goes away without its task ending (a simulation torn down with tasks still blocked
// in it): unregisters it without checking anything.
void task_forget(task_state& ts) noexcept;

// For rwlocks: queued rwlock readers are recursive only in interrupt context (the kernel's
// read_lock_is_recursive() with CONFIG_QUEUED_RWLOCKS).
inline int rwlock_read_mode(const thread_info& ti) noexcept
{
    return irq_count(ti.preempt_count) != 0 ? READ_RECURSIVE : READ;
}

// ---- the os world: the calling thread ----

task_state& current_task_state() noexcept;
void lock_acquire(lockdep_map& lock, unsigned subclass, int trylock, int read, int check, lockdep_map* nest_lock,
    std::uintptr_t ip = 0) noexcept;
void lock_release(lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
void lock_downgrade(lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
void lock_contended(lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
void lock_acquired(lockdep_map& lock, std::uintptr_t ip = 0) noexcept;
bool lock_is_held(const lockdep_map& lock, int read = -1) noexcept;
void hardirqs_on(std::uintptr_t ip = 0) noexcept;
void hardirqs_off(std::uintptr_t ip = 0) noexcept;
void softirqs_on(std::uintptr_t ip = 0) noexcept;
void softirqs_off(std::uintptr_t ip = 0) noexcept;
void debug_check_no_locks_held() noexcept;

// ---- classes ----

// A key and a readable name for locks initialised at one source location: "type@file.cpp:42".
// The first call for a (file, line) allocates (never freed); later calls are a lock-free lookup.
struct site_class {
    lock_class_key key;
    const char* name;
};
const site_class& site_key(const char* type, const char* file, unsigned line) noexcept;

// ---- control ----

// Forget every class, dependency, chain, usage bit and statistic (lock_stat's too: its counters
// are cleared, its on/off switch is kept); clear the calling task's held locks; restore the
// default limits; switch validation back on (debug_locks = 1). Other tasks
// drop their held-lock stacks at their next call and then ignore releases they cannot match.
void reset() noexcept;
// Switch validation on or off at run time. Off, the hooks return after one branch unless
// lock_stat is on (lock_stat-only mode: held locks are tracked for the statistics, nothing is
// validated or reported).
void set_enabled(bool on) noexcept;
// The kernel's debug_locks: false once a report (in one-shot mode) or an exhausted limit
// switched lockdep off. reset() sets it again.
bool debug_locks() noexcept;
// One-shot mode: the first report clears debug_locks (the kernel's behaviour). Default: off -
// every distinct problem is reported once and validation goes on.
void set_one_shot(bool on) noexcept;
// Count acquisitions per class (the OPS column of the lockdep dump; a shared counter per class,
// so off by default, like the kernel's CONFIG_DEBUG_LOCKDEP).
void set_count_ops(bool on) noexcept;
// lockdep reports emitted since start (limit messages included; suppressed duplicates not).
std::uint64_t report_count() noexcept;

// JSON: every report is also one JSON object (one line). Sinks: a file (appended; nullptr or ""
// closes it), a callback, or the environment variable KLOCK_LOCKDEP_JSON=path. Returns false if
// the file cannot be opened.
bool set_json_file(const char* path) noexcept;
using json_callback = void (*)(std::string_view json, void* context);
void set_json_callback(json_callback cb, void* context = nullptr) noexcept; // nullptr: none

// ---- /proc-style dumps (kernel/locking/lockdep_proc.c layouts) ----
std::string proc_lockdep();
std::string proc_lockdep_chains();
std::string proc_lockdep_stats();
void proc_lockdep(std::FILE* out);
void proc_lockdep_chains(std::FILE* out);
void proc_lockdep_stats(std::FILE* out);
// With KLOCK_LOCKDEP_DUMP=path in the environment, the three dumps are written to `path` at exit.

// ---- statistics for programs and tests ----
struct stats {
    std::uint64_t lock_classes, direct_dependencies, dependency_chains, chain_hlocks, stack_trace_entries;
    std::uint64_t chain_lookup_hits, chain_lookup_misses, cyclic_checks, max_lock_depth, max_bfs_queue_depth;
};
stats get_stats() noexcept;

namespace test {
// Lower a limit (never above the compiled one) to test exhaustion; reset() restores them all.
enum class limit { keys, entries, chains, chain_hlocks, stack_trace_entries, lock_depth };
void set_limit(limit which, unsigned value) noexcept;
} // namespace test

} // namespace lockdep

// ---- lock_stat (CONFIG_LOCK_STAT; kernel/locking/lockdep.c, lockdep_proc.c) ----
//
// Per lock class: how often and how long tasks waited for it (contentions, wait time
// min/max/total/avg), how often and how long it was held (acquisitions, hold time), how often it
// moved between CPUs (bounces), and where the waits came from: up to 4 contention points (the
// call sites that waited) and 4 contending points (where the holder they waited for had taken
// it). Readers and writers of rw locks are counted apart (the -R and -W rows). It rides on
// lockdep's hooks, so it needs KLOCK_LOCKDEP=ON to see klock's locks, but not validation: with
// lockdep::set_enabled(false) it runs alone (lock_stat-only mode, for cheap profiling).
//
// Counters are per task (no shared cache line on the hot path), folded into a total when a task
// ends and summed when the table is read. Environment: KLOCK_LOCK_STAT=1 switches it on at
// start-up; KLOCK_LOCK_STAT_DUMP=path writes proc() to `path` at exit.
namespace lock_stat {

// Start/stop collecting (the kernel's /proc/sys/kernel/lock_stat). Locks held across the switch
// are not timed. Like all of lockdep, it stops when debug_locks goes off.
void set_enabled(bool on) noexcept;
// Collecting now (switched on, and debug_locks still set).
bool enabled() noexcept;
// Zero every counter and forget the contention points (the kernel's `echo 0 > /proc/lock_stat`).
void clear() noexcept;
// The /proc/lock_stat text ("lock_stat version 0.4" layout): one row per class that was held,
// most contended first; times in microseconds with two decimals.
std::string proc();
void proc(std::FILE* out);

namespace test {
// Replace lock_stat's clock (nanoseconds) by `now_ns`, or restore the real one with nullptr.
// Only between tests: stamps taken with one clock are compared with the other's.
void set_clock(std::uint64_t (*now_ns)() noexcept) noexcept;
} // namespace test

} // namespace lock_stat

// ---- kernel names (os world) ----

// Interrupt context for the calling thread, as an irq handler (klock's: a signal handler) enters
// and leaves it: hardirq_enter() disables interrupts (remembering their state) and adds
// HARDIRQ_OFFSET to preempt_count; hardirq_exit() undoes both. softirq_enter()/exit() add and
// remove SOFTIRQ_OFFSET (serving a softirq) with the lockdep softirq tracing.
void hardirq_enter() noexcept;
void hardirq_exit() noexcept;
void softirq_enter() noexcept;
void softirq_exit() noexcept;

// Allocators and lock destructors: report a held lock inside memory about to be freed.
void debug_check_no_locks_freed(const void* mem, std::size_t len) noexcept;

} // namespace klock
