// The C++ standard library's locks are pthread locks underneath: std::mutex and
// std::recursive_mutex (no init call: classes come from the first use), std::timed_mutex,
// std::shared_mutex (a default pthread rwlock: shared locks are recursive reads), and
// std::condition_variable.
//   mutex_abba   std::mutex A->B then B->A on two threads: reported
//   timed_abba   std::timed_mutex try_lock_for in the inverse order: reported (a timed lock can
//                still deadlock until its timeout)
//   shared_abba  std::shared_mutex exclusively A->B, then B->A: reported
//   shared_read  shared (read) locks in a cycle with a mutex: not reported
//   recursive    std::recursive_mutex taken three deep, and std::condition_variable: not reported
#include "common.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

namespace {
std::mutex mutex_a, mutex_b;
std::timed_mutex timed_a, timed_b;
std::shared_mutex shared_a, shared_b;
std::recursive_mutex recursive;
} // namespace

template <class First, class Second> NOINLINE void nest_cxx(First& first, Second& second)
{
    std::lock_guard<First> g1(first);
    std::lock_guard<Second> g2(second);
}

NOINLINE void timed_nest(std::timed_mutex& first, std::timed_mutex& second)
{
    std::unique_lock<std::timed_mutex> g1(first, std::chrono::milliseconds(100));
    std::unique_lock<std::timed_mutex> g2(second, std::chrono::milliseconds(100));
}

NOINLINE void read_then_mutex()
{
    std::shared_lock<std::shared_mutex> r(shared_a);
    std::lock_guard<std::mutex> g(mutex_a);
}

NOINLINE void mutex_then_read()
{
    std::lock_guard<std::mutex> g(mutex_a);
    std::shared_lock<std::shared_mutex> r(shared_a);
}

NOINLINE void recurse(int depth)
{
    std::lock_guard<std::recursive_mutex> g(recursive);
    if (depth > 0)
        recurse(depth - 1);
}

NOINLINE void wait_for_flag()
{
    std::mutex m;
    std::condition_variable cv;
    bool flag = false;
    std::thread t([&] {
        std::lock_guard<std::mutex> g(m);
        flag = true;
        cv.notify_one();
    });
    {
        std::unique_lock<std::mutex> g(m);
        cv.wait(g, [&] { return flag; });
    }
    t.join();
}

template <class F> void on_thread(F f) { std::thread(f).join(); }

int main(int argc, char** argv)
{
    const std::string mode = mode_arg(argc, argv);
    if (mode == "mutex_abba") {
        on_thread([] { nest_cxx(mutex_a, mutex_b); });
        on_thread([] { nest_cxx(mutex_b, mutex_a); });
    } else if (mode == "timed_abba") {
        on_thread([] { timed_nest(timed_a, timed_b); });
        on_thread([] { timed_nest(timed_b, timed_a); });
    } else if (mode == "shared_abba") {
        on_thread([] { nest_cxx(shared_a, shared_b); });
        on_thread([] { nest_cxx(shared_b, shared_a); });
    } else if (mode == "shared_read") {
        on_thread(read_then_mutex);
        on_thread(mutex_then_read);
    } else if (mode == "recursive") {
        on_thread([] { recurse(3); });
        wait_for_flag();
    } else {
        std::fprintf(stderr, "usage: %s mutex_abba|timed_abba|shared_abba|shared_read|recursive\n", argv[0]);
        return 2;
    }
    std::puts("done");
    return 0;
}
