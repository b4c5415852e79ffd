// What lockdep costs on its hit path (issue 3's target: a cached-chain mutex lock+unlock with
// lockdep compiled in and on at most 4x the same compiled out).
//
// Run it from two builds: with -DKLOCK_LOCKDEP=ON, `mutex_plain` is klock::mutex with its hooks
// validating and `mutex_lockdep_switched_off` the same with lockdep off at run time; with the
// option OFF, `mutex_plain` is the compiled-out baseline, and `mutex_with_lockdep` calls the
// engine around the mutex by hand the way the wired hooks do.
#include <benchmark/benchmark.h>

#include <klock/lockdep.hpp>
#include <klock/mutex.hpp>

#include <thread>

namespace {

namespace ld = klock::lockdep;

klock::lock_class_key key_p;
klock::lockdep_map map_p{"P", &key_p};
klock::mutex m;

void mutex_plain(benchmark::State& state)
{
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
}

void lockdep_pair(benchmark::State& state)
{
    ld::set_enabled(true);
    for (auto _ : state) {
        ld::lock_acquire(map_p, 0, 0, 0, 1, nullptr);
        ld::lock_release(map_p);
    }
}

#if KLOCK_LOCKDEP
void mutex_lockdep_switched_off(benchmark::State& state)
{
    ld::set_enabled(false);
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
    ld::set_enabled(true);
}

#else
void mutex_with_lockdep(benchmark::State& state)
{
    ld::set_enabled(true);
    for (auto _ : state) {
        ld::lock_acquire(map_p, 0, 0, 0, 1, nullptr);
        m.lock();
        ld::lock_release(map_p);
        m.unlock();
    }
}

void mutex_with_lockdep_off(benchmark::State& state)
{
    ld::set_enabled(false);
    for (auto _ : state) {
        if (ld::enabled())
            ld::lock_acquire(map_p, 0, 0, 0, 1, nullptr);
        m.lock();
        if (ld::enabled())
            ld::lock_release(map_p);
        m.unlock();
    }
    ld::set_enabled(true);
}
#endif

BENCHMARK(mutex_plain);
BENCHMARK(lockdep_pair);
#if KLOCK_LOCKDEP
BENCHMARK(mutex_lockdep_switched_off);
#else
BENCHMARK(mutex_with_lockdep);
BENCHMARK(mutex_with_lockdep_off);
#endif

} // namespace

int main(int argc, char** argv)
{
    // Real users of locks have threads: leave glibc's (and klock's) single-threaded shortcuts.
    std::thread([] {}).join();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
