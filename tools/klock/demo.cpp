// `klock demo`: the seeds' story told with klock's own locks, on real threads.
//
//  1. the ticket lock word walked through seeds/001-002 (0x00010001 -> 0x00020001 -> ...)
//  2. what a spinlock does to the task's context (seeds/000): preempt_count, preemptible()
//  3. might_sleep(): a sleeping lock taken under a spinlock is reported
//  4. priority inversion on one CPU (seeds/003), with klock::mutex and with klock::rt_mutex
#include "commands.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <klock/arch/ticket_spinlock.hpp>
#include <klock/demo/priority_inversion.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/spinlock.hpp>

namespace klock::tool {

namespace {

void heading(const char* title) { std::printf("\n== %s ==\n\n", title); }

void ticket_row(std::uint32_t word, const char* event)
{
    std::printf("  0x%08x  %5u  %5u  %s\n", word, word >> 16, word & 0xffff, event);
}

void wait_until(const std::function<bool()>& cond)
{
    while (!cond())
        std::this_thread::yield();
}

// seeds/002 walks the ARM ticket lock with concrete values. The same steps, on klock's lock
// word, with a second thread standing in for the second CPU.
void ticket_walkthrough()
{
    heading("ticket spinlock: the lock word step by step (seeds/001-002)");
    std::printf("  (two threads stand in for the two CPUs)\n\n  word        next  owner  event\n");
    klock::arch::ticket_spinlock<klock::env::os> lock(0x00010001);
    ticket_row(lock.raw(), "free: next == owner");

    lock.lock();
    ticket_row(lock.raw(), "CPU0 lock(): fetch_add(1 << 16) drew ticket 1 == owner, acquired");

    std::atomic<bool> second_holds{false}, second_may_unlock{false};
    std::thread cpu1([&] {
        lock.lock();
        second_holds = true;
        wait_until([&] { return second_may_unlock.load(); });
        lock.unlock();
    });
    wait_until([&] { return lock.next() == 3; });
    ticket_row(lock.raw(), "CPU1 lock(): drew ticket 2, owner is 1: spins re-reading owner");

    lock.unlock();
    wait_until([&] { return second_holds.load(); });
    ticket_row(lock.raw(), "CPU0 unlock(): owner + 1 == 2, CPU1's ticket is served");

    second_may_unlock = true;
    cpu1.join();
    ticket_row(lock.raw(), "CPU1 unlock(): owner + 1 == next, free again");
}

void context_walkthrough()
{
    heading("spinlocks and the task's context (seeds/000)");
    klock::spinlock lock;
    std::printf("  before spin_lock:        preempt_count() = %u, preemptible() = %d\n", klock::preempt_count(),
        klock::preemptible());
    lock.lock();
    std::printf("  holding the spinlock:    preempt_count() = %u, preemptible() = %d\n", klock::preempt_count(),
        klock::preemptible());
    lock.unlock();
    std::printf("  after spin_unlock:       preempt_count() = %u, preemptible() = %d"
                "  <- a task switch may happen here\n",
        klock::preempt_count(), klock::preemptible());
    klock::irq_flags flags = lock.lock_irqsave();
    std::printf("  spin_lock_irqsave:       preempt_count() = %u, irqs_disabled() = %d\n", klock::preempt_count(),
        klock::irqs_disabled());
    lock.unlock_irqrestore(flags);
    std::printf("  spin_unlock_irqrestore:  preempt_count() = %u, irqs_disabled() = %d\n", klock::preempt_count(),
        klock::irqs_disabled());
}

void might_sleep_walkthrough()
{
    heading("a mutex taken while holding a spinlock: might_sleep() reports it");
    klock::spinlock spin;
    klock::mutex sleeping;
    std::string report;
    {
        klock::report_capture capture;
        spin.lock();
        sleeping.lock(); // the bug being demonstrated
        sleeping.unlock();
        spin.unlock();
        if (capture.count() > 0)
            report = capture.reports().front();
    }
    // Show the splat's header; its call trace is long and machine-specific.
    std::size_t shown = 0;
    for (std::size_t pos = 0; pos < report.size() && shown < 4; ++shown) {
        std::size_t end = report.find('\n', pos);
        std::printf("  | %s\n", report.substr(pos, end - pos).c_str());
        pos = end == std::string::npos ? report.size() : end + 1;
    }
    if (report.empty())
        std::printf("  (no report: might_sleep() did not fire)\n");
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

int priority_inversion_walkthrough()
{
    heading("priority inversion on one CPU (seeds/003)");
    klock::demo::priority_inversion_options opt;
    std::printf("  L (FIFO %d) holds the lock for %.0f ms of CPU; H (FIFO %d) then waits for it;\n"
                "  M (FIFO %d) spins for %.0f ms without touching the lock. All on one CPU.\n\n",
        opt.low_prio, ms(opt.low_hold), opt.high_prio, opt.medium_prio, ms(opt.medium_spin));
    auto with_mutex = klock::demo::run_priority_inversion<klock::mutex>(opt);
    if (!with_mutex.permitted) {
        std::printf("  skipped: %s\n  (real-time scheduling needs root or CAP_SYS_NICE / an RLIMIT_RTPRIO)\n",
            with_mutex.message.c_str());
        return 0;
    }
    auto with_rt = klock::demo::run_priority_inversion<klock::rt_mutex>(opt);
    std::printf("  %-18s %14s %26s\n", "lock", "H waited", "M ran while H waited");
    std::printf("  %-18s %11.1f ms %23.1f ms   <- inversion: H waits for M\n", "klock::mutex", ms(with_mutex.high_wait),
        ms(with_mutex.medium_progress));
    std::printf("  %-18s %11.1f ms %23.1f ms   <- inheritance: L runs at H's priority\n", "klock::rt_mutex",
        ms(with_rt.high_wait), ms(with_rt.medium_progress));
    return 0;
}

} // namespace

int run_demo(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i) {
        std::fprintf(stderr, "klock demo: unknown option '%s' (the demo takes no options)\n", argv[i]);
        return 2;
    }
    std::printf("klock %s - the Linux kernel's locks in user space\n", KLOCK_VERSION);
    ticket_walkthrough();
    context_walkthrough();
    might_sleep_walkthrough();
    int rc = priority_inversion_walkthrough();
    std::printf("\n");
    return rc;
}

} // namespace klock::tool
