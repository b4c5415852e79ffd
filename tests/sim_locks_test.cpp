// klock's real locks on simulated CPUs: every lock type keeps mutual exclusion under
// contention; the ticket lock serves in ticket order; spinning waiters keep their CPU and
// sleeping ones give it up; priority inheritance boosts owners (transitively) and deboosts
// before the wakeup.
#include <gtest/gtest.h>

#include <klock/mutex.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/sim/build.hpp>
#include <klock/sim/builtins.hpp>
#include <klock/sim/env.hpp>
#include <klock/sim/sim.hpp>
#include <klock/spinlock.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "support/sim_results.hpp"

namespace {

using namespace klock::sim;
using namespace klock::sim::build;

using klock::test::failures;

std::vector<const event*> find(const run_result& r, event_kind k, int task = -2)
{
    std::vector<const event*> v;
    for (const event& e : r.events)
        if (e.kind == k && (task == -2 || e.task == task))
            v.push_back(&e);
    return v;
}

class SimLockStress : public ::testing::TestWithParam<lock_type> { };

// Six tasks on four CPUs (more runnable tasks than CPUs, preemption by the tick), each taking
// the lock 25 times: every acquisition is counted and no two holders ever overlap.
TEST_P(SimLockStress, MutualExclusionUnderContention)
{
    const lock_type t = GetParam();
    const bool rw = t == lock_type::rwlock || t == lock_type::rw_semaphore;
    scenario s;
    s.cpus = 4;
    s.tick_ns = us(200); // frequent ticks: preemption inside and around the critical sections
    s.time_limit_ns = 1000 * ms(1);
    const int L = add_lock(s, "L", t);
    for (int i = 0; i < 6; ++i) {
        const bool reader = rw && i % 2 == 1;
        add_task(s, "T" + std::to_string(i), policy::other, 0,
            {loop(25), reader ? lock_read(L) : lock(L), work(us(3)), reader ? unlock_read(L) : unlock(L), work(us(1)),
                end_loop()});
    }
    const run_result r = run(s);
    EXPECT_TRUE(r.passed()) << failures(r);
    EXPECT_EQ(r.stop_reason, "all tasks exited");
    EXPECT_EQ(r.locks[0].acquisitions, 150u);
    EXPECT_GT(r.locks[0].contentions, 10u);
    // The lock is free at the end (the word in its idle state).
    if (t == lock_type::ticket_spinlock) {
        EXPECT_EQ(r.locks[0].word >> 16, r.locks[0].word & 0xffff);
    } else {
        EXPECT_EQ(r.locks[0].word, 0u);
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, SimLockStress,
    ::testing::Values(lock_type::spinlock, lock_type::ticket_spinlock, lock_type::qspinlock, lock_type::rwlock,
        lock_type::mutex, lock_type::rt_mutex, lock_type::rw_semaphore),
    [](const ::testing::TestParamInfo<lock_type>& i) { return std::string(to_string(i.param)); });

// seeds/001-002: tickets are served in the order they were drawn; the word reads next/owner.
TEST(SimLocks, TicketLockServesInTicketOrder)
{
    const run_result r = run(find_builtin("ticket-fifo")->make());
    EXPECT_TRUE(r.as_expected()) << failures(r);
    const auto got = find(r, event_kind::lock_acquired);
    ASSERT_EQ(got.size(), 4u);
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(got[static_cast<std::size_t>(i)]->task, i); // arrival order A, B, C, D
        // After the i-th acquisition the owner half reads i (the ticket being served).
        EXPECT_EQ(got[static_cast<std::size_t>(i)]->word & 0xffff, static_cast<unsigned>(i));
    }
    EXPECT_EQ(got[0]->word, 0x00010000u); // next 1, owner 0: A holds it alone
    std::vector<std::string> words;
    for (const event* e : find(r, event_kind::marker))
        words.push_back(e->text);
    ASSERT_EQ(words.size(), 8u);
    EXPECT_EQ(words[0], "T: slock 0x00010000 (next 1, owner 0) after spin_lock(T)");
    EXPECT_EQ(words[1], "T: slock 0x00040001 (next 4, owner 1) after spin_unlock(T)");
    EXPECT_EQ(words[7], "T: slock 0x00040004 (next 4, owner 4) after spin_unlock(T)");
    EXPECT_EQ(r.locks[0].word, 0x00040004u);
}

// A spinlock waiter keeps its CPU (preemption is off while it spins, and a long wait halts the
// CPU - pv_wait - rather than sleeping); a mutex waiter sleeps and lets another task run.
TEST(SimLocks, SpinnersKeepTheirCpuSleepersGiveItUp)
{
    for (lock_type t : {lock_type::spinlock, lock_type::mutex}) {
        scenario s;
        s.cpus = 2;
        const int L = add_lock(s, "L", t);
        add_task(s, "H", policy::other, 0, {lock(L), work(ms(5)), unlock(L)}).affinity = cpu(0);
        task_spec& w = add_task(s, "W", policy::other, 0, {lock(L), unlock(L)});
        w.affinity = cpu(1);
        w.start_ns = ms(1);
        task_spec& o = add_task(s, "O", policy::other, 0, {work(ms(2))});
        o.affinity = cpu(1);
        o.start_ns = ms(1) + us(100);
        const run_result r = run(s);
        EXPECT_TRUE(r.passed()) << failures(r);
        const auto to_o = std::count_if(r.events.begin(), r.events.end(),
            [](const event& e) { return e.kind == event_kind::sched_switch && e.task2 == 2 && e.t_ns < ms(5); });
        if (t == lock_type::spinlock) {
            EXPECT_EQ(to_o, 0) << "O ran on CPU 1 while W spun";
            EXPECT_GT(r.tasks[1].run_ns, ms(3));
        } else {
            EXPECT_GE(to_o, 1) << "O should run while W sleeps";
            EXPECT_GT(r.tasks[1].blocked_ns, ms(3));
        }
    }
}

// seeds/003 with an rt_mutex: C is boosted to A's priority while A waits, deboosted before A is
// woken; A's wait is bounded by C's critical section.
TEST(SimLocks, RtMutexBoostsTheOwnerAndDeboostsBeforeTheWakeup)
{
    const run_result r = run(find_builtin(main_job_rt_mutex)->make());
    EXPECT_TRUE(r.passed()) << failures(r);
    const auto prio = find(r, event_kind::prio_change, 0); // C
    ASSERT_EQ(prio.size(), 2u);
    EXPECT_EQ(prio[0]->prio, 89); // SCHED_FIFO 10
    EXPECT_EQ(prio[0]->prio2, 9); // boosted to A's SCHED_FIFO 90
    EXPECT_EQ(prio[1]->prio, 9);
    EXPECT_EQ(prio[1]->prio2, 89);
    // The deboost comes before A's wakeup.
    const auto wake = find(r, event_kind::sched_wakeup, 1);
    ASSERT_EQ(wake.size(), 2u); // start, then the hand-over
    EXPECT_LE(prio[1]->t_ns, wake[1]->t_ns);
    EXPECT_LT(prio[1] - &r.events[0], wake[1] - &r.events[0]);
    EXPECT_EQ(wake[1]->task2, 0); // woken by C
    // A waited for the rest of C's 5 ms, not for B's 200 ms.
    EXPECT_LT(r.tasks[1].max_lock_wait_ns, ms(5));
    EXPECT_GT(r.tasks[1].max_lock_wait_ns, ms(3));
    EXPECT_EQ(r.locks[0].max_wait_task, 1);
}

TEST(SimLocks, PlainMutexDoesNotBoost)
{
    const run_result r = run(find_builtin(main_job_mutex)->make());
    EXPECT_TRUE(r.as_expected()) << failures(r);
    EXPECT_TRUE(find(r, event_kind::prio_change).empty());
    EXPECT_GT(r.tasks[1].max_lock_wait_ns, ms(200)); // A waited for all of B
    EXPECT_LT(r.tasks[1].max_lock_wait_ns, ms(210));
}

// The chain walk: A waits for L2 held by B, which waits for L1 held by C. C runs at A's
// priority (transitively), B too.
TEST(SimLocks, PriorityInheritanceWalksTheChain)
{
    scenario s;
    s.cpus = 3;
    const int L1 = add_lock(s, "L1", lock_type::rt_mutex);
    const int L2 = add_lock(s, "L2", lock_type::rt_mutex);
    add_task(s, "C", policy::fifo, 10, {lock(L1), work(ms(5)), unlock(L1)}).affinity = cpu(0);
    task_spec& b = add_task(s, "B", policy::fifo, 30, {lock(L2), work(ms(1)), lock(L1), unlock(L1), unlock(L2)});
    b.affinity = cpu(1);
    b.start_ns = us(500);
    task_spec& a = add_task(s, "A", policy::fifo, 90, {lock(L2), unlock(L2)});
    a.affinity = cpu(2);
    a.start_ns = ms(2);
    task_spec& m = add_task(s, "M", policy::fifo, 50, {work(ms(50))});
    m.affinity = cpu(0);
    m.start_ns = ms(3);
    const run_result r = run(s);
    EXPECT_TRUE(r.passed()) << failures(r);
    int c_max = 200;
    for (const event* e : find(r, event_kind::prio_change, 0))
        c_max = std::min(c_max, e->prio2);
    EXPECT_EQ(c_max, 9); // C reached A's priority through B
    int b_max = 200;
    for (const event* e : find(r, event_kind::prio_change, 1))
        b_max = std::min(b_max, e->prio2);
    EXPECT_EQ(b_max, 9);
    // M (50) never got in C's way: A finished long before M's 50 ms.
    EXPECT_LT(r.tasks[2].max_lock_wait_ns, ms(5));
}

// An ABBA over rt_mutexes: the PI futex's chain walk answers -EDEADLK, which klock reports;
// the machine's wait-for check names the cycle.
TEST(SimLocks, RtMutexCycleIsEdeadlk)
{
    scenario s;
    s.cpus = 2;
    s.time_limit_ns = ms(50);
    const int L1 = add_lock(s, "L1", lock_type::rt_mutex);
    const int L2 = add_lock(s, "L2", lock_type::rt_mutex);
    add_task(s, "A", policy::fifo, 10, {lock(L1), work(ms(1)), lock(L2), unlock(L2), unlock(L1)}).affinity = cpu(0);
    add_task(s, "B", policy::fifo, 10, {lock(L2), work(ms(1)), lock(L1), unlock(L1), unlock(L2)}).affinity = cpu(1);
    const run_result r = run(s);
    const check_result* dl = find_check(r, "deadlock");
    ASSERT_NE(dl, nullptr);
    EXPECT_FALSE(dl->passed);
    EXPECT_NE(dl->report.find("waits for L2 (rt_mutex), held by B/102"), std::string::npos) << dl->report;
    const check_result* bug = find_check(r, "lock bug");
    EXPECT_FALSE(bug->passed);
    EXPECT_NE(bug->report.find("BUG: rt_mutex deadlock"), std::string::npos) << bug->report;
    EXPECT_NE(bug->report.find("-EDEADLK from FUTEX_LOCK_PI"), std::string::npos) << bug->report;
}

// The sim Env outside a run: its atomics are plain values (no machine, no scheduling points),
// so a lock can be built, inspected and destroyed on the host.
TEST(SimLocks, SimAtomicsOutsideARunArePlainValues)
{
    klock::sim::atomic<std::uint32_t> w(5);
    EXPECT_EQ(w.load(), 5u);
    EXPECT_EQ(w.fetch_add(2), 5u);
    std::uint32_t e = 7;
    EXPECT_TRUE(w.compare_exchange_strong(e, 9));
    EXPECT_EQ(w.exchange(1), 9u);
    EXPECT_EQ(w.fetch_or(6), 1u);
    EXPECT_EQ(w.fetch_and(3), 7u);
    EXPECT_EQ(w.peek(), 3u);
    static_assert(sizeof(klock::sim::atomic<std::uint32_t>) == 4);
    klock::basic_ticket_spinlock<klock::sim::env>* l = nullptr;
    (void)l;
}

} // namespace
