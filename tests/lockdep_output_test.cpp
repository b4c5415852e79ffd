// lockdep's output formats: the /proc/lockdep, /proc/lockdep_chains and /proc/lockdep_stats
// layouts, the chain-cache counters, the dump at exit, and the JSON object of each report (parsed
// here by the strict parser of support/json.hpp, so a malformed object fails the test).
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>

#include "support/json.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace ld = klock::lockdep;
using klock::lock_class_key;
using klock::lockdep_map;
using klock::test::json_kind;
using klock::test::json_parser;
using klock::test::json_value;

lock_class_key key_a, key_b;
lockdep_map lock_a{"A", &key_a};
lockdep_map lock_b{"B", &key_b};

void acq(lockdep_map& m) { ld::lock_acquire(m, 0, 0, 0, 1, nullptr); }
void rel(lockdep_map& m) { ld::lock_release(m); }

void a_then_b()
{
    acq(lock_a);
    acq(lock_b);
    rel(lock_b);
    rel(lock_a);
}

std::string hex_of(const void* p)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016" PRIxPTR, reinterpret_cast<std::uintptr_t>(p));
    return buf;
}

std::string stat(const char* label, unsigned long v)
{
    char buf[96];
    std::snprintf(buf, sizeof buf, " %-31s%11lu\n", label, v);
    return buf;
}

std::string stat_max(const char* label, unsigned long v, unsigned long max)
{
    char buf[96];
    std::snprintf(buf, sizeof buf, " %-31s%11lu [max: %lu]\n", label, v, max);
    return buf;
}

// Each report's JSON object, parsed strictly so that a malformed one fails the test.
json_value parse_or_fail(const std::string& text)
{
    json_value v;
    json_parser p(text);
    EXPECT_TRUE(p.parse(v)) << "not valid JSON at offset " << p.where() << ":\n" << text;
    EXPECT_EQ(v.kind, json_kind::object);
    return v;
}

class LockdepOutput : public ::testing::Test {
protected:
    void SetUp() override
    {
        ld::reset();
        ld::set_one_shot(false);
        ld::set_json_callback(
            [](std::string_view j, void* self) { static_cast<LockdepOutput*>(self)->json.emplace_back(j); }, this);
    }
    void TearDown() override
    {
        ld::set_json_callback(nullptr, nullptr);
        ld::set_count_ops(false);
        ld::reset();
    }
    klock::report_capture cap;
    std::vector<std::string> json;
};

TEST_F(LockdepOutput, ProcLockdepLayout)
{
    a_then_b();
    const std::string d = ld::proc_lockdep();
    const std::string expect = "all lock classes:\n" + hex_of(&key_a.subkeys[0]) + " FD:    2 BD:    1 +.+.: A\n"
        + " -> [" + hex_of(&key_b.subkeys[0]) + "] B\n\n" + hex_of(&key_b.subkeys[0])
        + " FD:    1 BD:    2 +.+.: B\n\n";
    EXPECT_EQ(d, expect);
}

TEST_F(LockdepOutput, ProcLockdepOpsColumn)
{
    ld::set_count_ops(true);
    for (int i = 0; i < 5; ++i)
        a_then_b();
    const std::string d = ld::proc_lockdep();
    EXPECT_NE(d.find(hex_of(&key_a.subkeys[0]) + " OPS:       5 FD:    2 BD:    1 +.+.: A\n"), std::string::npos) << d;
}

TEST_F(LockdepOutput, ProcLockdepChainsLayout)
{
    a_then_b();
    const std::string a = "[" + hex_of(&key_a.subkeys[0]) + "] A\n";
    const std::string b = "[" + hex_of(&key_b.subkeys[0]) + "] B\n";
    EXPECT_EQ(
        ld::proc_lockdep_chains(), "all lock chains:\nirq_context: 0\n" + a + "\nirq_context: 0\n" + a + b + "\n");
}

TEST_F(LockdepOutput, ProcLockdepStatsLayout)
{
    a_then_b();
    const std::string s = ld::proc_lockdep_stats();
    EXPECT_EQ(s.rfind(stat_max("lock-classes:", 2, ld::MAX_LOCKDEP_KEYS), 0), 0u) << s;
    for (const std::string& line : {stat_max("direct dependencies:", 2, ld::MAX_LOCKDEP_ENTRIES),
             stat("indirect dependencies:", 3), stat_max("dependency chains:", 2, ld::MAX_LOCKDEP_CHAINS),
             stat_max("dependency chain hlocks:", 3, ld::MAX_LOCKDEP_CHAIN_HLOCKS), stat("in-hardirq chains:", 0),
             stat("in-softirq chains:", 0), stat("in-process chains:", 2), stat("combined max dependencies:", 3),
             stat("hardirq-safe locks:", 0), stat("hardirq-unsafe locks:", 2), stat("softirq-unsafe locks:", 2),
             stat("irq-unsafe locks:", 2), stat("uncategorized locks:", 0), stat("unused locks:", 0),
             stat("max locking depth:", 2), stat("chain lookup misses:", 2), stat("cyclic checks:", 1),
             stat("debug_locks:", 1)})
        EXPECT_NE(s.find(line), std::string::npos) << "missing: " << line << s;
    EXPECT_NE(s.find(" stack-trace entries:  "), std::string::npos);
    // Every line: a label padded to 32 columns, a right-aligned number, maybe a limit.
    std::istringstream in(s);
    std::string line;
    int lines = 0;
    while (std::getline(in, line)) {
        ++lines;
        EXPECT_TRUE(std::regex_match(line, std::regex(R"( [a-z_ -]+: *[0-9]+( \[max: [0-9]+\])?)"))) << line;
        ASSERT_GE(line.size(), 43u) << line;
        EXPECT_TRUE(std::regex_match(line.substr(32, 11), std::regex(" *[0-9]+"))) << line;
    }
    EXPECT_GE(lines, 40);
}

TEST_F(LockdepOutput, ChainCacheHitsAreCounted)
{
    for (int i = 0; i < 100; ++i)
        a_then_b();
    const auto st = ld::get_stats();
    EXPECT_EQ(st.chain_lookup_misses, 2u);
    EXPECT_EQ(st.chain_lookup_hits, 198u);
    EXPECT_NE(ld::proc_lockdep_stats().find(stat("chain lookup hits:", 198)), std::string::npos);
    // Counters of threads that have ended are kept.
    std::thread([] {
        for (int i = 0; i < 10; ++i)
            a_then_b();
    }).join();
    EXPECT_EQ(ld::get_stats().chain_lookup_hits, 218u);
}

TEST_F(LockdepOutput, LimitsShowInTheStats)
{
    ld::test::set_limit(ld::test::limit::keys, 100);
    EXPECT_NE(ld::proc_lockdep_stats().find(stat_max("lock-classes:", 0, 100)), std::string::npos);
}

TEST_F(LockdepOutput, CircularReportAsJson)
{
    std::thread(a_then_b).join();
    std::thread([] {
        acq(lock_b);
        acq(lock_a);
        rel(lock_a);
        rel(lock_b);
    }).join();
    ASSERT_EQ(json.size(), 1u);
    ASSERT_EQ(cap.count(), 1u);
    const json_value v = parse_or_fail(json[0]);
    EXPECT_EQ(v.str("type"), "circular_locking");
    EXPECT_EQ(v.str("title"), "WARNING: possible circular locking dependency detected");
    EXPECT_EQ(v.str("text"), cap.reports()[0]);
    const json_value* task = v.get("task");
    ASSERT_NE(task, nullptr);
    EXPECT_EQ(task->get("pid")->kind, json_kind::number);
    EXPECT_EQ(v.get("acquiring")->str("class"), "A");
    EXPECT_EQ(v.get("holding")->str("class"), "B");
    EXPECT_EQ(v.get("acquiring")->str("usage"), "+.+.");
    const json_value* chain = v.get("chain");
    ASSERT_NE(chain, nullptr);
    ASSERT_EQ(chain->a.size(), 2u);
    EXPECT_EQ(chain->a[0].str("class"), "B");
    EXPECT_EQ(chain->a[0].get("index")->n, 1);
    EXPECT_EQ(chain->a[1].str("class"), "A");
    for (const auto& e : chain->a) {
        const json_value* st = e.get("stack");
        ASSERT_NE(st, nullptr);
        ASSERT_FALSE(st->a.empty());
        EXPECT_EQ(st->a[0].str("ip").rfind("0x", 0), 0u);
        EXPECT_FALSE(st->a[0].str("symbol").empty());
    }
    EXPECT_EQ(v.get("held_locks")->a.size(), 1u);
    EXPECT_FALSE(v.get("stack")->a.empty());
}

TEST_F(LockdepOutput, EveryReportKindIsOneJsonObject)
{
    static lock_class_key key_c;
    static lockdep_map lock_c{"C", &key_c};
    acq(lock_a); // recursion
    acq(lock_a);
    rel(lock_a);
    rel(lock_a);
    rel(lock_b); // unlock imbalance
    acq(lock_c);
    klock::debug_check_no_locks_freed(&lock_c, sizeof lock_c); // freed
    rel(lock_c);
    std::thread([] { acq(lock_b); }).join(); // held at exit
    klock::hardirq_enter();                  // inconsistent state
    acq(lock_c);
    rel(lock_c);
    klock::hardirq_exit();
    ld::test::set_limit(ld::test::limit::keys, 3); // and a limit (A, B, C exist)
    static lock_class_key key_d;
    static lockdep_map lock_d{"D", &key_d};
    acq(lock_d);
    ASSERT_EQ(json.size(), 6u);
    ASSERT_EQ(cap.count(), 6u);
    const char* types[] = {"recursive_locking", "bad_unlock_balance", "held_lock_freed", "locks_held_at_exit",
        "inconsistent_lock_state", "limit"};
    for (std::size_t i = 0; i < json.size(); ++i) {
        const json_value v = parse_or_fail(json[i]);
        EXPECT_EQ(v.str("type"), types[i]);
        EXPECT_EQ(v.str("text"), cap.reports()[i]);
        EXPECT_NE(v.get("stack"), nullptr);
    }
    EXPECT_EQ(parse_or_fail(json[4]).str("from"), "HARDIRQ-ON-W");
    EXPECT_EQ(parse_or_fail(json[4]).str("to"), "IN-HARDIRQ-W");
}

TEST_F(LockdepOutput, IrqReportsAsJson)
{
    static lock_class_key key_s, key_u, key_v;
    static lockdep_map safe{"S", &key_s}, unsafe{"U", &key_u}, later{"V", &key_v};
    klock::hardirq_enter(); // S: hardirq-safe
    acq(safe);
    rel(safe);
    klock::hardirq_exit();
    acq(unsafe); // U: hardirq-unsafe
    rel(unsafe);
    klock::local_irq_disable();
    acq(safe);
    acq(unsafe); // S -> U: safe -> unsafe order
    rel(unsafe);
    acq(later); // S -> V, V not yet unsafe
    rel(later);
    rel(safe);
    klock::local_irq_enable();
    acq(later); // V becomes unsafe under the safe S: irq lock inversion
    rel(later);
    ASSERT_EQ(json.size(), 2u);
    const json_value order = parse_or_fail(json[0]);
    EXPECT_EQ(order.str("type"), "irq_safe_unsafe_order");
    EXPECT_EQ(order.get("safe")->str("class"), "S");
    EXPECT_EQ(order.get("unsafe")->str("class"), "U");
    EXPECT_FALSE(order.get("safe_at")->a.empty());
    EXPECT_FALSE(order.get("unsafe_at")->a.empty());
    EXPECT_EQ(order.get("safe_dependencies")->a.size(), 1u);
    EXPECT_EQ(order.get("unsafe_dependencies")->a.size(), 1u);
    const json_value inv = parse_or_fail(json[1]);
    EXPECT_EQ(inv.str("type"), "irq_lock_inversion");
    EXPECT_EQ(inv.get("lock")->str("class"), "V");
    EXPECT_EQ(inv.get("other")->str("class"), "S");
    EXPECT_EQ(inv.str("irqclass"), "HARDIRQ");
    EXPECT_EQ(inv.get("dependencies")->a.size(), 2u);
    EXPECT_EQ(inv.str("text"), cap.reports()[1]);
}

TEST_F(LockdepOutput, JsonFileSink)
{
    char path[] = "/tmp/klock-lockdep-json-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_TRUE(ld::set_json_file(path));
    acq(lock_a);
    acq(lock_a);
    rel(lock_a);
    rel(lock_a);
    rel(lock_b);
    ASSERT_TRUE(ld::set_json_file(nullptr));
    std::ifstream in(path);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        parse_or_fail(line);
    }
    EXPECT_EQ(n, 2);
    std::remove(path);
    EXPECT_FALSE(ld::set_json_file("/nonexistent-dir/x.json"));
}

TEST_F(LockdepOutput, DumpAtExit)
{
    char path[] = "/tmp/klock-lockdep-dump-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    a_then_b(); // the at-exit hook is registered with the first task
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        setenv("KLOCK_LOCKDEP_DUMP", path, 1);
        a_then_b();
        std::exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string d = ss.str();
    EXPECT_EQ(d.rfind("==> /proc/lockdep <==\nall lock classes:\n", 0), 0u) << d;
    EXPECT_NE(d.find("\n==> /proc/lockdep_chains <==\nall lock chains:\n"), std::string::npos);
    EXPECT_NE(d.find("\n==> /proc/lockdep_stats <==\n lock-classes:"), std::string::npos);
    EXPECT_NE(d.find(": B\n"), std::string::npos);
    std::remove(path);
}

TEST_F(LockdepOutput, DumpToFile)
{
    a_then_b();
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    ld::proc_lockdep(f);
    ld::proc_lockdep_chains(f);
    ld::proc_lockdep_stats(f);
    const long size = std::ftell(f);
    std::fclose(f);
    EXPECT_EQ(static_cast<std::size_t>(size),
        ld::proc_lockdep().size() + ld::proc_lockdep_chains().size() + ld::proc_lockdep_stats().size());
}

} // namespace
