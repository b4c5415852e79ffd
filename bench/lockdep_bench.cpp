// What lockdep and lock_stat cost on their hit paths (issue 3's targets: a cached-chain mutex
// lock+unlock with lockdep compiled in and on at most 4x the same compiled out, and at most 6x
// with lock_stat on as well; lock_stat alone as cheap as it gets).
//
// Run it from two builds: with -DKLOCK_LOCKDEP=ON, `mutex_plain` is klock::mutex with its hooks
// validating, `mutex_lockdep_switched_off` the same with lockdep off at run time,
// `mutex_lockdep_lock_stat` validating and collecting lock_stat, `mutex_lock_stat_only`
// collecting with validation off; with the option OFF, `mutex_plain` is the compiled-out
// baseline, and the `mutex_with_*` cases call the engine around the mutex by hand the way the
// wired hooks do. The `lockdep_pair*` cases are the engine's acquire+release alone.
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

// Validation and lock_stat as the arguments say, restored afterwards.
class modes {
public:
    modes(bool validate, bool stat)
    {
        ld::set_enabled(validate);
        klock::lock_stat::set_enabled(stat);
    }
    ~modes()
    {
        klock::lock_stat::set_enabled(false);
        ld::set_enabled(true);
    }
    modes(const modes&) = delete;
    modes& operator=(const modes&) = delete;
};

void lockdep_pair_lock_stat(benchmark::State& state)
{
    modes on(true, true);
    for (auto _ : state) {
        ld::lock_acquire(map_p, 0, 0, 0, 1, nullptr);
        ld::lock_release(map_p);
    }
}

void lockdep_pair_lock_stat_only(benchmark::State& state)
{
    modes on(false, true);
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

void mutex_lockdep_lock_stat(benchmark::State& state)
{
    modes on(true, true);
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
}

void mutex_lock_stat_only(benchmark::State& state)
{
    modes on(false, true);
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
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

void with_hooks(benchmark::State& state)
{
    for (auto _ : state) {
        if (ld::active())
            ld::lock_acquire(map_p, 0, 0, 0, 1, nullptr);
        m.lock();
        if (ld::active())
            ld::lock_release(map_p);
        m.unlock();
    }
}

void mutex_with_lockdep_lock_stat(benchmark::State& state)
{
    modes on(true, true);
    with_hooks(state);
}

void mutex_with_lock_stat_only(benchmark::State& state)
{
    modes on(false, true);
    with_hooks(state);
}
#endif

BENCHMARK(mutex_plain);
BENCHMARK(lockdep_pair);
BENCHMARK(lockdep_pair_lock_stat);
BENCHMARK(lockdep_pair_lock_stat_only);
#if KLOCK_LOCKDEP
BENCHMARK(mutex_lockdep_switched_off);
BENCHMARK(mutex_lockdep_lock_stat);
BENCHMARK(mutex_lock_stat_only);
#else
BENCHMARK(mutex_with_lockdep);
BENCHMARK(mutex_with_lockdep_off);
BENCHMARK(mutex_with_lockdep_lock_stat);
BENCHMARK(mutex_with_lock_stat_only);
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
