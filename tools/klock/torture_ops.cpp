// The lock types of `klock torture` (kernel/locking/locktorture.c's lock_torture_ops).
//
// Every type keeps its locks inside its lock_ops object, which the run owns for as long as any
// torture thread may still touch it. Where the kernel keeps per-call state in the ops vector
// (spin_lock_irqsave's flags, ww_mutex's acquire contexts), one slot per thread is kept here,
// indexed by the thread's tid within its role.
#include "torture_ops.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <pthread.h>
#include <sched.h>

#include <klock/env/os.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/thread_safety.hpp>
#include <klock/ww_mutex.hpp>

#if KLOCK_LOCKDEP
#include <klock/lockdep.hpp>
#endif

namespace klock::tool::torture {

// ---------------------------------------------------------------- randomness and delays

random_state::random_state(std::uint64_t seed) noexcept : s_(seed)
{
    // splitmix64 once, so that neighbouring seeds give unrelated streams; never 0.
    std::uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s_ = (z ^ (z >> 31)) | 1;
}

std::uint32_t random_state::next() noexcept
{
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return static_cast<std::uint32_t>((s_ * 0x2545f4914f6cdd1dull) >> 32);
}

std::uint64_t random_state::below(std::uint64_t n) noexcept
{
    const std::uint64_t v = (static_cast<std::uint64_t>(next()) << 32) | next();
    return n <= 1 ? 0 : v % n;
}

namespace {

std::uint64_t monotonic_ns() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

} // namespace

void udelay(std::uint64_t us) noexcept
{
    const std::uint64_t end = monotonic_ns() + us * 1000;
    while (monotonic_ns() < end)
        env::os::cpu_relax();
}

void mdelay(std::uint64_t ms) noexcept { udelay(ms * 1000); }

lock_ops::~lock_ops() = default;

namespace {

// torture_preempt_schedule(): give the CPU away inside the critical section now and then, so
// that a holder is sometimes off the CPU (which a kernel spinlock holder never is, but a user
// space one always may be).
void preempt_schedule() noexcept { ::sched_yield(); }

std::uint64_t writers(const config& c) noexcept { return static_cast<std::uint64_t>(std::max(1, c.real_writers)); }
std::uint64_t readers(const config& c) noexcept { return static_cast<std::uint64_t>(std::max(1, c.real_readers)); }

// A long hold about once every n * 2000 * long_hold acquisitions (n: threads of the role), as
// every kernel recipe does: rare, but often enough to pile up every other thread behind it.
bool long_hold_now(const config& c, random_state& r, std::uint64_t n) noexcept
{
    return c.long_hold > 0 && r.below(n * 2000 * static_cast<std::uint64_t>(c.long_hold)) == 0;
}

// The kernel's delay recipes, one per family (torture_spin_lock_write_delay, ...).
enum class recipe { spin, rwlock, mutex, rwsem, busted };

void write_delay_for(recipe k, const config& c, random_state& r) noexcept
{
    const std::uint64_t nw = writers(c);
    const std::uint64_t lh = static_cast<std::uint64_t>(c.long_hold);
    switch (k) {
    case recipe::spin: // spinlocks and rt_mutex: mostly nothing, sometimes 2 us
        if (long_hold_now(c, r, nw))
            mdelay(lh);
        if (r.below(nw * 200 * 2) == 0)
            udelay(2);
        break;
    case recipe::rwlock: // always 2 us
        if (long_hold_now(c, r, nw))
            mdelay(lh);
        else
            udelay(2);
        return;         // the kernel's rwlock recipe never yields
    case recipe::mutex: // mutex and ww_mutex: long holds 5x as long
        if (long_hold_now(c, r, nw))
            mdelay(lh * 5);
        break;
    case recipe::rwsem:
        if (long_hold_now(c, r, nw))
            mdelay(lh * 10);
        break;
    case recipe::busted:
        if (long_hold_now(c, r, nw))
            mdelay(lh);
        break;
    }
    if (r.below(nw * 20000) == 0)
        preempt_schedule();
}

void read_delay_for(recipe k, const config& c, random_state& r) noexcept
{
    const std::uint64_t nr = readers(c);
    const std::uint64_t lh = static_cast<std::uint64_t>(c.long_hold);
    if (k == recipe::rwlock) {
        if (long_hold_now(c, r, nr))
            mdelay(lh);
        else
            udelay(10);
        return;
    }
    // rw_semaphore: readers hold long every time, to let writers queue up behind them.
    if (long_hold_now(c, r, nr))
        mdelay(lh * 2);
    else
        mdelay(lh / 2);
    if (r.below(nr * 20000) == 0)
        preempt_schedule();
}

// ---------------------------------------------------------------- rt_boost

// __torture_rt_boost(): a writer that is not real-time switches itself to SCHED_FIFO about once
// every nwriters * factor iterations; a boosted one switches back about once every
// nwriters * factor * 2. While boosted it takes the lock at real-time priority, so a lower
// priority owner must be boosted by priority inheritance - the point, for rt_mutex. Without
// permission (EPERM) the switch is given up for the rest of the run and noted in the summary.
class rt_booster {
public:
    rt_booster(const config& c, bool applies) : cfg_(c), applies_(applies) { }

    void boost(random_state* r) noexcept
    {
        if (!applies_)
            return;
        if (!boosted_) {
            if (r == nullptr || denied_.load(std::memory_order_relaxed) != 0)
                return;
            if (r->below(writers(cfg_) * static_cast<std::uint64_t>(cfg_.rt_boost_factor)) != 0)
                return;
            sched_param p{};
            p.sched_priority = 50; // sched_set_fifo(): MAX_RT_PRIO / 2
            const int rc = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &p);
            if (rc != 0) {
                int expected = 0;
                denied_.compare_exchange_strong(expected, rc, std::memory_order_relaxed);
                return;
            }
            boosted_ = true;
            boosts_.fetch_add(1, std::memory_order_relaxed);
        } else if (r == nullptr
            || r->below(writers(cfg_) * static_cast<std::uint64_t>(cfg_.rt_boost_factor) * 2) == 0) {
            sched_param p{};
            ::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &p); // sched_set_normal()
            boosted_ = false;
        }
    }

    void summary(std::vector<std::string>& out) const
    {
        if (!applies_)
            return;
        char buf[200];
        if (const int e = denied_.load(std::memory_order_relaxed); e != 0)
            std::snprintf(buf, sizeof buf,
                "rt_boost: SCHED_FIFO not permitted (%s): writers stayed SCHED_OTHER, no priority boosting "
                "exercised",
                std::strerror(e));
        else
            std::snprintf(buf, sizeof buf, "rt_boost: %ld switches of writers to SCHED_FIFO",
                boosts_.load(std::memory_order_relaxed));
        out.emplace_back(buf);
    }

private:
    config cfg_;
    bool applies_;
    std::atomic<int> denied_{0};
    std::atomic<long> boosts_{0};
    static thread_local bool boosted_;
};

thread_local bool rt_booster::boosted_ = false;

// ---------------------------------------------------------------- nested locks

#if KLOCK_LOCKDEP
// One lockdep class per nested lock, as the kernel's nested_mutex_keys: all eight share a type
// and a construction site, and taking several of one class would read as recursion.
template <class L> inline lock_class_key nested_keys[max_nested_locks];
#endif

template <class L> std::unique_ptr<L> make_nested([[maybe_unused]] int i)
{
#if KLOCK_LOCKDEP
    if constexpr (std::is_constructible_v<L, lock_class_key&, const char*>)
        return std::make_unique<L>(nested_keys<L>[i], "torture_nested_lock");
#endif
    return std::make_unique<L>();
}

template <class L> class nested_set {
public:
    explicit nested_set(int n) : n_(n)
    {
        for (int i = 0; i < n_; ++i)
            locks_[i] = make_nested<L>(i);
    }
    void lock(std::uint32_t set) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        for (int i = 0; i < n_; ++i)
            if ((set & (1u << i)) != 0)
                locks_[i]->lock();
    }
    void unlock(std::uint32_t set) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        for (int i = n_ - 1; i >= 0; --i)
            if ((set & (1u << i)) != 0)
                locks_[i]->unlock();
    }

private:
    int n_;
    std::unique_ptr<L> locks_[max_nested_locks];
};

// ---------------------------------------------------------------- describing a lock's state

template <class L> std::string describe_lock(const L& l)
{
    char buf[96] = "";
    if constexpr (requires { l.owner_word(); })
        std::snprintf(buf, sizeof buf, "owner word 0x%llx", static_cast<unsigned long long>(l.owner_word()));
    else if constexpr (requires { l.raw_count(); })
        std::snprintf(buf, sizeof buf, "count 0x%llx, owner 0x%llx", static_cast<unsigned long long>(l.raw_count()),
            static_cast<unsigned long long>(l.raw_owner()));
    else if constexpr (requires { l.raw(); })
        std::snprintf(buf, sizeof buf, "lock word 0x%08x", static_cast<unsigned>(l.raw()));
    else if constexpr (requires { l.is_locked(); })
        std::snprintf(buf, sizeof buf, "%s", l.is_locked() ? "locked" : "unlocked");
    return buf;
}

// ---------------------------------------------------------------- the types

// lock_busted: lock() that excludes nobody. The torture must end in FAILURE.
class busted_ops final : public lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int) override { return 0; } // BUGGY on purpose
    void write_delay(random_state& r) override { write_delay_for(recipe::busted, cfg_, r); }
    void write_unlock(int) override { }
};

// An exclusive lock through its Lockable members: spin_lock, ticket_spinlock, qspinlock,
// mutex, rt_mutex.
template <class L> class exclusive_ops final : public lock_ops {
public:
    exclusive_ops(const config& c, recipe k, bool boost)
        : lock_ops(c), recipe_(k), nested_(c.nested_locks), boost_(c, boost)
    { }
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        lock_.lock();
        return 0;
    }
    void write_delay(random_state& r) override { write_delay_for(recipe_, cfg_, r); }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock(); }
    void nested_lock(int, std::uint32_t set) override { nested_.lock(set); }
    void nested_unlock(int, std::uint32_t set) override { nested_.unlock(set); }
    void task_boost(random_state* r) override { boost_.boost(r); }
    std::string describe() const override { return describe_lock(lock_); }
    std::vector<std::string> summary() const override
    {
        std::vector<std::string> out;
        boost_.summary(out);
        return out;
    }

private:
    L lock_;
    recipe recipe_;
    nested_set<L> nested_;
    rt_booster boost_;
};

// spin_lock_irq: spin_lock_irqsave / spin_unlock_irqrestore, the flags kept per writer.
class spin_irq_ops final : public lock_ops {
public:
    explicit spin_irq_ops(const config& c)
        : lock_ops(c), flags_(static_cast<std::size_t>(std::max(1, c.real_writers))), nested_(c.nested_locks)
    { }
    int write_lock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        flags_[static_cast<std::size_t>(tid)] = lock_.lock_irqsave();
        return 0;
    }
    void write_delay(random_state& r) override { write_delay_for(recipe::spin, cfg_, r); }
    void write_unlock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        lock_.unlock_irqrestore(flags_[static_cast<std::size_t>(tid)]);
    }
    void nested_lock(int, std::uint32_t set) override { nested_.lock(set); }
    void nested_unlock(int, std::uint32_t set) override { nested_.unlock(set); }
    std::string describe() const override { return describe_lock(lock_); }

private:
    klock::spinlock lock_;
    std::vector<irq_flags> flags_;
    nested_set<klock::spinlock> nested_;
};

// A reader-writer lock through its Lockable / SharedLockable members: rw_lock, rw_semaphore.
template <class L> class rw_ops final : public lock_ops {
public:
    rw_ops(const config& c, recipe k, bool boost) : lock_ops(c), recipe_(k), nested_(c.nested_locks), boost_(c, boost)
    { }
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        lock_.lock();
        return 0;
    }
    void write_delay(random_state& r) override { write_delay_for(recipe_, cfg_, r); }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock(); }
    void read_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { lock_.lock_shared(); }
    void read_delay(random_state& r) override { read_delay_for(recipe_, cfg_, r); }
    void read_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock_shared(); }
    void nested_lock(int, std::uint32_t set) override { nested_.lock(set); }
    void nested_unlock(int, std::uint32_t set) override { nested_.unlock(set); }
    void task_boost(random_state* r) override { boost_.boost(r); }
    std::string describe() const override { return describe_lock(lock_); }
    std::vector<std::string> summary() const override
    {
        std::vector<std::string> out;
        boost_.summary(out);
        return out;
    }

private:
    L lock_;
    recipe recipe_;
    nested_set<L> nested_;
    rt_booster boost_;
};

// rw_lock_irq: the _irqsave / _irqrestore forms of both sides.
class rw_irq_ops final : public lock_ops {
public:
    explicit rw_irq_ops(const config& c)
        : lock_ops(c),
          wflags_(static_cast<std::size_t>(std::max(1, c.real_writers))),
          rflags_(static_cast<std::size_t>(std::max(1, c.real_readers))),
          nested_(c.nested_locks)
    { }
    int write_lock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        wflags_[static_cast<std::size_t>(tid)] = lock_.write_lock_irqsave();
        return 0;
    }
    void write_delay(random_state& r) override { write_delay_for(recipe::rwlock, cfg_, r); }
    void write_unlock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        lock_.write_unlock_irqrestore(wflags_[static_cast<std::size_t>(tid)]);
    }
    void read_lock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        rflags_[static_cast<std::size_t>(tid)] = lock_.read_lock_irqsave();
    }
    void read_delay(random_state& r) override { read_delay_for(recipe::rwlock, cfg_, r); }
    void read_unlock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        lock_.read_unlock_irqrestore(rflags_[static_cast<std::size_t>(tid)]);
    }
    void nested_lock(int, std::uint32_t set) override { nested_.lock(set); }
    void nested_unlock(int, std::uint32_t set) override { nested_.unlock(set); }
    std::string describe() const override { return describe_lock(lock_); }

private:
    klock::rwlock lock_;
    std::vector<irq_flags> wflags_, rflags_;
    nested_set<klock::rwlock> nested_;
};

// ww_mutex: each writer takes all of three ww_mutexes (Wait-Die, as the kernel's
// DEFINE_WD_CLASS) in a fresh random order under its own acquire context. On -EDEADLK it
// releases what it holds, sleeps on the contended lock with lock_slow(), moves that lock to
// the front of its list and takes the rest again (torture_ww_mutex_lock). Since every writer
// ends up holding all three, writers still exclude each other, which the common checks test.
class ww_ops final : public lock_ops {
    static constexpr int nlocks = 3;
    using ww_lock = klock::ww_mutex<klock::ww_class_wait_die>;

public:
    explicit ww_ops(const config& c)
        : lock_ops(c),
          ctxs_(std::make_unique<klock::ww_acquire_ctx[]>(static_cast<std::size_t>(std::max(1, c.real_writers)))),
          orders_(static_cast<std::size_t>(std::max(1, c.real_writers))),
          rngs_(),
          boost_(c, c.rt_boost == 2)
    {
        for (int w = 0; w < std::max(1, c.real_writers); ++w)
            rngs_.emplace_back(0x77ull * static_cast<std::uint64_t>(w + 1) ^ monotonic_ns());
    }

    int write_lock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        const auto t = static_cast<std::size_t>(tid);
        klock::ww_acquire_ctx& ctx = ctxs_[t];
        std::array<int, nlocks>& order = orders_[t];
        for (int i = 0; i < nlocks; ++i)
            order[static_cast<std::size_t>(i)] = i;
        for (int i = nlocks - 1; i > 0; --i) // Fisher-Yates
            std::swap(order[static_cast<std::size_t>(i)], order[rngs_[t].below(static_cast<std::uint64_t>(i) + 1)]);

        ctx.init(klock::ww_class_wait_die{});
        for (std::size_t i = 0; i < nlocks;) {
            const int err = locks_[order[i]].lock(&ctx);
            if (err == 0) {
                ++i;
                continue;
            }
            for (std::size_t j = 0; j < i; ++j)
                locks_[order[j]].unlock();
            if (err != -EDEADLK) {
                protocol_errors_.fetch_add(1, std::memory_order_relaxed);
                ctx.acquire_fini();
                return err;
            }
            backoffs_.fetch_add(1, std::memory_order_relaxed);
            locks_[order[i]].lock_slow(&ctx);
            std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(i),
                order.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            i = 1;
        }
        ctx.acquire_done();
        return 0;
    }
    void write_delay(random_state& r) override { write_delay_for(recipe::mutex, cfg_, r); }
    void write_unlock(int tid) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        for (ww_lock& l : locks_)
            l.unlock();
        ctxs_[static_cast<std::size_t>(tid)].acquire_fini();
    }
    void task_boost(random_state* r) override { boost_.boost(r); }
    std::string describe() const override
    {
        std::string s;
        for (int i = 0; i < nlocks; ++i) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%sww_mutex %d owner pid %d", i ? ", " : "", i, locks_[i].owner_pid());
            s += buf;
        }
        return s;
    }
    std::vector<std::string> summary() const override
    {
        char buf[160];
        std::snprintf(buf, sizeof buf, "ww_mutex: %ld -EDEADLK back-offs (lock_slow), %ld other errors",
            backoffs_.load(std::memory_order_relaxed), protocol_errors_.load(std::memory_order_relaxed));
        std::vector<std::string> out{buf};
        boost_.summary(out);
        return out;
    }

private:
    ww_lock locks_[nlocks];
    std::unique_ptr<klock::ww_acquire_ctx[]> ctxs_;
    std::vector<std::array<int, nlocks>> orders_;
    std::vector<random_state> rngs_;
    rt_booster boost_;
    std::atomic<long> backoffs_{0};
    std::atomic<long> protocol_errors_{0};
};

template <class Ops, class... A> std::unique_ptr<lock_ops> make(const config& c, A... a)
{
    return std::make_unique<Ops>(c, a...);
}

const type_info type_table[] = {
    {"lock_busted", "lock_busted", false, false, false,
        "a lock that does not lock: the torture must catch it (FAILURE)",
        [](const config& c) -> std::unique_ptr<lock_ops> { return make<busted_ops>(c); }},
    {"spin_lock", "spin_lock", false, true, true, "klock::spinlock (queued spinlock + debug checks)",
        [](const config& c) { return make<exclusive_ops<klock::spinlock>>(c, recipe::spin, false); }},
    {"spin_lock_irq", "spin_lock_irq", false, true, true, "klock::spinlock via lock_irqsave / unlock_irqrestore",
        [](const config& c) { return make<spin_irq_ops>(c); }},
    {"ticket_spinlock", "", false, true, true, "klock::ticket_spinlock (ARM ticket lock + debug checks)",
        [](const config& c) { return make<exclusive_ops<klock::ticket_spinlock>>(c, recipe::spin, false); }},
    {"qspinlock", "", false, true, false, "klock::arch::qspinlock, the raw arch layer (no preempt_count, no debug)",
        [](const config& c) {
            return make<exclusive_ops<klock::arch::qspinlock<klock::env::os>>>(c, recipe::spin, false);
        }},
    {"rw_lock", "rw_lock", true, true, true, "klock::rwlock (queued rwlock): write_lock / read_lock",
        [](const config& c) { return make<rw_ops<klock::rwlock>>(c, recipe::rwlock, false); }},
    {"rw_lock_irq", "rw_lock_irq", true, true, true, "klock::rwlock via the _irqsave / _irqrestore forms",
        [](const config& c) { return make<rw_irq_ops>(c); }},
    {"mutex", "mutex_lock", false, true, true, "klock::mutex",
        [](const config& c) { return make<exclusive_ops<klock::mutex>>(c, recipe::mutex, c.rt_boost == 2); }},
    {"rt_mutex", "rtmutex_lock", false, true, true,
        "klock::rt_mutex (PI futex); writers switch to SCHED_FIFO now and then",
        [](const config& c) { return make<exclusive_ops<klock::rt_mutex>>(c, recipe::spin, c.rt_boost >= 1); }},
    {"rw_semaphore", "rwsem_lock", true, true, false, "klock::rw_semaphore: down_write / down_read",
        [](const config& c) { return make<rw_ops<klock::rw_semaphore>>(c, recipe::rwsem, c.rt_boost == 2); }},
    {"ww_mutex", "ww_mutex_lock", false, false, false,
        "three klock::ww_mutex (Wait-Die) per writer, in random order, -EDEADLK back-off",
        [](const config& c) { return make<ww_ops>(c); }},
};

} // namespace

std::span<const type_info> types() { return type_table; }

const type_info* find_type(std::string_view name)
{
    for (const type_info& t : type_table)
        if (t.name == name || (!t.kernel_name.empty() && t.kernel_name == name))
            return &t;
    return nullptr;
}

} // namespace klock::tool::torture
