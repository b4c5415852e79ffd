// lockdep on simulated tasks (src/sim/lockdep.cpp): the engine sees the scripts' lock operations
// in the tasks' simulated irq contexts, proves lock-order and irq-safety bugs that the run itself
// did not hit, stays silent on the correct twin of each, and reports in scenario terms (script
// steps, simulated CPUs), the same in every run.
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/sim/build.hpp>
#include <klock/sim/builtins.hpp>
#include <klock/sim/sim.hpp>

#include <string>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;
using namespace klock::sim::build;

using klock::test::failures;

// lockdep failed (and nothing else did); its report.
std::string lockdep_only(const run_result& r)
{
    for (const check_result& c : r.checks) {
        if (c.name != "lockdep") {
            EXPECT_TRUE(c.passed) << c.name << " fired\n" << failures(r);
        }
    }
    const check_result* ld = find_check(r, "lockdep");
    EXPECT_NE(ld, nullptr);
    if (ld == nullptr)
        return {};
    EXPECT_FALSE(ld->passed) << "lockdep did not fire";
    return ld->report;
}

void expect_clean(const run_result& r) { EXPECT_TRUE(r.passed()) << failures(r); }

bool has(const std::string& text, const char* needle) { return text.find(needle) != std::string::npos; }

// A task takes L, and a handler of `irq` takes L at another time (never during the task's hold).
// `task_steps` wraps the task's critical section.
scenario irq_and_task(
    bool softirq, std::vector<step> task_steps, lock_type t = lock_type::spinlock, bool irq_reads = false)
{
    scenario s;
    s.name = "irq-and-task";
    s.cpus = 1;
    s.time_limit_ns = ms(50);
    const int L = add_lock(s, "L", t);
    irq_spec& is = add_irq(
        s, "dev", 0, {irq_reads ? lock_read(L) : lock(L), work(us(5)), irq_reads ? unlock_read(L) : unlock(L)});
    is.softirq = softirq;
    is.at_ns = ms(3);
    for (step& st : task_steps)
        if (st.lock == -2)
            st.lock = L;
    task_steps.push_back(work(ms(5)));
    add_task(s, "A", policy::other, 0, task_steps);
    return s;
}

step on_l(step st)
{
    st.lock = -2; // irq_and_task fills in L
    return st;
}

TEST(SimLockdep, LatentAbbaIsProvenWithoutADeadlock)
{
    const run_result r = run(find_builtin("lockdep-abba")->make());
    EXPECT_EQ(r.stop_reason, "all tasks exited");
    const std::string rep = lockdep_only(r);
    EXPECT_TRUE(has(rep, "WARNING: possible circular locking dependency detected\n")) << rep;
    EXPECT_TRUE(has(rep, "B/102 is trying to acquire lock:\n")) << rep;
    EXPECT_TRUE(has(rep, " (L1){+.+.}, at: B: mutex_lock(L1) at step 3\n")) << rep;
    EXPECT_TRUE(has(rep, " (L2){+.+.}, at: B: mutex_lock(L2) at step 1\n")) << rep;
    // The other half of the cycle, with the stack A had when it made that dependency.
    EXPECT_TRUE(has(rep, "-> #1 (L2){+.+.}:\n       A: mutex_lock(L2) at step 3\n       A (task)\n")) << rep;
    // B runs on simulated CPU#1.
    EXPECT_TRUE(has(rep, "CPU: 1 PID: 102 Comm: B\n")) << rep;

    // The same tasks taking the locks in one order: silent.
    scenario s = find_builtin("lockdep-abba")->make();
    std::swap(s.tasks[1].steps[0], s.tasks[1].steps[2]);
    std::swap(s.tasks[1].steps[3], s.tasks[1].steps[4]);
    s.expect.clear();
    expect_clean(run(s));
}

TEST(SimLockdep, ReportsBeforeTheDeadlockHappens)
{
    const run_result r = run(find_builtin("abba")->make());
    const check_result* ld = find_check(r, "lockdep");
    const check_result* dl = find_check(r, "deadlock");
    ASSERT_NE(ld, nullptr);
    ASSERT_NE(dl, nullptr);
    ASSERT_FALSE(ld->passed);
    ASSERT_FALSE(dl->passed);
    EXPECT_LE(ld->t_ns, dl->t_ns);
}

TEST(SimLockdep, SameReportInEveryRun)
{
    // Each run starts from an empty graph (a second run is not silenced as a repeat) and prints
    // only simulated names and addresses.
    const std::string a = lockdep_only(run(find_builtin("lockdep-abba")->make()));
    const std::string b = lockdep_only(run(find_builtin("lockdep-abba")->make()));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b);
    EXPECT_TRUE(has(a, "ffff888000100000 (L1)")) << a;
}

TEST(SimLockdep, HardirqInversionWithTheHandlerStack)
{
    const run_result r = run(find_builtin("lockdep-irq")->make());
    EXPECT_EQ(r.stop_reason, "all tasks exited");
    const std::string rep = lockdep_only(r);
    EXPECT_TRUE(has(rep, "inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage.\n")) << rep;
    EXPECT_TRUE(has(rep, "A/101 [HC1[1]:SC0[0]:HE0:SE1] takes:\n")) << rep;
    EXPECT_TRUE(has(rep, "{HARDIRQ-ON-W} state was registered at:\n  A: spin_lock(L) at step 1\n")) << rep;
    // The handler's step, the handler, then where the task was interrupted.
    EXPECT_TRUE(has(rep, " dev: spin_lock(L) at step 1\n dev (hardirq handler)\n A: work at step 4\n A (task)\n"))
        << rep;
}

TEST(SimLockdep, IrqSafeTwinsAreSilent)
{
    // spin_lock_irqsave in the task.
    expect_clean(run(irq_and_task(false, {on_l(lock_irqsave(0)), work(ms(1)), on_l(unlock_irqrestore(0))})));
    // local_irq_disable around spin_lock.
    expect_clean(run(irq_and_task(false, {irq_disable(), on_l(lock(0)), work(ms(1)), on_l(unlock(0)), irq_enable()})));
}

TEST(SimLockdep, IrqsOnWhileHeldIsCaughtAtTheEnable)
{
    // Taken with interrupts off, but they are turned back on while it is held: the enable marks
    // the held lock HARDIRQ-ON.
    const std::string rep = lockdep_only(
        run(irq_and_task(false, {irq_disable(), on_l(lock(0)), irq_enable(), work(ms(1)), on_l(unlock(0))})));
    EXPECT_TRUE(has(rep, "inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage.\n")) << rep;
}

TEST(SimLockdep, SoftirqInversionAndItsBhDisabledTwin)
{
    const std::string rep = lockdep_only(run(irq_and_task(true, {on_l(lock(0)), work(ms(1)), on_l(unlock(0))})));
    EXPECT_TRUE(has(rep, "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.\n")) << rep;
    EXPECT_TRUE(has(rep, "[HC0[0]:SC1[1]:HE1:SE0] takes:\n")) << rep;
    EXPECT_TRUE(has(rep, "dev (softirq handler)")) << rep;
    expect_clean(run(irq_and_task(true, {bh_disable(), on_l(lock(0)), work(ms(1)), on_l(unlock(0)), bh_enable()})));
}

TEST(SimLockdep, RwlockReadersInHardirqAreRecursive)
{
    // read_lock in the handler and read_lock in the task with interrupts on: a queued rwlock's
    // reader in interrupt context never waits for a queued writer, so this cannot deadlock.
    expect_clean(run(irq_and_task(
        false, {on_l(lock_read(0)), work(ms(1)), on_l(unlock_read(0))}, lock_type::rwlock, /*irq_reads=*/true)));
    // write_lock in the task with interrupts on: the handler's reader would spin on it.
    const std::string rep = lockdep_only(
        run(irq_and_task(false, {on_l(lock(0)), work(ms(1)), on_l(unlock(0))}, lock_type::rwlock, true)));
    EXPECT_TRUE(has(rep, "inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-R} usage.\n")) << rep;
}

TEST(SimLockdep, TaskExitingWithALockHeld)
{
    scenario s;
    s.cpus = 1;
    s.time_limit_ns = ms(10);
    const int M = add_lock(s, "M", lock_type::mutex);
    add_task(s, "A", policy::other, 0, {lock(M), work(us(10))});
    const std::string rep = lockdep_only(run(s));
    EXPECT_TRUE(has(rep, "WARNING: A/101 still has locks held!\n")) << rep;
    EXPECT_TRUE(has(rep, "1 lock held by A/101:\n #0: ffff888000100000 (M){+.+.}, at: A: mutex_lock(M) at step 1\n"))
        << rep;
}

TEST(SimLockdep, StepsOfAFileAreCitedByFileAndLine)
{
    scenario s = find_builtin("lockdep-abba")->make();
    s.file = "/some/dir/abba.scn";
    s.tasks[1].steps[2].line = 17;
    const std::string rep = lockdep_only(run(s));
    EXPECT_TRUE(has(rep, " (L1){+.+.}, at: B: mutex_lock(L1) at abba.scn:17\n")) << rep;
}

TEST(SimLockdep, TheProcessEngineIsUsableAfterARun)
{
    (void)run(find_builtin("lockdep-abba")->make());
    // The run reset the engine when it ended: validation is on and no simulated class is left.
    EXPECT_TRUE(klock::lockdep::enabled());
    EXPECT_EQ(klock::lockdep::get_stats().lock_classes, 0u);
}

} // namespace
