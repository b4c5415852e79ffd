// klock::basic_ww_mutex<E, Class> / klock::ww_mutex<Class> - wound/wait mutexes: sleeping locks that a
// task takes several at a time, in any order, without deadlocking (kernel/locking/ww_mutex.h, the ww
// paths of kernel/locking/mutex.c, Documentation/locking/ww-mutex-design.rst).
//
// THE PROTOCOL
//   A task that needs a set of locks opens an acquire context, which draws a stamp from a global
//   counter (smaller = older), and takes every lock with lock(&ctx). When that returns -EDEADLK the
//   task must back off: unlock everything it holds under the context, sleep on the contended lock
//   with lock_slow(&ctx) (which cannot fail: the context now holds nothing), and start over, keeping
//   its stamp. A retrying context only ages, so eventually it is the oldest one in the system, and the
//   oldest context never has to back off: every contention ends, and every transaction finishes.
//   acquire_done() closes the locking phase, acquire_fini() (or the destructor) ends the context.
//
// WHO BACKS OFF (the class; all locks and contexts of one class use the same rule)
//   Wait-Die   (ww_class_wait_die): a context that holds locks and meets an older holder or an older
//              waiter in the lock's queue dies (-EDEADLK) at once; an older context always waits.
//   Wound-Wait (ww_class_wound_wait): a context that holds locks and queues behind a younger holder
//              wounds it (sets ctx->wounded and wakes its task wherever it sleeps); the wounded holder
//              gets -EDEADLK at its next contended lock, if it then holds locks. A younger context
//              always waits. Fewer back-offs than Wait-Die when contention is rare.
//   A context that holds no locks is never part of a cycle, so it never dies and a stale wound is
//   forgotten (ctx->wounded is cleared whenever it starts to lock with nothing held).
//
// THE LOCK
//   owner_ = (uintptr_t)owning task | WW_FLAG_WAITERS; ctx_ = the context the owner locked with
//   (null for lock(nullptr), lock() and try_lock()); wait_lock_ (an arch::qspinlock) guards the wait
//   list. Fast paths: CAS 0 -> current (acquire) and current -> 0 (release); WAITERS makes both fail.
//   - The wait list is sorted by stamp, oldest first; waiters without a context are appended FIFO and
//     skipped by the sort, so that contexts cannot starve them.
//   - No lock stealing while anybody waits: with WAITERS set the lock goes only to the head of the
//     list (the oldest waiting context, or a plain waiter that queued before it), which takes it
//     itself under wait_lock. Unlock clears the task field, then wakes the head. An older context
//     therefore never loses the lock to a younger arrival, which the back-off argument above needs.
//
// THE WAIT LOOP (wait_lock held at its top)
//   arm the wake word; if head: try to take the lock; for a context: may I still wait? (Wait-Die:
//   not behind an older holder or waiter while holding locks; Wound-Wait: not wounded while holding
//   locks) - if not, leave the list and return -EDEADLK; drop wait_lock; sleep; retake wait_lock.
//   Adding a context to the list already applies the class's rule: Wait-Die dies at once behind an
//   older waiter and wakes every younger waiter that holds locks so it can die; Wound-Wait wounds a
//   younger holder.
//
// INVARIANTS
//   - The task field changes only by: lock (0 -> me; with WAITERS set only by the head waiter, under
//     wait_lock) and unlock (me -> 0). ctx_ is written only by the owner: set right after acquiring,
//     cleared right before releasing (so a context's acquired count is exact whenever it is stable).
//   - Under wait_lock: WAITERS is set <=> the wait list is not empty.
//   - While WAITERS is set and somebody holds wait_lock, the owner cannot change except to "free":
//     nobody else may take the lock, and the releasing owner's unlock must take wait_lock to wake the
//     head. So a context read from ctx_ under wait_lock stays alive for that critical section, which
//     is what makes it safe to wound it (its owner cannot finish unlocking, nor destroy it).
//   - Whenever the lock is free and the list is not empty, the head waiter is awake or woken: unlock
//     wakes it; a new head tries the lock itself; a waiter leaves (dies) only right after a failed
//     attempt under wait_lock, i.e. while the lock is held by somebody whose unlock will wake the
//     head. So no waiter is stranded.
//   - Wait-Die: among waiting contexts only the first can hold other locks (a context that queues
//     behind an older one while holding locks dies; one that queues in front wakes the younger ones
//     that hold locks, and they die).
//
// THE FAST-PATH RACE (the kernel's ww_mutex_set_context_fastpath)
//   A fast-path owner publishes ctx_ only after its CAS, while a new waiter may already be judging
//   ctx_. Both sides are seq_cst: the owner stores ctx_ then reads WAITERS; the waiter sets WAITERS
//   then reads ctx_. At least one sees the other: the waiter applies the rule itself, or the owner
//   takes wait_lock and applies it for the waiters (wounding itself, or waking those that must die).
//
// SLEEPING AND WAKING
//   As in mutex.hpp: a 32-bit wake word, ARMED under wait_lock before the checks, ARMED -> SLEEPING
//   by CAS outside it, futex-wait while SLEEPING; wakers exchange WOKEN in under wait_lock and call
//   futex_wake after dropping it, only if the old value was SLEEPING (the futex address is a key;
//   a late wake to a departed record is a spurious wakeup). A waiter with a context sleeps on a word
//   in its context rather than in its stack record: a wounder, holding another lock's wait_lock,
//   must be able to wake a holder that sleeps in some other lock's queue, and the context is the
//   only record of that task it can reach safely (invariant above). Wounded flag and wake word are
//   both seq_cst, so a wound either lands before the waiter's check or its WOKEN lands after ARMED.
//
// MISUSE (reported through detail::lock_bug; a refused call changes no state)
//   "ww_mutex already unlocked", "ww_mutex wrong owner", "ww_mutex destroyed while locked";
//   "ww_mutex recursion": lock()/lock_slow() by the owner, or lock(ctx) with another context than
//     the one it holds the lock with - refused (-EINVAL / not acquired). lock(ctx) with the context
//     that holds the lock is not misuse: -EALREADY.
//   "ww_mutex class mismatch": a context of another class - refused (-EINVAL): mixing the two rules
//     on one wait list breaks both.
//   "ww_acquire_ctx used before ww_acquire_init" / "... after ww_acquire_fini" / "... by another
//     task": refused (-EINVAL).
//   The kernel's DEBUG_WW_MUTEXES checks of the back-off protocol:
//   "ww_mutex lock after ww_acquire_done": reported, the lock is taken (as in the kernel: harmless);
//   "ww_mutex backoff with locks held": after -EDEADLK, another lock()/lock_slow() before releasing
//     every lock - refused (-EINVAL), as going on is exactly the deadlock the protocol avoids;
//   "ww_mutex backoff to a different lock": after -EDEADLK and the release, the first lock taken is
//     not the contended one - reported, taken;
//   "ww_mutex lock_slow without -EDEADLK": reported; taken if the context holds nothing, refused
//     otherwise (lock_slow cannot return -EDEADLK);
//   "ww_acquire_fini with locks held", "ww_acquire_done called twice", "ww_acquire_init on a
//   context that holds locks", "ww_acquire_ctx destroyed with locks held": reported, no change
//   (the last leaves dangling ctx_ pointers behind: nothing can repair that).
//
// Deviations from the kernel: no optimistic spinning and no lock stealing while tasks wait (the lock
// passes to the head waiter; see THE LOCK); a context's wake word replaces wake_up_process(task);
// the stamp counter is global per Env, not per class (stamps are only ever compared within a class);
// classes are types (Class::is_wait_die, Class::name) and the class check and the protocol checks are
// always on; the misuse checks run before anything is taken, so refused calls change nothing; no
// -EDEADLK injection (DEBUG_WW_MUTEX_SLOWPATH's deadlock_inject); no lock_interruptible.
#pragma once

#include <cerrno>
#include <concepts>
#include <cstdint>
#include <cstdio>

#include <klock/arch/qspinlock.hpp>
#include <klock/detail/lock_debug.hpp>
#include <klock/env/env.hpp>
#include <klock/env/os.hpp>
#include <klock/might_sleep.hpp>
#include <klock/source_location.hpp>
#include <klock/thread_safety.hpp>

#include <klock/detail/lock_dep.hpp>

#if KLOCK_LOCKDEP
#include <string>
#endif

namespace klock {

// The two ww classes (the kernel's DEFINE_WD_CLASS / DEFINE_WW_CLASS). A program may define its own
// class by deriving from one of them and redefining `name`; locks and contexts of different classes
// must never meet.
struct ww_class_wait_die {
    static constexpr bool is_wait_die = true;
    static constexpr const char* name = "ww_class_wait_die";
};
struct ww_class_wound_wait {
    static constexpr bool is_wait_die = false;
    static constexpr const char* name = "ww_class_wound_wait";
};

template <class C>
concept ww_class_type = requires
{
    {
        C::is_wait_die
        } -> std::convertible_to<bool>;
    {
        C::name
        } -> std::convertible_to<const char*>;
};

inline constexpr std::uintptr_t WW_FLAG_WAITERS = 0x01;

namespace detail {
// One object per class type: its address is the class's identity at run time.
struct ww_class_info {
    const char* name;
    bool is_wait_die;
};
template <ww_class_type C> inline constexpr ww_class_info ww_class_info_of{C::name, C::is_wait_die};
} // namespace detail

template <env::Env E, ww_class_type Class> class basic_ww_mutex;

namespace detail {
// lockdep's two classes per ww class, as the kernel's DEFINE_WW_CLASS gives each ww_class a
// mutex key and an acquire key: every ww_mutex of a class is one lockdep class (named after the
// class), and every context of a class another ("<name>_acquire"), held for the whole
// transaction and passed as the nest_lock of each ww_mutex taken under it.
template <class Class> inline lock_class_key ww_mutex_key;
#if KLOCK_LOCKDEP
template <class Class> inline lock_class_key ww_acquire_key;
template <class Class> const char* ww_acquire_name() noexcept
{
    static const std::string name = std::string(Class::name) + "_acquire";
    return name.c_str();
}
#endif
} // namespace detail

// struct ww_acquire_ctx. Lives on its task's stack for the duration of one transaction; only that task
// may use it. Other tasks touch it only through a lock's wait_lock section (wounded_, wake_).
template <env::Env E> class basic_ww_acquire_ctx {
    using task = typename E::task;
    template <class T> using atomic = typename E::template atomic<T>;
    template <env::Env, ww_class_type> friend class basic_ww_mutex;

public:
    // An inactive context; ww_acquire_init() (or init()) starts a transaction with it.
    constexpr basic_ww_acquire_ctx() noexcept { }
    // ww_acquire_init() in one step.
    template <ww_class_type Class> explicit basic_ww_acquire_ctx(Class c) noexcept { init(c); }
    basic_ww_acquire_ctx(const basic_ww_acquire_ctx&) = delete;
    basic_ww_acquire_ctx& operator=(const basic_ww_acquire_ctx&) = delete;

    // An active context ends here if the program did not call acquire_fini().
    ~basic_ww_acquire_ctx()
    {
        if (__builtin_expect(active() && acquired_ != 0, 0))
            report("ww_acquire_ctx destroyed with locks held", " (the locks still point to it)");
#if KLOCK_LOCKDEP
        ld_end(); // a transaction may end here without acquire_fini()
#endif
    }

    // ww_acquire_init(): a new transaction of class `Class`, with a fresh stamp.
    template <ww_class_type Class> void init(Class) noexcept
    {
        if (__builtin_expect(active() && acquired_ != 0, 0)) {
            report("ww_acquire_init on a context that holds locks", "");
            return;
        }
        task_ = E::current();
        stamp_ = stamp_counter_.fetch_add(1, std::memory_order_relaxed) + 1;
        acquired_ = 0;
        wounded_.store(0, std::memory_order_relaxed);
        class_ = &detail::ww_class_info_of<Class>;
        contending_ = nullptr;
        state_ = state::acquiring;
#if KLOCK_LOCKDEP
        // ww_acquire_init(): the context is itself a held "lock" of the class's acquire class.
        ld_end();
        dep_map_.init(detail::ww_acquire_name<Class>(), &detail::ww_acquire_key<Class>);
        if constexpr (detail::lockdep_tracks<E>)
            if (lockdep::enabled()) {
                lockdep::lock_acquire(dep_map_, 0, 0, lockdep::WRITE, 1, nullptr);
                ld_held_ = true;
            }
#endif
    }

    // ww_acquire_done(): no more locks will be taken with this context (it may still unlock).
    void acquire_done() noexcept
    {
        if (!usable("ww_acquire_done"))
            return;
        if (state_ == state::done) {
            report("ww_acquire_done called twice", "");
            return;
        }
        state_ = state::done;
    }

    // ww_acquire_fini(): the transaction is over; every lock must have been released.
    void acquire_fini() noexcept
    {
        if (!usable("ww_acquire_fini"))
            return;
        if (acquired_ != 0) {
            char extra[64];
            std::snprintf(extra, sizeof extra, " (%u still held)", acquired_);
            report("ww_acquire_fini with locks held", extra);
            return;
        }
        state_ = state::finished;
#if KLOCK_LOCKDEP
        ld_end();
#endif
    }

    std::uint64_t stamp() const noexcept { return stamp_; }
    // Locks held under this context.
    unsigned acquired() const noexcept { return acquired_; }
    // Set by an older context that waits for a lock this one holds (Wound-Wait).
    bool wounded() const noexcept { return wounded_.load(std::memory_order_relaxed) != 0; }
    bool is_wait_die() const noexcept { return class_ != nullptr && class_->is_wait_die; }
    const char* class_name() const noexcept { return class_ != nullptr ? class_->name : ""; }
    bool active() const noexcept { return state_ == state::acquiring || state_ == state::done; }

private:
    enum class state : std::uint8_t { never, acquiring, done, finished };

#if KLOCK_LOCKDEP
    void ld_end() noexcept
    {
        if (ld_held_) {
            ld_held_ = false;
            detail::lockdep_release<E>(dep_map_);
        }
    }
    // The nest_lock for a ww_mutex taken under this context by `cur`: only while lockdep holds it.
    lockdep_map* ld_nest(task* cur) noexcept { return ld_held_ && task_ == cur ? &dep_map_ : nullptr; }
#endif

    // __ww_ctx_less(): true if `a` is younger than `b` (wrap-safe, as the kernel compares stamps).
    static bool younger(const basic_ww_acquire_ctx* a, const basic_ww_acquire_ctx* b) noexcept
    {
        return static_cast<std::int64_t>(a->stamp_ - b->stamp_) > 0;
    }

    bool usable(const char* what) const noexcept
    {
        if (__builtin_expect(state_ == state::acquiring || state_ == state::done, 1))
            return true;
        char extra[96];
        std::snprintf(extra, sizeof extra, " (in %s)", what);
        report(state_ == state::never ? "ww_acquire_ctx used before ww_acquire_init"
                                      : "ww_acquire_ctx used after ww_acquire_fini",
            extra);
        return false;
    }

    [[gnu::cold]] void report(const char* what, const char* extra) const
    {
        char buf[192];
        std::snprintf(buf, sizeof buf, " ctx: stamp %llu, class %s, acquired %u%s",
            static_cast<unsigned long long>(stamp_), class_name(), acquired_, extra);
        detail::lock_bug<E>(what, this, task_, -1, buf);
    }

    static inline atomic<std::uint64_t> stamp_counter_{0};

    task* task_ = nullptr;
    std::uint64_t stamp_ = 0;
    unsigned acquired_ = 0; // only the context's task changes it
    state state_ = state::never;
    const detail::ww_class_info* class_ = nullptr;
    const void* contending_ = nullptr; // the lock that said -EDEADLK, until the next acquisition
    atomic<std::uint32_t> wounded_{0};
    atomic<std::uint32_t> wake_{0}; // the wake word while this context's task waits for a ww_mutex
#if KLOCK_LOCKDEP
    lockdep_map dep_map_;
    bool ld_held_ = false; // lockdep saw this context's acquire (init) and not yet its release
#endif
};

template <env::Env E, ww_class_type Class> void ww_acquire_init(basic_ww_acquire_ctx<E>* ctx, Class c) noexcept
{
    ctx->init(c);
}
template <env::Env E> void ww_acquire_done(basic_ww_acquire_ctx<E>* ctx) noexcept { ctx->acquire_done(); }
template <env::Env E> void ww_acquire_fini(basic_ww_acquire_ctx<E>* ctx) noexcept { ctx->acquire_fini(); }

template <env::Env E, ww_class_type Class> class KLOCK_CAPABILITY("mutex") basic_ww_mutex {
    using task = typename E::task;
    template <class T> using atomic = typename E::template atomic<T>;

public:
    using ctx_type = basic_ww_acquire_ctx<E>;
    using class_type = Class;
    static constexpr bool is_wait_die = Class::is_wait_die;

    static_assert(alignof(task) > WW_FLAG_WAITERS, "the owner word keeps WAITERS in the task pointer's low bit");

    // ww_mutex_init(): lockdep's class is the ww class's (detail::ww_mutex_key<Class>).
    constexpr basic_ww_mutex() noexcept
        : owner_(0),
          ctx_(nullptr),
          wait_lock_(),
          head_(nullptr),
          tail_(nullptr),
          dep_(detail::ww_mutex_key<Class>, Class::name)
    { }
    basic_ww_mutex(const basic_ww_mutex&) = delete;
    basic_ww_mutex& operator=(const basic_ww_mutex&) = delete;

    ~basic_ww_mutex()
    {
        dep_.freed(this, sizeof *this);
        const std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        if (__builtin_expect(o != 0, 0))
            detail::lock_bug<E>("ww_mutex destroyed while locked", this, owner_task(o), -1,
                head_ != nullptr ? " (tasks are still waiting for it)" : "");
    }

    // ww_mutex_lock(): 0 when acquired; -EDEADLK: back off (release every lock held under `ctx`,
    // then lock_slow() this one); -EALREADY: `ctx` already holds this lock; -EINVAL: refused misuse
    // (reported). A null `ctx` locks like a plain mutex. May sleep.
    [[gnu::always_inline]] int lock(ctx_type* ctx, klock::source_location loc = klock::source_location::current())
        KLOCK_TRY_ACQUIRE(0)
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(ctx, 0);
        const int r = raw_lock(ctx, call::lock, loc);
        if (r != 0)
            dep_.release(); // -EDEADLK, -EALREADY, -EINVAL: not acquired (again)
        return r;
    }

    // ww_mutex_lock_slow(): after -EDEADLK and the release of every lock, sleep until this (the
    // contended) lock is ours. Cannot fail, since the context holds nothing.
    [[gnu::always_inline]] void lock_slow(ctx_type* ctx, klock::source_location loc = klock::source_location::current())
        KLOCK_ACQUIRE()
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(ctx, 0);
        if (raw_lock(ctx, call::lock_slow, loc) != 0)
            dep_.release();
    }

    // Lockable: lock without a context (mutex_lock() on the ww_mutex).
    [[gnu::always_inline]] void lock(klock::source_location loc = klock::source_location::current()) KLOCK_ACQUIRE()
    {
        kernel::might_sleep<E>(loc.file_name(), loc.line());
        ld_acquire(nullptr, 0);
        if (raw_lock(nullptr, call::lock, loc) != 0)
            dep_.release();
    }

    // ww_mutex_trylock(lock, NULL): never sleeps.
    [[gnu::always_inline]] bool try_lock() noexcept KLOCK_TRY_ACQUIRE(true)
    {
        std::uintptr_t o = 0;
        if (!owner_.compare_exchange_strong(
                o, to_word(E::current()), std::memory_order_acquire, std::memory_order_relaxed))
            return false;
        ld_acquire(nullptr, 1);
        return true;
    }

    // ww_mutex_trylock(lock, ctx): never sleeps; on success the lock counts as taken under `ctx`
    // (and may get it wounded, like any acquisition).
    bool try_lock(ctx_type* ctx) noexcept KLOCK_TRY_ACQUIRE(true)
    {
        if (ctx == nullptr)
            return try_lock();
        task* cur = E::current();
        if (!fast_ctx_ok(ctx, cur, call::try_lock) && check_ctx(ctx, cur, call::try_lock) != 0)
            return false;
        if (ctx->acquired_ == 0)
            ctx->wounded_.store(0, std::memory_order_relaxed);
        std::uintptr_t o = 0;
        if (!owner_.compare_exchange_strong(o, to_word(cur), std::memory_order_acquire, std::memory_order_relaxed))
            return false;
        acquired_fastpath(ctx);
        ld_acquire(ctx, 1);
        return true;
    }

    // ww_mutex_unlock(): also for locks taken without a context.
    [[gnu::always_inline]] void unlock() noexcept KLOCK_RELEASE()
    {
        dep_.release();
        raw_unlock();
    }

#if KLOCK_LOCKDEP
    lockdep_map& dep_map() noexcept { return dep_.map(); }
#endif

    // ww_mutex_is_locked().
    bool is_locked() const noexcept { return owner_task(owner_.load(std::memory_order_relaxed)) != nullptr; }
    // The owner's pid, 0 when unlocked (diagnostic).
    int owner_pid() const noexcept
    {
        task* t = owner_task(owner_.load(std::memory_order_acquire));
        return t != nullptr ? E::task_pid(t) : 0;
    }
    // The context the owner locked with, null if none or unlocked (diagnostic: may change at once).
    const ctx_type* context() const noexcept { return ctx_.load(std::memory_order_acquire); }
    // The raw owner word (task pointer | WW_FLAG_WAITERS), for tests and diagnostics.
    std::uintptr_t owner_word() const noexcept { return owner_.load(std::memory_order_acquire); }

private:
    enum class call : std::uint8_t { lock, lock_slow, try_lock };

    // A task waiting in the wait list; lives on its stack, linked and unlinked under wait_lock.
    struct waiter {
        waiter* next = nullptr;
        waiter* prev = nullptr;
        ctx_type* ctx = nullptr;
        atomic<std::uint32_t>* wake = nullptr; // &ctx->wake_, or &own_wake without a context
        atomic<std::uint32_t> own_wake{0};
    };
    static constexpr std::uint32_t wake_armed = 0;
    static constexpr std::uint32_t wake_sleeping = 1;
    static constexpr std::uint32_t wake_woken = 2;

    // The kernel's wake_q: filled under wait_lock, run after it. One lock operation wakes at most
    // a few tasks (the head, one dying waiter, one wounded holder); a fuller queue wakes at once.
    struct wake_q {
        static constexpr unsigned capacity = 4;
        atomic<std::uint32_t>* words[capacity];
        unsigned n = 0;
        void add(atomic<std::uint32_t>& w) noexcept
        {
            if (w.exchange(wake_woken, std::memory_order_seq_cst) != wake_sleeping)
                return;
            if (n < capacity)
                words[n++] = &w;
            else
                E::futex_wake(w, 1);
        }
        void wake_up() noexcept
        {
            for (unsigned i = 0; i < n; ++i)
                E::futex_wake(*words[i], 1); // may hit a departed waiter's address: see mutex.hpp
            n = 0;
        }
    };

    static std::uintptr_t to_word(task* t) noexcept { return reinterpret_cast<std::uintptr_t>(t); }
    static task* owner_task(std::uintptr_t o) noexcept { return reinterpret_cast<task*>(o & ~WW_FLAG_WAITERS); }

    // ---- misuse checks on the context (before anything is taken) ----

    // The common case in one test: the right task, class and phase, and not in the middle of a back-off.
    [[gnu::always_inline]] static bool fast_ctx_ok(const ctx_type* c, task* cur, call k) noexcept
    {
        return c->task_ == cur
            && c->class_ == &detail::ww_class_info_of<Class> && c->state_ == ctx_type::state::acquiring
            && c->contending_ == nullptr && k != call::lock_slow;
    }

    // 0: go ahead (after a report, for the protocol slips that are harmless); otherwise the refusal.
    [[gnu::cold, gnu::noinline]] int check_ctx(ctx_type* c, task* cur, call k) const
    {
        if (!c->usable(k == call::lock_slow ? "ww_mutex lock_slow" : "ww_mutex lock"))
            return -EINVAL;
        if (c->task_ != cur) {
            ctx_bug("ww_acquire_ctx used by another task", c, "");
            return -EINVAL;
        }
        if (c->class_ != &detail::ww_class_info_of<Class>) {
            char extra[160];
            std::snprintf(extra, sizeof extra, " (lock class %s)", Class::name);
            ctx_bug("ww_mutex class mismatch", c, extra);
            return -EINVAL;
        }
        if (c->state_ == ctx_type::state::done)
            ctx_bug("ww_mutex lock after ww_acquire_done", c, "");
        if (k == call::try_lock)
            return 0;
        if (c->contending_ != nullptr) {
            if (c->acquired_ != 0) {
                ctx_bug("ww_mutex backoff with locks held", c, " (after -EDEADLK release every lock first)");
                return -EINVAL;
            }
            if (c->contending_ != this)
                ctx_bug("ww_mutex backoff to a different lock", c, " (lock_slow the contended lock first)");
        } else if (k == call::lock_slow) {
            ctx_bug("ww_mutex lock_slow without -EDEADLK", c, c->acquired_ != 0 ? " (locks held: refused)" : "");
            if (c->acquired_ != 0)
                return -EINVAL;
        }
        return 0;
    }

    [[gnu::cold]] void ctx_bug(const char* what, const ctx_type* c, const char* extra) const
    {
        char buf[256];
        std::snprintf(buf, sizeof buf, " ctx: %p stamp %llu class %s acquired %u%s", static_cast<const void*>(c),
            static_cast<unsigned long long>(c->stamp_), c->class_name(), c->acquired_, extra);
        detail::lock_bug<E>(what, this, owner_task(owner_.load(std::memory_order_relaxed)), -1, buf);
    }

    [[gnu::cold]] void report_recursion(task* cur, const ctx_type* c, const klock::source_location& loc) const
    {
        char extra[320];
        std::snprintf(extra, sizeof extra, " %s by its owner would deadlock; not acquired again (at %s:%u)",
            c != nullptr ? "lock(ctx) with another context" : "lock()", loc.file_name(), loc.line());
        detail::lock_bug<E>("ww_mutex recursion", this, cur, E::current_cpu(), extra);
    }

    // mutex_acquire_nest(): the context's map is the nest lock (a context exists for lockdep
    // only with KLOCK_LOCKDEP).
    [[gnu::always_inline]] void ld_acquire([[maybe_unused]] ctx_type* c, int trylock) noexcept
    {
#if KLOCK_LOCKDEP
        dep_.acquire(0, trylock, lockdep::WRITE, c != nullptr ? c->ld_nest(E::current()) : nullptr);
#else
        dep_.acquire(0, trylock, lockdep::WRITE);
#endif
    }

    // ---- the algorithm layer (lockdep hooks sit above, in the public members) ----

    [[gnu::always_inline]] int raw_lock(
        ctx_type* c, call k, const klock::source_location& loc) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        task* cur = E::current();
        if (c != nullptr) {
            if (__builtin_expect(!fast_ctx_ok(c, cur, k), 0))
                if (const int r = check_ctx(c, cur, k); r != 0)
                    return r;
            if (c->acquired_ == 0)
                c->wounded_.store(0, std::memory_order_relaxed); // a wound from before the back-off
        }
        std::uintptr_t o = 0;
        if (__builtin_expect(
                owner_.compare_exchange_strong(o, to_word(cur), std::memory_order_acquire, std::memory_order_relaxed),
                1)) {
            if (c != nullptr)
                acquired_fastpath(c);
            return 0;
        }
        return lock_slowpath(cur, c, loc);
    }

    // ww_mutex_lock_acquired(): the bookkeeping of a successful acquisition under `c`.
    void set_context(ctx_type* c) noexcept
    {
        ++c->acquired_;
        c->contending_ = nullptr;
        ctx_.store(c, std::memory_order_seq_cst);
    }

    // ww_mutex_set_context_fastpath(): see THE FAST-PATH RACE.
    void acquired_fastpath(ctx_type* c) noexcept
    {
        set_context(c);
        if (__builtin_expect(!(owner_.load(std::memory_order_seq_cst) & WW_FLAG_WAITERS), 1))
            return;
        wake_q q;
        wait_lock_.lock();
        check_waiters(c, q);
        wait_lock_.unlock();
        q.wake_up();
    }

    // __ww_mutex_kill(): a context that holds locks must back off; one that holds none may wait.
    int kill(ctx_type* c) noexcept
    {
        if (c->acquired_ == 0)
            return 0;
        c->contending_ = this;
        return -EDEADLK;
    }

    // __ww_mutex_die() (Wait-Die): wake waiter `w` if it holds locks and is younger than `c`, so that it
    // dies. True for Wait-Die (only the first waiting context can hold locks: no need to look further).
    bool die(waiter* w, ctx_type* c, wake_q& q) noexcept
    {
        if constexpr (!is_wait_die)
            return false;
        if (w->ctx->acquired_ != 0 && ctx_type::younger(w->ctx, c))
            q.add(*w->wake);
        return true;
    }

    // __ww_mutex_wound() (Wound-Wait): `c` (a waiter holding locks) wounds `hold`, the owner's context,
    // if `hold` is younger, and wakes its task. wait_lock held, WAITERS set: `hold` stays alive.
    bool wound(ctx_type* c, ctx_type* hold, wake_q& q) noexcept
    {
        if (hold == nullptr) // the fast-path race: the owner will look at the waiters itself
            return false;
        task* owner = owner_task(owner_.load(std::memory_order_seq_cst));
        if (owner == nullptr) // releasing right now
            return false;
        if (c->acquired_ != 0 && ctx_type::younger(hold, c)) {
            hold->wounded_.store(1, std::memory_order_seq_cst);
            if (owner != E::current())
                q.add(hold->wake_);
            return true;
        }
        return false;
    }

    // __ww_mutex_check_waiters(): `c` has just taken the lock while tasks wait; apply the rule for them.
    void check_waiters(ctx_type* c, wake_q& q) noexcept
    {
        for (waiter* w = head_; w != nullptr; w = w->next) {
            if (w->ctx == nullptr)
                continue;
            if (die(w, c, q) || wound(w->ctx, c, q))
                break;
        }
    }

    // __ww_mutex_check_kill(): may `w` (context `c`) go on waiting? wait_lock held.
    int check_kill(waiter& w, ctx_type* c) noexcept
    {
        if (c->acquired_ == 0)
            return 0;
        if constexpr (!is_wait_die) {
            return c->wounded_.load(std::memory_order_seq_cst) != 0 ? kill(c) : 0;
        } else {
            ctx_type* hold = ctx_.load(std::memory_order_seq_cst);
            if (hold != nullptr && ctx_type::younger(c, hold))
                return kill(c);
            // The list is sorted: any context in front of us is older.
            for (waiter* p = w.prev; p != nullptr; p = p->prev)
                if (p->ctx != nullptr)
                    return kill(c);
            return 0;
        }
    }

    void link_before(waiter& w, waiter* pos) noexcept
    {
        const bool was_empty = head_ == nullptr;
        w.next = pos;
        w.prev = pos != nullptr ? pos->prev : tail_;
        (w.prev != nullptr ? w.prev->next : head_) = &w;
        (pos != nullptr ? pos->prev : tail_) = &w;
        if (was_empty)
            owner_.fetch_or(WW_FLAG_WAITERS, std::memory_order_seq_cst);
    }

    void remove_waiter(waiter& w) noexcept
    {
        (w.prev != nullptr ? w.prev->next : head_) = w.next;
        (w.next != nullptr ? w.next->prev : tail_) = w.prev;
        // Release: a waiter that leaves may have read the owner's context; an owner whose unlock then
        // finds no waiters (and skips wait_lock) must not reuse that context's memory before the read.
        if (head_ == nullptr)
            owner_.fetch_and(~WW_FLAG_WAITERS, std::memory_order_release);
    }

    // __ww_mutex_add_waiter(): insert `w` in front of the oldest younger context (plain waiters are
    // skipped), applying the class's rule on the way. Non-zero: `c` dies instead of queueing.
    int add_ww_waiter(waiter& w, ctx_type* c, wake_q& q) noexcept
    {
        waiter* pos = nullptr;
        for (waiter* p = tail_; p != nullptr; p = p->prev) {
            if (p->ctx == nullptr)
                continue;
            if (ctx_type::younger(c, p->ctx)) {
                // Wait-Die: queueing behind an older context only to die when it gets the lock is pointless.
                if constexpr (is_wait_die)
                    if (const int r = kill(c); r != 0)
                        return r;
                break;
            }
            pos = p;
            die(p, c, q); // a younger waiter that holds locks is now behind us: it must die
        }
        link_before(w, pos);
        if constexpr (!is_wait_die)
            wound(c, ctx_.load(std::memory_order_seq_cst), q); // after WAITERS: see THE FAST-PATH RACE
        return 0;
    }

    // Take the lock if it is free; with waiters only for the head waiter. wait_lock held.
    bool try_take(task* cur, bool head) noexcept
    {
        std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        for (;;) {
            if (owner_task(o) != nullptr || ((o & WW_FLAG_WAITERS) && !head))
                return false;
            if (owner_.compare_exchange_weak(o, o | to_word(cur), std::memory_order_acquire, std::memory_order_relaxed))
                return true;
        }
    }

    // __mutex_lock_common() with a ww context.
    [[gnu::noinline]] int lock_slowpath(task* cur, ctx_type* c, const klock::source_location& loc) noexcept
    {
        if (__builtin_expect(owner_task(owner_.load(std::memory_order_relaxed)) == cur, 0)) {
            if (c != nullptr && ctx_.load(std::memory_order_relaxed) == c)
                return -EALREADY;
            report_recursion(cur, c, loc);
            return -EINVAL;
        }
        wake_q q;
        wait_lock_.lock();
        if (try_take(cur, false)) { // free and nobody waits
            if (c != nullptr)
                set_context(c);
            wait_lock_.unlock();
            return 0;
        }
        waiter w;
        w.ctx = c;
        w.wake = c != nullptr ? &c->wake_ : &w.own_wake;
        if (c == nullptr) {
            link_before(w, nullptr);
        } else if (const int r = add_ww_waiter(w, c, q); r != 0) {
            wait_lock_.unlock();
            q.wake_up();
            return r;
        }
        dep_.contended();

        int ret = 0;
        for (;;) {
            // wait_lock held. ARMED before the checks: see SLEEPING AND WAKING.
            w.wake->store(wake_armed, std::memory_order_seq_cst);
            if (head_ == &w && try_take(cur, true))
                break;
            if (c != nullptr && (ret = check_kill(w, c)) != 0)
                break;
            wait_lock_.unlock();
            q.wake_up();
            sleep(*w.wake);
            wait_lock_.lock();
        }
        remove_waiter(w);
        if (ret == 0 && c != nullptr)
            set_context(c); // as the head, every context behind us is younger: nothing to check
        wait_lock_.unlock();
        q.wake_up();
        if (ret == 0)
            dep_.acquired();
        return ret;
    }

    static void sleep(atomic<std::uint32_t>& word) noexcept
    {
        std::uint32_t expected = wake_armed;
        if (!word.compare_exchange_strong(
                expected, wake_sleeping, std::memory_order_seq_cst, std::memory_order_seq_cst))
            return; // already woken
        while (word.load(std::memory_order_acquire) == wake_sleeping)
            E::futex_wait(word, wake_sleeping, 0);
    }

    [[gnu::always_inline]] void raw_unlock() noexcept KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        task* cur = E::current();
        std::uintptr_t o = owner_.load(std::memory_order_relaxed);
        if (__builtin_expect(owner_task(o) != cur, 0)) {
            detail::lock_bug<E>(
                owner_task(o) == nullptr ? "ww_mutex already unlocked" : "ww_mutex wrong owner", this, owner_task(o));
            return;
        }
        // __ww_mutex_unlock(): forget the context before the lock can be anybody else's.
        if (ctx_type* c = ctx_.load(std::memory_order_relaxed); c != nullptr) {
            if (c->acquired_ != 0)
                --c->acquired_;
            ctx_.store(nullptr, std::memory_order_relaxed);
        }
        // acq_rel: pairs with remove_waiter()'s release (the same instruction as release on x86).
        o = to_word(cur);
        if (__builtin_expect(
                owner_.compare_exchange_strong(o, 0, std::memory_order_acq_rel, std::memory_order_relaxed), 1))
            return;
        unlock_slowpath(o);
    }

    // Release keeping WAITERS, then wake the head: it takes the lock itself.
    [[gnu::noinline]] void unlock_slowpath(std::uintptr_t o) noexcept
    {
        while (!owner_.compare_exchange_weak(
            o, o & WW_FLAG_WAITERS, std::memory_order_acq_rel, std::memory_order_relaxed)) { }
        if (!(o & WW_FLAG_WAITERS))
            return;
        wake_q q;
        wait_lock_.lock();
        if (head_ != nullptr)
            q.add(*head_->wake);
        wait_lock_.unlock();
        q.wake_up();
    }

    atomic<std::uintptr_t> owner_;
    atomic<ctx_type*> ctx_; // ww_mutex::ctx
    arch::qspinlock<E> wait_lock_;
    waiter* head_; // wait list: contexts by stamp, plain waiters FIFO; guarded by wait_lock_
    waiter* tail_;
    [[no_unique_address]] detail::lock_dep<E> dep_;
};

using ww_acquire_ctx = basic_ww_acquire_ctx<env::os>;
template <ww_class_type Class> using ww_mutex = basic_ww_mutex<env::os, Class>;

} // namespace klock
