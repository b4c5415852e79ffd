// lockdep wired into klock's real locks (KLOCK_LOCKDEP=ON): the reports come from the locks' own
// hooks, on real threads, not from hand-made lockdep_map calls. With lockdep compiled out the
// file is a single skipped test.
#include <gtest/gtest.h>

#if KLOCK_LOCKDEP

#include <klock/lockdep.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/ww_mutex.hpp>

#include <chrono>
#include <memory>
#include <new>
#include <thread>

#include "support/stress.hpp"

// These scenarios misuse locks on purpose (AA, unannotated same-class nesting, locks in arrays that
// the static analysis cannot tell apart): lockdep, at run time, is what is under test here.
#ifdef __clang__
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace {

namespace ld = klock::lockdep;

// Each test starts from an empty graph, with validation on, and leaves it so.
class LockdepLocks : public ::testing::Test {
protected:
    void SetUp() override { ld::reset(); }
    void TearDown() override { ld::reset(); }
};

// A thread that runs `body` to completion before the caller goes on: the two halves of an ABBA
// never overlap in time, so only lockdep can see the deadlock.
template <class F> void on_thread(F&& body)
{
    std::thread t(std::forward<F>(body));
    t.join();
}

TEST_F(LockdepLocks, MutexAbbaAcrossTwoThreadsIsReported)
{
    klock::test::watchdog dog(std::chrono::seconds(10), "mutex ABBA");
    // Two construction sites: two lockdep classes. (Not make_unique: the construction site of a
    // lock built inside a factory is the factory's line, one class for all of them.)
    auto a = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto b = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    on_thread([&] {
        a->lock();
        b->lock();
        b->unlock();
        a->unlock();
    });
    EXPECT_EQ(cap.count(), 0u) << "A -> B alone is a valid order";
    on_thread([&] {
        b->lock();
        a->lock(); // closes B -> A -> B: reported before it could hang
        a->unlock();
        b->unlock();
    });
    ASSERT_EQ(cap.count(), 1u);
    EXPECT_TRUE(cap.contains("WARNING: possible circular locking dependency detected"));
    EXPECT_TRUE(cap.contains("*** DEADLOCK ***"));
    EXPECT_TRUE(cap.contains("mutex@")) << "dynamic mutexes are named after their construction site";
}

TEST_F(LockdepLocks, ConsistentOrderIsSilent)
{
    auto a = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto b = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    klock::test::run_threads(3, [&](int) {
        for (int i = 0; i < 200; ++i) {
            a->lock();
            b->lock();
            b->unlock();
            a->unlock();
        }
    });
    EXPECT_EQ(cap.count(), 0u);
    EXPECT_GE(ld::get_stats().direct_dependencies, 1u);
}

TEST_F(LockdepLocks, SpinlockAaIsReported)
{
    auto s = std::unique_ptr<klock::spinlock>(new klock::spinlock());
    klock::report_capture cap;
    s->lock();
    s->lock(); // lockdep: recursive locking; the lock's debug layer: spinlock recursion (refused)
    s->unlock();
    s->unlock();
    EXPECT_TRUE(cap.contains("WARNING: possible recursive locking detected"));
    EXPECT_TRUE(cap.contains("May be due to missing lock nesting notation"));
    // The debug layer's own report may come too; nothing else.
    for (const std::string& r : cap.reports())
        EXPECT_TRUE(r.find("possible recursive locking") != std::string::npos
            || r.find("spinlock recursion") != std::string::npos)
            << r;
    EXPECT_FALSE(s->is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST_F(LockdepLocks, SameClassNestingNeedsASubclass)
{
    // Two spinlocks from one construction site share a class.
    std::unique_ptr<klock::spinlock> locks[2];
    for (auto& l : locks)
        l = std::unique_ptr<klock::spinlock>(new klock::spinlock());
    {
        klock::report_capture cap;
        locks[0]->lock();
        locks[1]->lock_nested(1); // the kernel's spin_lock_nested(..., SINGLE_DEPTH_NESTING)
        locks[1]->unlock();
        locks[0]->unlock();
        EXPECT_EQ(cap.count(), 0u);
    }
    {
        klock::report_capture cap;
        locks[0]->lock();
        locks[1]->lock(); // same class, no annotation
        locks[1]->unlock();
        locks[0]->unlock();
        EXPECT_TRUE(cap.contains("WARNING: possible recursive locking detected"));
    }
}

TEST_F(LockdepLocks, MutexAndRwsemNestedSubclassesAreSilent)
{
    std::unique_ptr<klock::mutex> m[2];
    std::unique_ptr<klock::rw_semaphore> r[2];
    for (int i = 0; i < 2; ++i) {
        m[i] = std::unique_ptr<klock::mutex>(new klock::mutex());
        r[i] = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    }
    klock::report_capture cap;
    m[0]->lock();
    m[1]->lock_nested(1);
    r[0]->down_write();
    r[1]->down_write_nested(1);
    r[1]->up_write();
    r[0]->up_write();
    r[0]->down_read();
    r[1]->down_read_nested(1);
    r[1]->up_read();
    r[0]->up_read();
    m[1]->unlock();
    m[0]->unlock();
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(LockdepLocks, RwsemReadRecursionIsReported)
{
    // rw_semaphore readers are not recursive (a writer queued between them deadlocks both):
    // read-after-read of one rwsem is reported.
    auto sem = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    klock::report_capture cap;
    sem->down_read();
    sem->down_read();
    sem->up_read();
    sem->up_read();
    EXPECT_TRUE(cap.contains("WARNING: possible recursive locking detected"));
    EXPECT_FALSE(sem->is_locked());
}

TEST_F(LockdepLocks, RwsemReadReadAbbaIsReportedRwlockIrqReadersAreNot)
{
    // Non-recursive readers: A(r) -> B(r) then B(r) -> A(r) is a deadlock with writers queued.
    auto a = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    auto b = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    klock::report_capture cap;
    on_thread([&] {
        a->down_read();
        b->down_read();
        b->up_read();
        a->up_read();
    });
    on_thread([&] {
        b->down_read();
        a->down_read();
        a->up_read();
        b->up_read();
    });
    EXPECT_TRUE(cap.contains("WARNING: possible circular locking dependency detected"));
}

TEST_F(LockdepLocks, RwlockReadRecursionInIrqIsAllowed)
{
    // Queued rwlock readers are recursive in interrupt context: a read_lock() nested in a
    // hardirq while the task holds the same rwlock for read is fine.
    auto rw = std::unique_ptr<klock::rwlock>(new klock::rwlock());
    klock::report_capture cap;
    rw->read_lock();
    klock::hardirq_enter();
    rw->read_lock();
    rw->read_unlock();
    klock::hardirq_exit();
    rw->read_unlock();
    for (const std::string& r : cap.reports())
        EXPECT_EQ(r.find("recursive locking"), std::string::npos) << r;
}

TEST_F(LockdepLocks, IrqSafeThenIrqUnsafeSpinlockIsInconsistent)
{
    auto s = std::unique_ptr<klock::spinlock>(new klock::spinlock());
    klock::report_capture cap;
    // Taken in hardirq context: the class becomes IN-HARDIRQ.
    klock::hardirq_enter();
    s->lock();
    s->unlock();
    klock::hardirq_exit();
    // Taken with irqs off (lock_irqsave): consistent.
    const klock::irq_flags f = s->lock_irqsave();
    s->unlock_irqrestore(f);
    EXPECT_EQ(cap.count(), 0u) << cap.reports().front();
    // Taken with irqs on: an interrupt on this CPU could now deadlock on it.
    s->lock();
    s->unlock();
    EXPECT_TRUE(cap.contains("WARNING: inconsistent lock state"));
    EXPECT_TRUE(cap.contains("{IN-HARDIRQ-W} -> {HARDIRQ-ON-W}"));
}

TEST_F(LockdepLocks, LockHeldAcrossIrqEnableBecomesIrqUnsafe)
{
    // lock_irq() then local_irq_enable() while holding it: the irq tracing in preempt.hpp marks the
    // held lock HARDIRQ-ON, which conflicts with its use in a hardirq.
    auto s = std::unique_ptr<klock::spinlock>(new klock::spinlock());
    klock::report_capture cap;
    klock::hardirq_enter();
    s->lock();
    s->unlock();
    klock::hardirq_exit();
    s->lock_irq();
    klock::local_irq_enable();
    klock::local_irq_disable();
    s->unlock_irq();
    EXPECT_TRUE(cap.contains("WARNING: inconsistent lock state"));
    EXPECT_FALSE(klock::irqs_disabled());
}

TEST_F(LockdepLocks, HeldLockFreedIsReported)
{
    klock::report_capture cap;
    alignas(klock::mutex) unsigned char raw[sizeof(klock::mutex)];
    auto* m = new (raw) klock::mutex();
    m->lock();
    std::destroy_at(m); // destroyed while held: lockdep's memory check and the mutex's own report
    EXPECT_TRUE(cap.contains("WARNING: held lock freed!"));
    EXPECT_TRUE(cap.contains("mutex destroyed while locked"));
    EXPECT_EQ(cap.count(), 2u);
    ld::reset(); // lockdep still lists the dead lock as held by this task: forget it
}

TEST_F(LockdepLocks, TrylockAddsNoEdgeIntoItself)
{
    // B -> A by trylock only, then A -> B: a trylock cannot deadlock, so no cycle through it.
    auto a = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto b = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    on_thread([&] {
        b->lock();
        ASSERT_TRUE(a->try_lock());
        a->unlock();
        b->unlock();
    });
    on_thread([&] {
        a->lock();
        b->lock();
        b->unlock();
        a->unlock();
    });
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(LockdepLocks, FailedTimedLockLeavesNothingHeld)
{
    auto m = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto other = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    m->lock();
    on_thread([&] {
        EXPECT_FALSE(m->try_lock_for(std::chrono::milliseconds(1)));
        // Had the failed attempt stayed on lockdep's stack, this would be a (bogus) m -> other.
        other->lock();
        other->unlock();
        EXPECT_FALSE(ld::lock_is_held(m->dep_map()));
    });
    m->unlock();
    on_thread([&] {
        other->lock();
        m->lock(); // other -> m: no cycle, since m -> other was never recorded
        m->unlock();
        other->unlock();
    });
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(LockdepLocks, RtMutexAndMutexAbbaIsReported)
{
    auto rt = std::unique_ptr<klock::rt_mutex>(new klock::rt_mutex());
    auto m = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    on_thread([&] {
        rt->lock();
        m->lock();
        m->unlock();
        rt->unlock();
    });
    EXPECT_EQ(cap.count(), 0u);
    on_thread([&] {
        m->lock();
        rt->lock();
        rt->unlock();
        m->unlock();
    });
    EXPECT_TRUE(cap.contains("WARNING: possible circular locking dependency detected"));
    EXPECT_TRUE(cap.contains("rt_mutex@"));
}

TEST_F(LockdepLocks, DowngradeWriteKeepsTheHold)
{
    auto sem = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    klock::report_capture cap;
    sem->down_write();
    sem->downgrade_write();
    EXPECT_TRUE(ld::lock_is_held(sem->dep_map(), 1)) << "held for read after the downgrade";
    sem->up_read();
    EXPECT_FALSE(ld::lock_is_held(sem->dep_map()));
    EXPECT_EQ(cap.count(), 0u);
}

struct test_ww_class : klock::ww_class_wound_wait {
    static constexpr const char* name = "test_ww_class";
};

TEST_F(LockdepLocks, WwMutexesOfOneClassNestUnderTheirContext)
{
    klock::ww_mutex<test_ww_class> a, b;
    klock::report_capture cap;
    {
        klock::ww_acquire_ctx ctx(test_ww_class{});
        ASSERT_EQ(a.lock(&ctx), 0);
        ASSERT_EQ(b.lock(&ctx), 0); // same class as a: allowed because ctx is the nest lock
        ctx.acquire_done();
        b.unlock();
        a.unlock();
        ctx.acquire_fini();
    }
    EXPECT_EQ(cap.count(), 0u);
    // Without a context the same nesting is recursive locking.
    a.lock();
    b.lock();
    b.unlock();
    a.unlock();
    EXPECT_TRUE(cap.contains("WARNING: possible recursive locking detected"));
}

TEST_F(LockdepLocks, SwitchedOffAtRunTimeReportsNothing)
{
    auto a = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto b = std::unique_ptr<klock::mutex>(new klock::mutex());
    klock::report_capture cap;
    ld::set_enabled(false);
    a->lock();
    b->lock();
    b->unlock();
    a->unlock();
    b->lock();
    a->lock();
    a->unlock();
    b->unlock();
    ld::set_enabled(true);
    EXPECT_EQ(cap.count(), 0u);
}

} // namespace

#else // !KLOCK_LOCKDEP

TEST(LockdepLocks, CompiledOut)
{
    GTEST_SKIP() << "lockdep is compiled out of klock's locks (configure with -DKLOCK_LOCKDEP=ON)";
}

#endif
