#include <klock/klock.hpp>

#include <cstdio>

int main()
{
    klock::spinlock spin;
    klock::mutex mutex;
    {
        klock::lock_guard g(spin);
        if (klock::preempt_count() != 1)
            return 1;
    }
    klock::lock_guard g(mutex);
    std::puts("consumer ok");
    return klock::preempt_count() == 0 ? 0 : 1;
}
