// `klock bench`: command line, lock table, the measuring loops (against locks built to fail in
// known ways) and the output formats.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_locks.hpp"
#include "bench_options.hpp"
#include "bench_output.hpp"
#include "bench_workloads.hpp"
#include "commands.hpp"
#include "support/stress.hpp"

namespace {

namespace kb = klock::tool::bench;
using namespace std::chrono_literals;

bool parse(std::vector<std::string> args, kb::options& o, std::string& err)
{
    args.insert(args.begin(), "bench");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    return kb::parse_options(static_cast<int>(argv.size()), argv.data(), o, err);
}

int run(std::vector<std::string> args)
{
    args.insert(args.begin(), "bench");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    return klock::tool::run_bench(static_cast<int>(argv.size()), argv.data());
}

kb::point_config quick(kb::workload w, unsigned threads)
{
    kb::point_config c;
    c.w = w;
    c.threads = threads;
    c.warmup = 10ms;
    c.duration = 40ms;
    c.sample_every = 4;
    c.stuck_limit = 5s;
    return c;
}

std::uint64_t total_ops(const kb::point_result& r)
{
    std::uint64_t t = 0;
    for (auto v : r.ops)
        t += v;
    return t;
}

// A loaded machine (this one is shared by several builds) can keep a point's threads off their
// CPUs for a whole short window, or catch a lock in a long stall; a test that needs progress
// runs the point again then, up to three times. A failed point is never retried.
template <class Run, class Enough> kb::point_result until(Run run, Enough enough)
{
    kb::point_result r;
    for (int attempt = 0; attempt < 3; ++attempt) {
        r = run();
        if (!r.error.empty() || enough(r))
            break;
    }
    return r;
}

// ---- command line ----

TEST(BenchOptions, ThreadLists)
{
    EXPECT_EQ(kb::parse_thread_list("1,2,4"), (std::vector<unsigned>{1, 2, 4}));
    EXPECT_EQ(kb::parse_thread_list("1-4"), (std::vector<unsigned>{1, 2, 3, 4}));
    EXPECT_EQ(kb::parse_thread_list("8,2,4-5,2"), (std::vector<unsigned>{2, 4, 5, 8}));
    for (const char* bad : {"", "0", "1,", ",1", "1,,2", "4-2", "a", "1-", "-3", "2000", "1.5", "1 2"})
        EXPECT_FALSE(kb::parse_thread_list(bad)) << "'" << bad << "'";
}

TEST(BenchOptions, TimesAndDurations)
{
    EXPECT_EQ(kb::parse_nanoseconds("250"), 250u);
    EXPECT_EQ(kb::parse_nanoseconds("250ns"), 250u);
    EXPECT_EQ(kb::parse_nanoseconds("1.5us"), 1500u);
    EXPECT_EQ(kb::parse_nanoseconds("2ms"), 2000000u);
    EXPECT_EQ(kb::parse_nanoseconds("1s"), 1000000000u);
    for (const char* bad : {"", "x", "10xs", "2s", "-5", "1e3", "ns"})
        EXPECT_FALSE(kb::parse_nanoseconds(bad)) << "'" << bad << "'";
    EXPECT_DOUBLE_EQ(*kb::parse_duration("0.2"), 0.2);
    EXPECT_DOUBLE_EQ(*kb::parse_duration("200ms"), 0.2);
    EXPECT_DOUBLE_EQ(*kb::parse_duration("2s"), 2.0);
    for (const char* bad : {"0", "0.5ms", "2h", "1000000", "abc", ""})
        EXPECT_FALSE(kb::parse_duration(bad)) << "'" << bad << "'";
}

TEST(BenchOptions, FlagsAndTheirErrors)
{
    kb::options o;
    std::string err;
    ASSERT_TRUE(parse({"--workload", "contended,handoff", "--threads=1-3", "--cs", "2us", "--delay", "100",
                          "--read-percent", "75", "--duration", "50ms", "--repeat", "3", "--sample", "1", "--locks",
                          "mutex,std::mutex", "--out", "a.csv", "-o", "b.json", "--svg", "p.svg"},
        o, err))
        << err;
    EXPECT_EQ(o.workloads, (std::vector<kb::workload>{kb::workload::contended, kb::workload::handoff}));
    EXPECT_EQ(o.threads, (std::vector<unsigned>{1, 2, 3}));
    EXPECT_EQ(o.cs_ns, 2000u);
    EXPECT_TRUE(o.cs_given);
    EXPECT_EQ(o.delay_ns, 100u);
    EXPECT_EQ(o.read_percent, 75u);
    EXPECT_DOUBLE_EQ(o.duration_s, 0.05);
    EXPECT_EQ(o.repeat, 3u);
    EXPECT_EQ(o.sample_every, 1u);
    EXPECT_EQ(o.locks, (std::vector<std::string>{"mutex", "std::mutex"}));
    EXPECT_EQ(o.outputs, (std::vector<std::string>{"a.csv", "b.json"}));
    EXPECT_EQ(o.svg, "p.svg");

    kb::options w;
    ASSERT_TRUE(parse({"--warmup", "0"}, w, err)) << err;
    EXPECT_EQ(w.warmup_s, 0.0);
    ASSERT_TRUE(parse({"--warmup=30ms"}, w, err)) << err;
    EXPECT_DOUBLE_EQ(w.warmup_s, 0.03);
    EXPECT_LT(kb::options{}.warmup_s, 0.0); // default: a quarter of the duration

    kb::options all;
    ASSERT_TRUE(parse({"-w", "all"}, all, err));
    EXPECT_EQ(all.workloads.size(), 5u);

    struct {
        std::vector<std::string> args;
        const char* says;
    } bad[] = {
        {{"--frobnicate"}, "unknown option '--frobnicate'"},
        {{"--threads"}, "--threads needs a value"},
        {{"--threads", "0"}, "bad value '0' for --threads"},
        {{"--workload", "fast"}, "unknown workload 'fast'"},
        {{"--read-percent", "101"}, "bad value '101' for --read-percent"},
        {{"--out", "x.txt"}, "bad value 'x.txt' for --out"},
        {{"--svg", "x.png"}, "bad value 'x.png' for --svg"},
        {{"--repeat", "0"}, "bad value '0' for --repeat"},
        {{"--list=yes"}, "--list takes no value"},
        {{"--duration", "forever"}, "bad value 'forever' for --duration"},
        {{"--warmup", "-1"}, "bad value '-1' for --warmup"},
    };
    for (const auto& b : bad) {
        kb::options x;
        std::string e;
        EXPECT_FALSE(parse(b.args, x, e)) << b.says;
        EXPECT_NE(e.find(b.says), std::string::npos) << "got: " << e;
    }
}

TEST(BenchOptions, UsageErrorsExitTwo)
{
    EXPECT_EQ(run({"--threads", "x"}), 2);
    EXPECT_EQ(run({"--locks", "no_such_lock"}), 2);
    EXPECT_EQ(run({"--workload", "rw", "--locks", "mutex"}), 2);
    EXPECT_EQ(run({"--workload", "handoff", "--threads", "1"}), 2);
    EXPECT_EQ(run({"--help"}), 0);
    EXPECT_EQ(run({"--list"}), 0);
}

// ---- the lock table ----

TEST(BenchLocks, EveryKlockLockAndTheAlwaysPresentPeers)
{
    for (const char* name : {"ticket_spinlock", "spinlock", "rwlock", "mutex", "rt_mutex", "rw_semaphore", "ww_mutex",
             "std::mutex", "std::shared_mutex"}) {
        const kb::lock_desc* l = kb::find_lock(name);
        ASSERT_NE(l, nullptr) << name;
        EXPECT_TRUE(l->available) << name;
        EXPECT_NE(l->run, nullptr) << name;
    }
    EXPECT_EQ(kb::find_lock("qspinlock"), kb::find_lock("spinlock"));
    EXPECT_EQ(kb::find_lock("STD::MUTEX"), kb::find_lock("std::mutex"));
    EXPECT_EQ(kb::find_lock("nope"), nullptr);
    // Reader sides exactly where there is one.
    EXPECT_NE(kb::find_lock("rwlock")->run_rw, nullptr);
    EXPECT_NE(kb::find_lock("rw_semaphore")->run_rw, nullptr);
    EXPECT_NE(kb::find_lock("std::shared_mutex")->run_rw, nullptr);
    EXPECT_EQ(kb::find_lock("mutex")->run_rw, nullptr);
    // Every peer is in the table, built in or with the package that provides it.
    for (const char* name : {"pthread_spinlock", "glibc_pi_mutex", "absl::Mutex", "tbb::spin_mutex",
             "tbb::queuing_mutex", "ck_ticket", "ck_mcs"}) {
        const kb::lock_desc* l = kb::find_lock(name);
        ASSERT_NE(l, nullptr) << name;
        EXPECT_TRUE(l->available || (l->package != nullptr && *l->package != '\0')) << name;
    }
}

TEST(BenchLocks, ResolveGroupsAndErrors)
{
    std::vector<const kb::lock_desc*> out;
    std::string err;
    ASSERT_TRUE(kb::resolve_locks({"klock"}, out, err));
    EXPECT_EQ(out.size(), 7u);
    ASSERT_TRUE(kb::resolve_locks({"mutex", "MUTEX", "std::mutex"}, out, err));
    EXPECT_EQ(out.size(), 2u); // duplicates once
    EXPECT_FALSE(kb::resolve_locks({"mutex", "bogus"}, out, err));
    EXPECT_NE(err.find("unknown lock 'bogus'"), std::string::npos) << err;
    for (const kb::lock_desc& l : kb::all_locks())
        if (!l.available) {
            EXPECT_FALSE(kb::resolve_locks({l.name}, out, err));
            EXPECT_NE(err.find(l.package), std::string::npos) << err;
        }
}

// ---- the measuring loops, on real locks ----

TEST(BenchRun, ContendedCountsEveryThreadAndSamplesWaits)
{
    klock::test::watchdog wd(30s, "BenchRun.Contended");
    for (const char* name : {"mutex", "spinlock", "ww_mutex", "std::mutex"}) {
        const kb::point_result r = until([&] { return kb::find_lock(name)->run(quick(kb::workload::contended, 3)); },
            [](const kb::point_result& x) { return total_ops(x) > 0 && x.wait.samples() > 0; });
        ASSERT_TRUE(r.error.empty()) << name << ": " << r.error;
        ASSERT_EQ(r.ops.size(), 3u);
        const std::uint64_t total = total_ops(r);
        EXPECT_GT(total, 0u) << name;
        EXPECT_EQ(r.writes, total) << name;
        EXPECT_GT(r.wait.samples(), 0u) << name;
        EXPECT_LE(r.wait.samples(), total) << name;
        EXPECT_GT(r.seconds, 0.03) << name;
    }
}

TEST(BenchRun, RwMixesReadsAndWrites)
{
    klock::test::watchdog wd(30s, "BenchRun.Rw");
    for (const char* name : {"rwlock", "rw_semaphore", "std::shared_mutex"}) {
        kb::point_config c = quick(kb::workload::rw, 3);
        c.read_percent = 50;
        const kb::point_result r = until([&] { return kb::find_lock(name)->run_rw(c); },
            [](const kb::point_result& x) { return x.reads > 0 && x.writes > 0; });
        ASSERT_TRUE(r.error.empty()) << name << ": " << r.error;
        EXPECT_GT(r.reads, 0u) << name;
        EXPECT_GT(r.writes, 0u) << name;
        EXPECT_EQ(r.reads + r.writes, total_ops(r)) << name;
    }
    kb::point_config all_reads = quick(kb::workload::rw, 2);
    all_reads.read_percent = 100;
    const kb::point_result r = until([&] { return kb::find_lock("rwlock")->run_rw(all_reads); },
        [](const kb::point_result& x) { return x.reads > 0; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_GT(r.reads, 0u);
    EXPECT_EQ(r.writes, 0u);
}

TEST(BenchRun, HandoffRecordsOneLatencyPerHandoff)
{
    klock::test::watchdog wd(20s, "BenchRun.Handoff");
    kb::point_config c = quick(kb::workload::handoff, 2);
    c.sample_every = 1;
    c.cs_iters = 1000;
    c.duration = 100ms;
    const kb::point_result r = until([&] { return kb::find_lock("std::mutex")->run(c); },
        [](const kb::point_result& x) { return total_ops(x) >= 2; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    const std::uint64_t total = total_ops(r);
    EXPECT_GE(total, 2u);
    // Every acquisition but the first follows an unlock by the other thread.
    EXPECT_GE(r.handoff.count() + 1, total);
    EXPECT_LE(r.handoff.count(), total);
    // Strict alternation: the old owner waits until the other thread has the lock (the two
    // threads start and stop counting one operation apart at most).
    EXPECT_LE(r.ops[0] > r.ops[1] ? r.ops[0] - r.ops[1] : r.ops[1] - r.ops[0], 2u);
}

// ---- the measuring loops, on locks built to fail ----

// No mutual exclusion at all.
struct no_lock {
    using node = kb::no_node;
    void lock(node&) { }
    void unlock(node&) { }
    void lock_shared(node&) { }
    void unlock_shared(node&) { }
};

TEST(BenchRun, BrokenMutualExclusionIsAnErrorNotAFigure)
{
    klock::test::watchdog wd(20s, "BenchRun.Broken");
    kb::point_config c = quick(kb::workload::contended, 4);
    c.cs_iters = 20000; // time inside, so that preemption and the second core overlap sections
    c.duration = 100ms;
    const kb::point_result r = kb::run_exclusive_point<no_lock>(c);
    EXPECT_NE(r.error.find("mutual exclusion broken"), std::string::npos) << r.error;
    EXPECT_TRUE(r.ops.empty());

    kb::point_config rw = c;
    rw.w = kb::workload::rw;
    rw.read_percent = 50;
    const kb::point_result r2 = kb::run_rw_point<no_lock>(rw);
    EXPECT_NE(r2.error.find("mutual exclusion broken"), std::string::npos) << r2.error;
}

// Loses its unlocks: after the first acquisition every lock() waits until the test lets go.
std::atomic<bool> lost_release{false};
struct lost_wakeup_lock {
    using node = kb::no_node;
    std::atomic<bool> taken{false};
    void lock(node&)
    {
        if (!taken.exchange(true))
            return;
        while (!lost_release.load())
            std::this_thread::sleep_for(1ms);
    }
    void unlock(node&) { }
};

TEST(BenchRun, ThreadStuckInLockIsReportedAndAbandoned)
{
    klock::test::watchdog wd(20s, "BenchRun.Stuck");
    kb::point_config c = quick(kb::workload::contended, 2);
    c.stuck_limit = 150ms;
    const auto t0 = std::chrono::steady_clock::now();
    const kb::point_result r = kb::run_exclusive_point<lost_wakeup_lock>(c);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    EXPECT_NE(r.error.find("2 of 2 threads still in lock()"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("lost wakeup?"), std::string::npos) << r.error;
    lost_release = true; // the abandoned threads finish on their own, owning their state
    std::this_thread::sleep_for(50ms);
}

// Every lock() takes 2 ms: the wait percentiles must say so.
struct slow_lock {
    using node = kb::no_node;
    std::mutex m;
    void lock(node&)
    {
        std::this_thread::sleep_for(2ms);
        m.lock();
    }
    void unlock(node&) { m.unlock(); }
};

TEST(BenchRun, WaitTimeIsLockCallToReturn)
{
    kb::point_config c = quick(kb::workload::uncontended, 1);
    c.sample_every = 1;
    const kb::point_result r = until([&] { return kb::run_exclusive_point<slow_lock>(c); },
        [](const kb::point_result& x) { return x.wait.count() > 3; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_GT(r.wait.count(), 3u);
    EXPECT_GE(r.wait.percentile(50), 2000000u);
    EXPECT_LT(r.wait.percentile(50), 200000000u);
    EXPECT_EQ(r.wait.samples(), r.ops[0]); // sampling every call
    EXPECT_EQ(r.wait.count(), r.ops[0]);
}

TEST(BenchRun, WarmUpIsNotMeasured)
{
    kb::point_config c = quick(kb::workload::uncontended, 1);
    c.warmup = 300ms;
    c.duration = 20ms;
    const kb::point_result r = kb::run_exclusive_point<slow_lock>(c);
    ASSERT_TRUE(r.error.empty()) << r.error;
    // About 10 operations of 2 ms fit the window; the warm-up's 150 do not count, nor its time.
    EXPECT_LE(r.ops[0], 30u);
    EXPECT_LE(r.wait.count(), 30u);
    EXPECT_LT(r.seconds, 0.3);
}

// Hands over slowly: a waiter's lock() returns only 3 ms after the unlock it waited for.
struct slow_handoff_lock {
    using node = kb::no_node;
    std::mutex m;
    std::atomic<std::uint64_t> unlocked_at{0};
    void lock(node&)
    {
        m.lock();
        const std::uint64_t u = unlocked_at.load();
        while (u != 0 && kb::now_ns() - u < 3000000)
            std::this_thread::sleep_for(100us);
    }
    void unlock(node&)
    {
        unlocked_at.store(kb::now_ns());
        m.unlock();
    }
};

TEST(BenchRun, HandoffLatencyIsUnlockToTheWaitersReturn)
{
    klock::test::watchdog wd(20s, "BenchRun.SlowHandoff");
    kb::point_config c = quick(kb::workload::handoff, 2);
    c.sample_every = 1;
    c.duration = 60ms;
    const kb::point_result r = until([&] { return kb::run_exclusive_point<slow_handoff_lock>(c); },
        [](const kb::point_result& x) { return x.handoff.count() > 3; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_GT(r.handoff.count(), 3u);
    EXPECT_GE(r.handoff.percentile(50), 3000000u);
    EXPECT_LT(r.handoff.percentile(50), 300000000u);
}

TEST(BenchRun, SamplingTimesAboutOneCallInN)
{
    kb::point_config c = quick(kb::workload::uncontended, 1);
    c.sample_every = 16;
    const kb::point_result r = until([&] { return kb::find_lock("mutex")->run(c); },
        [](const kb::point_result& x) { return x.wait.samples() >= 200; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_GE(r.wait.samples(), 200u);
    // Fast calls: about one in 16 timed (a preempted call makes the next few timed too), and
    // the weights add up to about every call.
    const double ratio = static_cast<double>(r.ops[0]) / static_cast<double>(r.wait.samples());
    EXPECT_GT(ratio, 10.0);
    EXPECT_LT(ratio, 22.0);
    EXPECT_NEAR(
        static_cast<double>(r.wait.count()), static_cast<double>(r.ops[0]), 0.2 * static_cast<double>(r.ops[0]));
}

TEST(BenchRun, SlowCallsAreAllTimed)
{
    // Every call waits 2 ms, far above the threshold: after the first, every call is timed,
    // whatever the sampling rate.
    kb::point_config c = quick(kb::workload::uncontended, 1);
    c.sample_every = 1000;
    const kb::point_result r = until(
        [&] { return kb::run_exclusive_point<slow_lock>(c); }, [](const kb::point_result& x) { return x.ops[0] > 3; });
    ASSERT_TRUE(r.error.empty()) << r.error;
    ASSERT_GT(r.ops[0], 3u);
    EXPECT_GE(r.wait.samples() + 1, r.ops[0]);
    EXPECT_GE(r.wait.percentile(50), 2000000u);
}

// ---- output ----

std::vector<kb::point_row> sample_rows()
{
    std::vector<kb::point_row> rows;
    for (unsigned t : {1u, 2u, 4u})
        for (const char* lock : {"mutex", "std::mutex"}) {
            kb::point_row r;
            r.w = kb::workload::contended;
            r.lock = lock;
            r.klock = std::string(lock) == "mutex";
            r.threads = t;
            kb::run_figures f;
            f.seconds = 0.2;
            f.ops = 1e6 * t;
            f.ops_per_s = 5e6 * t;
            f.min_max = 0.5;
            f.jain = 0.9;
            f.wait_p50 = 100;
            f.wait_p99 = 5000 * t;
            f.wait_max = 90000;
            f.per_thread.assign(t, 1000);
            r.runs = {f, f};
            r.runs[1].ops_per_s *= 2;
            rows.push_back(r);
        }
    kb::point_row failed;
    failed.w = kb::workload::handoff;
    failed.lock = "spinlock";
    failed.klock = true;
    failed.threads = 2;
    kb::run_figures f;
    f.error = "mutual exclusion broken: \"quoted\", with a comma";
    failed.runs = {f};
    rows.push_back(failed);
    for (auto& r : rows)
        kb::summarize(r);
    return rows;
}

TEST(BenchOutput, SummaryIsTheMedianAndKeepsErrors)
{
    const auto rows = sample_rows();
    EXPECT_DOUBLE_EQ(rows[0].summary.ops_per_s, 7.5e6); // median of 5e6 and 10e6
    EXPECT_DOUBLE_EQ(rows[0].summary.wait_p99, 5000);
    EXPECT_NE(rows.back().summary.error.find("mutual exclusion"), std::string::npos);
}

TEST(BenchOutput, CsvHasOneRowPerPointAndAFixedColumnCount)
{
    const std::string csv = kb::csv_of(sample_rows());
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < csv.size()) {
        const std::size_t nl = csv.find('\n', start);
        lines.push_back(csv.substr(start, nl - start));
        start = nl + 1;
    }
    ASSERT_EQ(lines.size(), 8u);
    // Commas outside quotes.
    auto fields = [](const std::string& l) {
        std::size_t n = 1;
        bool q = false;
        for (char c : l) {
            if (c == '"')
                q = !q;
            else if (c == ',' && !q)
                ++n;
        }
        return n;
    };
    for (const auto& l : lines)
        EXPECT_EQ(fields(l), fields(lines[0])) << l;
    EXPECT_EQ(lines[1].rfind("contended,mutex,klock,1,", 0), 0u) << lines[1];
    EXPECT_NE(lines.back().find("\"mutual exclusion broken: \"\"quoted\"\", with a comma\""), std::string::npos);
}

TEST(BenchOutput, JsonAndSvgCarryEveryLock)
{
    kb::report_meta meta = kb::machine_meta();
    meta.cpu_model = "Test <CPU> & co";
    const auto rows = sample_rows();
    const std::string json = kb::json_of(rows, meta);
    EXPECT_EQ(json.front(), '{');
    EXPECT_NE(json.find("\"lock\": \"std::mutex\""), std::string::npos);
    EXPECT_NE(json.find("\"warmup_s\": "), std::string::npos);
    EXPECT_NE(json.find("\"error\": \"mutual exclusion broken: \\\"quoted\\\", with a comma\""), std::string::npos);
    const std::string svg = kb::svg_of(rows, meta);
    EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
    EXPECT_NE(svg.find("</svg>"), std::string::npos);
    EXPECT_NE(svg.find("Test &lt;CPU&gt; &amp; co"), std::string::npos); // escaped
    EXPECT_EQ(svg.find("<CPU>"), std::string::npos);
    // A line per lock and panel of the multi-thread workload: 2 locks x 3 panels.
    std::size_t polylines = 0;
    for (std::size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1))
        ++polylines;
    EXPECT_EQ(polylines, 6u);
}

TEST(BenchOutput, HumanUnits)
{
    EXPECT_EQ(kb::human_ns(950), "950 ns");
    EXPECT_EQ(kb::human_ns(1500), "1.50 us");
    EXPECT_EQ(kb::human_ns(25000000), "25.0 ms");
    EXPECT_EQ(kb::human_rate(12345678), "12.35 M");
    EXPECT_EQ(kb::human_rate(2500), "2.5 k");
}

} // namespace
