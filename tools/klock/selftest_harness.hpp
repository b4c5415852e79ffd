// `klock selftest`: the machinery behind the kernel's locking API self-test matrix
// (lib/locking-selftest.c), over klock's lock types.
//
// HOW A TEST CASE RUNS (the kernel's dotest() and reset_locks(), in user space)
//   1. lockdep::reset(): no classes, no dependencies, no usage bits, debug_locks = 1. lockdep runs
//      in one-shot mode, as the kernel's does: the first report clears debug_locks.
//   2. A fresh `world` is built: the kernel's static locks lock_A..lock_D, lock_X1..lock_Z2 (and
//      the rwlock_, mutex_, rwsem_, rtmutex_ ones), where X1/X2, Y1/Y2, Z1/Z2 are two instances of
//      one class each (so that "A-A" needs no real self-deadlock), the ww_mutexes o, o2, o3 and
//      the acquire contexts t, t2.
//   3. The case runs under a report_capture, so that no report reaches stderr and the table stays
//      readable. A case counts as "detected" when lockdep cleared debug_locks or anything was
//      reported: lockdep's splats and the locks' own "BUG: ..." misuse reports (detail::lock_bug)
//      alike. The expectation (SUCCESS: nothing reported; FAILURE: something was) is compared
//      with that, and a case whose own API checks failed (a ww lock() that should have returned
//      -EDEADLK, ...) is FAILED whatever lockdep said; so is one in which lockdep registered no
//      lock class at all (it never saw the case: its silence would prove nothing).
//   4. Cleanup, with lockdep switched off and the capture still open (its reports are dropped):
//      every lock the case left held is released in reverse order, contexts are finished,
//      preempt_count and the interrupt state are put back as they were (the kernel restores
//      preempt_count after each case for the same reason), and the world is destroyed.
//
// WHY THE rwlock COLUMNS USE THEIR OWN Env
//   The kernel runs its matrix with force_read_lock_recursive = 1: read_lock() is annotated as a
//   recursive reader even in task context, which is what the "rlock" expectations (A-A ok, the
//   W1R2/R2R3 strong-path rows) are written for. klock::rwlock asks lockdep::rwlock_read_mode(),
//   which, like the kernel's queued rwlocks, makes a reader recursive only in interrupt context,
//   and there is no switch to force it. So the rwlock columns run basic_rwlock over `rw_env`, the
//   os Env under another name, for which the one function that picks the read mode is specialised
//   below to honour the same switch. Every other function (atomics, futex, task, irq flags) is
//   env::os's, so with the switch off basic_rwlock<rw_env> behaves exactly as klock::rwlock; the
//   "queued read lock tests" section runs with it off, as the kernel's does.
//
// A watchdog ends the process (exit 1, naming the case) if one case runs longer than 10 s: the
// cases never block in a correct klock, so a hang means a lost -EDEADLK or a real deadlock.
#pragma once

#if KLOCK_LOCKDEP

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <klock/env/os.hpp>
#include <klock/lockdep.hpp>
#include <klock/mutex.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/ww_mutex.hpp>

namespace klock::tool::selftest {

// The os Env, under a name of its own so that the read mode of basic_rwlock can be forced
// recursive for the matrix (see the top of this file).
struct rw_env : env::os {
    static inline bool force_read_lock_recursive = true; // touched only by the selftest's thread
};

} // namespace klock::tool::selftest

namespace klock::detail {
// read_lock_is_recursive() with the kernel's force_read_lock_recursive switch.
template <> inline int lockdep_rwlock_read_mode<tool::selftest::rw_env>() noexcept
{
    using tool::selftest::rw_env;
    return rw_env::force_read_lock_recursive ? lockdep::READ_RECURSIVE
                                             : lockdep::rwlock_read_mode(rw_env::info(rw_env::current()));
}
} // namespace klock::detail

namespace klock::tool::selftest {

using rwlock_type = basic_rwlock<rw_env>;
using ww_wd_mutex = ww_mutex<ww_class_wait_die>;
using ww_ww_mutex = ww_mutex<ww_class_wound_wait>;

// The columns of the main table, in the kernel's order.
enum class kind : std::uint8_t { spin, wlock, rlock, mutex, wsem, rsem, rtmutex };
const char* kind_name(kind k);
// Which interrupt context IRQ_ENTER() & co. fake (the kernel's -hardirq.h / -softirq.h variants).
enum class irq_kind : std::uint8_t { none, hard, soft };

// The kernel's lock names: A-D are classes of their own, X1/X2 (Y, Z) two instances of one class.
enum lock_id : unsigned { A, B, C, D, X1, X2, Y1, Y2, Z1, Z2, NR_LOCK_IDS };

// Storage for one lock that a case may destroy and rebuild in place (INIT of a held lock).
template <class Lock> class lock_slot {
public:
    lock_slot() = default;
    lock_slot(const lock_slot&) = delete;
    lock_slot& operator=(const lock_slot&) = delete;
    ~lock_slot() { destroy(); }

    void make(lock_class_key& key, const char* name)
    {
        destroy();
        new (mem_) Lock(key, name);
        live_ = true;
    }
    void destroy()
    {
        if (live_) {
            get().~Lock();
            live_ = false;
        }
    }
    Lock& get() { return *std::launder(reinterpret_cast<Lock*>(mem_)); }

private:
    alignas(Lock) unsigned char mem_[sizeof(Lock)];
    bool live_ = false;
};

// Everything one test case works on, and the kernel's shorthand for using it. The upper-case
// names are lib/locking-selftest.c's (L = spin_lock, WL = write_lock, RSL = down_read, LOCK = the
// column's lock operation, IRQ_ENTER = the variant's interrupt entry, ...), so that each case
// reads line for line like the kernel's.
class world {
public:
    world(kind k, irq_kind irq);
    ~world();
    world(const world&) = delete;
    world& operator=(const world&) = delete;

    const kind k;
    const irq_kind irq;

    // ---- explicit lock types ----
    void L(lock_id x);
    void U(lock_id x);
    void WL(lock_id x);
    void WU(lock_id x);
    void RL(lock_id x);
    void RU(lock_id x);
    void ML(lock_id x);
    void MU(lock_id x);
    void WSL(lock_id x);
    void WSU(lock_id x);
    void RSL(lock_id x);
    void RSU(lock_id x);
    void RTL(lock_id x);
    void RTU(lock_id x);

    // ---- the column's lock type ----
    void LOCK(lock_id x);
    void UNLOCK(lock_id x);
    // The kernel re-initialises the lock; klock has no re-init of a live lock, so the closest
    // analogue: destroy it where it lies (lockdep: "held lock freed!", the lock: "... destroyed
    // while ...") and construct a fresh one in its place.
    void INIT(lock_id x);
    void LOCK_UNLOCK_2(lock_id x, lock_id y)
    {
        LOCK(x);
        LOCK(y);
        UNLOCK(y);
        UNLOCK(x);
    }

    // ---- faked interrupt context, in this one thread ----
    void HARDIRQ_ENTER();
    void HARDIRQ_EXIT();
    void HARDIRQ_DISABLE();
    void HARDIRQ_ENABLE();
    void SOFTIRQ_ENTER();
    void SOFTIRQ_EXIT();
    void SOFTIRQ_DISABLE();
    void SOFTIRQ_ENABLE();
    // The variant's: hardirq or softirq.
    void IRQ_ENTER();
    void IRQ_EXIT();
    void IRQ_DISABLE();
    void IRQ_ENABLE();

    // read_lock() as queued rwlocks annotate it: recursive only in interrupt context (the
    // kernel's force_read_lock_recursive = 0). Until the case ends.
    void use_queued_read_semantics() { rw_env::force_read_lock_recursive = false; }

    // ---- ww_mutex (the kernel's o, o2, o3 and contexts t, t2; wo1/wo2 are Wound-Wait) ----
    ww_wd_mutex o, o2, o3;
    ww_ww_mutex wo1, wo2;
    ww_acquire_ctx t, t2;

    // An API expectation of the case (thread-safe: helper threads check too).
    void check(bool ok, const std::string& what);
    void check_ret(int got, int want, const char* what);
    std::vector<std::string> check_failures() const;

    // Release whatever the case left held and restore the task's context. lockdep must be off.
    void cleanup();

private:
    enum class ltype : std::uint8_t { spin, rw, mutex, sem, rt };
    struct hold {
        ltype type;
        lock_id id;
        bool read;
    };

    klock::spinlock& spin(lock_id x) { return spin_[x].get(); }
    rwlock_type& rw(lock_id x) { return rw_[x].get(); }
    klock::mutex& mtx(lock_id x) { return mutex_[x].get(); }
    klock::rw_semaphore& sem(lock_id x) { return sem_[x].get(); }
    klock::rt_mutex& rt(lock_id x) { return rt_[x].get(); }

    void held(ltype type, lock_id x, bool read) { holds_.push_back({type, x, read}); }
    void released(ltype type, lock_id x, bool read);
    void forget(ltype type, lock_id x);
    void release(const hold& h);
    void make(ltype type, lock_id x);

    lock_slot<klock::spinlock> spin_[NR_LOCK_IDS];
    lock_slot<rwlock_type> rw_[NR_LOCK_IDS];
    lock_slot<klock::mutex> mutex_[NR_LOCK_IDS];
    lock_slot<klock::rw_semaphore> sem_[NR_LOCK_IDS];
    lock_slot<klock::rt_mutex> rt_[NR_LOCK_IDS];

    std::vector<hold> holds_; // acquisitions not yet matched by a release, oldest first
    std::uint32_t saved_preempt_count_;
    bool saved_irqs_disabled_;
    mutable std::mutex check_lock_;
    std::vector<std::string> check_failures_;
};

using case_fn = std::function<void(world&)>;

// GENERATE_PERMUTATIONS_2_EVENTS / _3_EVENTS: the events E1, E2 (, E3) in every order.
using event = void (*)(world&);
inline constexpr const char* perms2[] = {"12", "21"};
inline constexpr const char* perms3[] = {"123", "132", "213", "231", "312", "321"};
case_fn in_order(std::vector<event> e, const char* order);

// One cell of a row: a test case, or a spacer where the row has no test for that column.
struct cell {
    std::string name; // the kernel's function name, e.g. "AA_spin", "irqsafe3_hard_rlock_123"
    case_fn fn;
    kind k = kind::spin;
    irq_kind irq = irq_kind::none;
    bool expect_failure = false;
    const char* spacer = nullptr; // non-null: print this instead of running anything
};

cell test(std::string name, case_fn fn, kind k, bool expect_failure, irq_kind irq = irq_kind::none);
cell spacer(const char* text);
inline constexpr const char* SKIP1 = "      |";        // one column without a test
inline constexpr const char* SKIP2 = "             |"; // two columns without a test

struct options {
    bool verbose = false;
    bool expect_inverted = false; // hidden: proves that a wrong expectation is caught
    std::string filter;           // run only rows whose name contains this
};

// Prints the table as the kernel does and keeps the score.
class runner {
public:
    runner(const options& opt, std::FILE* out);
    ~runner();
    runner(const runner&) = delete;
    runner& operator=(const runner&) = delete;

    // Printed once, before the first row that runs.
    void header(std::string lines) { header_ = std::move(lines); }
    // A section's header: printed before the section's first row that runs; a new section()
    // drops it if none did. subsection() adds lines to the pending header.
    void section(std::string lines) { pending_ = std::move(lines); }
    void subsection(const std::string& lines) { pending_ += lines; }
    void row(const std::string& name, const std::vector<cell>& cells);
    // The summary; returns the exit status (0: all as expected, 1: unexpected failures).
    int finish();
    int total() const { return total_; }

private:
    struct result {
        bool ok;
        bool detected;
        std::vector<std::string> reports;
        std::vector<std::string> check_failures;
    };
    result run(const cell& c);
    void watchdog_main();

    options opt_;
    std::FILE* out_;
    std::string header_;
    std::string pending_;
    int total_ = 0;
    int unexpected_ = 0;

    // The watchdog (see the top of the file).
    std::mutex wd_lock_;
    std::condition_variable wd_cv_;
    std::string wd_case_;
    bool wd_armed_ = false;
    bool wd_stop_ = false;
    std::chrono::steady_clock::time_point wd_deadline_;
    std::thread wd_thread_;
};

// A second task for the ww cases: runs `body` on its own thread. The two sides step through a
// shared counter: post(n) publishes step n, wait_for(n) waits (bounded) until it is reached.
class peer {
public:
    explicit peer(std::function<void(peer&)> body);
    ~peer(); // joins
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;

    void post(int step);
    bool wait_for(int step, int timeout_ms = 5000);
    void join();

private:
    std::mutex lock_;
    std::condition_variable cv_;
    int step_ = 0;
    std::thread thread_;
};

// The table's families (selftest_cases.cpp, selftest_irq.cpp, selftest_ww.cpp).
void lock_type_tests(runner& r);
void recursive_read_tests(runner& r);
void irq_tests(runner& r);
void ww_tests(runner& r);
void queued_read_lock_tests(runner& r);
void special_tests(runner& r);

// The whole matrix; returns the exit status.
int run_matrix(const options& opt, std::FILE* out);

} // namespace klock::tool::selftest

#endif // KLOCK_LOCKDEP
