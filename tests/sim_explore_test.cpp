// Exploration: DFS with a preemption bound covers correct locks without a false alarm; random,
// PCT and DFS find the planted bugs; a replay token reproduces the failure exactly; the
// minimized schedule still fails.
#include <gtest/gtest.h>

#include <klock/sim/build.hpp>
#include <klock/sim/builtins.hpp>
#include <klock/sim/explore.hpp>

#include <string>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;
using namespace klock::sim::build;

using klock::test::failures;

// The benchmark shape: three tasks on three CPUs, two acquisitions each (the built-in
// explore-* scenarios).
scenario three_by_two(lock_type t)
{
    const char* name = t == lock_type::ticket_spinlock ? "explore-ticket"
        : t == lock_type::qspinlock                    ? "explore-qspinlock"
                                                       : "explore-mutex";
    return find_builtin(name)->make();
}

// H holds the mutex across a sleep, so W's optimistic spin gives up and W sleeps: the unlock
// owes W a wakeup.
scenario sleeper()
{
    scenario s;
    s.cpus = 2;
    s.tick_ns = 0;
    const int M = add_lock(s, "M", lock_type::mutex);
    add_task(s, "H", policy::other, 0, {lock(M), work(us(20)), sleep_for(us(20)), unlock(M)}).affinity = cpu(0);
    add_task(s, "W", policy::other, 0, {work(us(10)), lock(M), unlock(M)}).affinity = cpu(1);
    return s;
}

// X and Y keep taking the mutex (sleeping inside it); W must be handed it.
scenario hogs()
{
    scenario s;
    s.cpus = 3;
    s.tick_ns = 0;
    const int M = add_lock(s, "M", lock_type::mutex);
    for (unsigned i = 0; i < 2; ++i)
        add_task(s, i == 0 ? "X" : "Y", policy::other, 0,
            {loop(6), lock(M), sleep_for(us(5)), unlock(M), work(200), end_loop()})
            .affinity
            = cpu(i);
    task_spec& w = add_task(s, "W", policy::other, 0, {lock(M), unlock(M)});
    w.affinity = cpu(2);
    w.start_ns = us(1);
    return s;
}

class SimExploreDfs : public ::testing::TestWithParam<lock_type> { };

TEST_P(SimExploreDfs, CorrectLocksPassEveryBoundedSchedule)
{
    explore_options o;
    o.how = strategy::dfs;
    o.preemption_bound = 1;
    o.runs = 0;
    const explore_result r = explore(three_by_two(GetParam()), o);
    EXPECT_FALSE(r.found) << r.check << "\n" << failures(r.run);
    EXPECT_TRUE(r.exhausted);
    EXPECT_GT(r.runs, 6u); // more than the forced choices alone
}

INSTANTIATE_TEST_SUITE_P(Locks, SimExploreDfs,
    ::testing::Values(lock_type::ticket_spinlock, lock_type::qspinlock, lock_type::mutex),
    [](const ::testing::TestParamInfo<lock_type>& i) { return std::string(to_string(i.param)); });

TEST(SimExplore, ThePreemptionBoundBoundsTheSearch)
{
    unsigned runs[3];
    for (unsigned b = 0; b < 3; ++b) {
        explore_options o;
        o.how = strategy::dfs;
        o.preemption_bound = b;
        o.runs = 0;
        const explore_result r = explore(three_by_two(lock_type::mutex), o);
        EXPECT_TRUE(r.exhausted);
        runs[b] = r.runs;
    }
    EXPECT_LT(runs[0], runs[1]);
    EXPECT_LT(runs[1], runs[2]);
}

struct planted_case {
    const char* name;
    scenario (*make)();
    fault bug;
    const char* check;
};

scenario ticket_3x2() { return three_by_two(lock_type::ticket_spinlock); }

// The one-CPU priority inversion (REFERENCE.md's recipe): C holds the rt_mutex, A preempts C and
// blocks on it, B would preempt C unless C inherits A's priority.
scenario pi_one_cpu()
{
    scenario s;
    s.cpus = 1;
    s.tick_ns = 0;
    s.time_limit_ns = 1000 * ms(1);
    const int L = add_lock(s, "L", lock_type::rt_mutex);
    add_task(s, "C", policy::fifo, 10, {lock(L), work(ms(5)), unlock(L)});
    add_task(s, "A", policy::fifo, 90, {lock(L), work(ms(1)), unlock(L)}).start_ns = ms(1);
    add_task(s, "B", policy::fifo, 50, {work(ms(100))}).start_ns = ms(2);
    return s;
}

const planted_case planted[] = {
    {"MutexUnlockForgetsTheWakeup", &sleeper, fault::mutex_lost_wakeup, "lost wakeup"},
    {"MutexWithoutHandoff", &hogs, fault::mutex_no_handoff, "starvation"},
    {"RtMutexWithoutBoost", &pi_one_cpu, fault::rt_mutex_no_boost, "priority inversion"},
    {"TicketUnlockSkipsATicket", &ticket_3x2, fault::ticket_skip, "lost wakeup"},
};

class SimExplorePlanted : public ::testing::TestWithParam<std::tuple<planted_case, strategy>> { };

TEST_P(SimExplorePlanted, TheExplorerFindsItAndTheTokenReplaysIt)
{
    const planted_case& pc = std::get<0>(GetParam());
    const scenario s = pc.make();
    explore_options o;
    o.how = std::get<1>(GetParam());
    o.seed = 3;
    o.runs = 300;
    o.preemption_bound = 2;
    // Without the bug, nothing is found.
    const explore_result clean = explore(s, o);
    EXPECT_FALSE(clean.found) << clean.check << "\n" << failures(clean.run);
    o.base.planted = pc.bug;
    const explore_result r = explore(s, o);
    ASSERT_TRUE(r.found) << pc.name << " not found in " << r.runs << " runs";
    EXPECT_EQ(r.check, pc.check);
    EXPECT_LE(r.failing.size(), r.unminimized);
    EXPECT_FALSE(find_check(r.run, pc.check)->passed);
    // The token reproduces the run exactly.
    schedule sch;
    std::string err;
    ASSERT_TRUE(from_token(r.token, sch, err)) << err;
    EXPECT_EQ(sch, r.failing);
    options base;
    base.planted = pc.bug;
    const run_result again = replay(s, sch, base);
    EXPECT_EQ(unexpected_failure(again), pc.check);
    ASSERT_EQ(again.events.size(), r.run.events.size());
    for (std::size_t i = 0; i < again.events.size(); ++i) {
        ASSERT_EQ(again.events[i].t_ns, r.run.events[i].t_ns) << i;
        ASSERT_EQ(again.events[i].kind, r.run.events[i].kind) << i;
        ASSERT_EQ(again.events[i].task, r.run.events[i].task) << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Bugs, SimExplorePlanted,
    ::testing::Combine(::testing::ValuesIn(planted), ::testing::Values(strategy::random, strategy::pct, strategy::dfs)),
    [](const ::testing::TestParamInfo<std::tuple<planted_case, strategy>>& i) {
        return std::string(std::get<0>(i.param).name) + "_" + to_string(std::get<1>(i.param));
    });

TEST(SimExplore, TokensRoundTripAndRejectGarbage)
{
    const schedule s = {{3, 1}, {17, 0}, {120, 2}};
    EXPECT_EQ(to_token(s), "k1:3.1,17.0,120.2");
    schedule back;
    std::string err;
    ASSERT_TRUE(from_token(to_token(s), back, err));
    EXPECT_EQ(back, s);
    ASSERT_TRUE(from_token("k1:", back, err));
    EXPECT_TRUE(back.empty());
    for (const char* bad : {"", "k2:1.0", "k1:x", "k1:1", "k1:1.", "k1:1.99", "k1:1.0;2.0", "k1:1.0,"})
        EXPECT_FALSE(from_token(bad, back, err)) << bad;
}

TEST(SimExplore, SameSeedSameSearch)
{
    explore_options o;
    o.how = strategy::random;
    o.seed = 11;
    o.runs = 200;
    o.base.planted = fault::ticket_skip;
    const explore_result a = explore(ticket_3x2(), o);
    const explore_result b = explore(ticket_3x2(), o);
    ASSERT_TRUE(a.found);
    EXPECT_EQ(a.runs, b.runs);
    EXPECT_EQ(a.token, b.token);
}

} // namespace
