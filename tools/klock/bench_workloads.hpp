// `klock bench` workloads, written once over a lock adapter and instantiated per lock in
// bench_locks.cpp.
//
// An adapter has the shape of bench/harness.hpp's (so bench/peers.hpp's adapters fit as they
// are): a per-thread `node` (an MCS queue node, a tbb::queuing_mutex::scoped_lock, a ww acquire
// context, or no_node) and lock(node&) / unlock(node&); a reader-writer adapter adds
// lock_shared(node&) / unlock_shared(node&).
//
// ONE POINT (run_threads): `threads` threads start on one lock, run unmeasured for `warmup` (so
// that the first thread to get a CPU, alone with the lock until the others are scheduled, does
// not set the figures), then each counts its own operations for `duration`. The main thread
// sleeps through both, then raises the stop phase; the time runs until the last thread has
// finished its operation in flight, and those operations count. Every thread's loop is
//     [t0 = clock]  lock()  [t1 = clock]  critical section (--cs)  unlock()  delay (--delay)
// where the clock is read around one lock() in `sample_every` on average (gaps drawn at random
// from 1..2N-1, so that a lock's own periodic pattern - a ticket lock alternating two threads -
// cannot line up with the sampling), and t1 - t0 - (the cost of one clock read) goes into the
// thread's wait histogram.
//
// CHECKS. The critical section marks the data "inside" and bumps a counter with plain
// (relaxed, not read-modify-write) atomic accesses: a writer that finds "inside" set, or a
// reader that finds a writer inside, counts a violation, and increments lost to overlapping
// writers make the counter fall short of the writers' own counts. Either fails the point
// ("mutual exclusion broken"), so a broken lock gets an error instead of a figure. A thread
// still inside lock() `stuck_limit` after the window closed fails the point too ("lost
// wakeup?"): the threads are abandoned (detached; they own the shared state through a
// shared_ptr, so a late wakeup touches nothing freed) and the run goes on.
//
// HANDOFF (handoff_worker). The time from the owner's unlock() call to a waiter's return from
// lock(): the owner waits (yielding) until every other thread has announced that it is calling
// lock(), holds the lock `cs` longer so that the waiters are really waiting (spinning, queued or
// asleep: whatever the lock does with them), stores a clock stamp and unlocks. The thread that
// gets the lock next reads the stamp (the unlock's release and its own acquire order the two)
// and records its return time minus the stamp. The old owner does not call lock() again until
// somebody else has taken it, so that the lock is handed over and not stolen back.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <klock/thread_safety.hpp>

#include "bench_options.hpp"
#include "bench_stats.hpp"

namespace klock::tool::bench {

struct no_node { };

// Any std Lockable through its exclusive side.
template <class L> struct exclusive_adapter {
    using node = no_node;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock(); }
    L l;
};

// Any std SharedLockable through both sides.
template <class L> struct shared_adapter {
    using node = no_node;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock(); }
    void lock_shared(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock_shared(); }
    void unlock_shared(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock_shared(); }
    L l;
};

template <class A>
concept adapter = std::is_default_constructible_v<A> && requires(A& a, typename A::node& n)
{
    a.lock(n);
    a.unlock(n);
};
template <class A>
concept rw_adapter = adapter<A> && requires(A& a, typename A::node& n)
{
    a.lock_shared(n);
    a.unlock_shared(n);
};

// What one point asks for.
struct point_config {
    workload w = workload::contended;
    unsigned threads = 1;
    std::uint64_t cs_iters = 0;    // burn() iterations in the critical section (handoff: the hold)
    std::uint64_t delay_iters = 0; // burn() iterations between unlock and the next lock
    unsigned read_percent = 90;
    std::chrono::nanoseconds warmup{std::chrono::milliseconds(50)}; // run, but not measured
    std::chrono::nanoseconds duration{std::chrono::milliseconds(200)};
    unsigned sample_every = 32;
    std::uint64_t clock_ns = 0;   // one clock read, subtracted from every timed interval
    std::uint64_t slow_ns = 1000; // a timed wait this long makes the sampler time every call
    std::chrono::milliseconds stuck_limit{std::chrono::seconds(10)};
};

// What one point measured.
struct point_result {
    double seconds = 0;
    std::vector<std::uint64_t> ops; // per thread; empty when the point failed
    std::uint64_t reads = 0, writes = 0;
    histogram wait;
    histogram handoff;
    std::string error; // empty: the figures are good
};

// Spins `iters` iterations of an empty loop the compiler may not remove or shorten: the
// --cs/--delay "work", calibrated to nanoseconds at start (calibrate_burn).
inline void burn(std::uint64_t iters) noexcept
{
    for (std::uint64_t i = 0; i < iters; ++i)
        asm volatile("" : "+r"(i));
}

inline std::uint64_t now_ns() noexcept
{
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

// burn() iterations per nanosecond: the fastest of a few timed runs, the one least disturbed
// by other load on the machine.
double calibrate_burn();
// The cost of one clock read: the smallest difference of two back-to-back reads.
std::uint64_t calibrate_clock();

namespace detail {

// Per-thread xorshift64*: the sampling gaps and the rw workload's read/write choice.
class rng {
public:
    explicit rng(std::uint64_t seed) noexcept : s_(seed * 0x9E3779B97F4A7C15ull | 1) { }
    std::uint64_t next() noexcept
    {
        s_ ^= s_ >> 12;
        s_ ^= s_ << 25;
        s_ ^= s_ >> 27;
        return s_ * 0x2545F4914F6CDD1Dull;
    }

private:
    std::uint64_t s_;
};

// Decides which lock() calls are timed, and what each timed call stands for. Every call is
// timed with probability 1/N (geometric gaps between timed calls, drawn only when a call was
// timed: the calls in between pay one decrement), and its sample is weighted N. After a timed
// call that waited `slow_ns` or more - long enough that two clock reads are noise - every call
// is timed, with weight 1, until one is fast again: slow acquisitions, which are few and make
// the tail, are measured one by one, and the weights keep the percentiles unbiased, since each
// call's probability is fixed before the call. The first call of the measurement is timed.
class sampler {
public:
    sampler(rng& r, unsigned every, std::uint64_t slow_ns) noexcept
        : r_(r), every_(every), log_keep_(every > 1 ? std::log1p(-1.0 / every) : 0), slow_(slow_ns)
    { }
    bool due() noexcept { return --left_ == 0; }
    // Times the next call, standing for itself: at the start of the measurement, so that a
    // thread that gets only a few calls in has its first one timed and the mode chosen by it.
    void restart() noexcept
    {
        left_ = 1;
        weight_ = 1;
    }
    void record(histogram& h, std::uint64_t wait) noexcept
    {
        h.add(wait, weight_);
        if (every_ <= 1 || wait >= slow_) {
            left_ = 1;
            weight_ = 1;
        } else {
            left_ = draw();
            weight_ = every_;
        }
    }

private:
    std::uint64_t draw() noexcept
    {
        if (every_ <= 1)
            return 1;
        const double u = 1.0 - static_cast<double>(r_.next() >> 11) * 0x1.0p-53; // (0, 1]
        return 1 + static_cast<std::uint64_t>(std::log(u) / log_keep_);
    }
    rng& r_;
    std::uint64_t every_;
    double log_keep_; // log(1 - 1/N)
    std::uint64_t slow_;
    std::uint64_t left_ = 1;   // the first call is timed, standing for itself,
    std::uint64_t weight_ = 1; // and tells the sampler which mode to start in
};

inline std::uint64_t elapsed(std::uint64_t t0, std::uint64_t t1, std::uint64_t clock_ns) noexcept
{
    return t1 - t0 > clock_ns ? t1 - t0 - clock_ns : 0;
}

// The lock and the data it protects share a cache line, as a kernel structure's lock and fields
// usually do; the harness's own flags live on lines of their own.
template <class A> struct alignas(64) guarded {
    A lock;
    std::atomic<std::uint32_t> inside{0};
    std::atomic<std::uint64_t> counter{0};

    // Writer entry: true if somebody else was inside.
    bool enter() noexcept
    {
        const bool overlap = inside.load(std::memory_order_relaxed) != 0;
        inside.store(1, std::memory_order_relaxed);
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return overlap;
    }
    void leave() noexcept { inside.store(0, std::memory_order_relaxed); }
    // Reader entry: true if a writer is inside.
    bool peek() const noexcept { return inside.load(std::memory_order_relaxed) != 0; }
};

struct alignas(64) thread_slot {
    std::uint64_t ops = 0, reads = 0, writes = 0; // while measuring
    std::uint64_t all_writes = 0, violations = 0; // the whole run, for the checks
    histogram wait, handoff;
};

struct alignas(64) counter {
    std::atomic<std::uint64_t> v{0};
};

// The run's phases, in order: the threads start, warm up, are measured, stop.
enum : std::uint64_t { phase_start, phase_warmup, phase_measure, phase_stop };

template <class A> struct run_state {
    explicit run_state(const point_config& c) : cfg(c), slots(c.threads) { }
    guarded<A> d;
    point_config cfg;
    std::vector<thread_slot> slots;
    counter phase, ready, finished;
    counter unlock_stamp, announced, generation; // handoff
};

// A thread's view of the phase, read once per operation: what a thread did before the
// measurement started is forgotten (`reset`), and a thread that never saw the measurement
// (stuck from the warm-up to the stop) has nothing to report.
class phase_watch {
public:
    // false once the run stops.
    template <class Reset> bool next(const counter& phase, Reset reset)
    {
        const std::uint64_t p = phase.v.load(std::memory_order_relaxed);
        if (__builtin_expect(p == seen_, 1))
            return true;
        if (p == phase_stop) {
            if (seen_ != phase_measure)
                reset();
            return false;
        }
        seen_ = p;
        reset();
        return true;
    }
    static bool stopping(const counter& phase) { return phase.v.load(std::memory_order_relaxed) == phase_stop; }

private:
    std::uint64_t seen_ = phase_warmup;
};

template <class A> void wait_for_go(run_state<A>& s)
{
    s.ready.v.fetch_add(1, std::memory_order_relaxed);
    while (s.phase.v.load(std::memory_order_acquire) == phase_start)
        std::this_thread::yield();
}

template <adapter A> void exclusive_worker(run_state<A>& s, unsigned i)
{
    thread_slot& me = s.slots[i];
    typename A::node n{};
    rng r(i + 1);
    sampler timed(r, s.cfg.sample_every, s.cfg.slow_ns);
    const std::uint64_t cs = s.cfg.cs_iters, delay = s.cfg.delay_iters, clk = s.cfg.clock_ns;
    std::uint64_t ops = 0, all = 0, bad = 0;
    phase_watch ph;
    auto reset = [&] {
        ops = 0;
        me.wait.clear();
        timed.restart();
    };
    wait_for_go(s);
    while (ph.next(s.phase, reset)) {
        if (timed.due()) {
            const std::uint64_t t0 = now_ns();
            s.d.lock.lock(n);
            timed.record(me.wait, elapsed(t0, now_ns(), clk));
        } else {
            s.d.lock.lock(n);
        }
        bad += s.d.enter();
        burn(cs);
        s.d.leave();
        s.d.lock.unlock(n);
        ++ops;
        ++all;
        burn(delay);
    }
    me.ops = me.writes = ops;
    me.all_writes = all;
    me.violations = bad;
}

template <rw_adapter A> void rw_worker(run_state<A>& s, unsigned i)
{
    thread_slot& me = s.slots[i];
    typename A::node n{};
    rng r(i + 1);
    sampler timed(r, s.cfg.sample_every, s.cfg.slow_ns);
    const std::uint64_t cs = s.cfg.cs_iters, delay = s.cfg.delay_iters, clk = s.cfg.clock_ns;
    const std::uint64_t read_percent = s.cfg.read_percent;
    std::uint64_t reads = 0, writes = 0, all = 0, bad = 0;
    phase_watch ph;
    auto reset = [&] {
        reads = writes = 0;
        me.wait.clear();
        timed.restart();
    };
    wait_for_go(s);
    while (ph.next(s.phase, reset)) {
        const bool read = r.next() % 100 < read_percent;
        const bool time_it = timed.due();
        const std::uint64_t t0 = time_it ? now_ns() : 0;
        if (read)
            s.d.lock.lock_shared(n);
        else
            s.d.lock.lock(n);
        if (time_it)
            timed.record(me.wait, elapsed(t0, now_ns(), clk));
        if (read) {
            bad += s.d.peek();
            burn(cs);
            s.d.lock.unlock_shared(n);
            ++reads;
        } else {
            bad += s.d.enter();
            burn(cs);
            s.d.leave();
            s.d.lock.unlock(n);
            ++writes;
            ++all;
        }
        burn(delay);
    }
    me.ops = reads + writes;
    me.reads = reads;
    me.writes = writes;
    me.all_writes = all;
    me.violations = bad;
}

template <adapter A> void handoff_worker(run_state<A>& s, unsigned i)
{
    thread_slot& me = s.slots[i];
    typename A::node n{};
    const std::uint64_t others = s.cfg.threads - 1, hold = s.cfg.cs_iters, clk = s.cfg.clock_ns;
    std::uint64_t ops = 0, all = 0, bad = 0;
    phase_watch ph;
    auto reset = [&] {
        ops = 0;
        me.wait.clear();
        me.handoff.clear();
    };
    auto stopping = [&s] { return phase_watch::stopping(s.phase); };
    wait_for_go(s);
    while (ph.next(s.phase, reset)) {
        s.announced.v.fetch_add(1, std::memory_order_relaxed);
        const std::uint64_t t0 = now_ns();
        s.d.lock.lock(n);
        const std::uint64_t t1 = now_ns();
        s.announced.v.fetch_sub(1, std::memory_order_relaxed);
        me.wait.add(elapsed(t0, t1, clk));
        // Written by the previous owner just before its unlock(), which our lock() synchronized with.
        const std::uint64_t stamp = s.unlock_stamp.v.load(std::memory_order_relaxed);
        if (stamp != 0)
            me.handoff.add(elapsed(stamp, t1, clk));
        const std::uint64_t gen = s.generation.v.fetch_add(1, std::memory_order_relaxed) + 1;
        bad += s.d.enter();
        while (s.announced.v.load(std::memory_order_relaxed) < others && !stopping())
            std::this_thread::yield();
        burn(hold);
        s.d.leave();
        s.unlock_stamp.v.store(now_ns(), std::memory_order_relaxed);
        s.d.lock.unlock(n);
        ++ops;
        ++all;
        while (s.generation.v.load(std::memory_order_relaxed) == gen && !stopping())
            std::this_thread::yield();
    }
    me.ops = me.writes = ops;
    me.all_writes = all;
    me.violations = bad;
}

template <class A, class Worker> point_result run_threads(const point_config& cfg, Worker worker)
{
    point_result res;
    auto s = std::make_shared<run_state<A>>(cfg);
    std::vector<std::thread> threads;
    threads.reserve(cfg.threads);
    for (unsigned i = 0; i < cfg.threads; ++i)
        threads.emplace_back([s, i, worker] {
            worker(*s, i);
            s->finished.v.fetch_add(1, std::memory_order_release);
        });
    while (s->ready.v.load(std::memory_order_relaxed) != cfg.threads)
        std::this_thread::yield();
    // The main thread sleeps through warm-up and window, so the workers have every CPU.
    if (cfg.warmup.count() > 0) {
        s->phase.v.store(phase_warmup, std::memory_order_release);
        std::this_thread::sleep_for(cfg.warmup);
    }
    const auto t0 = std::chrono::steady_clock::now();
    s->phase.v.store(phase_measure, std::memory_order_release);
    std::this_thread::sleep_for(cfg.duration);
    s->phase.v.store(phase_stop, std::memory_order_relaxed);
    const auto give_up = std::chrono::steady_clock::now() + cfg.stuck_limit;
    while (s->finished.v.load(std::memory_order_acquire) != cfg.threads && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    // Operations that complete after the stop still count, so the time runs until the last ends.
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::uint64_t stuck = cfg.threads - s->finished.v.load(std::memory_order_acquire);
    if (stuck != 0) {
        for (auto& t : threads)
            t.detach();
        char msg[160];
        std::snprintf(msg, sizeof msg,
            "%llu of %u threads still in lock() %.1f s after the window closed (lost wakeup?)",
            static_cast<unsigned long long>(stuck), cfg.threads,
            std::chrono::duration<double>(cfg.stuck_limit).count());
        res.error = msg;
        return res;
    }
    for (auto& t : threads)
        t.join();
    std::uint64_t violations = 0, all_writes = 0;
    for (const thread_slot& sl : s->slots) {
        res.ops.push_back(sl.ops);
        res.reads += sl.reads;
        res.writes += sl.writes;
        res.wait.merge(sl.wait);
        res.handoff.merge(sl.handoff);
        violations += sl.violations;
        all_writes += sl.all_writes;
    }
    const std::uint64_t counted = s->d.counter.load(std::memory_order_relaxed);
    if (violations != 0 || counted != all_writes) {
        res.error = "mutual exclusion broken: " + std::to_string(violations)
            + " critical sections overlapped, the protected counter is " + std::to_string(counted) + " after "
            + std::to_string(all_writes) + " exclusive sections";
        res.ops.clear();
    }
    return res;
}

// One point of any exclusive workload over adapter A.
template <adapter A> point_result run_exclusive_point(const point_config& cfg)
{
    if (cfg.w == workload::handoff)
        return run_threads<A>(cfg, [](run_state<A>& s, unsigned i) { handoff_worker(s, i); });
    return run_threads<A>(cfg, [](run_state<A>& s, unsigned i) { exclusive_worker(s, i); });
}

// One point of the rw workload over adapter A.
template <rw_adapter A> point_result run_rw_point(const point_config& cfg)
{
    return run_threads<A>(cfg, [](run_state<A>& s, unsigned i) { rw_worker(s, i); });
}

} // namespace detail

using detail::run_exclusive_point;
using detail::run_rw_point;

} // namespace klock::tool::bench
