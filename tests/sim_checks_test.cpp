// Every check of a simulator run fires on a scenario that has the bug and stays quiet on a
// correct one.
#include <gtest/gtest.h>

#include <klock/sim/build.hpp>
#include <klock/sim/builtins.hpp>
#include <klock/sim/fiber.hpp>
#include <klock/sim/sim.hpp>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;
using namespace klock::sim::build;

using klock::test::failures;

// The check of that name failed, with a report containing `text`; every other check passed.
void expect_only(const run_result& r, const char* check, const char* text)
{
    for (const check_result& c : r.checks) {
        if (c.name == check) {
            EXPECT_FALSE(c.passed) << check << " did not fire\n" << failures(r);
            EXPECT_NE(c.report.find(text), std::string::npos) << c.report;
        } else {
            EXPECT_TRUE(c.passed) << c.name << " fired too\n" << failures(r);
        }
    }
}

// Exactly these checks failed.
void expect_failed(const run_result& r, std::initializer_list<std::string_view> names)
{
    for (const check_result& c : r.checks) {
        const bool want = std::find(names.begin(), names.end(), c.name) != names.end();
        EXPECT_EQ(c.passed, !want) << c.name << (want ? " did not fire\n" : " fired too\n") << failures(r);
    }
}

void expect_clean(const run_result& r) { EXPECT_TRUE(r.passed()) << failures(r); }

run_result run_builtin(const char* name, options o = {})
{
    const builtin* b = find_builtin(name);
    EXPECT_NE(b, nullptr) << name;
    return run(b->make(), o);
}

TEST(SimChecks, EveryRunReportsEveryCheck)
{
    scenario s;
    add_task(s, "A", policy::other, 0, {work(10)});
    const run_result r = run(s);
    ASSERT_EQ(r.checks.size(), std::size(check_names));
    for (std::size_t i = 0; i < r.checks.size(); ++i) {
        EXPECT_EQ(r.checks[i].name, check_names[i]);
        EXPECT_TRUE(r.checks[i].passed);
        EXPECT_TRUE(r.checks[i].report.empty());
    }
}

// A ticket lock whose spin_lock does not advance `next` (a planted bug): two tasks get in.
TEST(SimChecks, MutualExclusion)
{
    scenario s;
    s.cpus = 2;
    const int T = add_lock(s, "T", lock_type::ticket_spinlock);
    add_task(s, "A", policy::other, 0, {lock(T), work(us(50)), unlock(T)}).affinity = cpu(0);
    add_task(s, "B", policy::other, 0, {lock(T), work(us(50)), unlock(T)}).affinity = cpu(1);
    expect_clean(run(s));
    options o;
    o.planted = fault::ticket_no_next;
    const run_result r = run(s, o);
    const check_result* me = find_check(r, "mutual exclusion");
    EXPECT_FALSE(me->passed) << failures(r);
    EXPECT_NE(me->report.find("BUG: mutual exclusion violated: "), std::string::npos);
    EXPECT_NE(me->report.find(" acquired T while "), std::string::npos) << me->report;
}

TEST(SimChecks, DeadlockPrintsTheCycle)
{
    const run_result r = run_builtin("abba");
    // lockdep saw the inverted order first (lockdep_test below checks its report).
    expect_failed(r, {"deadlock", "lockdep"});
    const std::string& rep = find_check(r, "deadlock")->report;
    EXPECT_NE(rep.find("BUG: deadlock: wait-for cycle\n"), std::string::npos) << rep;
    EXPECT_NE(rep.find("A/101 [CPU#0] waits for L2 (mutex), held by B/102"), std::string::npos) << rep;
    EXPECT_NE(rep.find("B/102 [CPU#1] waits for L1 (mutex), held by A/101"), std::string::npos) << rep;
    EXPECT_EQ(r.stop_reason, "deadlock");
    // The same tasks taking the locks in one order: no deadlock.
    scenario s = find_builtin("abba")->make();
    std::swap(s.tasks[1].steps[0], s.tasks[1].steps[2]);
    std::swap(s.tasks[1].steps[3], s.tasks[1].steps[4]);
    expect_clean(run(s));
}

TEST(SimChecks, DeadlockOfSpinningTasks)
{
    scenario s;
    s.cpus = 2;
    const int L1 = add_lock(s, "L1", lock_type::spinlock);
    const int L2 = add_lock(s, "L2", lock_type::ticket_spinlock);
    add_task(s, "A", policy::other, 0, {lock(L1), work(us(100)), lock(L2), unlock(L2), unlock(L1)}).affinity = cpu(0);
    add_task(s, "B", policy::other, 0, {lock(L2), work(us(100)), lock(L1), unlock(L1), unlock(L2)}).affinity = cpu(1);
    const run_result r = run(s);
    EXPECT_FALSE(find_check(r, "deadlock")->passed) << failures(r);
    EXPECT_NE(
        find_check(r, "deadlock")->report.find("waits for L2 (ticket_spinlock), held by B/102"), std::string::npos);
    EXPECT_LT(r.end_ns, 1000 * ms(1)); // found without waiting for the watchdog
}

// A mutex unlock that forgets its wakeup (planted): the waiter sleeps forever on a free lock.
TEST(SimChecks, LostWakeup)
{
    scenario s;
    s.cpus = 2;
    const int M = add_lock(s, "M", lock_type::mutex);
    add_task(s, "H", policy::other, 0, {lock(M), work(ms(2)), unlock(M)}).affinity = cpu(0);
    task_spec& w = add_task(s, "W", policy::other, 0, {lock(M), unlock(M)});
    w.affinity = cpu(1);
    w.start_ns = us(100);
    expect_clean(run(s));
    options o;
    o.planted = fault::mutex_lost_wakeup;
    const run_result r = run(s, o);
    expect_only(r, "lost wakeup", "BUG: lost wakeup: W/102 sleeps in mutex_lock(M), but M is free");
    EXPECT_EQ(r.stop_reason, "lost wakeup");
}

TEST(SimChecks, SoftLockup)
{
    scenario s;
    s.cpus = 2;
    s.soft_lockup_ns = ms(100);
    s.time_limit_ns = 1000 * ms(1);
    const int L = add_lock(s, "L", lock_type::spinlock);
    add_task(s, "A", policy::other, 0, {lock(L), work(ms(300)), unlock(L)}).affinity = cpu(0);
    const run_result r = run(s);
    expect_only(r, "soft lockup", "watchdog: BUG: soft lockup - CPU#0 stuck for 0s! [A:101]");
    EXPECT_EQ(r.stop_reason, "soft lockup");
    EXPECT_GE(r.end_ns, ms(100));
    EXPECT_LT(r.end_ns, ms(110));
    // Held for less than the threshold: quiet.
    s.tasks[0].steps[1] = work(ms(50));
    expect_clean(run(s));
    // Preemptible work for longer than the threshold: the watchdog thread could run, quiet.
    s.tasks[0].steps = {work(ms(300))};
    expect_clean(run(s));
}

TEST(SimChecks, SoftLockupOfASpinlockWaiterBuiltin)
{
    const run_result r = run_builtin("soft-lockup");
    EXPECT_TRUE(r.as_expected()) << failures(r);
    const std::string& rep = find_check(r, "soft lockup")->report;
    EXPECT_NE(rep.find("watchdog: BUG: soft lockup - CPU#"), std::string::npos) << rep;
    EXPECT_NE(rep.find(" stuck for 2s! ["), std::string::npos) << rep;
    EXPECT_NE(
        find_check(r, "lock bug")->report.find("BUG: spinlock lockup suspected on CPU#1, B/102"), std::string::npos);
}

TEST(SimChecks, HardLockupWithInterruptsOff)
{
    scenario s;
    s.cpus = 1;
    s.soft_lockup_ns = ms(50);
    add_task(s, "A", policy::other, 0, {irq_disable(), work(ms(100)), irq_enable()});
    const run_result r = run(s);
    expect_only(r, "soft lockup", "NMI watchdog: Watchdog detected hard LOCKUP on cpu 0");
}

TEST(SimChecks, PriorityInversionWithItsDuration)
{
    const run_result r = run_builtin(main_job_mutex);
    expect_only(r, "priority inversion",
        "priority inversion: A/102 (prio 90) waited for L, held by C/101 (prio 10),\n while B/103 (prio 50) ran on "
        "CPU#0 instead of C, for 200.");
    const std::string& rep = find_check(r, "priority inversion")->report;
    EXPECT_NE(rep.find("for 200."), std::string::npos) << rep;
    expect_clean(run_builtin(main_job_rt_mutex));
}

TEST(SimChecks, NoTaskSwitchRegion)
{
    expect_only(run_builtin("switch-on-spin-unlock"), "no task switch",
        "BUG: task switch inside a no-task-switch region: L/101 -> H/102 on CPU#0 in spin_unlock(S): preempt_enable() "
        "rescheduled");
    expect_only(run_builtin("switch-on-mutex-unlock"), "no task switch",
        "L/101 -> H/102 on CPU#0 in mutex_unlock(M): wake-up preemption");
    expect_clean(run_builtin("no-switch-irqs-off"));
}

TEST(SimChecks, StackOverflow)
{
    if (!klock::sim::stack_use_visible())
        GTEST_SKIP() << "AddressSanitizer's fake stacks hold the frames";
    const run_result r = run_builtin("stack-overflow");
    expect_only(r, "stack overflow",
        "Kernel panic - not syncing: corrupted stack end detected inside scheduler\n A/101: "
        "STACK_END_MAGIC (0x57ac6e9d) at the end of its 16384-byte stack was overwritten");
    EXPECT_EQ(r.stop_reason, "stack overflow");
    EXPECT_FALSE(r.tasks[0].exited);
    // The same recursion in a stack big enough.
    scenario s = find_builtin("stack-overflow")->make();
    s.tasks[0].stack_size = 64 * 1024;
    const run_result ok = run(s);
    expect_clean(ok);
    EXPECT_GT(ok.tasks[0].stack_used, 18u * 1024);
}

// A `recurse` step's frames take their size, not the compiler's frame size for the call, so a
// scenario's stack use (and whether it overflows) is the same in every build.
TEST(SimChecks, RecurseFramesTakeTheirSize)
{
    if (!klock::sim::stack_use_visible())
        GTEST_SKIP() << "AddressSanitizer's fake stacks hold the frames";
    auto used = [](std::vector<step> steps) {
        scenario s;
        s.cpus = 1;
        add_task(s, "A", policy::other, 0, std::move(steps)).stack_size = 32 * 1024;
        const run_result r = run(s);
        EXPECT_TRUE(r.passed()) << failures(r);
        return r.tasks[0].stack_used;
    };
    // Twenty more frames of 128 bytes (smaller than the call's own frame in a sanitizer build)
    // and ten more of 1 KiB: exactly that much more stack, give or take alignment.
    const auto more_small = static_cast<long>(used({recurse(40, 128)}) - used({recurse(20, 128)}));
    const auto more_large = static_cast<long>(used({recurse(20, 1024)}) - used({recurse(10, 1024)}));
    EXPECT_NEAR(more_small, 20 * 128, 64); // stack_used is in unscaled bytes
    EXPECT_NEAR(more_large, 10 * 1024, 64);
}

TEST(SimChecks, LockBugsFromKlockItself)
{
    const run_result aa = run_builtin("aa");
    EXPECT_TRUE(aa.as_expected()) << failures(aa);
    const std::string& rep = find_check(aa, "lock bug")->report;
    EXPECT_NE(rep.find("BUG: spinlock recursion on CPU#0, A/101\n lock: L, .owner: A/101"), std::string::npos) << rep;
    EXPECT_EQ(rep.find("Call Trace"), std::string::npos); // stack traces differ between runs: dropped
    EXPECT_EQ(rep.find("0x"), std::string::npos);         // so do addresses

    // Unlocking an unlocked mutex, and a mutex taken inside a spinlock (might_sleep).
    scenario s;
    s.cpus = 1;
    const int M = add_lock(s, "M", lock_type::mutex);
    const int S = add_lock(s, "S", lock_type::spinlock);
    add_task(s, "A", policy::other, 0, {unlock(M), lock(S), lock(M), unlock(M), unlock(S), sleep_for(10)});
    const run_result r = run(s);
    const std::string& bugs = find_check(r, "lock bug")->report;
    EXPECT_NE(bugs.find("BUG: mutex already unlocked on CPU#0, A/101"), std::string::npos) << bugs;
    EXPECT_NE(bugs.find("BUG: sleeping function called from invalid context at "), std::string::npos) << bugs;
    EXPECT_NE(bugs.find("in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 101, name: A"), std::string::npos)
        << bugs;

    scenario z;
    z.cpus = 1;
    const int Z = add_lock(z, "Z", lock_type::spinlock);
    add_task(z, "A", policy::other, 0, {lock(Z), sleep_for(us(10)), unlock(Z)});
    const run_result zr = run(z);
    EXPECT_NE(
        find_check(zr, "lock bug")->report.find("BUG: scheduling while atomic: A/101/0x00000001"), std::string::npos)
        << failures(zr);
}

// Without MUTEX_FLAG_HANDOFF (planted) a woken waiter keeps losing the mutex to the tasks that
// keep taking it; with it, the second wakeup hands it over.
TEST(SimChecks, StarvationWithoutHandoff)
{
    scenario s;
    s.cpus = 3;
    const int M = add_lock(s, "M", lock_type::mutex);
    for (int i = 0; i < 2; ++i)
        add_task(s, i == 0 ? "X" : "Y", policy::other, 0,
            {loop(30), lock(M), work(us(40)), unlock(M), work(100), end_loop()})
            .affinity
            = cpu(static_cast<unsigned>(i));
    task_spec& w = add_task(s, "W", policy::other, 0, {sleep_for(us(50)), lock(M), unlock(M)});
    w.affinity = cpu(2);
    expect_clean(run(s));
    options o;
    o.planted = fault::mutex_no_handoff;
    const run_result r = run(s, o);
    expect_only(r, "starvation", "starvation: W/103 was woken 3 times in mutex_lock(M)");
}

} // namespace
