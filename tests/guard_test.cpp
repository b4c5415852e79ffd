// klock::lock_guard / shared_lock_guard: they lock and unlock, and pass the caller's source
// location to sleeping locks so might_sleep() names the user's line, not guard.hpp.
#include <gtest/gtest.h>

#include <klock/guard.hpp>
#include <klock/mutex.hpp>
#include <klock/report.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/spinlock.hpp>

#include <string>

namespace {

TEST(Guard, LocksForItsScope)
{
    klock::spinlock s;
    {
        klock::lock_guard g(s);
        EXPECT_TRUE(s.is_locked());
        EXPECT_EQ(klock::preempt_count(), 1u);
    }
    EXPECT_FALSE(s.is_locked());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST(Guard, MightSleepNamesTheGuardsCaller)
{
    klock::mutex m;
    klock::report_capture cap;
    klock::preempt_disable();
    {
        klock::lock_guard g(m);
    }
    const unsigned line = __LINE__ - 2;
    klock::preempt_enable();
    ASSERT_GE(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("guard_test.cpp:" + std::to_string(line)), std::string::npos)
        << cap.reports()[0];
}

TEST(Guard, SharedGuardNamesItsCallerToo)
{
    klock::rw_semaphore sem;
    klock::report_capture cap;
    klock::preempt_disable();
    {
        klock::shared_lock_guard g(sem);
    }
    const unsigned line = __LINE__ - 2;
    klock::preempt_enable();
    ASSERT_GE(cap.count(), 1u);
    EXPECT_NE(cap.reports()[0].find("guard_test.cpp:" + std::to_string(line)), std::string::npos)
        << cap.reports()[0];
}

} // namespace
