// The lock benchmark harness: three workloads written once over a lock *adapter*.
//
// An adapter gives every lock, klock's or a peer's, the same shape:
//   struct A {
//       using node = ...;                 // per-thread, per-lock state: an MCS queue node,
//                                         // a tbb::queuing_mutex::scoped_lock, or no_node
//       static constexpr bool exclusive;  // false: a reader side (critical sections overlap)
//       void lock(node&);
//       void unlock(node&);
//   };
// so a lock joins the suite as one line (see lock_bench.cpp); `exclusive_side<L>` and
// `shared_side<L>` adapt any std Lockable / SharedLockable type.
//
// Workloads
//   uncontended       one thread, lock+unlock in a loop; Google Benchmark times it (cpu_time).
//   contended_2t      2 threads hammer the lock around a tiny critical section.
//   oversubscribed    2 threads per hardware thread (4 on a 2-core box) do the same.
// The threaded workloads do not use Benchmark's ->Threads(): each iteration starts N
// std::threads, lets them run for a fixed wall-time window, and each thread counts its own
// acquisitions. That yields throughput (ops_per_s over the window) and fairness
// (fairness = min/max of the per-thread counts; min_share/max_share = the smallest and largest
// thread's fraction of all operations) as user counters. The iteration time is set manually to
// the measured window, and the CPU time is the whole process's, so cpu_time/real_time tells how
// many CPUs the waiters kept busy (every core when they spin, less when they sleep). The
// critical section increments a plain counter; afterwards it must equal the sum of the
// per-thread counts, so a lock that breaks mutual exclusion reports an error instead of a good
// number, and a thread still blocked long after its window (a lost wakeup) is reported and
// abandoned instead of hanging the suite.
#pragma once

#include <algorithm>
#include <concepts>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"

namespace klock::bench {

// Tunables, from the environment so that scripts/bench.sh and the lead can trade precision
// for time without rebuilding.
inline long env_long(const char* name, long fallback)
{
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0')
        return fallback;
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    return (end != v && n > 0) ? n : fallback;
}
inline std::chrono::milliseconds window() { return std::chrono::milliseconds(env_long("KLOCK_BENCH_WINDOW_MS", 200)); }
inline int repetitions() { return static_cast<int>(env_long("KLOCK_BENCH_REPS", 5)); }
inline unsigned oversubscribed_threads() { return std::max(2u, std::thread::hardware_concurrency() * 2); }

// The lock and the data it protects share a cache line, as a kernel structure's lock and
// fields usually do, and nothing else does: the harness's flags live elsewhere.
template <class A> struct alignas(64) protected_data {
    A lock;
    std::uint64_t counter = 0;
};

template <lock_adapter A> void uncontended(benchmark::State& state)
{
    auto d = std::make_unique<protected_data<A>>();
    typename A::node n{};
    for (auto _ : state) {
        d->lock.lock(n);
        d->lock.unlock(n);
    }
}

struct window_result {
    double seconds = 0;
    std::vector<std::uint64_t> ops; // per thread
    unsigned stuck = 0;             // threads still inside lock() long after the window closed
};

// What the threads of one window share. It is reference-counted by the threads themselves, so
// that a thread stuck in a lock with a lost wakeup can be abandoned (detached) without ever
// touching freed memory should it wake up later.
template <class A> struct window_state {
    struct alignas(64) flag {
        std::atomic<bool> v{false};
    };
    explicit window_state(std::shared_ptr<protected_data<A>> data, unsigned n) : d(std::move(data)), ops(n, 0) { }
    std::shared_ptr<protected_data<A>> d;
    flag go, stop;
    std::atomic<unsigned> ready{0}, finished{0};
    std::vector<std::uint64_t> ops;
};

// How long after the window closes every thread must be out of the lock: far longer than any
// lock needs to drain, even a ticket lock handing over to preempted waiters.
inline std::chrono::seconds stuck_limit() { return std::chrono::seconds(env_long("KLOCK_BENCH_STUCK_S", 10)); }

// One measurement window: `nthreads` threads hammer d->lock for `len` of wall time.
template <lock_adapter A>
window_result run_window(const std::shared_ptr<protected_data<A>>& d, unsigned nthreads, std::chrono::milliseconds len)
{
    auto w = std::make_shared<window_state<A>>(d, nthreads);
    std::vector<std::thread> threads;
    threads.reserve(nthreads);
    for (unsigned i = 0; i < nthreads; ++i)
        threads.emplace_back([w, i] {
            auto& data = *w->d;
            typename A::node n{};
            std::uint64_t mine = 0;
            w->ready.fetch_add(1, std::memory_order_relaxed);
            while (!w->go.v.load(std::memory_order_acquire))
                std::this_thread::yield();
            while (!w->stop.v.load(std::memory_order_relaxed)) {
                data.lock.lock(n);
                if constexpr (A::exclusive)
                    ++data.counter;
                else
                    benchmark::DoNotOptimize(data.counter);
                data.lock.unlock(n);
                ++mine;
            }
            w->ops[i] = mine;
            w->finished.fetch_add(1, std::memory_order_release);
        });
    while (w->ready.load(std::memory_order_relaxed) != nthreads)
        std::this_thread::yield();
    // The main thread sleeps through the window, so the workers have every core to themselves.
    const auto t0 = std::chrono::steady_clock::now();
    w->go.v.store(true, std::memory_order_release);
    std::this_thread::sleep_for(len);
    w->stop.v.store(true, std::memory_order_relaxed);
    const auto give_up = std::chrono::steady_clock::now() + stuck_limit();
    while (w->finished.load(std::memory_order_acquire) != nthreads && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    // Operations that complete after `stop` still count, so the time runs until the last ends.
    window_result r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.stuck = nthreads - w->finished.load(std::memory_order_acquire);
    for (auto& t : threads) {
        if (r.stuck != 0)
            t.detach();
        else
            t.join();
    }
    if (r.stuck == 0)
        r.ops = w->ops;
    return r;
}

template <lock_adapter A> void threaded(benchmark::State& state, unsigned nthreads)
{
    auto d = std::make_shared<protected_data<A>>();
    std::vector<std::uint64_t> per_thread(nthreads, 0);
    double seconds = 0;
    for (auto _ : state) {
        window_result r = run_window(d, nthreads, window());
        if (r.stuck != 0) {
            // A lost wakeup (or a lock that never lets go): say so and move on to the next
            // benchmark; the abandoned threads keep the lock and their state alive.
            std::string msg = std::to_string(r.stuck) + " of " + std::to_string(nthreads)
                + " threads still blocked in lock() " + std::to_string(stuck_limit().count())
                + " s after the window closed: lost wakeup?";
            state.SkipWithError(msg.c_str());
            return;
        }
        state.SetIterationTime(r.seconds);
        seconds += r.seconds;
        for (unsigned i = 0; i < nthreads; ++i)
            per_thread[i] += r.ops[i];
    }
    std::uint64_t total = 0;
    for (auto v : per_thread)
        total += v;
    if constexpr (A::exclusive) {
        if (d->counter != total) {
            state.SkipWithError("mutual exclusion broken: lost increments in the critical section");
            return;
        }
    }
    auto [mn, mx] = std::minmax_element(per_thread.begin(), per_thread.end());
    const double t = static_cast<double>(total);
    state.counters["nthreads"] = nthreads;
    state.counters["ops_per_s"] = seconds > 0 ? t / seconds : 0;
    state.counters["fairness"] = *mx > 0 ? static_cast<double>(*mn) / static_cast<double>(*mx) : 0;
    state.counters["min_share"] = total > 0 ? static_cast<double>(*mn) / t : 0;
    state.counters["max_share"] = total > 0 ? static_cast<double>(*mx) / t : 0;
}

template <lock_adapter A> void contended_2t(benchmark::State& state) { threaded<A>(state, 2); }
template <lock_adapter A> void oversubscribed(benchmark::State& state) { threaded<A>(state, oversubscribed_threads()); }

using bench_fn = void (*)(benchmark::State&);

// One lock under test: its display name and its instantiated workloads.
struct lock_entry {
    std::string name;
    bench_fn uncontended;
    bench_fn contended_2t;
    bench_fn oversubscribed;
};

template <lock_adapter A> lock_entry entry(std::string name)
{
    return {std::move(name), &bench::uncontended<A>, &bench::contended_2t<A>, &bench::oversubscribed<A>};
}

// Registers the workloads grouped by workload (all locks' uncontended runs first, ...), so
// that the console output reads as one table per workload. `prefix` tells exclusive from
// reader-side runs apart ("" or "shared_").
inline void register_all(const std::vector<lock_entry>& locks, const std::string& prefix)
{
    const int reps = repetitions();
    for (const auto& l : locks)
        benchmark::RegisterBenchmark((prefix + "uncontended/" + l.name).c_str(), l.uncontended)
            ->MinTime(0.1)
            ->Repetitions(reps)
            ->ReportAggregatesOnly(true);
    for (bench_fn lock_entry::*w : {&lock_entry::contended_2t, &lock_entry::oversubscribed}) {
        const char* wname = w == &lock_entry::contended_2t ? "contended_2t/" : "oversubscribed/";
        for (const auto& l : locks)
            benchmark::RegisterBenchmark((prefix + wname + l.name).c_str(), l.*w)
                ->Iterations(1)
                ->Repetitions(reps)
                ->ReportAggregatesOnly(true)
                ->UseManualTime()
                ->MeasureProcessCPUTime()
                ->Unit(benchmark::kMillisecond);
    }
}

} // namespace klock::bench
