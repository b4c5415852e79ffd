// klock_bench: klock's locks against their peers (see harness.hpp for the workloads and
// docs/benchmarks.md for how to run it and read the results; bench/report.py turns the JSON
// output into the table of targets).
#include <future>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "harness.hpp"
#include "peers.hpp"

#include <klock/mutex.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>

namespace {

using namespace klock::bench;

// One line per lock. Names are what bench/report.py looks up: keep them in step.
std::vector<lock_entry> exclusive_locks()
{
    std::vector<lock_entry> v;
    v.push_back(entry<exclusive_side<klock::spinlock>>("klock::spinlock"));
    v.push_back(entry<exclusive_side<klock::ticket_spinlock>>("klock::ticket_spinlock"));
    if constexpr (!std::is_same_v<klock::qspinlock, klock::spinlock>) // today spinlock is qspinlock
        v.push_back(entry<exclusive_side<klock::qspinlock>>("klock::qspinlock"));
    v.push_back(entry<exclusive_side<klock::mutex>>("klock::mutex"));
    v.push_back(entry<exclusive_side<klock::rt_mutex>>("klock::rt_mutex"));
    v.push_back(entry<exclusive_side<klock::rwlock>>("klock::rwlock"));
    v.push_back(entry<exclusive_side<klock::rw_semaphore>>("klock::rw_semaphore"));

    v.push_back(entry<exclusive_side<std::mutex>>("std::mutex"));
    v.push_back(entry<exclusive_side<pthread_spinlock>>("pthread_spinlock"));
    v.push_back(entry<exclusive_side<glibc_pi_mutex>>("glibc_pi_mutex"));
#if KLOCK_HAVE_ABSL
    v.push_back(entry<absl_writer>("absl::Mutex"));
#endif
#if KLOCK_HAVE_TBB
    v.push_back(entry<exclusive_side<tbb::spin_mutex>>("tbb::spin_mutex"));
    v.push_back(entry<tbb_queuing>("tbb::queuing_mutex"));
#endif
#if KLOCK_HAVE_CK
    v.push_back(entry<ck_ticket>("ck_spinlock_ticket"));
    v.push_back(entry<ck_mcs>("ck_spinlock_mcs"));
#endif
    return v;
}

// Reader sides: no targets, but a reader count that bounces between CPUs shows up here.
std::vector<lock_entry> shared_locks()
{
    std::vector<lock_entry> v;
    v.push_back(entry<shared_side<klock::rwlock>>("klock::rwlock"));
    v.push_back(entry<shared_side<klock::rw_semaphore>>("klock::rw_semaphore"));
    v.push_back(entry<shared_side<std::shared_mutex>>("std::shared_mutex"));
#if KLOCK_HAVE_ABSL
    v.push_back(entry<absl_reader>("absl::Mutex"));
#endif
    return v;
}

} // namespace

int main(int argc, char** argv)
{
#if KLOCK_HAVE_ABSL
    // Debian builds abseil without NDEBUG, which leaves absl::Mutex's deadlock detector on (a
    // graph update per Lock); measure the Mutex as an optimized abseil build ships it.
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
    // glibc's locks take a cheaper path while a process has never started a thread (measured
    // here: std::mutex lock+unlock 3x faster), which no program that needs a lock enjoys. So
    // a thread is started before anything is measured and stays parked for the whole run.
    struct parked_thread {
        std::promise<void> done;
        std::thread t{[f = done.get_future()] { f.wait(); }};
        ~parked_thread()
        {
            done.set_value();
            t.join();
        }
    } parked;

    benchmark::AddCustomContext("klock_bench.peers", peers_found());
    benchmark::AddCustomContext("klock_bench.oversubscribed_threads", std::to_string(oversubscribed_threads()));
    benchmark::AddCustomContext("klock_bench.window_ms", std::to_string(window().count()));
    register_all(exclusive_locks(), "");
    register_all(shared_locks(), "shared_");
    // Repetitions of different benchmarks run interleaved in random order by default, so that a
    // burst of load from elsewhere on the machine spreads over all locks instead of sinking
    // one; the medians then compare like with like. A later flag on the command line wins.
    std::vector<char*> args(argv, argv + argc);
    std::string interleave = "--benchmark_enable_random_interleaving=true";
    args.insert(args.begin() + 1, interleave.data());
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data()))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
