// `klock torture` (tools/klock/torture_*.cpp): flags, output formats, and the checks of a run -
// each check shown to fire on a lock (or a test double) that deserves it.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include <sched.h>

#include <klock/mutex.hpp>
#include <klock/report.hpp>
#include <klock/spinlock.hpp>

#include "torture_engine.hpp"
#include "torture_ops.hpp"
#include "torture_options.hpp"

#if defined(__SANITIZE_THREAD__)
#define TT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TT_TSAN 1
#endif
#endif

namespace t = klock::tool::torture;

namespace {

t::parse_status parse(std::vector<std::string> args, t::config& cfg, std::string& error)
{
    args.insert(args.begin(), "torture");
    std::vector<char*> argv;
    for (std::string& a : args)
        argv.push_back(a.data());
    return t::parse(static_cast<int>(argv.size()), argv.data(), cfg, error);
}

std::string parse_error(std::vector<std::string> args)
{
    t::config cfg;
    std::string error;
    EXPECT_EQ(parse(std::move(args), cfg, error), t::parse_status::bad);
    return error;
}

struct outcome {
    t::result r;
    std::string out;
};

// A short run, quiet, into a string.
outcome run(t::config cfg, std::unique_ptr<t::lock_ops> ops = nullptr)
{
    std::string error;
    EXPECT_TRUE(t::resolve(cfg, t::online_cpus(), error)) << error;
    cfg.progress_bar = false;
    if (!ops)
        ops = t::find_type(cfg.type)->make(cfg);
    std::FILE* f = std::tmpfile();
    outcome o;
    o.r = t::run(cfg, std::move(ops), f);
    std::rewind(f);
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
        o.out.append(buf, n);
    std::fclose(f);
    return o;
}

t::config quick(const char* type, int nwriters = 2, int nreaders = -1)
{
    t::config c;
    c.type = type;
    c.nwriters = nwriters;
    c.nreaders = nreaders;
    c.duration = 0.3;
    c.stat_interval = 0;
    c.stutter = 0;
    c.shuffle_interval = 0;
    c.long_hold = 1;
    return c;
}

// ---------------------------------------------------------------- flags

TEST(TortureOptions, DefaultsFollowTheKernel)
{
    t::config cfg;
    std::string error;
    ASSERT_EQ(parse({}, cfg, error), t::parse_status::ok) << error;
    EXPECT_EQ(cfg.type, "spin_lock");
    EXPECT_EQ(cfg.real_writers, 2 * t::online_cpus()); // 2 x online CPUs
    EXPECT_EQ(cfg.real_readers, 0);

    // Reader types: one writer and one reader per CPU when neither count is given ...
    t::config rw;
    rw.type = "rw_semaphore";
    ASSERT_TRUE(t::resolve(rw, 3, error));
    EXPECT_EQ(rw.real_writers, 3);
    EXPECT_EQ(rw.real_readers, 3);
    // ... as many readers as writers when only the writers are given ...
    rw.nwriters = 5;
    ASSERT_TRUE(t::resolve(rw, 3, error));
    EXPECT_EQ(rw.real_readers, 5);
    // ... and 2 writers per CPU when only the readers are.
    rw.nwriters = -1;
    rw.nreaders = 1;
    ASSERT_TRUE(t::resolve(rw, 3, error));
    EXPECT_EQ(rw.real_writers, 6);
    EXPECT_EQ(rw.real_readers, 1);
}

TEST(TortureOptions, AcceptsBothSpellingsAndTheKernelsNames)
{
    t::config cfg;
    std::string error;
    ASSERT_EQ(parse({"torture_type=rwsem_lock", "nwriters_stress=3", "--nreaders=2", "--stat_interval", "0.5",
                        "--long-hold", "7", "--nested-locks", "2", "--stutter=0"},
                  cfg, error),
        t::parse_status::ok)
        << error;
    EXPECT_EQ(cfg.type, "rw_semaphore");
    EXPECT_EQ(cfg.real_writers, 3);
    EXPECT_EQ(cfg.real_readers, 2);
    EXPECT_DOUBLE_EQ(cfg.stat_interval, 0.5);
    EXPECT_EQ(cfg.long_hold, 7);
    EXPECT_EQ(cfg.nested_locks, 2);
    EXPECT_EQ(cfg.stutter, 0);
    for (const char* k : {"mutex_lock", "rtmutex_lock", "ww_mutex_lock", "spin_lock_irq", "rw_lock"})
        EXPECT_NE(t::find_type(k), nullptr) << k;
    t::config h;
    EXPECT_EQ(parse({"--help"}, h, error), t::parse_status::help);
}

TEST(TortureOptions, BadUsageNamesTheFlagOrValue)
{
    EXPECT_NE(parse_error({"--bogus", "1"}).find("--bogus"), std::string::npos);
    EXPECT_NE(parse_error({"stray"}).find("stray"), std::string::npos);
    EXPECT_NE(parse_error({"--nwriters", "x"}).find("--nwriters: bad value 'x'"), std::string::npos);
    EXPECT_NE(parse_error({"--nwriters", "-1"}).find("--nwriters"), std::string::npos);
    EXPECT_NE(parse_error({"--duration", "0"}).find("--duration"), std::string::npos);
    EXPECT_NE(parse_error({"--duration=nan"}).find("--duration"), std::string::npos);
    EXPECT_NE(parse_error({"--stutter", "-2"}).find("--stutter"), std::string::npos);
    EXPECT_NE(parse_error({"--nested-locks", "9"}).find("--nested-locks"), std::string::npos);
    EXPECT_NE(parse_error({"--long-hold"}).find("--long-hold: missing value"), std::string::npos);
    EXPECT_NE(parse_error({"--type", "nope"}).find("unknown lock type 'nope'"), std::string::npos);
    EXPECT_NE(parse_error({"--nreaders", "2"}).find("--nreaders"), std::string::npos); // spin_lock: no readers
    EXPECT_NE(parse_error({"--type", "ww_mutex", "--nested-locks", "2"}).find("--nested-locks"), std::string::npos);
    EXPECT_NE(parse_error({"--nwriters", "0"}).find("at least one locking thread"), std::string::npos);
}

// ---------------------------------------------------------------- output formats

TEST(TortureOutput, StatsLineIsTheKernels)
{
    const long a[] = {20, 10};
    const long none[] = {0, 0};
    EXPECT_EQ(t::stats_line(true, a, none), "Writes:  Total: 30  Max/Min: 20/10   Fail: 0 \n");
    const long even[] = {21, 10}; // max / 2 == min, in integers: not flagged
    EXPECT_EQ(t::stats_line(true, even, none), "Writes:  Total: 31  Max/Min: 21/10   Fail: 0 \n");
    const long skewed[] = {22, 10}; // max / 2 > min: unfair
    EXPECT_EQ(t::stats_line(true, skewed, none), "Writes:  Total: 32  Max/Min: 22/10 ???  Fail: 0 \n");
    const long fails[] = {0, 3};
    EXPECT_EQ(t::stats_line(false, a, fails), "Reads :  Total: 30  Max/Min: 20/10   Fail: 3 !!!\n");
    EXPECT_EQ(t::stats_line(true, {}, {}), "Writes:  Total: 0  Max/Min: 0/0   Fail: 0 \n");
}

TEST(TortureOutput, ParmsLineNamesTypeAndParameters)
{
    t::config cfg;
    cfg.type = "mutex";
    cfg.nwriters = 3;
    std::string error;
    ASSERT_TRUE(t::resolve(cfg, 2, error));
    const std::string line = t::parms_line(cfg, "Start of test");
    EXPECT_EQ(line.rfind("mutex-torture:--- Start of test [debug]: duration=10 long_hold=10 ", 0), 0u) << line;
    EXPECT_NE(line.find(" nwriters_stress=3 "), std::string::npos) << line;
    EXPECT_NE(line.find(" torture_type=mutex"), std::string::npos) << line;
    cfg.type = "ww_mutex";
    EXPECT_EQ(t::parms_line(cfg, "End of test: SUCCESS").rfind("ww_mutex-torture:--- End of test: SUCCESS: ", 0), 0u);
}

// ---------------------------------------------------------------- runs of real locks

TEST(TortureRun, SpinLockSucceeds)
{
    t::config c = quick("spin_lock", 3);
    c.stat_interval = 0.1;
    const outcome o = run(c);
    EXPECT_TRUE(o.r.success) << o.out;
    EXPECT_GT(o.r.writes, 0);
    EXPECT_NE(o.out.find("spin_lock-torture:--- Start of test [debug]: "), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("Writes:  Total: "), std::string::npos) << o.out;
    EXPECT_EQ(o.out.find("Reads"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("spin_lock-torture:--- End of test: SUCCESS [debug]: "), std::string::npos) << o.out;
}

TEST(TortureRun, ReaderWriterTypesPrintReads)
{
    for (const char* type : {"rw_lock", "rw_semaphore"}) {
        const outcome o = run(quick(type, 2, 2));
        EXPECT_TRUE(o.r.success) << o.out;
        EXPECT_GT(o.r.writes, 0) << type;
        EXPECT_GT(o.r.reads, 0) << type;
        EXPECT_NE(o.out.find("Reads :  Total: "), std::string::npos) << o.out;
    }
}

TEST(TortureRun, NestedLocksAndWwMutexAndRtMutexSucceed)
{
    t::config m = quick("mutex", 3);
    m.nested_locks = 3;
    const outcome om = run(m);
    EXPECT_TRUE(om.r.success) << om.out;

    const outcome ow = run(quick("ww_mutex", 3));
    EXPECT_TRUE(ow.r.success) << ow.out;
    EXPECT_NE(ow.out.find("ww_mutex-torture: ww_mutex: "), std::string::npos) << ow.out;
    EXPECT_NE(ow.out.find(" 0 other errors"), std::string::npos) << ow.out;

    const outcome orr = run(quick("rt_mutex", 2));
    EXPECT_TRUE(orr.r.success) << orr.out;
    EXPECT_NE(orr.out.find("rt_mutex-torture: rt_boost: "), std::string::npos) << orr.out;
}

#ifndef TT_TSAN // lock_busted and the doubles below race on the critical section's data by design
TEST(TortureRun, LockBustedFails)
{
    const outcome o = run(quick("lock_busted", 4));
    EXPECT_FALSE(o.r.success) << o.out;
    EXPECT_GT(o.r.write_fails + o.r.lost_updates, 0) << o.out;
    EXPECT_NE(o.out.find("!!!"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("lock_busted-torture:--- End of test: FAILURE: "), std::string::npos) << o.out;
}

// Writers exclude each other, readers take nothing: only the readers' check can notice.
class readers_busted final : public t::lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        m_.lock();
        return 0;
    }
    void write_delay(t::random_state&) override { t::udelay(20); }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { m_.unlock(); }
    void read_delay(t::random_state&) override { t::udelay(20); }

private:
    klock::mutex m_;
};

TEST(TortureRun, ReaderCheckCatchesAWriterInside)
{
    t::config c = quick("rw_semaphore", 2, 2);
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    const outcome o = run(c, std::make_unique<readers_busted>(c));
    EXPECT_FALSE(o.r.success) << o.out;
    EXPECT_GT(o.r.read_fails, 0) << o.out;
    EXPECT_NE(o.out.find("Reads :  Total: "), std::string::npos) << o.out;
}

// A real main lock, nested "locks" that lock nothing: the nested counters must disagree.
class nested_busted final : public t::lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        m_.lock();
        return 0;
    }
    void write_delay(t::random_state&) override { }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { m_.unlock(); }

private:
    klock::mutex m_;
};

TEST(TortureRun, NestedLockCountersCatchOverlap)
{
    t::config c = quick("mutex", 4);
    c.nested_locks = 2;
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    const outcome o = run(c, std::make_unique<nested_busted>(c));
    EXPECT_FALSE(o.r.success) << o.out;
    EXPECT_GT(o.r.write_fails + o.r.lost_updates, 0) << o.out;
}
#endif

// ---------------------------------------------------------------- progress, reports, stutter, shuffle

// Writer 0 blocks in write_lock until the test lets it go; the others run.
class stuck_writer final : public t::lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int tid) override
    {
        if (tid == 0)
            while (gate.load() == 0)
                gate.wait(0);
        return 0;
    }
    void write_delay(t::random_state&) override { }
    void write_unlock(int) override { }
    std::string describe() const override { return "gate closed"; }
    std::atomic<std::uint32_t> gate{0};
};

TEST(TortureRun, StuckThreadIsNamedAndLeftBehind)
{
    t::config c = quick("mutex", 2);
    c.duration = 10; // the stall must end it early
    c.stall_timeout = 0.3;
    c.join_timeout = 0.2;
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    auto ops = std::make_unique<stuck_writer>(c);
    stuck_writer* gate = ops.get();
    const auto start = std::chrono::steady_clock::now();
    const outcome o = run(c, std::move(ops));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    EXPECT_FALSE(o.r.success);
    EXPECT_EQ(o.r.stalls, 1) << o.out;
    EXPECT_EQ(o.r.left_running, 1) << o.out;
    EXPECT_NE(o.out.find("mutex-torture: lock_torture_writer 0: no progress for "), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("stuck waiting to acquire the lock (gate closed)"), std::string::npos) << o.out;
    EXPECT_EQ(o.out.find("lock_torture_writer 1: no progress"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("lock_torture_writer 0 did not stop"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("End of test: FAILURE"), std::string::npos) << o.out;
    gate->gate.store(1);
    gate->gate.notify_all();
    EXPECT_TRUE(o.r.wait_stopped(5));
}

// Unlocks a klock spinlock it never locked, once: klock reports it, and the run must fail.
class misuses_once final : public t::lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        m_.lock();
        return 0;
    }
    void write_delay(t::random_state&) override { }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        if (!done_.exchange(true))
            other_.unlock();
        m_.unlock();
    }

private:
    klock::mutex m_;
    klock::spinlock other_;
    std::atomic<bool> done_{false};
};

TEST(TortureRun, KlockReportsFailTheRun)
{
    t::config c = quick("mutex", 2);
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    klock::report_capture cap;
    const outcome o = run(c, std::make_unique<misuses_once>(c));
    EXPECT_TRUE(cap.contains("BUG: spinlock already unlocked"));
    // The lock's own debug check reports it; with lockdep compiled in, lockdep's "bad unlock
    // balance" reports it too (as in the kernel, where both detectors fire).
#if KLOCK_LOCKDEP
    const unsigned expected = 2;
#else
    const unsigned expected = 1;
#endif
    EXPECT_EQ(o.r.reports, expected) << o.out;
    EXPECT_FALSE(o.r.success) << o.out;
    EXPECT_NE(o.out.find(std::to_string(expected) + " klock report(s) during the test"), std::string::npos) << o.out;
}

// Records, per write_lock, the time and the thread's allowed CPUs.
class observer final : public t::lock_ops {
public:
    using lock_ops::lock_ops;
    int write_lock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        m_.lock();
        const auto now = std::chrono::steady_clock::now();
        if (calls_++ != 0)
            max_gap = std::max(max_gap, now - last_);
        last_ = now;
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof set, &set) == 0)
            min_cpus = std::min(min_cpus, CPU_COUNT(&set));
        return 0;
    }
    void write_delay(t::random_state&) override { t::udelay(5); }
    void write_unlock(int) override KLOCK_NO_THREAD_SAFETY_ANALYSIS { m_.unlock(); }

    std::chrono::steady_clock::duration max_gap{};
    int min_cpus = 1 << 20;

private:
    klock::mutex m_;
    long calls_ = 0;
    std::chrono::steady_clock::time_point last_;
};

TEST(TortureRun, StutterPausesEveryThread)
{
    t::config c = quick("mutex", 2);
    c.duration = 0.5;
    c.stutter = 0.12; // run, pause 0.12 s, run, pause, ...
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    auto ops = std::make_unique<observer>(c);
    observer* obs = ops.get();
    const outcome o = run(c, std::move(ops));
    EXPECT_TRUE(o.r.success) << o.out;
    EXPECT_GT(obs->max_gap, std::chrono::milliseconds(80)); // nobody took the lock during a pause
}

TEST(TortureRun, ShuffleConfinesThreads)
{
    if (t::online_cpus() < 2)
        GTEST_SKIP() << "one CPU: nothing to shuffle";
    t::config c = quick("mutex", 2);
    c.duration = 0.4;
    c.shuffle_interval = 0.05;
    std::string error;
    ASSERT_TRUE(t::resolve(c, 2, error));
    auto ops = std::make_unique<observer>(c);
    observer* obs = ops.get();
    const outcome o = run(c, std::move(ops));
    EXPECT_TRUE(o.r.success) << o.out;
    EXPECT_LT(obs->min_cpus, t::online_cpus()); // some interval left a CPU idle
}

} // namespace
