// The simulator's machine: CPUs, virtual time, the scheduler, preemption and interrupts, with
// klock's real locks over the sim Env.
#include <gtest/gtest.h>

#include <klock/sim/build.hpp>
#include <klock/sim/sim.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;
using namespace klock::sim::build;

// The whole event log as text: what "byte-identical" compares.
std::string serialize(const run_result& r)
{
    std::string s;
    for (const event& e : r.events) {
        char b[200];
        std::snprintf(b, sizeof b, "%llu %d %d %d %d %d %d %d %d %lld %c %llx ",
            static_cast<unsigned long long>(e.t_ns), static_cast<int>(e.kind), e.cpu, e.task, e.task2, e.lock, e.irq,
            e.prio, e.prio2, static_cast<long long>(e.value), e.state, static_cast<unsigned long long>(e.word));
        s += b;
        s += e.text;
        s += '\n';
    }
    return s;
}

using klock::test::failures;

std::vector<const event*> find(const run_result& r, event_kind k, int task = -2, int cpu = -2)
{
    std::vector<const event*> v;
    for (const event& e : r.events)
        if (e.kind == k && (task == -2 || e.task == task) && (cpu == -2 || e.cpu == cpu))
            v.push_back(&e);
    return v;
}

// The first switch on any CPU from `from` to `to`.
const event* first_switch(const run_result& r, int from, int to)
{
    for (const event& e : r.events)
        if (e.kind == event_kind::sched_switch && e.task == from && e.task2 == to)
            return &e;
    return nullptr;
}

TEST(SimMachine, OneTaskWorksAndExits)
{
    scenario s;
    s.cpus = 1;
    add_task(s, "A", policy::other, 0, {work(ms(3))});
    const run_result r = run(s);
    EXPECT_TRUE(r.passed()) << failures(r);
    EXPECT_EQ(r.stop_reason, "all tasks exited");
    ASSERT_EQ(r.tasks.size(), 2u); // A and swapper/0
    EXPECT_TRUE(r.tasks[0].exited);
    EXPECT_GE(r.tasks[0].run_ns, ms(3));
    EXPECT_LT(r.tasks[0].run_ns, ms(3) + us(50));
    EXPECT_GE(r.end_ns, ms(3));
    EXPECT_EQ(find(r, event_kind::task_exit, 0).size(), 1u);
}

TEST(SimMachine, EachCpuHasAnIdleTaskSwapper)
{
    scenario s;
    s.cpus = 3;
    add_task(s, "A", policy::other, 0, {work(us(10))});
    const run_result r = run(s);
    ASSERT_EQ(r.tasks.size(), 4u);
    for (unsigned c = 0; c < 3; ++c) {
        const task_record& t = r.tasks[1 + c];
        EXPECT_TRUE(t.idle);
        EXPECT_EQ(t.pid, 0);
        EXPECT_EQ(t.comm, "swapper/" + std::to_string(c));
    }
    EXPECT_FALSE(r.tasks[0].idle);
    EXPECT_NE(r.tasks[0].pid, 0);
}

TEST(SimMachine, ValidationRejectsWhatCannotRun)
{
    scenario s;
    s.cpus = 1;
    const int M = add_lock(s, "M", lock_type::mutex);
    add_task(s, "A", policy::other, 0, {lock_read(M)});
    EXPECT_NE(validate(s).find("rwlock or rw_semaphore"), std::string::npos) << validate(s);
    EXPECT_THROW(run(s), std::invalid_argument);
    s.tasks[0].steps = {loop(2), work(1)};
    EXPECT_NE(validate(s).find("loop without end_loop"), std::string::npos);
    s.tasks[0].steps = {lock(M), unlock(M)};
    s.tasks[0].affinity = cpu(3);
    EXPECT_NE(validate(s).find("affinity"), std::string::npos);
    s.tasks[0].affinity = cpu(0);
    EXPECT_EQ(validate(s), "");
    s.cpus = 65;
    EXPECT_NE(validate(s), "");
}

// A scenario with contention, ties between CPUs, interrupts and several lock types.
scenario busy()
{
    scenario s;
    s.cpus = 4;
    const int M = add_lock(s, "M", lock_type::mutex);
    const int S = add_lock(s, "S", lock_type::spinlock);
    add_irq(s, "dev", 1, {lock(S), work(us(2)), unlock(S)}).period_ns = us(300);
    for (int i = 0; i < 6; ++i)
        add_task(s, "T" + std::to_string(i), i < 2 ? policy::fifo : policy::other, 10 + i,
            {loop(15), lock(M), work(us(5)), unlock(M), lock_irqsave(S), work(us(1)), unlock_irqrestore(S),
                end_loop()});
    s.time_limit_ns = ms(50);
    return s;
}

TEST(SimMachine, SameSeedGivesAByteIdenticalEventLog)
{
    options o;
    o.seed = 7;
    const run_result a = run(busy(), o);
    const run_result b = run(busy(), o);
    EXPECT_TRUE(a.passed()) << failures(a);
    EXPECT_EQ(a.stop_reason, "all tasks exited");
    ASSERT_GT(a.events.size(), 100u);
    EXPECT_EQ(serialize(a), serialize(b));
    EXPECT_EQ(a.steps, b.steps);
    // Another seed breaks the ties between CPUs differently.
    o.seed = 8;
    const run_result c = run(busy(), o);
    EXPECT_TRUE(c.passed()) << failures(c);
    EXPECT_NE(serialize(a), serialize(c));
}

TEST(SimMachine, EventLogIsInTimeOrder)
{
    const run_result r = run(busy());
    for (std::size_t i = 1; i < r.events.size(); ++i)
        ASSERT_LE(r.events[i - 1].t_ns, r.events[i].t_ns) << "event " << i;
}

// Two CPUs hammer one ticket lock: CPUs interleave at atomic granularity, so the lock changes
// hands between them many times (a machine that ran one CPU to completion would show one
// hand-over).
TEST(SimMachine, CpusInterleaveAtAtomicGranularity)
{
    scenario s;
    s.cpus = 2;
    const int T = add_lock(s, "T", lock_type::ticket_spinlock);
    add_task(s, "A", policy::other, 0, {loop(40), lock(T), work(100), unlock(T), end_loop()}).affinity = cpu(0);
    add_task(s, "B", policy::other, 0, {loop(40), lock(T), work(100), unlock(T), end_loop()}).affinity = cpu(1);
    const run_result r = run(s);
    EXPECT_TRUE(r.passed()) << failures(r);
    int handovers = 0, last = -1;
    for (const event* e : find(r, event_kind::lock_acquired)) {
        if (last >= 0 && e->task != last)
            ++handovers;
        last = e->task;
    }
    EXPECT_GT(handovers, 30);
    // Both CPUs make progress over the same stretch of virtual time.
    const auto a = find(r, event_kind::lock_acquired, 0);
    const auto b = find(r, event_kind::lock_acquired, 1);
    ASSERT_EQ(a.size(), 40u);
    ASSERT_EQ(b.size(), 40u);
    EXPECT_LT(a.front()->t_ns, b.back()->t_ns);
    EXPECT_LT(b.front()->t_ns, a.back()->t_ns);
}

TEST(SimMachine, RtWakeupPreemptsAtOnce)
{
    scenario s;
    s.cpus = 1;
    add_task(s, "L", policy::fifo, 10, {work(ms(3))});
    add_task(s, "H", policy::fifo, 50, {work(ms(1))}).start_ns = ms(1);
    const run_result r = run(s);
    const event* sw = first_switch(r, 0, 1);
    ASSERT_NE(sw, nullptr) << failures(r);
    EXPECT_GE(sw->t_ns, ms(1));
    EXPECT_LT(sw->t_ns, ms(1) + us(20));
    EXPECT_EQ(sw->state, 'R'); // preempted, still runnable
    EXPECT_EQ(sw->prio, 89);   // kernel numbering: 99 - 10
    EXPECT_EQ(sw->prio2, 49);
    EXPECT_NEAR(static_cast<double>(r.tasks[0].wait_ns), static_cast<double>(ms(1)), static_cast<double>(us(20)));
}

// preemptible() is preempt_count == 0 && interrupts on: a wake-up inside preempt_disable()
// switches only at preempt_enable(), the seeds' task switch on unlock.
TEST(SimMachine, PreemptDisableDefersTheSwitchToPreemptEnable)
{
    scenario s;
    s.cpus = 1;
    add_task(s, "L", policy::fifo, 10, {preempt_disable(), work(ms(2)), preempt_enable(), work(ms(1))});
    add_task(s, "H", policy::fifo, 50, {work(ms(1))}).start_ns = ms(1);
    const run_result r = run(s);
    const event* sw = first_switch(r, 0, 1);
    ASSERT_NE(sw, nullptr);
    EXPECT_GE(sw->t_ns, ms(2));
    EXPECT_LT(sw->t_ns, ms(2) + us(20));
}

TEST(SimMachine, InterruptsWaitWhileDisabled)
{
    scenario s;
    s.cpus = 1;
    add_irq(s, "dev", 0, {work(us(10))}).at_ns = ms(1);
    add_task(s, "A", policy::other, 0, {irq_disable(), work(ms(2)), irq_enable(), work(ms(1))});
    const run_result r = run(s);
    const auto entry = find(r, event_kind::irq_entry);
    const auto exit = find(r, event_kind::irq_exit);
    ASSERT_EQ(entry.size(), 1u);
    ASSERT_EQ(exit.size(), 1u);
    EXPECT_GE(entry[0]->t_ns, ms(2)); // delivered by local_irq_enable()
    EXPECT_LT(entry[0]->t_ns, ms(2) + us(20));
    EXPECT_EQ(entry[0]->task, 0); // hardirq context on the interrupted task
    EXPECT_EQ(entry[0]->irq, 0);
    EXPECT_GE(exit[0]->t_ns - entry[0]->t_ns, us(10));
}

TEST(SimMachine, InterruptsArriveOnTimeWhenEnabled)
{
    scenario s;
    s.cpus = 1;
    add_irq(s, "dev", 0, {work(us(10))}).at_ns = ms(1);
    add_task(s, "A", policy::other, 0, {work(ms(2))});
    const run_result r = run(s);
    const auto entry = find(r, event_kind::irq_entry);
    ASSERT_EQ(entry.size(), 1u);
    EXPECT_GE(entry[0]->t_ns, ms(1));
    EXPECT_LT(entry[0]->t_ns, ms(1) + us(2));
    // The handler's time is not the task's work: the task ends later by that much.
    EXPECT_GE(r.tasks[0].run_ns, ms(2) + us(10));
}

TEST(SimMachine, FairTasksShareACpuByTheTick)
{
    scenario s;
    s.cpus = 1;
    add_task(s, "A", policy::other, 0, {work(ms(20))});
    add_task(s, "B", policy::other, 0, {work(ms(20))});
    const run_result r = run(s);
    EXPECT_GE(find(r, event_kind::sched_switch).size(), 6u); // time-sliced, not run to completion
    EXPECT_GT(r.tasks[0].wait_ns, ms(5));
    EXPECT_GT(r.tasks[1].wait_ns, ms(5));
    EXPECT_GE(r.end_ns, ms(40));
}

TEST(SimMachine, RoundRobinRotatesFifoDoesNot)
{
    for (policy p : {policy::rr, policy::fifo}) {
        scenario s;
        s.cpus = 1;
        s.rr_timeslice_ns = ms(10);
        add_task(s, "A", p, 10, {work(ms(30))});
        add_task(s, "B", p, 10, {work(ms(30))});
        const run_result r = run(s);
        int a_to_b = 0;
        for (const event* e : find(r, event_kind::sched_switch))
            a_to_b += e->task == 0 && e->task2 == 1;
        if (p == policy::rr)
            EXPECT_GE(a_to_b, 2) << "SCHED_RR";
        else
            EXPECT_EQ(a_to_b, 1) << "SCHED_FIFO";
    }
}

TEST(SimMachine, AffinityIsHonoured)
{
    scenario s;
    s.cpus = 4;
    for (int i = 0; i < 4; ++i)
        add_task(s, "T" + std::to_string(i), policy::other, 0, {loop(5), work(us(300)), sleep_for(us(100)), end_loop()})
            .affinity
            = cpu(2);
    const run_result r = run(s);
    for (const event* e : find(r, event_kind::sched_switch)) {
        if (e->task2 < 4) {
            EXPECT_EQ(e->cpu, 2);
        }
    }
}

TEST(SimMachine, SleepBlocksForItsTime)
{
    scenario s;
    s.cpus = 1;
    add_task(s, "A", policy::other, 0, {sleep_for(ms(5)), work(us(10))});
    const run_result r = run(s);
    EXPECT_GE(r.tasks[0].blocked_ns, ms(5));
    EXPECT_LT(r.tasks[0].blocked_ns, ms(5) + us(20));
    const auto sw = find(r, event_kind::sched_switch, 0);
    ASSERT_FALSE(sw.empty());
    EXPECT_EQ(sw[0]->state, 'S');
}

TEST(SimMachine, TimeLimitStopsARunaway)
{
    scenario s;
    s.cpus = 1;
    s.time_limit_ns = ms(20);
    add_task(s, "A", policy::other, 0, {loop(0), work(ms(1)), end_loop()});
    const run_result r = run(s);
    EXPECT_EQ(r.stop_reason, "time limit");
    EXPECT_EQ(r.end_ns, ms(20));
    EXPECT_FALSE(r.tasks[0].exited);
}

// Where a handler runs: on the interrupted task's stack (32-bit arm) or on the CPU's irq stack
// (arm64) - visible in how deep the task's own stack got.
TEST(SimMachine, IrqStackModes)
{
    for (irq_stack_mode mode : {irq_stack_mode::task_stack, irq_stack_mode::per_cpu}) {
        scenario s;
        s.cpus = 1;
        s.irq_stacks = mode;
        add_irq(s, "dev", 0, {recurse(2, 4096)}).at_ns = us(100);
        add_task(s, "A", policy::other, 0, {work(ms(1))}).stack_size = 32 * 1024;
        const run_result r = run(s);
        EXPECT_TRUE(r.passed()) << failures(r);
        if (mode == irq_stack_mode::task_stack)
            EXPECT_GE(r.tasks[0].stack_used, 8192u);
        else
            EXPECT_LT(r.tasks[0].stack_used, 8192u);
    }
}

TEST(SimMachine, SoftirqRunsOnInterruptExit)
{
    scenario s;
    s.cpus = 1;
    add_irq(s, "net-rx", 0, {work(us(20))}).softirq = true;
    add_irq(s, "nic", 0, {work(us(5)), raise_irq(0)}).at_ns = ms(1);
    add_task(s, "A", policy::other, 0, {work(ms(2))});
    const run_result r = run(s);
    const auto hx = find(r, event_kind::irq_exit);
    const auto se = find(r, event_kind::softirq_entry);
    const auto sx = find(r, event_kind::softirq_exit);
    ASSERT_EQ(hx.size(), 1u);
    ASSERT_EQ(se.size(), 1u);
    ASSERT_EQ(sx.size(), 1u);
    EXPECT_EQ(se[0]->irq, 0);
    EXPECT_GE(se[0]->t_ns, hx[0]->t_ns);
    EXPECT_LT(se[0]->t_ns, hx[0]->t_ns + us(2));
    EXPECT_GE(sx[0]->t_ns - se[0]->t_ns, us(20));
}

TEST(SimMachine, BottomHalvesDisabledHoldSoftirqsBack)
{
    scenario s;
    s.cpus = 1;
    add_irq(s, "tasklet", 0, {work(us(5))}).softirq = true;
    irq_spec& q = s.irqs.back();
    q.at_ns = ms(1);
    add_task(s, "A", policy::other, 0, {bh_disable(), work(ms(2)), bh_enable(), work(ms(1))});
    const run_result r = run(s);
    const auto se = find(r, event_kind::softirq_entry);
    ASSERT_EQ(se.size(), 1u);
    EXPECT_GE(se[0]->t_ns, ms(2));
    EXPECT_LT(se[0]->t_ns, ms(2) + us(20));
}

} // namespace
