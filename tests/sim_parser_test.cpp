// The scenario text format: every construct, the example files, the writer's round trip, and
// each error message with the line and column it points at.
#include <gtest/gtest.h>

#include <klock/sim/builtins.hpp>
#include <klock/sim/scenario_parser.hpp>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace klock::sim;

scenario parse_ok(std::string_view text, std::string_view file = "test.scn")
{
    parse_error err;
    std::optional<scenario> s = parse_scenario(text, file, err);
    EXPECT_TRUE(s.has_value()) << err.what();
    return s ? *s : scenario{};
}

std::string parse_fail(std::string_view text, std::string_view file = "t.scn")
{
    parse_error err;
    std::optional<scenario> s = parse_scenario(text, file, err);
    EXPECT_FALSE(s.has_value()) << "parsed although it should not:\n" << text;
    return err.what();
}

// Field-by-field equality, positions (line/column) aside: what a round trip must preserve.
void expect_same_steps(const std::vector<step>& a, const std::vector<step>& b, const std::string& where)
{
    ASSERT_EQ(a.size(), b.size()) << where;
    for (std::size_t i = 0; i < a.size(); ++i) {
        SCOPED_TRACE(where + " step " + std::to_string(i));
        EXPECT_EQ(a[i].kind, b[i].kind);
        EXPECT_EQ(a[i].lock, b[i].lock);
        EXPECT_EQ(a[i].ns, b[i].ns);
        EXPECT_EQ(a[i].count, b[i].count);
        EXPECT_EQ(a[i].bytes, b[i].bytes);
        EXPECT_EQ(a[i].irq, b[i].irq);
        EXPECT_EQ(a[i].cpu, b[i].cpu);
    }
}

void expect_same(const scenario& a, const scenario& b)
{
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.description, b.description);
    EXPECT_EQ(a.cpus, b.cpus);
    EXPECT_EQ(a.tick_ns, b.tick_ns);
    EXPECT_EQ(a.rr_timeslice_ns, b.rr_timeslice_ns);
    EXPECT_EQ(a.time_limit_ns, b.time_limit_ns);
    EXPECT_EQ(a.soft_lockup_ns, b.soft_lockup_ns);
    EXPECT_EQ(a.seed, b.seed);
    EXPECT_EQ(a.irq_stacks, b.irq_stacks);
    EXPECT_EQ(a.irq_stack_size, b.irq_stack_size);
    EXPECT_EQ(a.expect, b.expect);
    EXPECT_EQ(a.trace_lock_words, b.trace_lock_words);
    ASSERT_EQ(a.locks.size(), b.locks.size());
    for (std::size_t i = 0; i < a.locks.size(); ++i) {
        EXPECT_EQ(a.locks[i].name, b.locks[i].name);
        EXPECT_EQ(a.locks[i].type, b.locks[i].type);
    }
    ASSERT_EQ(a.irqs.size(), b.irqs.size());
    for (std::size_t i = 0; i < a.irqs.size(); ++i) {
        EXPECT_EQ(a.irqs[i].name, b.irqs[i].name);
        EXPECT_EQ(a.irqs[i].cpu, b.irqs[i].cpu);
        EXPECT_EQ(a.irqs[i].softirq, b.irqs[i].softirq);
        EXPECT_EQ(a.irqs[i].at_ns, b.irqs[i].at_ns);
        EXPECT_EQ(a.irqs[i].period_ns, b.irqs[i].period_ns);
        expect_same_steps(a.irqs[i].handler, b.irqs[i].handler, "irq " + a.irqs[i].name);
    }
    ASSERT_EQ(a.tasks.size(), b.tasks.size());
    for (std::size_t i = 0; i < a.tasks.size(); ++i) {
        const task_spec& x = a.tasks[i];
        const task_spec& y = b.tasks[i];
        EXPECT_EQ(x.name, y.name);
        EXPECT_EQ(x.sched, y.sched);
        EXPECT_EQ(x.prio, y.prio);
        EXPECT_EQ(x.nice, y.nice);
        EXPECT_EQ(x.affinity, y.affinity);
        EXPECT_EQ(x.stack_size, y.stack_size);
        EXPECT_EQ(x.start_ns, y.start_ns);
        EXPECT_EQ(x.start_cpu, y.start_cpu);
        expect_same_steps(x.steps, y.steps, "task " + x.name);
    }
}

scenario round_trip(const scenario& s)
{
    std::ostringstream out;
    write_scenario(s, out);
    parse_error err;
    std::optional<scenario> back = parse_scenario(out.str(), "written.scn", err);
    EXPECT_TRUE(back.has_value()) << err.what() << "\n--- written:\n" << out.str();
    return back ? *back : scenario{};
}

// A scenario that uses every construct of the format.
constexpr std::string_view everything = R"(# every construct of the format
name everything   # a trailing comment
description "quoted: # is not a comment here, \"escapes\" work"
cpus 4
tick 1ms
time_limit 2.5s
soft_lockup 500ms
seed 42
rr_timeslice 3ms
irq_stacks arm
irq_stack_size 8K
expect deadlock "lost wakeup" priority_inversion
trace_lock_words

lock s1 spinlock
lock s2 ticket_spinlock
lock s3 qspinlock
lock rw rwlock
lock m mutex
lock rt rt_mutex
lock sem rw_semaphore

irq eth0 cpu 2 at 1500us period 10ms {
    lock s1
    work 10us
    unlock s1
}
irq doorbell cpu 3          # only raised by steps: no handler block needed
softirq tasklet cpu 1 period 3ms {
    work 5us
}

task high fifo 99 affinity 0-1,3 cpu 3 stack 1M start 2ms {
    lock m
    trylock s2
    unlock m
    read_lock rw
    read_unlock rw
	read_lock sem
    read_unlock sem
    lock_irqsave s3
    unlock_irqrestore s3
    sleep 250ns
    preempt_disable
    preempt_enable
    local_irq_disable
    local_irq_enable
    local_bh_disable
    local_bh_enable
    raise eth0
    raise doorbell on cpu1
    raise doorbell on cpu 2
    recurse 5
    recurse 3 2K
    no_switch_begin
    no_switch_end
    loop 3 {
        loop forever {
            lock rt
            unlock rt
        }
        loop 2 { }
    }
}

task mid rr 1 { }
task low other nice -20 affinity all { work 1s }
)";

TEST(SimParser, EveryConstruct)
{
    // The one-line body "{ work 1s }" is not allowed: fix the text to the multi-line form.
    std::string text(everything);
    text.replace(text.find("{ work 1s }"), 11, "{\n    work 1s\n}");
    scenario s = parse_ok(text);
    EXPECT_EQ(s.name, "everything");
    EXPECT_EQ(s.description, "quoted: # is not a comment here, \"escapes\" work");
    EXPECT_EQ(s.cpus, 4u);
    EXPECT_EQ(s.tick_ns, 1'000'000u);
    EXPECT_EQ(s.time_limit_ns, 2'500'000'000u);
    EXPECT_EQ(s.soft_lockup_ns, 500'000'000u);
    EXPECT_EQ(s.seed, 42u);
    EXPECT_EQ(s.rr_timeslice_ns, 3'000'000u);
    EXPECT_EQ(s.irq_stacks, irq_stack_mode::task_stack);
    EXPECT_EQ(s.irq_stack_size, 8u * 1024);
    EXPECT_EQ(s.expect, (std::vector<std::string>{"deadlock", "lost wakeup", "priority inversion"}));
    EXPECT_TRUE(s.trace_lock_words);

    ASSERT_EQ(s.locks.size(), 7u);
    const lock_type types[] = {lock_type::spinlock, lock_type::ticket_spinlock, lock_type::qspinlock, lock_type::rwlock,
        lock_type::mutex, lock_type::rt_mutex, lock_type::rw_semaphore};
    for (std::size_t i = 0; i < 7; ++i)
        EXPECT_EQ(s.locks[i].type, types[i]) << i;
    EXPECT_EQ(s.locks[0].name, "s1");
    EXPECT_EQ(s.locks[6].name, "sem");
    EXPECT_EQ(s.locks[3].line, 18u);

    ASSERT_EQ(s.irqs.size(), 3u);
    EXPECT_EQ(s.irqs[0].name, "eth0");
    EXPECT_EQ(s.irqs[0].cpu, 2);
    EXPECT_EQ(s.irqs[0].at_ns, 1'500'000u);
    EXPECT_EQ(s.irqs[0].period_ns, 10'000'000u);
    ASSERT_EQ(s.irqs[0].handler.size(), 3u);
    EXPECT_EQ(s.irqs[0].handler[0].kind, op::lock);
    EXPECT_EQ(s.irqs[0].handler[0].lock, 0);
    EXPECT_EQ(s.irqs[0].handler[1].ns, 10'000u);
    EXPECT_EQ(s.irqs[1].name, "doorbell");
    EXPECT_EQ(s.irqs[1].cpu, 3);
    EXPECT_EQ(s.irqs[1].at_ns, 0u);
    EXPECT_TRUE(s.irqs[1].handler.empty());
    EXPECT_FALSE(s.irqs[0].softirq);
    EXPECT_FALSE(s.irqs[1].softirq);
    EXPECT_EQ(s.irqs[2].name, "tasklet");
    EXPECT_TRUE(s.irqs[2].softirq);
    EXPECT_EQ(s.irqs[2].cpu, 1);
    EXPECT_EQ(s.irqs[2].period_ns, 3'000'000u);
    ASSERT_EQ(s.irqs[2].handler.size(), 1u);
    EXPECT_EQ(s.irqs[2].handler[0].ns, 5'000u);

    ASSERT_EQ(s.tasks.size(), 3u);
    const task_spec& h = s.tasks[0];
    EXPECT_EQ(h.name, "high");
    EXPECT_EQ(h.sched, policy::fifo);
    EXPECT_EQ(h.prio, 99);
    EXPECT_EQ(h.affinity, 0b1011u);
    EXPECT_EQ(h.start_cpu, 3);
    EXPECT_EQ(h.stack_size, 1024u * 1024);
    EXPECT_EQ(h.start_ns, 2'000'000u);
    EXPECT_EQ(h.line, 33u);

    const std::vector<op> kinds = {op::lock, op::trylock, op::unlock, op::lock_read, op::unlock_read, op::lock_read,
        op::unlock_read, op::lock_irqsave, op::unlock_irqrestore, op::sleep, op::preempt_disable, op::preempt_enable,
        op::local_irq_disable, op::local_irq_enable, op::local_bh_disable, op::local_bh_enable, op::raise_irq,
        op::raise_irq, op::raise_irq, op::recurse, op::recurse, op::no_switch_begin, op::no_switch_end, op::loop,
        op::loop, op::lock, op::unlock, op::end_loop, op::loop, op::end_loop, op::end_loop};
    ASSERT_EQ(h.steps.size(), kinds.size());
    for (std::size_t i = 0; i < kinds.size(); ++i)
        EXPECT_EQ(h.steps[i].kind, kinds[i]) << "step " << i << " is " << to_string(h.steps[i].kind);
    EXPECT_EQ(h.steps[0].lock, 4);  // m
    EXPECT_EQ(h.steps[1].lock, 1);  // s2
    EXPECT_EQ(h.steps[3].lock, 3);  // rw
    EXPECT_EQ(h.steps[5].lock, 6);  // sem
    EXPECT_EQ(h.steps[7].lock, 2);  // s3
    EXPECT_EQ(h.steps[9].ns, 250u); // sleep 250ns
    EXPECT_EQ(h.steps[16].irq, 0);
    EXPECT_EQ(h.steps[16].cpu, -1);
    EXPECT_EQ(h.steps[17].irq, 1);
    EXPECT_EQ(h.steps[17].cpu, 1);
    EXPECT_EQ(h.steps[18].cpu, 2);
    EXPECT_EQ(h.steps[19].count, 5u);
    EXPECT_EQ(h.steps[19].bytes, 0u);
    EXPECT_EQ(h.steps[20].count, 3u);
    EXPECT_EQ(h.steps[20].bytes, 2048u);
    EXPECT_EQ(h.steps[23].count, 3u);
    EXPECT_EQ(h.steps[24].count, 0u); // forever
    EXPECT_EQ(h.steps[25].lock, 5);   // rt
    EXPECT_EQ(h.steps[28].count, 2u); // the empty "loop 2 { }"

    // positions: the keyword of each step, tabs counting as one column
    EXPECT_EQ(h.steps[0].line, 34u);
    EXPECT_EQ(h.steps[0].column, 5u);
    EXPECT_EQ(h.steps[5].line, 39u);
    EXPECT_EQ(h.steps[5].column, 2u);
    EXPECT_EQ(h.steps[24].line, 58u);
    EXPECT_EQ(h.steps[24].column, 9u);
    EXPECT_EQ(h.steps[27].line, 61u); // the '}' closing "loop forever"
    EXPECT_EQ(h.steps[27].column, 9u);

    EXPECT_EQ(s.tasks[1].sched, policy::rr);
    EXPECT_EQ(s.tasks[1].prio, 1);
    EXPECT_TRUE(s.tasks[1].steps.empty());
    EXPECT_EQ(s.tasks[2].sched, policy::other);
    EXPECT_EQ(s.tasks[2].nice, -20);
    EXPECT_EQ(s.tasks[2].affinity, ~std::uint64_t(0));
    EXPECT_EQ(s.tasks[2].start_cpu, -1);
    ASSERT_EQ(s.tasks[2].steps.size(), 1u);
    EXPECT_EQ(s.tasks[2].steps[0].ns, 1'000'000'000u);
}

TEST(SimParser, DefaultsAndFileStemAsName)
{
    scenario s = parse_ok("task t other {\n}\n", "some/dir/my_case.scn");
    const scenario d;
    EXPECT_EQ(s.name, "my_case");
    EXPECT_EQ(s.cpus, d.cpus);
    EXPECT_EQ(s.tick_ns, d.tick_ns);
    EXPECT_EQ(s.time_limit_ns, d.time_limit_ns);
    EXPECT_EQ(s.irq_stacks, d.irq_stacks);
    ASSERT_EQ(s.tasks.size(), 1u);
    EXPECT_EQ(s.tasks[0].sched, policy::other);
    EXPECT_EQ(s.tasks[0].nice, 0);
    EXPECT_EQ(s.tasks[0].stack_size, task_spec{}.stack_size);
    EXPECT_EQ(s.tasks[0].start_cpu, -1);
}

TEST(SimParser, DurationsSizesAndCpuLists)
{
    struct {
        const char* word;
        std::uint64_t ns;
    } durations[]
        = {{"0", 0}, {"7ns", 7}, {"3us", 3'000}, {"2ms", 2'000'000}, {"1s", 1'000'000'000}, {"1.5ms", 1'500'000},
            {"0.25us", 250}, {"2.000000001s", 2'000'000'001}, {"18446744073s", 18'446'744'073'000'000'000u}};
    for (const auto& d : durations) {
        scenario s = parse_ok(std::string("task t other start ") + d.word + " {\n}\n");
        EXPECT_EQ(s.tasks.at(0).start_ns, d.ns) << d.word;
    }
    struct {
        const char* word;
        std::size_t bytes;
    } sizes[] = {{"100", 100}, {"8K", 8192}, {"2M", 2 * 1024 * 1024}};
    for (const auto& z : sizes) {
        scenario s = parse_ok(std::string("task t other stack ") + z.word + " {\n}\n");
        EXPECT_EQ(s.tasks.at(0).stack_size, z.bytes) << z.word;
    }
    struct {
        const char* list;
        std::uint64_t mask;
    } lists[] = {{"0", 1}, {"3", 8}, {"0-2", 7}, {"1,3", 10}, {"0-1,4-5,7", 0b10110011}, {"all", ~std::uint64_t(0)}};
    for (const auto& l : lists) {
        scenario s = parse_ok(std::string("cpus 8\ntask t other affinity ") + l.list + " {\n}\n");
        EXPECT_EQ(s.tasks.at(0).affinity, l.mask) << l.list;
    }
}

TEST(SimParser, NamesMayBeUsedBeforeTheirDeclaration)
{
    scenario s = parse_ok("task t other {\n    lock late\n    raise later\n    unlock late\n}\n"
                          "lock late mutex\nirq later cpu 0\n");
    ASSERT_EQ(s.tasks.at(0).steps.size(), 3u);
    EXPECT_EQ(s.tasks[0].steps[0].lock, 0);
    EXPECT_EQ(s.tasks[0].steps[1].irq, 0);
    EXPECT_EQ(s.tasks[0].steps[2].lock, 0);
}

TEST(SimParser, WindowsLineEndingsAndNoFinalNewline)
{
    scenario s = parse_ok("cpus 2\r\nlock A spinlock\r\ntask t other {\r\n    lock A\r\n    unlock A\r\n}");
    EXPECT_EQ(s.cpus, 2u);
    ASSERT_EQ(s.tasks.at(0).steps.size(), 2u);
    EXPECT_EQ(s.tasks[0].steps[1].kind, op::unlock);
}

TEST(SimParser, UnquotedDescriptionIsTheRestOfTheLine)
{
    scenario s = parse_ok("description high   waits for low   # comment\ntask t other { }\n");
    EXPECT_EQ(s.description, "high waits for low");
}

TEST(SimParser, RoundTripOfEveryConstruct)
{
    std::string text(everything);
    text.replace(text.find("{ work 1s }"), 11, "{\n    work 1s\n}");
    scenario s = parse_ok(text);
    scenario back = round_trip(s);
    expect_same(s, back);
    // and the written text is a fixed point
    std::ostringstream a, b;
    write_scenario(s, a);
    write_scenario(back, b);
    EXPECT_EQ(a.str(), b.str());
}

TEST(SimParser, RoundTripOfAScenarioBuiltInCode)
{
    scenario s;
    s.name = "built";
    s.cpus = 2;
    s.tick_ns = 0;
    s.seed = 0;
    s.irq_stacks = irq_stack_mode::task_stack;
    s.locks.push_back({"L", lock_type::rt_mutex, 0});
    task_spec t;
    t.name = "a";
    t.sched = policy::rr;
    t.prio = 7;
    t.affinity = 2;
    t.start_ns = 1234;
    t.steps.push_back(step{op::lock, 0});
    step w;
    w.kind = op::work;
    w.ns = 1'000'001;
    t.steps.push_back(w);
    t.steps.push_back(step{op::unlock, 0});
    s.tasks.push_back(t);
    scenario back = round_trip(s);
    expect_same(s, back);
    std::ostringstream out;
    write_scenario(s, out);
    EXPECT_NE(out.str().find("tick off\n"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("task a rr 7 affinity 1 start 1234ns {\n"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("    work 1000001ns\n"), std::string::npos) << out.str();
}

// Every built-in scenario can be dumped in the text format and loaded back unchanged: the
// format covers everything the built-ins use.
TEST(SimParser, BuiltinScenariosRoundTrip)
{
    ASSERT_FALSE(klock::sim::builtins().empty());
    for (const builtin& b : klock::sim::builtins()) {
        SCOPED_TRACE(b.name);
        scenario s = b.make();
        expect_same(s, round_trip(s));
    }
}

std::filesystem::path examples_dir()
{
    return std::filesystem::path(__FILE__).parent_path().parent_path() / "examples" / "scenarios";
}

TEST(SimParser, ExampleFilesParseAndRoundTrip)
{
    std::filesystem::path dir = examples_dir();
    ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".scn")
            continue;
        SCOPED_TRACE(entry.path().string());
        ++count;
        parse_error err;
        std::optional<scenario> s = load_scenario_file(entry.path().string(), err);
        ASSERT_TRUE(s.has_value()) << err.what();
        EXPECT_EQ(s->name, entry.path().stem().string()) << "name the file after its scenario";
        EXPECT_FALSE(s->description.empty());
        EXPECT_FALSE(s->tasks.empty());
        expect_same(*s, round_trip(*s));
    }
    EXPECT_GE(count, 5);
}

TEST(SimParser, PriorityInversionPairDiffersOnlyInTheLockType)
{
    parse_error err;
    auto inv = load_scenario_file((examples_dir() / "priority_inversion.scn").string(), err);
    ASSERT_TRUE(inv) << err.what();
    auto inh = load_scenario_file((examples_dir() / "priority_inheritance.scn").string(), err);
    ASSERT_TRUE(inh) << err.what();
    ASSERT_EQ(inv->locks.size(), 1u);
    EXPECT_EQ(inv->locks[0].type, lock_type::mutex);
    EXPECT_EQ(inh->locks[0].type, lock_type::rt_mutex);
    inh->locks[0].type = lock_type::mutex;
    EXPECT_EQ(inv->expect, std::vector<std::string>{"priority inversion"}) << "the mutex run demonstrates the bug";
    EXPECT_TRUE(inh->expect.empty());
    inh->name = inv->name;
    inh->description = inv->description;
    inh->expect = inv->expect;
    expect_same(*inv, *inh);
}

TEST(SimParser, MissingFileNamesThePath)
{
    parse_error err;
    EXPECT_FALSE(load_scenario_file("/nonexistent/x.scn", err));
    EXPECT_EQ(err.what().rfind("/nonexistent/x.scn: error: cannot open the file: ", 0), 0u) << err.what();
}

// Each error: the exact message, with the line and column of the word it is about.
TEST(SimParser, ErrorMessages)
{
    struct {
        const char* text;
        const char* what;
    } cases[] = {
        // the example from the format's documentation
        {"lock A mutex\nlock B mutex\n\ntask t other {\n    lock A\n    lock B\n    unlock   C\n}\n",
            "t.scn:7:14: error: unknown lock 'C' (declared locks: A, B)"},
        {"task t other {\n    lock X\n}\n", "t.scn:2:10: error: unknown lock 'X' (no locks declared)"},
        {"frobnicate 3\n", "t.scn:1:1: error: unknown keyword 'frobnicate'"},
        {"  cpu 3\n", "t.scn:1:3: error: unknown keyword 'cpu' (did you mean 'cpus'?)"},
        {"task t other {\n    wrok 1ms\n}\n", "t.scn:2:5: error: unknown step 'wrok' (did you mean 'work'?)"},
        {"cpus two\n", "t.scn:1:6: error: bad number 'two' for cpus"},
        {"cpus 65\n", "t.scn:1:6: error: cpus 65 out of range (1..64)"},
        {"cpus 0\n", "t.scn:1:6: error: cpus 0 out of range (1..64)"},
        {"seed 99999999999999999999\n",
            "t.scn:1:6: error: seed 99999999999999999999 out of range (0..18446744073709551615)"},
        {"cpus 2\ncpus 3\n", "t.scn:2:1: error: setting 'cpus' given twice (first at line 1)"},
        {"cpus\n", "t.scn:1:5: error: missing a CPU count"},
        {"cpus 2 3\n", "t.scn:1:8: error: unexpected '3' after cpus"},
        {"tick 5\n", "t.scn:1:6: error: bad duration '5' (missing unit: ns, us, ms or s) for tick"},
        {"tick 5xs\n", "t.scn:1:6: error: bad duration '5xs' (unknown unit 'xs'; use ns, us, ms or s) for tick"},
        {"tick 1.5ns\n", "t.scn:1:6: error: bad duration '1.5ns' (finer than 1ns) for tick"},
        {"tick .5ms\n", "t.scn:1:6: error: bad duration '.5ms' (expected a number and a unit, e.g. 250us) for tick"},
        {"time_limit 0\n", "t.scn:1:12: error: time_limit must be greater than 0"},
        {"time_limit 99999999999s\n", "t.scn:1:12: error: bad duration '99999999999s' (too large) for time_limit"},
        {"irq_stacks x86\n", "t.scn:1:12: error: unknown irq_stacks mode 'x86' (use arm, arm64, task or percpu)"},
        {"irq_stack_size 16Q\n",
            "t.scn:1:16: error: bad size '16Q' for irq_stack_size (bytes, or with a K or M suffix: 16K)"},
        {"lock A mutx\n",
            "t.scn:1:8: error: unknown lock type 'mutx' (did you mean 'mutex'?); types: spinlock, ticket_spinlock, "
            "qspinlock, rwlock, mutex, rt_mutex, rw_semaphore"},
        {"lock A\n", "t.scn:1:7: error: missing a lock type after 'A'"},
        {"lock A mutex\nlock A spinlock\n", "t.scn:2:6: error: duplicate lock 'A' (first declared at line 1)"},
        {"lock 9lives mutex\n",
            "t.scn:1:6: error: bad lock name '9lives' (use letters, digits and _ - . / :, starting with a letter or "
            "_)"},
        {"task a other { }\ntask a other { }\n", "t.scn:2:6: error: duplicate task 'a' (first declared at line 1)"},
        {"irq i cpu 0\nirq i cpu 0\n", "t.scn:2:5: error: duplicate irq 'i' (first declared at line 1)"},
        {"irq i at 1ms\n", "t.scn:1:1: error: irq 'i' needs 'cpu N' (the CPU it is delivered to)"},
        {"irq i cpu 0 when 1ms\n", "t.scn:1:13: error: unknown irq attribute 'when'; use cpu, at, period"},
        {"irq i cpu 0 cpu 1\n", "t.scn:1:13: error: 'cpu' given twice"},
        {"softirq s at 1ms\n", "t.scn:1:1: error: softirq 's' needs 'cpu N' (the CPU it runs on)"},
        {"irq s cpu 0\nsoftirq s cpu 0\n",
            "t.scn:2:9: error: duplicate softirq 's' (first declared at line 1, as an irq)"},
        {"expect\n", "t.scn:1:7: error: missing the name of a check after 'expect'"},
        {"expect deadlock dedlock\n",
            "t.scn:1:17: error: unknown check 'dedlock' (did you mean 'deadlock'?); checks: mutual_exclusion, "
            "deadlock, "
            "lost_wakeup, soft_lockup, priority_inversion, no_task_switch, stack_overflow, lock_bug, starvation, lockdep"},
        {"expect deadlock \"deadlock\"\n", "t.scn:1:17: error: check 'deadlock' expected twice"},
        {"trace_lock_words yes\n", "t.scn:1:18: error: expected on or off after 'trace_lock_words', found 'yes'"},
        {"task averyveryverylongname other { }\n",
            "t.scn:1:6: error: task name 'averyveryverylongname' is longer than 15 characters (the kernel's "
            "TASK_COMM_LEN)"},
        {"task t fifo 100 { }\n", "t.scn:1:13: error: fifo priority 100 out of range (1..99)"},
        {"task t rr 0 { }\n", "t.scn:1:11: error: rr priority 0 out of range (1..99)"},
        {"task t fifo { }\n", "t.scn:1:13: error: policy fifo needs a priority 1..99 (e.g. 'fifo 50')"},
        {"task t fifo 5 rr 5 { }\n", "t.scn:1:15: error: task 't' has two policies"},
        {"task t other nice 20 { }\n", "t.scn:1:19: error: nice 20 out of range (-20..19)"},
        {"task t fifo 5 nice 1 { }\n", "t.scn:1:15: error: nice applies to policy other; task 't' is fifo"},
        {"task t prio 5 { }\n",
            "t.scn:1:8: error: write the priority after the policy: 'fifo 50' or 'rr 50' (or 'nice N' for other)"},
        {"task t other stack 0 { }\n", "t.scn:1:20: error: stack must be greater than 0"},
        {"task t other affinty 1 { }\n",
            "t.scn:1:14: error: unknown task attribute 'affinty' (did you mean 'affinity'?); use fifo N, rr N, other, "
            "nice N, cpu N, affinity LIST, stack SIZE, start TIME"},
        {"task t other affinity 3-1 { }\n", "t.scn:1:23: error: bad CPU list '3-1' (e.g. 0-3,6 or all)"},
        {"task t other affinity 0,\n", "t.scn:1:23: error: bad CPU list '0,' (e.g. 0-3,6 or all)"},
        {"task t other affinity 64 { }\n", "t.scn:1:23: error: CPU 64 out of range (0..63)"},
        {"cpus 2\ntask t other affinity 0-2 { }\n",
            "t.scn:2:23: error: CPU 2 in 'affinity 0-2' is out of range (the scenario has 2 CPUs; set 'cpus')"},
        {"task t other cpu 1 { }\n",
            "t.scn:1:18: error: CPU 1 in 'cpu 1' is out of range (the scenario has 1 CPU; set 'cpus')"},
        {"cpus 4\ntask t other affinity 0-1 cpu 2 { }\n",
            "t.scn:2:31: error: start cpu 2 is not in the task's affinity (0-1)"},
        {"task t other\n", "t.scn:1:13: error: missing '{' after the task header"},
        {"task t other { work 1ms }\n",
            "t.scn:1:16: error: a block's steps go on the lines after its '{'; found 'work'"},
        {"task t other {\n", "t.scn:1:14: error: unclosed '{' of task 't' (missing '}' before the end of the file)"},
        {"task t other {\n    loop 2 {\n        work 1ms\n}\n",
            "t.scn:1:14: error: unclosed '{' of task 't' (missing '}' before the end of the file)"},
        {"task t other { }\n}\n", "t.scn:2:1: error: unexpected '}' (no block is open)"},
        {"task t other {\n    } x\n", "t.scn:2:7: error: unexpected 'x' after '}'"},
        {"{\n", "t.scn:1:1: error: unexpected '{' (a block opens at the end of its task, irq or loop line)"},
        {"work 1ms\n", "t.scn:1:1: error: step 'work' outside a task or irq block"},
        {"task t other {\n    work 1ms\n\ntask u other { }\n",
            "t.scn:4:1: error: 'task' cannot appear inside task 't' (missing '}' before it?)"},
        {"task t other {\n    work\n}\n", "t.scn:2:9: error: missing a duration after 'work'"},
        {"task t other {\n    sleep 0\n}\n", "t.scn:2:11: error: sleep must be greater than 0"},
        {"task t other {\n    work 1ms 2ms\n}\n", "t.scn:2:14: error: unexpected '2ms' after 'work 1ms'"},
        {"task t other {\n    preempt_disable now\n}\n", "t.scn:2:21: error: unexpected 'now' after 'preempt_disable'"},
        {"lock m mutex\ntask t other {\n    read_lock m\n}\n",
            "t.scn:3:15: error: read_lock needs an rwlock or rw_semaphore; 'm' is a mutex"},
        {"lock m rw_semaphore\ntask t other {\n    lock_irqsave m\n}\n",
            "t.scn:3:18: error: lock_irqsave needs a spinning lock (spinlock, ticket_spinlock, qspinlock, rwlock); 'm' "
            "is a rw_semaphore"},
        {"task t other {\n    raise nic\n}\n", "t.scn:2:11: error: unknown irq 'nic' (no irqs declared)"},
        {"irq a cpu 0\nirq b cpu 0\ntask t other {\n    raise c\n}\n",
            "t.scn:4:11: error: unknown irq 'c' (declared irqs: a, b)"},
        {"irq a cpu 0\ntask t other {\n    raise a at cpu1\n}\n",
            "t.scn:3:13: error: unexpected 'at' after 'raise a' (expected 'on cpuN')"},
        {"irq a cpu 0\ntask t other {\n    raise a on cpu1\n}\n",
            "t.scn:3:19: error: CPU 1 in 'cpu1' is out of range (the scenario has 1 CPU; set 'cpus')"},
        {"irq a cpu 0\ntask t other {\n    raise a on cpux\n}\n", "t.scn:3:19: error: bad number 'x' for cpu"},
        {"task t other {\n    recurse 0\n}\n", "t.scn:2:13: error: recurse frames 0 out of range (1..1000000)"},
        {"task t other {\n    recurse 2 1G\n}\n",
            "t.scn:2:15: error: bad size '1G' for recurse frame size (bytes, or with a K or M suffix: 16K)"},
        {"task t other {\n    loop 2\n}\n", "t.scn:2:11: error: missing '{' after 'loop 2'"},
        {"task t other {\n    loop -1 {\n}\n", "t.scn:2:10: error: bad number '-1' for loop count"},
        {"description \"never closed\n", "t.scn:1:13: error: unterminated string (missing '\"')"},
        {"name \"quoted name\"\n",
            "t.scn:1:6: error: bad scenario name 'quoted name' (use letters, digits and _ - . / :, starting with a "
            "letter or _)"},
        {"# only a comment\n\n",
            "t.scn:3:1: error: the scenario declares no task (add 'task NAME ... {' with its steps)"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        EXPECT_EQ(parse_fail(c.text), c.what);
    }
}

TEST(SimParser, ErrorWhatFormat)
{
    parse_error e{"f.scn", 3, 9, "boom"};
    EXPECT_EQ(e.what(), "f.scn:3:9: error: boom");
    parse_error nopos{"f.scn", 0, 0, "cannot open"};
    EXPECT_EQ(nopos.what(), "f.scn: error: cannot open");
}

TEST(SimParser, EnumNamesAreTheFormatsKeywords)
{
    EXPECT_STREQ(to_string(policy::fifo), "fifo");
    EXPECT_STREQ(to_string(policy::rr), "rr");
    EXPECT_STREQ(to_string(policy::other), "other");
    EXPECT_STREQ(to_string(lock_type::ticket_spinlock), "ticket_spinlock");
    EXPECT_STREQ(to_string(lock_type::rw_semaphore), "rw_semaphore");
    EXPECT_STREQ(to_string(op::lock_read), "read_lock");
    EXPECT_STREQ(to_string(op::raise_irq), "raise");
    EXPECT_STREQ(to_string(op::end_loop), "end_loop");
    // every op except end_loop is a keyword the parser accepts inside a task
    for (int i = 0; i <= static_cast<int>(op::loop); ++i) {
        op o = static_cast<op>(i);
        std::string text = "lock L rwlock\nirq q cpu 0\ntask t other {\n    " + std::string(to_string(o));
        if (o == op::lock || o == op::unlock || o == op::trylock || o == op::lock_read || o == op::unlock_read
            || o == op::lock_irqsave || o == op::unlock_irqrestore)
            text += " L";
        else if (o == op::work || o == op::sleep)
            text += " 1us";
        else if (o == op::raise_irq)
            text += " q";
        else if (o == op::recurse)
            text += " 1";
        else if (o == op::loop)
            text += " 1 { }";
        text += "\n}\n";
        scenario s = parse_ok(text);
        ASSERT_FALSE(s.tasks.at(0).steps.empty()) << text;
        EXPECT_EQ(s.tasks[0].steps[0].kind, o) << text;
    }
}

} // namespace
