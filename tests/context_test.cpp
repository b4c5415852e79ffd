// preempt_count, irq state and might_sleep for real threads.
#include <gtest/gtest.h>

#include <klock/might_sleep.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>

#include <csignal>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "support/counting_env.hpp"
#include "support/stress.hpp"

#include <algorithm>

namespace {

TEST(PreemptCount, KernelBitLayout)
{
    EXPECT_EQ(klock::PREEMPT_MASK, 0x000000ffu);
    EXPECT_EQ(klock::SOFTIRQ_MASK, 0x0000ff00u);
    EXPECT_EQ(klock::HARDIRQ_MASK, 0x000f0000u);
    EXPECT_EQ(klock::NMI_MASK, 0x00f00000u);
    EXPECT_EQ(klock::PREEMPT_NEED_RESCHED, 0x80000000u);
}

TEST(PreemptCount, DisableEnableNests)
{
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_TRUE(klock::preemptible());
    klock::preempt_disable();
    klock::preempt_disable();
    EXPECT_EQ(klock::preempt_count(), 2u);
    EXPECT_TRUE(klock::in_atomic());
    EXPECT_FALSE(klock::preemptible());
    klock::preempt_enable();
    klock::preempt_enable();
    EXPECT_EQ(klock::preempt_count(), 0u);
    EXPECT_TRUE(klock::preemptible());
}

TEST(PreemptCount, PerThread)
{
    klock::preempt_disable();
    std::uint32_t other = 99;
    std::thread([&] { other = klock::preempt_count(); }).join();
    EXPECT_EQ(other, 0u);
    klock::preempt_enable();
}

TEST(PreemptCount, BottomHalvesUseSoftirqBits)
{
    klock::local_bh_disable();
    EXPECT_EQ(klock::preempt_count(), klock::SOFTIRQ_DISABLE_OFFSET);
    EXPECT_TRUE(klock::in_softirq());
    EXPECT_FALSE(klock::in_hardirq());
    klock::local_bh_enable();
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST(IrqFlags, SaveRestoreNestsAndBlocksSignals)
{
    EXPECT_FALSE(klock::irqs_disabled());
    klock::irq_flags outer = klock::local_irq_save();
    EXPECT_TRUE(klock::irqs_disabled());
    EXPECT_FALSE(klock::preemptible());
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, nullptr, &now);
    EXPECT_TRUE(sigismember(&now, SIGUSR1));
    EXPECT_FALSE(sigismember(&now, SIGSEGV)); // synchronous faults stay deliverable

    klock::irq_flags inner = klock::local_irq_save();
    klock::local_irq_restore(inner);
    EXPECT_TRUE(klock::irqs_disabled()); // still inside the outer section

    klock::local_irq_restore(outer);
    EXPECT_FALSE(klock::irqs_disabled());
    pthread_sigmask(SIG_BLOCK, nullptr, &now);
    EXPECT_FALSE(sigismember(&now, SIGUSR1));
}

TEST(IrqFlags, PendingSignalDeliveredOnEnable)
{
    static volatile std::sig_atomic_t delivered = 0;
    struct sigaction sa { };
    sa.sa_handler = [](int) { delivered = 1; };
    struct sigaction old { };
    sigaction(SIGUSR2, &sa, &old);
    delivered = 0;
    klock::local_irq_disable();
    pthread_kill(pthread_self(), SIGUSR2);
    EXPECT_EQ(delivered, 0);
    klock::local_irq_enable();
    EXPECT_EQ(delivered, 1);
    sigaction(SIGUSR2, &old, nullptr);
}

TEST(MightSleep, SilentWhenPreemptible)
{
    klock::report_capture cap;
    klock::might_sleep();
    EXPECT_EQ(cap.count(), 0u);
}

TEST(MightSleep, ReportsInAtomicContextInKernelFormat)
{
    klock::report_capture cap;
    klock::preempt_disable();
    klock::might_sleep(); // the line below is what the report must name
    const unsigned line = __LINE__ - 1;
    klock::preempt_enable();
    ASSERT_EQ(cap.count(), 1u);
    const std::string r = cap.reports()[0];
    EXPECT_NE(r.find("BUG: sleeping function called from invalid context at "), std::string::npos) << r;
    EXPECT_NE(r.find("context_test.cpp:" + std::to_string(line)), std::string::npos) << r;
    EXPECT_NE(r.find("in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: "), std::string::npos) << r;
    EXPECT_NE(r.find("preempt_count: 1, expected: 0"), std::string::npos) << r;
    EXPECT_NE(r.find("Call Trace:"), std::string::npos) << r;
    EXPECT_EQ(klock::preempt_count(), 0u); // the check changed nothing
}

TEST(MightSleep, ReportsWithIrqsDisabled)
{
    klock::report_capture cap;
    klock::irq_flags f = klock::local_irq_save();
    klock::might_sleep();
    klock::local_irq_restore(f);
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("in_atomic(): 0, irqs_disabled(): 1"), std::string::npos);
}

TEST(Env, CountingEnvSharesTheTaskRecord)
{
    using E = klock::test::counting_env;
    klock::kernel::preempt_disable<E>();
    EXPECT_EQ(klock::preempt_count(), 1u);
    klock::kernel::preempt_enable<E>();
    EXPECT_GT(E::task_pid(E::current()), 0);
    EXPECT_NE(E::info(E::current()).slot, 0u);
    EXPECT_EQ(E::task_from_slot(E::info(E::current()).slot), E::current());
}

} // namespace

namespace {

TEST(Task, ForkedChildHasItsOwnPid)
{
    int parent_pid = klock::env::os::task_pid(klock::env::os::current());
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int pid = klock::env::os::task_pid(klock::env::os::current());
        ::_exit(pid == static_cast<int>(::getpid()) && pid != parent_pid ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child kept its parent's thread id";
}

} // namespace

namespace {

// Queued locks encode a task's slot in the lock word: two live tasks must never share one,
// however their first uses race.
TEST(Task, ConcurrentlyStartedThreadsGetDistinctSlots)
{
    constexpr int n = 16;
    std::uint32_t slots[n] = {};
    klock::test::run_threads(n, [&](int i) {
        auto* t = klock::env::os::current();
        slots[i] = klock::env::os::info(t).slot;
        // Stay alive until everybody has a slot, so none is recycled in between.
        static std::atomic<int> have{0};
        have.fetch_add(1);
        while (have.load() < n)
            std::this_thread::yield();
    });
    std::sort(slots, slots + n);
    EXPECT_NE(slots[0], 0u);
    EXPECT_EQ(std::adjacent_find(slots, slots + n), slots + n) << "two threads share a slot";
}

} // namespace

namespace {

// Task records are type-stable (env/os.hpp): a record outlives its thread, is readable through a
// stale pointer, and goes to a later thread together with its slot.
TEST(Task, RecordOutlivesItsThreadAndIsRecycled)
{
    using os = klock::env::os;
    os::task* gone = nullptr;
    std::uint32_t gone_slot = 0;
    std::thread([&] {
        gone = os::current();
        gone_slot = os::info(gone).slot;
    }).join();
    ASSERT_NE(gone, nullptr);
    ASSERT_NE(gone_slot, 0u);
    // What a spinner holding a stale owner pointer reads: memory that is still there.
    EXPECT_TRUE(os::task_on_cpu(gone));
    EXPECT_EQ(os::task_from_slot(gone_slot), nullptr) << "a free slot still names a task";
    // The lowest free slot goes first: the next thread gets the same slot and the same record,
    // reset to a new task's state, with its own thread id.
    os::task* next = nullptr;
    int next_tid = 0, next_pid_in_record = -1;
    std::uint32_t next_preempt = 1;
    std::thread([&] {
        next = os::current();
        next_tid = static_cast<int>(::gettid());
        next_pid_in_record = os::task_pid(next);
        next_preempt = os::info(next).preempt_count;
        EXPECT_EQ(os::task_from_slot(os::info(next).slot), next);
    }).join();
    EXPECT_EQ(next, gone);
    EXPECT_EQ(next_pid_in_record, next_tid);
    EXPECT_EQ(next_preempt, 0u);
}

// A pthread key destructor that runs after klock's own (keys are destroyed in creation order, and
// klock's key exists before main) may still take locks: it gets a record of its own, without a
// slot, never the record its thread just gave back.
pthread_key_t late_key;
std::atomic<klock::env::os::task*> late_seen{nullptr};
std::atomic<std::uint32_t> late_slot{~0u};
std::atomic<int> late_pid{0};

TEST(Task, KeyDestructorAfterExitGetsItsOwnRecord)
{
    using os = klock::env::os;
    ASSERT_EQ(::pthread_key_create(&late_key,
                  [](void*) {
                      os::task* t = os::current();
                      late_seen.store(t);
                      late_slot.store(os::info(t).slot);
                      late_pid.store(os::task_pid(t));
                  }),
        0);
    os::task* during = nullptr;
    int tid = 0;
    std::thread([&] {
        during = os::current();
        tid = static_cast<int>(::gettid());
        ::pthread_setspecific(late_key, &late_key);
    }).join();
    ::pthread_key_delete(late_key);
    ASSERT_NE(late_seen.load(), nullptr);
    EXPECT_NE(late_seen.load(), during) << "the exiting thread kept the record it gave back";
    EXPECT_EQ(late_slot.load(), 0u);
    EXPECT_EQ(late_pid.load(), tid);
}

} // namespace
