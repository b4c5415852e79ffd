// lock_stat: the counts, times, bounces and points it collects, its /proc/lock_stat layout
// (lock_stat version 0.4), clear(), switching it on and off, lock_stat-only mode (validation
// off), and the environment variables (KLOCK_LOCK_STAT at start-up, KLOCK_LOCK_STAT_DUMP at exit).
//
// The engine-level tests drive lockdep's entry points by hand (they exist in every build); the
// tests that need klock's own locks to call the hooks need KLOCK_LOCKDEP=ON and skip otherwise.
#include <gtest/gtest.h>

#include <klock/detail/symbolize.hpp>
#include <klock/lockdep.hpp>
#include <klock/report.hpp>

#if KLOCK_LOCKDEP
#include <klock/mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/stress.hpp"

// The lock tests take locks in patterns the static analysis cannot follow (hand-over between
// helper functions); lock_stat at run time is what is under test.
#ifdef __clang__
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace {

namespace ld = klock::lockdep;
namespace ls = klock::lock_stat;
using klock::lock_class_key;
using klock::lockdep_map;

// ---- the child process of LockStatEnv (see there): runs before main when asked to ----

lock_class_key child_key;
lockdep_map child_map{"ls_child_lock", &child_key};

[[noreturn]] void child_main()
{
    // KLOCK_LOCK_STAT=1 must have switched lock_stat on before this (default-priority) initialiser.
    if (!ls::enabled())
        std::_Exit(3);
    for (int i = 0; i < 7; ++i) {
        ld::lock_acquire(child_map, 0, 0, 0, 1, nullptr);
        ld::lock_release(child_map);
    }
    std::exit(0); // KLOCK_LOCK_STAT_DUMP: the table is written by the exit dump
}

const bool g_is_child = [] {
    const char* c = std::getenv("KLOCK_LS_TEST_CHILD");
    if (c != nullptr && std::strcmp(c, "1") == 0)
        child_main();
    return false;
}();

// ---- reading the table ----

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

struct row {
    bool found = false;
    unsigned long con_bounces = 0, contentions = 0;
    double wait_min = 0, wait_max = 0, wait_total = 0, wait_avg = 0;
    unsigned long acq_bounces = 0, acquisitions = 0;
    double hold_min = 0, hold_max = 0, hold_total = 0, hold_avg = 0;
};

std::string pad_name(const std::string& name, const char* suffix)
{
    char buf[128];
    if (*suffix != '\0')
        std::snprintf(buf, sizeof buf, "%38s%s:", name.c_str(), suffix);
    else
        std::snprintf(buf, sizeof buf, "%40s:", name.c_str());
    return buf;
}

// The row of class `name` ("-W" / "-R" for the rw rows), parsed.
row find_row(const std::string& text, const std::string& name, const char* suffix = "")
{
    row r;
    const std::string head = pad_name(name, suffix);
    for (const std::string& l : lines_of(text)) {
        if (l.rfind(head, 0) != 0)
            continue;
        const int n = std::sscanf(l.c_str() + head.size(), "%lu %lu %lf %lf %lf %lf %lu %lu %lf %lf %lf %lf",
            &r.con_bounces, &r.contentions, &r.wait_min, &r.wait_max, &r.wait_total, &r.wait_avg, &r.acq_bounces,
            &r.acquisitions, &r.hold_min, &r.hold_max, &r.hold_total, &r.hold_avg);
        r.found = n == 12;
        return r;
    }
    return r;
}

// The contention (which = 0) or contending (which = 1) point lines of a class: after its rows,
// a dash line under the name, the contention points, another dash line, the contending points.
[[maybe_unused]] std::vector<std::string> point_lines(const std::string& text, const std::string& name, int which)
{
    const std::vector<std::string> all = lines_of(text);
    std::size_t i = 0;
    while (i < all.size() && all[i].rfind(pad_name(name, ""), 0) != 0 && all[i].rfind(pad_name(name, "-W"), 0) != 0
        && all[i].rfind(pad_name(name, "-R"), 0) != 0)
        ++i;
    while (i < all.size() && all[i].find(name + "-") != std::string::npos)
        ++i; // the -W row of a -W/-R pair
    ++i;
    std::vector<std::string> out;
    int block = -1;
    for (; i < all.size(); ++i) {
        const std::string& l = all[i];
        const bool dash_line = l.size() == 40 && l.back() == '-' && l.find_first_not_of(" -") == std::string::npos;
        if (dash_line)
            ++block;
        else if (block >= 0 && l.find("[<") != std::string::npos) {
            if (block == which)
                out.push_back(l);
        } else
            break;
    }
    return out;
}

// A private map per test: classes are keyed by their lock_class_key.
struct test_lock {
    lock_class_key key;
    lockdep_map map;
    explicit test_lock(const char* name) : map(name, &key) { }
};

void acq(lockdep_map& m, int read = 0) { ld::lock_acquire(m, 0, 0, read, 1, nullptr); }
void rel(lockdep_map& m) { ld::lock_release(m); }

// ---- a clock the test sets ----

// Never 0: the engine takes a zero stamp for "no stamp".
std::atomic<std::uint64_t> g_fake_ns{1000000000};
std::uint64_t fake_now() noexcept { return g_fake_ns.load(std::memory_order_relaxed); }

// Pin the calling thread to one CPU for the scope (bounces then depend on the test alone).
class pin_cpu {
public:
    explicit pin_cpu(int cpu)
    {
        ok_ = pthread_getaffinity_np(pthread_self(), sizeof old_, &old_) == 0;
        cpu_set_t s;
        CPU_ZERO(&s);
        CPU_SET(cpu, &s);
        ok_ = ok_ && pthread_setaffinity_np(pthread_self(), sizeof s, &s) == 0 && sched_getcpu() == cpu;
    }
    ~pin_cpu() { pthread_setaffinity_np(pthread_self(), sizeof old_, &old_); }
    pin_cpu(const pin_cpu&) = delete;
    pin_cpu& operator=(const pin_cpu&) = delete;
    bool ok() const { return ok_; }

private:
    cpu_set_t old_{};
    bool ok_ = false;
};

// The first two CPUs this process may run on; false if it has only one.
[[maybe_unused]] bool two_cpus(int& a, int& b)
{
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) != 0)
        return false;
    a = b = -1;
    for (int i = 0; i < CPU_SETSIZE; ++i) {
        if (!CPU_ISSET(i, &s))
            continue;
        if (a < 0)
            a = i;
        else {
            b = i;
            return true;
        }
    }
    return false;
}

std::string hex_ip(std::uintptr_t ip)
{
    char buf[40];
    std::snprintf(buf, sizeof buf, "[<%016" PRIxPTR ">]", ip);
    return buf;
}

const std::string dashes(221, '-');
const std::string dots(221, '.');

class LockStat : public ::testing::Test {
protected:
    void SetUp() override
    {
        ld::reset();
        ls::set_enabled(true);
        ls::clear();
    }
    void TearDown() override
    {
        ls::set_enabled(false);
        ls::test::set_clock(nullptr);
        ld::reset();
    }
};

// ---- engine level: every build ----

TEST_F(LockStat, SwitchAndGate)
{
    EXPECT_TRUE(ls::enabled());
    EXPECT_TRUE(ld::active());
    ls::set_enabled(false);
    EXPECT_FALSE(ls::enabled());
    EXPECT_TRUE(ld::active()) << "validation is still on";
    ld::set_enabled(false);
    EXPECT_FALSE(ld::active()) << "both off: the hooks' one branch says so";
    ls::set_enabled(true);
    EXPECT_TRUE(ld::active()) << "lock_stat alone keeps the hooks live";
    EXPECT_FALSE(ld::enabled());
    ld::set_enabled(true);
}

TEST_F(LockStat, AcquisitionsCountedExactly)
{
    test_lock l("ls_count");
    for (int i = 0; i < 1000; ++i) {
        acq(l.map);
        rel(l.map);
    }
    // Other threads: some still running while the table is read (their live counters are
    // summed), some ended (folded into the total at exit).
    std::atomic<bool> done{false}, release{false};
    std::thread live([&] {
        for (int i = 0; i < 50; ++i) {
            acq(l.map);
            rel(l.map);
        }
        done = true;
        while (!release)
            std::this_thread::yield();
    });
    klock::test::run_threads(3, [&](int) {
        for (int i = 0; i < 200; ++i) {
            acq(l.map);
            rel(l.map);
        }
    });
    ASSERT_TRUE(klock::test::wait_until([&] { return done.load(); }));
    const row r = find_row(ls::proc(), "ls_count");
    release = true;
    live.join();
    ASSERT_TRUE(r.found) << ls::proc();
    EXPECT_EQ(r.acquisitions, 1000u + 50u + 600u);
    EXPECT_EQ(r.contentions, 0u);
    EXPECT_GT(r.hold_total, 0.0);
    EXPECT_EQ(find_row(ls::proc(), "ls_count").acquisitions, 1650u) << "the live thread's counts, folded at its exit";
}

// The whole table, byte for byte, for a scripted contention between two tasks (the engine's
// explicit-task entry points; the second task is a task_state of our own) under a fake clock.
TEST_F(LockStat, ExactLayout)
{
    pin_cpu pin(sched_getcpu());
    if (!pin.ok())
        GTEST_SKIP() << "cannot pin the thread: bounces would depend on the scheduler";
    ls::test::set_clock(fake_now);
    test_lock l("ls_layout"), m("ls_quiet");
    auto t1 = std::make_unique<ld::task_state>();
    auto t2 = std::make_unique<ld::task_state>();
    const klock::thread_info ti{};
    const std::uintptr_t ip_a = 0xa000, ip_b = 0xb000;

    g_fake_ns = 1000;
    ld::lock_acquire(*t1, ti, l.map, 0, 0, 0, 1, nullptr, ip_a); // uncontended: publishes ip_a
    g_fake_ns = 1500;
    ld::lock_acquire(*t2, ti, l.map, 0, 0, 0, 1, nullptr, ip_b);
    g_fake_ns = 2000;
    ld::lock_contended(*t2, ti, l.map); // waits for the holder that took it at ip_a
    g_fake_ns = 4000;
    ld::lock_release(*t1, ti, l.map); // held 3000 ns
    g_fake_ns = 7000;
    ld::lock_acquired(*t2, ti, l.map); // waited 5000 ns
    g_fake_ns = 7500;
    ld::lock_release(*t2, ti, l.map); // held 500 ns
    g_fake_ns = 10000;
    ld::lock_acquire(*t1, ti, m.map, 0, 0, 0, 1, nullptr, ip_a);
    g_fake_ns = 10010;
    ld::lock_release(*t1, ti, m.map); // held 10 ns
    ld::task_exit(*t2, ti);           // t2's counters are folded, t1's still live

    char buf[512];
    std::string want = "lock_stat version 0.4\n" + dashes + "\n";
    std::snprintf(buf, sizeof buf, "%40s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s\n", "class name",
        "con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total", "waittime-avg", "acq-bounces",
        "acquisitions", "holdtime-min", "holdtime-max", "holdtime-total", "holdtime-avg");
    want += buf + dashes + "\n\n";
    std::snprintf(buf, sizeof buf, "%40s:%14d %14d %14s %14s %14s %14s %14d %14d %14s %14s %14s %14s\n", "ls_layout", 0,
        1, "5.00", "5.00", "5.00", "5.00", 0, 2, "0.50", "3.00", "3.50", "1.75");
    want += buf;
    want += std::string(40 - 9, ' ') + std::string(9, '-') + "\n";
    std::snprintf(buf, sizeof buf, "%40s %14d %29s ", "ls_layout", 1, hex_ip(ip_b).c_str());
    want += buf + klock::detail::format_symbol(ip_b) + "\n";
    want += std::string(40 - 9, ' ') + std::string(9, '-') + "\n";
    std::snprintf(buf, sizeof buf, "%40s %14d %29s ", "ls_layout", 1, hex_ip(ip_a).c_str());
    want += buf + klock::detail::format_symbol(ip_a) + "\n";
    want += "\n" + dots + "\n\n";
    std::snprintf(buf, sizeof buf, "%40s:%14d %14d %14s %14s %14s %14s %14d %14d %14s %14s %14s %14s\n", "ls_quiet", 0,
        0, "0.00", "0.00", "0.00", "0.00", 0, 1, "0.01", "0.01", "0.01", "0.01");
    want += buf;
    EXPECT_EQ(ls::proc(), want);

    ld::task_exit(*t1, ti);
    EXPECT_EQ(ls::proc(), want) << "the same after both tasks ended";

    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    ls::proc(f);
    std::rewind(f);
    std::string got(want.size() + 16, '\0');
    got.resize(std::fread(got.data(), 1, got.size(), f));
    std::fclose(f);
    EXPECT_EQ(got, want);
}

// snprint_time(): ns + 5, then microseconds with two decimals (truncated).
TEST_F(LockStat, TimesInMicrosecondsWithTwoDecimals)
{
    ls::test::set_clock(fake_now);
    struct hold_case {
        const char* name;
        std::uint64_t ns;
        const char* shown;
    };
    const hold_case cases[] = {{"ls_t0", 0, "0.00"}, {"ls_t1994", 1994, "1.99"}, {"ls_t1995", 1995, "2.00"},
        {"ls_t999999", 999999, "1000.00"}, {"ls_tbig", 123456789012, "123456789.01"}};
    std::vector<std::unique_ptr<test_lock>> locks;
    for (const hold_case& c : cases) {
        locks.push_back(std::make_unique<test_lock>(c.name));
        g_fake_ns = 100;
        acq(locks.back()->map);
        g_fake_ns = 100 + c.ns;
        rel(locks.back()->map);
    }
    const std::string out = ls::proc();
    for (const hold_case& c : cases) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "%14d %14s %14s %14s %14s\n", 1, c.shown, c.shown, c.shown, c.shown);
        const auto at = out.find(pad_name(c.name, ""));
        ASSERT_NE(at, std::string::npos) << c.name;
        EXPECT_NE(out.find(buf, at), std::string::npos) << c.name << "\n" << out;
    }
}

TEST_F(LockStat, RowsSortedByContentions)
{
    ls::test::set_clock(fake_now);
    test_lock a("ls_sort_once"), b("ls_sort_never"), c("ls_sort_thrice");
    auto t2 = std::make_unique<ld::task_state>();
    const klock::thread_info ti{};
    auto contend = [&](lockdep_map& m) {
        acq(m);
        ld::lock_acquire(*t2, ti, m, 0, 0, 0, 1, nullptr);
        ld::lock_contended(*t2, ti, m);
        rel(m);
        ld::lock_acquired(*t2, ti, m);
        ld::lock_release(*t2, ti, m);
    };
    contend(a.map);
    acq(b.map);
    rel(b.map);
    for (int i = 0; i < 3; ++i)
        contend(c.map);
    ld::task_exit(*t2, ti);
    const std::string out = ls::proc();
    const auto pa = out.find(pad_name("ls_sort_once", "")), pb = out.find(pad_name("ls_sort_never", "")),
               pc = out.find(pad_name("ls_sort_thrice", ""));
    ASSERT_NE(pa, std::string::npos) << out;
    ASSERT_NE(pb, std::string::npos);
    ASSERT_NE(pc, std::string::npos);
    EXPECT_LT(pc, pa) << out;
    EXPECT_LT(pa, pb) << out;
    EXPECT_EQ(find_row(out, "ls_sort_thrice").contentions, 3u);
    EXPECT_EQ(find_row(out, "ls_sort_thrice").acquisitions, 6u);
    EXPECT_EQ(find_row(out, "ls_sort_once").contentions, 1u);
}

// Readers and writers of one class: the -W and -R rows (seq_stats), each with its own counts.
TEST_F(LockStat, ReadAndWriteRowsOfOneClass)
{
    test_lock rw("ls_rw"), w("ls_w_only"), r("ls_r_only");
    for (int i = 0; i < 3; ++i) {
        acq(rw.map, ld::WRITE);
        rel(rw.map);
    }
    for (int i = 0; i < 5; ++i) {
        acq(rw.map, ld::READ);
        rel(rw.map);
    }
    acq(w.map);
    rel(w.map);
    acq(r.map, ld::READ_RECURSIVE);
    rel(r.map);
    const std::string out = ls::proc();
    EXPECT_EQ(find_row(out, "ls_rw", "-W").acquisitions, 3u) << out;
    EXPECT_EQ(find_row(out, "ls_rw", "-R").acquisitions, 5u) << out;
    EXPECT_FALSE(find_row(out, "ls_rw").found) << "a class with readers has no plain row";
    EXPECT_EQ(find_row(out, "ls_w_only").acquisitions, 1u);
    EXPECT_FALSE(find_row(out, "ls_w_only", "-W").found) << "writers only: the plain row";
    EXPECT_EQ(find_row(out, "ls_r_only", "-R").acquisitions, 1u) << "readers only: the -R row alone";
    EXPECT_FALSE(find_row(out, "ls_r_only").found);
}

// seq_stats' names: at most 37 characters, two fewer per "#N" / "/N" suffix.
TEST_F(LockStat, LongNamesAreCutAsTheKernelCutsThem)
{
    static lock_class_key k1, k2;
    static lockdep_map a{"ls_a_very_long_lock_class_name_0123456789_abcdef", &k1};
    static lockdep_map b{"ls_a_very_long_lock_class_name_0123456789_abcdef", &k2}; // same name: "#2"
    acq(a);
    rel(a);
    acq(b);
    rel(b);
    ld::lock_acquire(a, 1, 0, 0, 1, nullptr); // subclass 1: "/1"
    rel(a);
    const std::string out = ls::proc();
    const std::string base = "ls_a_very_long_lock_class_name_0123456789_abcdef";
    EXPECT_TRUE(find_row(out, base.substr(0, 37)).found) << out;
    EXPECT_TRUE(find_row(out, base.substr(0, 35) + "#2").found) << out;
    EXPECT_TRUE(find_row(out, base.substr(0, 35) + "/1").found) << out;
}

// A release below the top re-pushes the locks above it; their holds must go on, not restart.
TEST_F(LockStat, OutOfOrderReleaseKeepsTheHoldsAbove)
{
    ls::test::set_clock(fake_now);
    test_lock a("ls_ooo_a"), b("ls_ooo_b");
    g_fake_ns = 1000;
    acq(a.map);
    g_fake_ns = 2000;
    acq(b.map);
    g_fake_ns = 3000;
    rel(a.map); // b is pushed again
    g_fake_ns = 9000;
    rel(b.map);
    const std::string out = ls::proc();
    const row ra = find_row(out, "ls_ooo_a"), rb = find_row(out, "ls_ooo_b");
    EXPECT_EQ(ra.acquisitions, 1u);
    EXPECT_DOUBLE_EQ(ra.hold_total, 2.0);
    EXPECT_EQ(rb.acquisitions, 1u);
    EXPECT_DOUBLE_EQ(rb.hold_total, 7.0) << out;
}

TEST_F(LockStat, ClearForgetsEverything)
{
    test_lock l("ls_clear");
    auto t2 = std::make_unique<ld::task_state>();
    const klock::thread_info ti{};
    for (int i = 0; i < 10; ++i) {
        acq(l.map);
        ld::lock_acquire(*t2, ti, l.map, 0, 0, 0, 1, nullptr, 0x1234);
        ld::lock_contended(*t2, ti, l.map);
        rel(l.map);
        ld::lock_acquired(*t2, ti, l.map);
        ld::lock_release(*t2, ti, l.map);
    }
    // A thread that counted, then stays alive across the clear without touching the lock.
    std::atomic<int> phase{0};
    std::thread t([&] {
        for (int i = 0; i < 5; ++i) {
            acq(l.map);
            rel(l.map);
        }
        phase = 1;
        while (phase.load() != 2)
            std::this_thread::yield();
        acq(l.map);
        rel(l.map);
        phase = 3;
    });
    ASSERT_TRUE(klock::test::wait_until([&] { return phase.load() == 1; }));
    std::string out = ls::proc();
    EXPECT_EQ(find_row(out, "ls_clear").acquisitions, 25u);
    EXPECT_EQ(find_row(out, "ls_clear").contentions, 10u);
    EXPECT_NE(out.find(hex_ip(0x1234)), std::string::npos);

    ls::clear();
    out = ls::proc();
    EXPECT_FALSE(find_row(out, "ls_clear").found) << out;
    EXPECT_EQ(out.find(hex_ip(0x1234)), std::string::npos) << "contention points are forgotten";

    phase = 2;
    ASSERT_TRUE(klock::test::wait_until([&] { return phase.load() == 3; }));
    t.join();
    acq(l.map);
    rel(l.map);
    ld::task_exit(*t2, ti);
    EXPECT_EQ(find_row(ls::proc(), "ls_clear").acquisitions, 2u) << "only what came after the clear";
}

TEST_F(LockStat, OffCountsNothingAndHeldLocksSurviveTheSwitch)
{
    test_lock l("ls_onoff");
    ls::set_enabled(false);
    ld::set_enabled(false);
    acq(l.map); // taken with nothing tracking
    ls::set_enabled(true);
    rel(l.map); // tolerated: not counted, no report
    for (int i = 0; i < 4; ++i) {
        acq(l.map);
        rel(l.map);
    }
    ls::set_enabled(false);
    for (int i = 0; i < 9; ++i) {
        acq(l.map);
        rel(l.map);
    }
    ld::set_enabled(true);
    klock::report_capture cap;
    acq(l.map);
    ls::set_enabled(true); // held across the switch: its release is not timed
    rel(l.map);
    EXPECT_EQ(cap.count(), 0u) << (cap.count() != 0 ? cap.reports()[0] : std::string());
    EXPECT_EQ(find_row(ls::proc(), "ls_onoff").acquisitions, 4u);
}

// lock_stat-only mode: validation off, statistics on. An ABBA goes unreported, counts go on.
TEST_F(LockStat, StatOnlyModeCountsWithoutValidating)
{
    ld::set_enabled(false);
    test_lock a("ls_only_a"), b("ls_only_b");
    klock::report_capture cap;
    acq(a.map);
    acq(b.map);
    rel(b.map);
    rel(a.map);
    acq(b.map);
    acq(a.map);
    rel(a.map);
    rel(b.map);
    rel(a.map); // a bad unlock is not lock_stat's business either
    EXPECT_EQ(cap.count(), 0u) << (cap.count() != 0 ? cap.reports()[0] : std::string());
    EXPECT_EQ(ld::get_stats().direct_dependencies, 0u) << "no graph built";
    const std::string out = ls::proc();
    EXPECT_EQ(find_row(out, "ls_only_a").acquisitions, 2u) << out;
    EXPECT_EQ(find_row(out, "ls_only_b").acquisitions, 2u);

    // Validation back on: the same ABBA is reported, and lock_stat keeps counting.
    ld::set_enabled(true);
    acq(a.map);
    acq(b.map);
    rel(b.map);
    rel(a.map);
    acq(b.map);
    acq(a.map);
    rel(a.map);
    rel(b.map);
    EXPECT_TRUE(cap.contains("possible circular locking dependency"));
    EXPECT_EQ(find_row(ls::proc(), "ls_only_a").acquisitions, 4u);
}

TEST_F(LockStat, WarnsWhenLockdepTurnedItselfOff)
{
    klock::report_capture cap;
    ld::test::set_limit(ld::test::limit::keys, 1);
    test_lock a("ls_lim_a"), b("ls_lim_b");
    acq(a.map);
    rel(a.map);
    acq(b.map); // a second class: "BUG: MAX_LOCKDEP_KEYS too low!", lockdep off
    rel(b.map);
    EXPECT_TRUE(cap.contains("MAX_LOCKDEP_KEYS too low"));
    EXPECT_FALSE(ls::enabled()) << "lock_stat stops with debug_locks, as in the kernel";
    const std::string out = ls::proc();
    EXPECT_EQ(out.rfind("lock_stat version 0.4\n*WARNING* lock debugging disabled!! - possibly due to a lockdep "
                        "warning\n"
                      + dashes + "\n",
                  0),
        0u)
        << out;
    EXPECT_EQ(find_row(out, "ls_lim_a").acquisitions, 1u) << "what was counted before stays readable";
}

// KLOCK_LOCK_STAT=1 at start-up and KLOCK_LOCK_STAT_DUMP=path at exit, in a fresh process (this
// test program again, which does its part from a static initialiser and exits before main).
TEST(LockStatEnv, SwitchedOnAtStartupAndDumpedAtExit)
{
    char path[] = "/tmp/klock_lock_stat_dumpXXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    const std::string dump = std::string("KLOCK_LOCK_STAT_DUMP=") + path;
    std::vector<const char*> envp = {"KLOCK_LS_TEST_CHILD=1", "KLOCK_LOCK_STAT=1", dump.c_str()};
    for (char** e = environ; *e != nullptr; ++e)
        if (std::strncmp(*e, "KLOCK_", 6) != 0)
            envp.push_back(*e);
    envp.push_back(nullptr);
    const char* argv[] = {"lock_stat_test", nullptr};
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        execve("/proc/self/exe", const_cast<char* const*>(argv), const_cast<char* const*>(envp.data()));
        _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3: lock_stat was not on at start-up";
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string d = ss.str();
    std::remove(path);
    EXPECT_EQ(d.rfind("lock_stat version 0.4\n" + dashes + "\n", 0), 0u) << d;
    EXPECT_EQ(find_row(d, "ls_child_lock").acquisitions, 7u) << d;
}

// ---- klock's own locks calling the hooks (KLOCK_LOCKDEP=ON) ----

#if KLOCK_LOCKDEP

std::string class_of(klock::lockdep_map& m)
{
    // dynamic locks are named after their construction site, "type@file:line"
    return m.name;
}

// The two call sites whose addresses the contention test expects in the table.
[[gnu::noinline]] void holder_takes(klock::mutex& m) { m.lock(); }
[[gnu::noinline]] void contender_takes(klock::mutex& m) { m.lock(); }

// True if the point line names `fn` (when the symbolizer can name functions of this program at
// all) and its address lies within 4 KiB after fn's start.
void expect_point_in(const std::string& line, void (*fn)(klock::mutex&), const char* fn_name)
{
    const auto at = line.find("[<");
    ASSERT_NE(at, std::string::npos) << line;
    const std::uintptr_t ip = std::strtoull(line.c_str() + at + 2, nullptr, 16);
    const auto start = reinterpret_cast<std::uintptr_t>(fn);
    EXPECT_GT(ip, start) << line;
    EXPECT_LT(ip, start + 4096) << line;
    if (klock::detail::symbolize(start, false).function.find(fn_name) != std::string::npos) {
        EXPECT_NE(line.find(fn_name), std::string::npos) << line;
    }
}

TEST_F(LockStat, MutexControlledContention)
{
    klock::test::watchdog dog(std::chrono::seconds(20), "lock_stat mutex contention");
    constexpr int rounds = 4;
    constexpr auto hold = std::chrono::milliseconds(20);
    int cpu_a = -1, cpu_b = -1;
    const bool two = two_cpus(cpu_a, cpu_b);
    auto m = std::unique_ptr<klock::mutex>(new klock::mutex());
    std::atomic<int> held{-1}, done{-1};
    std::atomic<bool> pinned_a{false}, pinned_b{false};
    std::thread b([&] {
        std::unique_ptr<pin_cpu> pin;
        if (two)
            pin = std::make_unique<pin_cpu>(cpu_b);
        pinned_b = pin != nullptr && pin->ok();
        for (int r = 0; r < rounds; ++r) {
            while (held.load() != r)
                std::this_thread::yield();
            contender_takes(*m); // A holds it: waits ~20 ms
            m->unlock();
            done = r;
        }
    });
    {
        std::unique_ptr<pin_cpu> pin;
        if (two)
            pin = std::make_unique<pin_cpu>(cpu_a);
        pinned_a = pin != nullptr && pin->ok();
        for (int r = 0; r < rounds; ++r) {
            holder_takes(*m);
            held = r;
            // B is asleep in the wait list once WAITERS is set; its wait started before that.
            ASSERT_TRUE(klock::test::wait_until([&] { return (m->owner_word() & klock::MUTEX_FLAG_WAITERS) != 0; }));
            std::this_thread::sleep_for(hold);
            m->unlock();
            ASSERT_TRUE(klock::test::wait_until([&] { return done.load() == r; }));
        }
    }
    b.join();
    const std::string name = class_of(m->dep_map());
    const std::string out = ls::proc();
    const row r = find_row(out, name);
    ASSERT_TRUE(r.found) << out;
    EXPECT_EQ(r.contentions, static_cast<unsigned long>(rounds)) << out;
    EXPECT_EQ(r.acquisitions, 2u * rounds);
    EXPECT_GE(r.wait_min, 19000.0) << "each wait lasted at least the 20 ms hold";
    EXPECT_LT(r.wait_max, 5e6);
    EXPECT_GE(r.hold_max, 19000.0);
    EXPECT_GE(r.hold_total, rounds * 19000.0);
    EXPECT_LT(r.hold_min, 19000.0) << "B's holds are short";
    EXPECT_LT(r.hold_max, 5e6);
    EXPECT_NEAR(r.wait_avg, r.wait_total / rounds, 0.02);
    if (pinned_a && pinned_b) {
        EXPECT_EQ(r.con_bounces, static_cast<unsigned long>(rounds)) << "B waits on another CPU than A took it on";
        EXPECT_EQ(r.acq_bounces, 2u * rounds - 1) << "every acquisition but the first changes CPU";
    }
    const std::vector<std::string> contention = point_lines(out, name, 0), contending = point_lines(out, name, 1);
    ASSERT_EQ(contention.size(), 1u) << out;
    ASSERT_EQ(contending.size(), 1u) << out;
    char count[32];
    std::snprintf(count, sizeof count, " %14d ", rounds);
    EXPECT_NE(contention[0].find(count), std::string::npos) << contention[0];
    EXPECT_NE(contending[0].find(count), std::string::npos) << contending[0];
    expect_point_in(contention[0], contender_takes, "contender_takes");
    expect_point_in(contending[0], holder_takes, "holder_takes");
    EXPECT_NE(out.find("\n" + dots + "\n"), std::string::npos);
}

[[gnu::noinline]] void take_and_release(klock::mutex& m, int n)
{
    for (int i = 0; i < n; ++i) {
        m.lock();
        m.unlock();
    }
}

TEST_F(LockStat, AcquisitionBouncesBetweenCpus)
{
    int cpu_a = -1, cpu_b = -1;
    if (!two_cpus(cpu_a, cpu_b))
        GTEST_SKIP() << "needs two CPUs";
    auto m = std::unique_ptr<klock::mutex>(new klock::mutex());
    bool ok = true;
    auto on_cpu = [&](int cpu, int n) {
        std::thread t([&] {
            pin_cpu pin(cpu);
            ok = ok && pin.ok();
            take_and_release(*m, n);
        });
        t.join();
    };
    on_cpu(cpu_a, 10);
    on_cpu(cpu_b, 10); // one bounce
    on_cpu(cpu_b, 5);  // same CPU, another thread: none
    on_cpu(cpu_a, 10); // one bounce
    if (!ok)
        GTEST_SKIP() << "cannot pin threads";
    const row r = find_row(ls::proc(), class_of(m->dep_map()));
    EXPECT_EQ(r.acquisitions, 35u);
    EXPECT_EQ(r.acq_bounces, 2u);
    EXPECT_EQ(r.con_bounces, 0u);
    EXPECT_EQ(r.contentions, 0u);
}

TEST_F(LockStat, RwSemaphoreHasWriteAndReadRows)
{
    auto sem = std::unique_ptr<klock::rw_semaphore>(new klock::rw_semaphore());
    for (int i = 0; i < 3; ++i) {
        sem->down_write();
        sem->up_write();
    }
    for (int i = 0; i < 5; ++i) {
        sem->down_read();
        sem->up_read();
    }
    const std::string out = ls::proc();
    const std::string name = class_of(sem->dep_map());
    EXPECT_EQ(find_row(out, name, "-W").acquisitions, 3u) << out;
    EXPECT_EQ(find_row(out, name, "-R").acquisitions, 5u) << out;
}

TEST_F(LockStat, RwlockReadersCountedApart)
{
    auto l = std::unique_ptr<klock::rwlock>(new klock::rwlock());
    for (int i = 0; i < 4; ++i) {
        l->lock_shared();
        l->unlock_shared();
    }
    for (int i = 0; i < 2; ++i) {
        l->lock();
        l->unlock();
    }
    const std::string out = ls::proc();
    const std::string name = class_of(l->dep_map());
    EXPECT_EQ(find_row(out, name, "-R").acquisitions, 4u) << out;
    EXPECT_EQ(find_row(out, name, "-W").acquisitions, 2u) << out;
}

// More threads than cores on one mutex: every acquisition counted once, contentions bounded by
// them, and the critical sections still exclusive.
void stress(bool validate)
{
    ld::set_enabled(validate);
    klock::test::watchdog dog(std::chrono::seconds(20), "lock_stat stress");
    auto m = std::unique_ptr<klock::mutex>(new klock::mutex());
    constexpr int threads = 5, iters = 2000;
    long counter = 0;
    std::atomic<int> inside{0};
    std::atomic<bool> overlap{false};
    klock::test::run_threads(threads, [&](int) {
        for (int i = 0; i < iters; ++i) {
            m->lock();
            if (inside.fetch_add(1) != 0)
                overlap = true;
            ++counter;
            inside.fetch_sub(1);
            m->unlock();
        }
    });
    EXPECT_FALSE(overlap.load());
    EXPECT_EQ(counter, long(threads) * iters);
    const row r = find_row(ls::proc(), class_of(m->dep_map()));
    EXPECT_EQ(r.acquisitions, static_cast<unsigned long>(threads * iters));
    EXPECT_LE(r.contentions, r.acquisitions);
    EXPECT_LE(r.hold_min, r.hold_avg);
    EXPECT_LE(r.hold_avg, r.hold_max);
    ld::set_enabled(true);
}

TEST_F(LockStat, StressWithValidation) { stress(true); }
TEST_F(LockStat, StressLockStatOnly) { stress(false); }

TEST_F(LockStat, StatOnlyModeWithRealLocks)
{
    ld::set_enabled(false);
    klock::report_capture cap;
    auto a = std::unique_ptr<klock::mutex>(new klock::mutex());
    auto b = std::unique_ptr<klock::mutex>(new klock::mutex());
    a->lock();
    b->lock();
    b->unlock();
    a->unlock();
    b->lock();
    a->lock(); // ABBA: not validated in this mode
    a->unlock();
    b->unlock();
    EXPECT_EQ(cap.count(), 0u) << (cap.count() != 0 ? cap.reports()[0] : std::string());
    const std::string out = ls::proc();
    EXPECT_EQ(find_row(out, class_of(a->dep_map())).acquisitions, 2u) << out;
    EXPECT_EQ(find_row(out, class_of(b->dep_map())).acquisitions, 2u) << out;
    ld::set_enabled(true);
}

#else

TEST(LockStatLocks, NeedLockdepHooks)
{
    GTEST_SKIP() << "klock's locks call lockdep's hooks only with KLOCK_LOCKDEP=ON; the engine tests above ran";
}

#endif

} // namespace
