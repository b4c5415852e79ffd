// libklock-preload.so: lockdep and lock_stat for unmodified programs (`klock run`).
//
// HOW IT WORKS
//   The library is loaded with LD_PRELOAD, so its definitions of pthread_mutex_lock & co. come
//   before glibc's in symbol lookup. Each interposer looks up the *record* of the lock (a shadow
//   object keyed by the lock's address that carries its lockdep_map), tells lockdep about the
//   acquisition or release, and calls the real function (dlsym(RTLD_NEXT), dlvsym for the
//   versioned pthread_cond_*). The real lock does all the locking: results, errno values and
//   blocking behaviour are glibc's.
//
// ORDER OF EVENTS (the invariants the interposers keep)
//   * A blocking acquisition is announced to lockdep BEFORE the real lock is taken, so a
//     deadlock that is about to happen is reported before the thread blocks; if the real call
//     then fails (timeout, EDEADLK, EINVAL, ENOTRECOVERABLE) the acquisition is withdrawn.
//   * A trylock is announced only after it succeeded (it cannot deadlock).
//   * A recursive mutex is one lockdep acquisition: only its outermost lock and unlock count.
//   * pthread_cond_*wait is a release before the wait and an acquisition after it.
//   * Misuse (unlock of an unlocked lock, unlock by a thread that does not own it, destroy or
//     free of a locked lock) is read from the real lock's own state (glibc records the owner's
//     thread id), reported in the "BUG: ..." layout, and then the real function runs unchanged.
//
// RE-ENTRANCY: lockdep's own locks, malloc, dlsym and backtrace() may call interposed functions.
//   A thread-local flag (`in_tool`) is set whenever klock code runs; an interposed call made while
//   it is set goes straight to the real function. Signal handlers that interrupt klock code
//   therefore are not tracked (lockdep does the same with its `recursion` flag).
//
// START-UP: the library's constructor resolves the real functions and reads the configuration,
//   but tracking starts in the __libc_start_main wrapper: after every shared library (this one
//   and the static initialisers of libklock inside it) is initialised, and before the program's
//   own static constructors. Locks taken by other libraries' constructors are not tracked; their
//   releases are ignored (no record, or lockdep does not hold them).
#pragma once

#include <klock/env/os.hpp>
#include <klock/lockdep.hpp>

#include <atomic>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <pthread.h>
#include <string>
#include <string_view>
#include <threads.h>

// Everything of the library's own is hidden: calls between its files need no PLT, and a program
// that exports symbols of its own cannot take their place. (The interposers, declared by the
// system headers, keep default visibility.)
#pragma GCC visibility push(hidden)

namespace klock::preload {

// ---- the real functions (real.cpp) ----
struct real_functions {
    int (*mutex_init)(pthread_mutex_t*, const pthread_mutexattr_t*);
    int (*mutex_destroy)(pthread_mutex_t*);
    int (*mutex_lock)(pthread_mutex_t*);
    int (*mutex_trylock)(pthread_mutex_t*);
    int (*mutex_timedlock)(pthread_mutex_t*, const timespec*);
    int (*mutex_clocklock)(pthread_mutex_t*, clockid_t, const timespec*);
    int (*mutex_unlock)(pthread_mutex_t*);
    int (*rwlock_init)(pthread_rwlock_t*, const pthread_rwlockattr_t*);
    int (*rwlock_destroy)(pthread_rwlock_t*);
    int (*rwlock_rdlock)(pthread_rwlock_t*);
    int (*rwlock_tryrdlock)(pthread_rwlock_t*);
    int (*rwlock_timedrdlock)(pthread_rwlock_t*, const timespec*);
    int (*rwlock_clockrdlock)(pthread_rwlock_t*, clockid_t, const timespec*);
    int (*rwlock_wrlock)(pthread_rwlock_t*);
    int (*rwlock_trywrlock)(pthread_rwlock_t*);
    int (*rwlock_timedwrlock)(pthread_rwlock_t*, const timespec*);
    int (*rwlock_clockwrlock)(pthread_rwlock_t*, clockid_t, const timespec*);
    int (*rwlock_unlock)(pthread_rwlock_t*);
    int (*spin_init)(pthread_spinlock_t*, int);
    int (*spin_destroy)(pthread_spinlock_t*);
    int (*spin_lock)(pthread_spinlock_t*);
    int (*spin_trylock)(pthread_spinlock_t*);
    int (*spin_unlock)(pthread_spinlock_t*);
    int (*cond_wait)(pthread_cond_t*, pthread_mutex_t*);
    int (*cond_timedwait)(pthread_cond_t*, pthread_mutex_t*, const timespec*);
    int (*cond_clockwait)(pthread_cond_t*, pthread_mutex_t*, clockid_t, const timespec*);
    int (*mtx_init)(mtx_t*, int);
    int (*mtx_lock)(mtx_t*);
    int (*mtx_timedlock)(mtx_t*, const timespec*);
    int (*mtx_trylock)(mtx_t*);
    int (*mtx_unlock)(mtx_t*);
    void (*mtx_destroy)(mtx_t*);
    int (*cnd_wait)(cnd_t*, mtx_t*);
    int (*cnd_timedwait)(cnd_t*, mtx_t*, const timespec*);
    int (*sigaction)(int, const struct sigaction*, struct sigaction*);
    int (*sigprocmask)(int, const sigset_t*, sigset_t*);
    int (*pthread_sigmask)(int, const sigset_t*, sigset_t*);
    void (*free)(void*);
    void* (*realloc)(void*, std::size_t);
    int (*dlclose)(void*);
    int (*libc_start_main)(int (*)(int, char**, char**), int, char**, void (*)(), void (*)(), void (*)(), void*);
    std::size_t (*malloc_usable_size)(void*);
};

// Filled by resolve_all(); every pointer is non-null afterwards (a function this glibc lacks
// points at a stub that returns ENOSYS).
extern real_functions real;
// Resolve every real function once (idempotent; safe to call from any interposer).
void resolve_all() noexcept;
[[gnu::always_inline]] inline const real_functions& R() noexcept
{
    if (__builtin_expect(__atomic_load_n(&real.mutex_lock, __ATOMIC_ACQUIRE) == nullptr, 0))
        resolve_all();
    return real;
}

// ---- configuration (state.cpp), read once from the environment ----
struct config {
    bool lockdep = true;    // KLOCK_LOCKDEP=0|1
    bool lock_stat = false; // KLOCK_LOCK_STAT=0|1 (set by --lock-stat-out too)
    bool abort_on_report = false;
    int lock_stat_signal = 0; // dump lock_stat to the lock-stat-out file on this signal
    unsigned class_depth = 4; // frames of the init / first-use stack that key a class
    const char* report_file = nullptr;
    const char* json_file = nullptr;
    const char* lock_stat_file = nullptr;
    const char* suppress_file = nullptr;
};
extern config g_config;

// Tracking is on (after start-up, and lockdep or lock_stat is enabled).
extern std::atomic<bool> g_active;
// The constructor has finished (the real functions and the configuration are ready).
extern std::atomic<bool> g_ready;

// ---- per-thread state (state.cpp) ----
struct thread_state {
    bool in_tool;     // klock code is running on this thread: interposed calls pass through
    bool irq_synced;  // sigmask holds this thread's signal mask
    bool stack_known; // stack_lo/hi are valid
    std::uint32_t irq_gen;
    std::uint64_t sigmask; // blocked signals 1..64 (bit sig-1)
    std::uintptr_t stack_lo, stack_hi;
    // Records of first-use locks on this thread's own stack, and the lowest of their addresses:
    // a lock operation with the stack pointer above one of them means its frame has returned.
    std::uintptr_t min_stack_lock;
    unsigned n_stack_locks;
    std::uintptr_t stack_locks[32];
};
extern thread_local constinit thread_state tls __attribute__((tls_model("initial-exec")));

// Marks klock code running on this thread (nests: restores the previous value).
class tool_scope {
public:
    tool_scope() noexcept : old_(tls.in_tool) { tls.in_tool = true; }
    ~tool_scope() { tls.in_tool = old_; }
    tool_scope(const tool_scope&) = delete;
    tool_scope& operator=(const tool_scope&) = delete;

private:
    bool old_;
};

// The calling thread's id (cached by klock's task record).
[[gnu::always_inline]] inline int current_tid() noexcept { return env::os::current()->ti.pid; }
inline const char* current_comm() noexcept { return env::os::current()->ti.comm; }

// This library's mapped range (table.cpp): calls made from inside it are klock's own (lockdep's
// internal mutexes, reached from thread-exit hooks that run outside any tool_scope). The signal
// trampoline is the exception: a handler that ends in a tail call to pthread_mutex_unlock returns
// straight into it, so its section (KLOCK_TRAMPOLINE_SECTION) does not count as klock's.
extern std::uintptr_t g_self_lo, g_self_hi;
#define KLOCK_TRAMPOLINE_SECTION "klock_trampoline"
extern "C" char __start_klock_trampoline[] __attribute__((visibility("hidden")));
extern "C" char __stop_klock_trampoline[] __attribute__((visibility("hidden")));
[[gnu::always_inline]] inline bool in_self_ip(std::uintptr_t ip) noexcept
{
    if (__builtin_expect(ip - g_self_lo >= g_self_hi - g_self_lo, 1))
        return false;
    const auto lo = reinterpret_cast<std::uintptr_t>(__start_klock_trampoline);
    return ip - lo >= reinterpret_cast<std::uintptr_t>(__stop_klock_trampoline) - lo;
}

// The interposer's return address: the program's call site.
#define KLOCK_RA reinterpret_cast<std::uintptr_t>(__builtin_return_address(0))

// Is this call, made from return address `ip`, to be tracked?
[[gnu::always_inline]] inline bool tracking() noexcept
{
    return __builtin_expect(g_active.load(std::memory_order_relaxed) && !tls.in_tool, 1);
}
[[gnu::always_inline]] inline bool tracked(std::uintptr_t ip) noexcept { return tracking() && !in_self_ip(ip); }

// ---- lock records (table.cpp) ----
enum class lock_kind : std::uint8_t { mutex, rwlock, spin };

struct alignas(64) record {
    std::atomic<std::uintptr_t> addr{0}; // the lock's address; 0: free record
    std::atomic<record*> next{nullptr};  // address-hash chain
    std::atomic<record*> page_next{nullptr};
    lockdep_map map;
    std::atomic<int> owner{0}; // tid of the exclusive holder as the interposers saw it (0: none)
    lock_kind kind = lock_kind::mutex;
    bool on_stack = false;  // on the stack of the thread that first used it
    bool first_use = false; // keyed by its first use (never initialised)
};

// The address index (table.cpp): ADDR_BUCKETS chains, read without locks.
inline constexpr unsigned ADDR_BITS = 18;
extern std::atomic<record*>* g_addr;
[[gnu::always_inline]] inline std::size_t addr_bucket(std::uintptr_t a) noexcept
{
    return static_cast<std::size_t>(((a >> 3) * 0x9e3779b97f4a7c15ull) >> (64 - ADDR_BITS));
}
// A lookup whose lock-free walk found nothing in a non-empty chain: a racing removal may have
// sent it astray, so it is repeated under the table lock.
record* find_record_slow(std::uintptr_t a) noexcept;
// The record of the lock at `addr`, or nullptr.
[[gnu::always_inline]] inline record* find_record(const void* addr) noexcept
{
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    record* r = g_addr[addr_bucket(a)].load(std::memory_order_acquire);
    if (__builtin_expect(r == nullptr, 0))
        return nullptr;
    for (int i = 0; i < 4 && r != nullptr; ++i, r = r->next.load(std::memory_order_acquire))
        if (r->addr.load(std::memory_order_acquire) == a)
            return r;
    return find_record_slow(a);
}
// The record, created on first use: class keyed by the first-use stack (or, for a lock with
// static storage, by its address). nullptr if the table cannot grow.
record* create_record(const void* addr, lock_kind kind) noexcept;
[[gnu::always_inline]] inline record* get_record(const void* addr, lock_kind kind) noexcept
{
    if (record* r = find_record(addr))
        return r;
    return create_record(addr, kind);
}
// (Re)initialisation: a fresh record whose class is keyed by the caller's stack.
record* init_record(const void* addr, lock_kind kind) noexcept;
// A never-initialised lock on this thread's stack, taken while other locks are held (the moment
// it would gain dependencies): if the stack it is taken from now is not the one it was first
// used from, the frame that owned it has returned and a new lock lives at its address - give the
// record the class of the new site. (Acquisitions with nothing held add no dependency into the
// lock, so a stale class there cannot close a cycle.)
void recheck_stack_record(record* r) noexcept;
[[gnu::always_inline]] inline void stack_record_check(record* r) noexcept
{
    if (__builtin_expect(r->on_stack, 0) && r->first_use && lockdep::current_task_state().depth != 0)
        recheck_stack_record(r);
}
// Forget the record of a destroyed lock.
void forget_record(const void* addr) noexcept;
// Forget every record inside [lo, hi) (free, realloc, dlclose). `check` reports locks that are
// still held there. Cheap when no record lies in the range.
void forget_range(std::uintptr_t lo, std::uintptr_t hi, bool check) noexcept;
// Records of first-use locks in stack frames that have returned (called when the stack pointer
// is above the lowest one).
void sweep_stack_records(std::uintptr_t sp) noexcept;
void table_init() noexcept;
bool table_ready() noexcept;
// Bumped when dlclose() unloads a library: static locks get new classes from then on.
extern std::atomic<std::uint32_t> g_dlclose_gen;
void table_atfork_prepare() noexcept;
void table_atfork_release() noexcept;
// Live records (tests, statistics).
std::size_t record_count() noexcept;

// Called at the start of every tracked operation.
[[gnu::always_inline]] inline void stack_check() noexcept
{
    const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    if (__builtin_expect(sp > tls.min_stack_lock, 0))
        sweep_stack_records(sp);
}

// The value of an unlocked pthread_spinlock_t (1 on x86, 0 elsewhere in glibc), learnt from the
// first pthread_spin_init(); INT_MIN until then. Misuse checks on spinlocks wait for it.
extern std::atomic<int> g_spin_free;
// 1 locked, 0 unlocked, -1 not known yet.
[[gnu::always_inline]] inline int spin_state(const volatile int* l) noexcept
{
    const int free_value = g_spin_free.load(std::memory_order_relaxed);
    if (free_value == INT_MIN)
        return -1;
    return __atomic_load_n(l, __ATOMIC_RELAXED) != free_value ? 1 : 0;
}

// ---- reports (sink.cpp) ----
void sink_init() noexcept;
void sink_atfork_prepare() noexcept;
void sink_atfork_release() noexcept;
// A lock-misuse report in the layout of include/klock/detail/lock_debug.hpp:
//   BUG: <what> on CPU#n, comm/pid
//    lock: 0x..., .owner: comm/pid, .owner_cpu: n
//    class: <class name>
//   Call Trace: ...
// Reported once per (what, call site). `owner_tid` 0: no owner.
void misuse(const char* what, const void* lock, int owner_tid, const record* rec, std::uintptr_t ip) noexcept;
// Write a finished report (text and its JSON object) unless a suppression rule matches.
void emit(std::string_view text, std::string_view json) noexcept;
std::uint64_t suppressed_count() noexcept;
// Write text to the report stream as it is (the lock_stat table).
void emit_raw(std::string_view text) noexcept;

// ---- fork: thread ids this thread had in the processes it was forked from ----
// glibc records a mutex's owner as a thread id; a child unlocking a mutex its parent locked
// before fork() (the pthread_atfork idiom) is the owner under its former id.
bool is_me(int tid, int me) noexcept;

// ---- lockdep calls with the re-entrancy flag set ----
// Inlined into the interposers: lockdep trims its stack traces at the frame that called it, so
// traces begin with the interposer ("pthread_mutex_lock+0x..."), as the kernel's begin with the
// lock function.
[[gnu::always_inline]] inline void ld_acquire(record* r, int trylock, int read, std::uintptr_t ip) noexcept
{
    tool_scope s;
    lockdep::lock_acquire(r->map, 0, trylock, read, 1, nullptr, ip);
}
[[gnu::always_inline]] inline void ld_release(record* r, std::uintptr_t ip) noexcept
{
    tool_scope s;
    lockdep::lock_release(r->map, ip);
}
[[gnu::always_inline]] inline void ld_contended(record* r, std::uintptr_t ip) noexcept
{
    tool_scope s;
    lockdep::lock_contended(r->map, ip);
}
[[gnu::always_inline]] inline void ld_acquired(record* r, std::uintptr_t ip) noexcept
{
    tool_scope s;
    lockdep::lock_acquired(r->map, ip);
}

// lock_stat (lock_stat.cpp): contention is measured with a trylock first when it is on.
extern bool g_lock_stat_enabled;
[[gnu::always_inline]] inline bool lock_stat_on() noexcept { return g_lock_stat_enabled; }
void lock_stat_init() noexcept;

// ---- signals (signals.cpp) ----
// Bring this thread's irq state (klock thread_info.irqs_disabled) in line with its signal mask.
void irq_sync_slow() noexcept;
extern std::atomic<std::uint32_t> g_irq_gen;
[[gnu::always_inline]] inline void irq_check() noexcept
{
    if (__builtin_expect(tls.irq_gen != g_irq_gen.load(std::memory_order_relaxed), 0))
        irq_sync_slow();
}

// Everything a tracked operation does first.
[[gnu::always_inline]] inline void enter_op() noexcept
{
    stack_check();
    irq_check();
}

} // namespace klock::preload

#pragma GCC visibility pop
