// Shared pieces of the lock stress tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace klock::test {

// Fails the test program (with a message naming what hung) if not disarmed in time: a lock
// that loses a wakeup must make the suite fail, not hang until CI's limit.
class watchdog {
public:
    watchdog(std::chrono::seconds limit, std::string what) : what_(std::move(what))
    {
        thread_ = std::thread([this, limit] {
            std::unique_lock<std::mutex> g(m_);
            if (!cv_.wait_for(g, limit, [this] { return done_; })) {
                std::fprintf(stderr, "watchdog: '%s' made no progress for %lld s (lost wakeup or deadlock)\n",
                    what_.c_str(), static_cast<long long>(limit.count()));
                std::fflush(stderr);
                std::abort();
            }
        });
    }
    ~watchdog()
    {
        {
            std::lock_guard<std::mutex> g(m_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

private:
    std::string what_;
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

// Waits, yielding, until pred() holds; false if `limit` passed first.
template <class Pred> bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(5000))
{
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        std::this_thread::yield();
    }
    return true;
}

// Runs body(thread_index) on n threads that start together.
inline void run_threads(int n, const std::function<void(int)>& body)
{
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            ready.fetch_add(1);
            while (ready.load() < n)
                std::this_thread::yield();
            body(i);
        });
    for (auto& t : threads)
        t.join();
}

// n threads each do `iters` increments of a plain (non-atomic) counter under `lock`, and
// check while holding it that nobody else is inside. Returns the final count; a lock that
// breaks mutual exclusion loses increments or trips `overlaps`.
template <class Lock> std::uint64_t hammer(Lock& lock, int n, int iters, std::atomic<int>* overlaps = nullptr)
{
    std::uint64_t counter = 0;
    std::atomic<int> inside{0};
    run_threads(n, [&](int) {
        for (int i = 0; i < iters; ++i) {
            lock.lock();
            if (inside.fetch_add(1, std::memory_order_relaxed) != 0 && overlaps)
                overlaps->fetch_add(1);
            ++counter;
            inside.fetch_sub(1, std::memory_order_relaxed);
            lock.unlock();
        }
    });
    return counter;
}

} // namespace klock::test
