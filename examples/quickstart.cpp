// The README's usage example, compiled and run by the test suite so it stays true.
#include <klock/klock.hpp>

#include <cstdio>
#include <thread>
#include <vector>

namespace {

klock::spinlock lock;
long counter KLOCK_GUARDED_BY(lock) = 0;

void tick()
{
    klock::lock_guard g(lock); // preempt_count() is 1 inside
    ++counter;
}

void irq_safe_tick()
{
    klock::irq_flags f = lock.lock_irqsave(); // blocks asynchronous signals, like irqs off
    ++counter;
    lock.unlock_irqrestore(f);
}

klock::rw_semaphore config_sem;
int config KLOCK_GUARDED_BY(config_sem) = 1;

int read_config()
{
    klock::shared_lock_guard g(config_sem);
    return config;
}

} // namespace

int main()
{
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([] {
            for (int i = 0; i < 10000; ++i)
                (i % 2 ? tick : irq_safe_tick)();
        });
    for (auto& t : threads)
        t.join();

    klock::mutex m;
    {
        klock::lock_guard g(m);
    }
    klock::rt_mutex pi;
    {
        klock::lock_guard g(pi);
    }
    int cfg = read_config();
    klock::lock_guard g(lock);
    std::printf("counter = %ld (expected 40000), config = %d\n", counter, cfg);
    return counter == 40000 && cfg == 1 ? 0 : 1;
}
