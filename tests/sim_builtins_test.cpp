// The built-in scenarios: each runs as it expects (finds exactly the bug it demonstrates), and
// the seeds' claims hold where the seeds put them.
#include <gtest/gtest.h>

#include <klock/sim/builtins.hpp>
#include <klock/sim/fiber.hpp>
#include <klock/sim/sim.hpp>

#include <set>
#include <string>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;

using klock::test::failures;

run_result run_builtin(const char* name) { return run(find_builtin(name)->make()); }

TEST(SimBuiltins, EveryOneRunsAsItExpects)
{
    std::set<std::string> names;
    for (const builtin& b : builtins()) {
        EXPECT_TRUE(names.insert(b.name).second) << "duplicate " << b.name;
        EXPECT_NE(std::string(b.summary), "");
        const scenario s = b.make();
        EXPECT_EQ(s.name, b.name);
        EXPECT_EQ(validate(s), "") << b.name;
        if (s.name == "stack-overflow" && !klock::sim::stack_use_visible())
            continue; // AddressSanitizer's fake stacks hold the frames
        const run_result r = run(s);
        EXPECT_TRUE(r.as_expected()) << b.name << "\n" << failures(r);
        for (const std::string& e : s.expect)
            EXPECT_NE(find_check(r, e.c_str()), nullptr) << b.name << " expects an unknown check " << e;
    }
    EXPECT_GE(names.size(), 11u);
    EXPECT_NE(find_builtin(main_job_mutex), nullptr);
    EXPECT_NE(find_builtin(main_job_rt_mutex), nullptr);
    EXPECT_EQ(find_builtin("no-such-scenario"), nullptr);
}

// seeds/000: the switch happens inside spin_unlock - right after the release, on L's CPU.
TEST(SimBuiltins, SpinUnlockSwitchesRightThere)
{
    const run_result r = run_builtin("switch-on-spin-unlock");
    const event* release = nullptr;
    const event* sw = nullptr;
    for (const event& e : r.events) {
        if (e.kind == event_kind::lock_release && e.task == 0)
            release = &e;
        if (e.kind == event_kind::sched_switch && e.task == 0 && e.task2 == 1 && sw == nullptr)
            sw = &e;
    }
    ASSERT_NE(release, nullptr);
    ASSERT_NE(sw, nullptr);
    EXPECT_GE(sw->t_ns, release->t_ns);
    EXPECT_LT(sw->t_ns - release->t_ns, 1000u); // the unlock's own few steps
    EXPECT_GT(sw->t_ns, 2000000u);              // not when H woke (1 ms): L held the spinlock
    EXPECT_EQ(sw->state, 'R');
}

// With interrupts off the reschedule waits for local_irq_enable(), after the region.
TEST(SimBuiltins, IrqsOffDeferTheSwitchPastTheRegion)
{
    const run_result r = run_builtin("no-switch-irqs-off");
    EXPECT_TRUE(r.passed()) << failures(r);
    const event* sw = nullptr;
    for (const event& e : r.events)
        if (e.kind == event_kind::sched_switch && e.task == 0 && e.task2 == 1 && sw == nullptr)
            sw = &e;
    ASSERT_NE(sw, nullptr);
    EXPECT_GE(sw->t_ns, 3000000u); // after the 2 ms critical section and the 1 ms after it
}

// seeds/000: mutex_unlock wakes H; H runs at once, inside the unlock.
TEST(SimBuiltins, MutexUnlockWakesAndSwitches)
{
    const run_result r = run_builtin("switch-on-mutex-unlock");
    const event* wake = nullptr;
    const event* sw = nullptr;
    for (const event& e : r.events) {
        if (e.kind == event_kind::sched_wakeup && e.task == 1 && e.task2 == 0)
            wake = &e;
        if (e.kind == event_kind::sched_switch && e.task == 0 && e.task2 == 1 && wake != nullptr && sw == nullptr)
            sw = &e;
    }
    ASSERT_NE(wake, nullptr) << "L's unlock should wake H";
    ASSERT_NE(sw, nullptr);
    EXPECT_LT(sw->t_ns - wake->t_ns, 2000u);
    const check_result* c = find_check(r, "no task switch");
    EXPECT_NE(c->report.find("in mutex_unlock(M): wake-up preemption"), std::string::npos) << c->report;
}

TEST(SimBuiltins, IrqSafetyNamesTheInterruptedContext)
{
    const run_result r = run_builtin("irq-safety");
    const std::string& rep = find_check(r, "deadlock")->report;
    EXPECT_NE(rep.find("A/101 in hardirq [CPU#0] waits for L (spinlock), held by A/101"), std::string::npos) << rep;
    EXPECT_NE(rep.find("was interrupted by A/101 in hardirq, which must return first"), std::string::npos) << rep;
    // The handler ran on the interrupted task, in hardirq context.
    bool entry = false;
    for (const event& e : r.events)
        entry = entry || (e.kind == event_kind::irq_entry && e.task == 0 && e.irq == 0);
    EXPECT_TRUE(entry);
}

TEST(SimBuiltins, StackOverflowIsFoundAtASwitch)
{
    if (!klock::sim::stack_use_visible())
        GTEST_SKIP() << "AddressSanitizer's fake stacks hold the frames";
    const run_result r = run_builtin("stack-overflow");
    EXPECT_EQ(r.stop_reason, "stack overflow");
    EXPECT_GE(r.tasks[0].stack_used, r.tasks[0].stack_size);
    EXPECT_EQ(r.tasks[0].stack_size, 16u * 1024);
}

} // namespace
