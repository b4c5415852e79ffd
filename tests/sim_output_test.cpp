// The output writers, fed with hand-made runs (no machine needed): ftrace lines exactly as the
// kernel prints them and as Perfetto's importer splits them, JSON that a strict parser accepts,
// an SVG that is well-formed XML and shows what it must, and aligned summaries.
#include <gtest/gtest.h>

#include <klock/sim/output.hpp>

#include "support/json.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace klock::sim;
using klock::test::json_kind;
using klock::test::json_parser;
using klock::test::json_value;

constexpr std::uint64_t ms = 1'000'000;
constexpr std::uint64_t us = 1'000;

// Task indices in the hand-made runs.
enum : int { idle0, idle1, low, high, medium };

// The priority inversion of examples/scenarios/priority_inversion.scn as a machine would log
// it: with a mutex (`pi` false) high waits until medium is done; with an rt_mutex low is
// boosted and high waits only for the rest of low's critical section.
run_result inversion_run(bool pi)
{
    run_result r;
    r.scn.name = pi ? "priority_inheritance" : "priority_inversion";
    r.scn.description = "high waits for low's lock";
    r.scn.cpus = 2;
    r.scn.locks.push_back({"shared", pi ? lock_type::rt_mutex : lock_type::mutex, 13});
    irq_spec eth0;
    eth0.name = "eth0";
    eth0.at_ns = 2500 * us;
    r.scn.irqs.push_back(eth0);
    auto spec = [](const char* name, policy p, int prio) {
        task_spec t;
        t.name = name;
        t.sched = p;
        t.prio = prio;
        return t;
    };
    r.scn.tasks = {spec("low", policy::fifo, 10), spec("high", policy::fifo, 90), spec("medium", policy::fifo, 50)};
    auto rec = [](const char* comm, int pid, int policy_prio, int prio, bool idle) {
        task_record t;
        t.comm = comm;
        t.pid = pid;
        t.policy_prio = policy_prio;
        t.prio = prio;
        t.idle = idle;
        return t;
    };
    r.tasks = {rec("swapper/0", 0, 0, 120, true), rec("swapper/1", 0, 0, 120, true), rec("low", 1, 10, 89, false),
        rec("high", 2, 90, 9, false), rec("medium", 3, 50, 49, false)};

    auto ev = [&](std::uint64_t t, event_kind k, int cpu, int task, int task2 = -1) -> event& {
        event e;
        e.t_ns = t;
        e.kind = k;
        e.cpu = cpu;
        e.task = task;
        e.task2 = task2;
        r.events.push_back(e);
        return r.events.back();
    };
    auto sw = [&](std::uint64_t t, int cpu, int prev, int next, char state) {
        event& e = ev(t, event_kind::sched_switch, cpu, prev, next);
        e.prio = r.tasks[prev].prio;
        e.prio2 = r.tasks[next].prio;
        e.state = state;
    };
    auto lk = [&](std::uint64_t t, event_kind k, int cpu, int task) { ev(t, k, cpu, task).lock = 0; };
    auto prio = [&](std::uint64_t t, int cpu, int task, int from, int to) {
        event& e = ev(t, event_kind::prio_change, cpu, task);
        e.prio = from;
        e.prio2 = to;
    };

    sw(0, 0, idle0, low, 'R');
    lk(0, event_kind::lock_acquire, 0, low);
    lk(0, event_kind::lock_acquired, 0, low);
    ev(1 * ms, event_kind::sched_wakeup, 1, high);
    sw(1 * ms, 1, idle1, high, 'R');
    lk(1 * ms, event_kind::lock_acquire, 1, high);
    ev(1 * ms, event_kind::lock_contended, 1, high, low).lock = 0;
    if (pi)
        prio(1 * ms, 1, low, 89, 9);
    sw(1 * ms, 1, high, idle1, 'D');
    ev(2 * ms, event_kind::sched_wakeup, 0, medium);
    std::uint64_t release = 0;
    if (!pi) {
        sw(2 * ms, 0, low, medium, 'R');
        ev(2500 * us, event_kind::irq_entry, 0, -1).irq = 0;
        ev(2510 * us, event_kind::irq_exit, 0, -1).irq = 0;
        ev(22 * ms, event_kind::task_exit, 0, medium);
        sw(22 * ms, 0, medium, low, 'X');
        release = 26 * ms;
    } else {
        ev(2500 * us, event_kind::irq_entry, 0, -1).irq = 0;
        ev(2510 * us, event_kind::irq_exit, 0, -1).irq = 0;
        release = 5 * ms;
    }
    lk(release, event_kind::lock_release, 0, low);
    if (pi)
        prio(release, 0, low, 9, 89);
    ev(release, event_kind::sched_wakeup, 1, high, low);
    sw(release, 1, idle1, high, 'R');
    lk(release, event_kind::lock_acquired, 1, high);
    ev(release, event_kind::task_exit, 0, low);
    sw(release, 0, low, pi ? medium : idle0, 'X');
    lk(release + ms, event_kind::lock_release, 1, high);
    ev(release + ms, event_kind::task_exit, 1, high);
    sw(release + ms, 1, high, idle1, 'X');
    if (pi) {
        ev(25 * ms, event_kind::task_exit, 0, medium);
        sw(25 * ms, 0, medium, idle0, 'X');
    }
    r.end_ns = pi ? 25 * ms : 27 * ms;
    r.steps = 1234;

    r.tasks[low].run_ns = 5 * ms;
    r.tasks[low].wait_ns = pi ? 0 : 20 * ms;
    r.tasks[high].run_ns = 1 * ms;
    r.tasks[high].blocked_ns = release - 1 * ms;
    r.tasks[high].max_lock_wait_ns = release - 1 * ms;
    r.tasks[medium].run_ns = 20 * ms;
    r.tasks[medium].wait_ns = pi ? 3 * ms : 0;
    r.locks.push_back({2, 1, release - 1 * ms, high});
    r.checks.push_back({"mutual exclusion", true, "", 0});
    if (pi)
        r.checks.push_back({"priority inversion", true, "", 0});
    else
        r.checks.push_back({"priority inversion", false,
            "WARNING: high (pid 2, prio 9) waits for shared held by low (pid 1, prio 89)\n"
            "low is preempted by medium (pid 3, prio 49)\n",
            3 * ms});
    return r;
}

std::string ftrace_of(const run_result& r)
{
    std::ostringstream out;
    write_ftrace(r, out);
    return out.str();
}

std::vector<std::string> lines_of(const std::string& s)
{
    std::vector<std::string> v;
    std::istringstream in(s);
    std::string l;
    while (std::getline(in, l))
        v.push_back(l);
    return v;
}

// --- ftrace --------------------------------------------------------------------------------

TEST(SimOutputFtrace, HeaderIsTheKernels)
{
    std::vector<std::string> l = lines_of(ftrace_of(inversion_run(false)));
    ASSERT_GT(l.size(), 12u);
    EXPECT_EQ(l[0], "# tracer: nop");
    EXPECT_EQ(l[1], "#");
    EXPECT_EQ(l[2],
        "# entries-in-buffer/entries-written: " + std::to_string(l.size() - 12) + "/" + std::to_string(l.size() - 12)
            + "   #P:2");
    EXPECT_EQ(l[3], "#");
    EXPECT_EQ(l[4], "#                                _-----=> irqs-off/BH-disabled");
    EXPECT_EQ(l[8], "#                              ||| / _-=> migrate-disable");
    EXPECT_EQ(l[10], "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION");
    EXPECT_EQ(l[11], "#              | |         |   |||||     |         |");
}

// The lines of one event kind, in order.
std::vector<std::string> grep(const std::string& text, const std::string& needle)
{
    std::vector<std::string> r;
    for (const std::string& l : lines_of(text))
        if (l.find(needle) != std::string::npos)
            r.push_back(l);
    return r;
}

TEST(SimOutputFtrace, SchedLinesExactly)
{
    std::string t = ftrace_of(inversion_run(false));
    std::vector<std::string> sw = grep(t, "sched_switch:");
    ASSERT_EQ(sw.size(), 8u);
    EXPECT_EQ(sw[0],
        "          <idle>-0       [000] d..2.     0.000000: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 "
        "prev_state=R ==> next_comm=low next_pid=1 next_prio=89");
    EXPECT_EQ(sw[2],
        "            high-2       [001] d..2.     0.001000: sched_switch: prev_comm=high prev_pid=2 prev_prio=9 "
        "prev_state=D ==> next_comm=swapper/1 next_pid=0 next_prio=120");
    EXPECT_EQ(sw[3],
        "             low-1       [000] d..2.     0.002000: sched_switch: prev_comm=low prev_pid=1 prev_prio=89 "
        "prev_state=R+ ==> next_comm=medium next_pid=3 next_prio=49");
    EXPECT_EQ(sw[4],
        "          medium-3       [000] d..2.     0.022000: sched_switch: prev_comm=medium prev_pid=3 prev_prio=49 "
        "prev_state=X ==> next_comm=low next_pid=1 next_prio=89");

    std::vector<std::string> wk = grep(t, "sched_wakeup:");
    ASSERT_EQ(wk.size(), 3u);
    // each wakeup is a sched_waking then a sched_wakeup line, with the same arguments
    std::vector<std::string> waking = grep(t, "sched_waking:");
    ASSERT_EQ(waking.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        std::string w = waking[i];
        w.replace(w.find("sched_waking"), 12, "sched_wakeup");
        EXPECT_EQ(w, wk[i]);
    }
    std::vector<std::string> all = lines_of(t);
    auto at = std::find(all.begin(), all.end(), wk[0]);
    ASSERT_NE(at, all.begin());
    EXPECT_EQ(*(at - 1), waking[0]);
    // woken by a timer: printed in the context of the target CPU's current task
    EXPECT_EQ(wk[0],
        "          <idle>-0       [001] d..2.     0.001000: sched_wakeup: comm=high pid=2 prio=9 target_cpu=001");
    // woken by a task: printed from the waker's CPU
    EXPECT_EQ(wk[2],
        "             low-1       [000] d..2.     0.026000: sched_wakeup: comm=high pid=2 prio=9 target_cpu=001");

    std::vector<std::string> ex = grep(t, "sched_process_exit:");
    ASSERT_EQ(ex.size(), 3u);
    EXPECT_EQ(
        ex[0], "          medium-3       [000] .....     0.022000: sched_process_exit: comm=medium pid=3 prio=49");
}

TEST(SimOutputFtrace, IrqAndPiLinesExactly)
{
    std::string t = ftrace_of(inversion_run(false));
    EXPECT_EQ(grep(t, "irq_handler_entry:").at(0),
        "          medium-3       [000] d.h..     0.002500: irq_handler_entry: irq=1 name=eth0");
    EXPECT_EQ(grep(t, "irq_handler_exit:").at(0),
        "          medium-3       [000] d.h..     0.002510: irq_handler_exit: irq=1 ret=handled");

    std::string p = ftrace_of(inversion_run(true));
    std::vector<std::string> pi = grep(p, "sched_pi_setprio:");
    ASSERT_EQ(pi.size(), 2u);
    // the boost is printed by the blocking waiter, which walks the chain
    EXPECT_EQ(pi[0],
        "            high-2       [001] d..2.     0.001000: sched_pi_setprio: comm=low pid=1 oldprio=89 newprio=9");
    EXPECT_EQ(pi[1],
        "             low-1       [000] d..2.     0.005000: sched_pi_setprio: comm=low pid=1 oldprio=9 newprio=89");
    // after the boost, wakeups report the boosted task's current prio
    run_result r = inversion_run(true);
    event e;
    e.t_ns = 2 * ms;
    e.kind = event_kind::sched_wakeup;
    e.cpu = 0;
    e.task = low;
    r.events.insert(r.events.begin() + 9, e);
    EXPECT_NE(ftrace_of(r).find("sched_wakeup: comm=low pid=1 prio=9 target_cpu=000"), std::string::npos);
}

TEST(SimOutputFtrace, LockLinesFollowTheLockTracepoints)
{
    std::string t = ftrace_of(inversion_run(false));
    std::regex lock_line(R"(^ +(\S+)-(\d+) +\[(\d{3})\] (.{5}) +(\d+\.\d{6}): (lock_\w+): ([0-9a-f]{16}) (.*)$)");
    std::vector<std::string> lines = grep(t, ": lock_");
    ASSERT_EQ(lines.size(), 7u);
    std::string addr;
    std::vector<std::string> kinds;
    for (const std::string& l : lines) {
        std::smatch m;
        ASSERT_TRUE(std::regex_match(l, m, lock_line)) << l;
        EXPECT_EQ(m[8].str(), "shared") << l;
        EXPECT_EQ(m[4].str(), ".....") << "a mutex leaves preemption on: " << l;
        if (addr.empty())
            addr = m[7];
        EXPECT_EQ(m[7].str(), addr) << "one lock, one address";
        kinds.push_back(m[6]);
    }
    EXPECT_EQ(kinds,
        (std::vector<std::string>{"lock_acquire", "lock_acquired", "lock_acquire", "lock_contended", "lock_release",
            "lock_acquired", "lock_release"}));
    EXPECT_EQ(addr.substr(0, 8), "00000000"); // a hashed %p, as the kernel prints pointers
    EXPECT_EQ(lines[3].substr(0, 38), "            high-2       [001] .....  ");

    // try and read flags, and a spinlock's preempt depth
    run_result r = inversion_run(false);
    r.scn.locks[0].type = lock_type::rwlock;
    r.scn.locks.push_back({"other", lock_type::spinlock, 0});
    r.events[1].value = 3; // low's lock_acquire: a read trylock
    std::string t2 = ftrace_of(r);
    std::vector<std::string> l2 = grep(t2, ": lock_");
    EXPECT_NE(l2.at(0).find("lock_acquire: " + addr + " try read shared"), std::string::npos) << l2.at(0);
    EXPECT_NE(l2.at(0).find("...1."), std::string::npos) << "spin_lock disables preemption first: " << l2.at(0);
    EXPECT_NE(l2.at(1).find("...1."), std::string::npos) << l2.at(1);
    // a different lock has a different address
    event other;
    other.kind = event_kind::lock_acquire;
    other.lock = 1;
    other.task = low;
    r.events.push_back(other);
    std::string t3 = ftrace_of(r);
    std::vector<std::string> l3 = grep(t3, " other");
    ASSERT_FALSE(l3.empty());
    EXPECT_EQ(l3[0].find(addr), std::string::npos) << l3[0];
}

TEST(SimOutputFtrace, SoftirqMarkerAndContextFlags)
{
    run_result r = inversion_run(false);
    event e;
    e.t_ns = 3 * ms;
    e.cpu = 0;
    e.kind = event_kind::softirq_entry;
    e.value = 1;
    std::size_t at = 12; // after medium took CPU 0
    r.events.insert(r.events.begin() + static_cast<long>(at), e);
    e.kind = event_kind::softirq_exit;
    e.t_ns = 3 * ms + 5 * us;
    r.events.insert(r.events.begin() + static_cast<long>(at + 1), e);
    event m;
    m.t_ns = 3 * ms;
    m.cpu = 1;
    m.kind = event_kind::marker;
    m.text = "first line\nsecond line";
    r.events.insert(r.events.begin() + static_cast<long>(at + 2), m);
    std::string t = ftrace_of(r);
    EXPECT_EQ(grep(t, "softirq_entry:").at(0),
        "          medium-3       [000] ..s..     0.003000: softirq_entry: vec=1 [action=TIMER]");
    EXPECT_EQ(grep(t, "softirq_exit:").at(0),
        "          medium-3       [000] ..s..     0.003005: softirq_exit: vec=1 [action=TIMER]");
    // a scenario softirq: numbered like the irqs, named by the scenario
    run_result r2 = inversion_run(false);
    irq_spec tasklet;
    tasklet.name = "tasklet";
    tasklet.softirq = true;
    r2.scn.irqs.push_back(tasklet);
    e.kind = event_kind::softirq_entry;
    e.irq = 1;
    e.t_ns = 3 * ms;
    r2.events.insert(r2.events.begin() + static_cast<long>(at), e);
    EXPECT_EQ(grep(ftrace_of(r2), "softirq_entry:").at(0),
        "          medium-3       [000] ..s..     0.003000: softirq_entry: vec=2 [action=tasklet]");

    std::vector<std::string> mk = grep(t, "tracing_mark_write:");
    ASSERT_EQ(mk.size(), 2u);
    EXPECT_EQ(mk[0], "          <idle>-0       [001] .....     0.003000: tracing_mark_write: first line");
    EXPECT_EQ(mk[1], "          <idle>-0       [001] .....     0.003000: tracing_mark_write: second line");
}

// A handler that takes a spinlock: the machine names the interrupted task in the lock events;
// the outputs attribute the locking to the handler.
run_result irq_locking_run()
{
    run_result r = inversion_run(false);
    r.scn.locks[0].type = lock_type::spinlock;
    std::vector<event> extra;
    auto add = [&](std::uint64_t t, event_kind k) {
        event e;
        e.t_ns = t;
        e.kind = k;
        e.cpu = 0;
        e.task = medium; // interrupted
        e.irq = 0;
        e.lock = k == event_kind::irq_entry || k == event_kind::irq_exit ? -1 : 0;
        extra.push_back(e);
    };
    r.events.erase(
        std::remove_if(r.events.begin(), r.events.end(),
            [](const event& e) { return e.kind == event_kind::irq_entry || e.kind == event_kind::irq_exit; }),
        r.events.end());
    add(2500 * us, event_kind::irq_entry);
    add(2501 * us, event_kind::lock_acquire);
    add(2501 * us, event_kind::lock_contended);
    add(2505 * us, event_kind::lock_acquired);
    add(2508 * us, event_kind::lock_release);
    add(2510 * us, event_kind::irq_exit);
    auto pos = std::find_if(r.events.begin(), r.events.end(), [](const event& e) { return e.t_ns > 2 * ms; });
    r.events.insert(pos, extra.begin(), extra.end());
    return r;
}

TEST(SimOutputFtrace, HandlerLockingShowsHardirqContext)
{
    std::string t = ftrace_of(irq_locking_run());
    std::vector<std::string> l = grep(t, "     0.0025");
    ASSERT_EQ(l.size(), 6u) << t;
    EXPECT_EQ(l[0], "          medium-3       [000] d.h..     0.002500: irq_handler_entry: irq=1 name=eth0");
    EXPECT_NE(l[1].find("[000] d.h1.     0.002501: lock_acquire: "), std::string::npos) << l[1];
    EXPECT_NE(l[3].find("[000] d.h1.     0.002505: lock_acquired: "), std::string::npos) << l[3];
    EXPECT_NE(l[4].find("[000] d.h1.     0.002508: lock_release: "), std::string::npos) << l[4];
    EXPECT_NE(l[5].find("[000] d.h..     0.002510: irq_handler_exit: irq=1 ret=handled"), std::string::npos) << l[5];
}

// Perfetto's systrace importer: the line pattern of its tokenizer, then "key=value" arguments
// split on spaces, with sched_switch's integers required to parse.
TEST(SimOutputFtrace, EveryLineFitsPerfettosSystraceTokenizer)
{
    const std::regex perfetto_line(R"(-(\d+)\s+\(?\s*(\d+|-+)?\)?\s?\[(\d+)\]\s*)"
                                   R"([a-zA-Z0-9.]{0,5}\s*(\d+\.\d+):\s+(\S+):)");
    for (bool pi : {false, true}) {
        std::string t = ftrace_of(inversion_run(pi));
        ASSERT_EQ(t.rfind("# tracer", 0), 0u) << "Perfetto detects the format by its first bytes";
        int events = 0;
        for (const std::string& l : lines_of(t)) {
            if (l.empty() || l[0] == '#')
                continue;
            ++events;
            std::smatch m;
            ASSERT_TRUE(std::regex_search(l, m, perfetto_line)) << l;
            std::string task = m.prefix();
            EXPECT_FALSE(task.find_first_not_of(' ') == std::string::npos) << l;
            std::string args = m.suffix();
            if (m[5] == "sched_switch") {
                std::map<std::string, std::string> kv;
                std::istringstream in(args);
                std::string tok;
                while (in >> tok)
                    if (auto eq = tok.find('='); eq != std::string::npos)
                        kv[tok.substr(0, eq)] = tok.substr(eq + 1);
                for (const char* k : {"prev_pid", "prev_prio", "next_pid", "next_prio"}) {
                    ASSERT_TRUE(kv.count(k)) << l;
                    EXPECT_NO_THROW((void)std::stoi(kv[k])) << l;
                }
                EXPECT_TRUE(kv["prev_state"] == "R" || kv["prev_state"] == "R+" || kv["prev_state"] == "D"
                    || kv["prev_state"] == "S" || kv["prev_state"] == "X")
                    << l;
            }
        }
        EXPECT_GT(events, 15);
    }
}

TEST(SimOutputFtrace, DeterministicAndRobust)
{
    EXPECT_EQ(ftrace_of(inversion_run(false)), ftrace_of(inversion_run(false)));
    // an empty run and events with indices the run does not know still give a valid header
    run_result empty;
    EXPECT_EQ(ftrace_of(empty).rfind("# tracer: nop\n", 0), 0u);
    run_result bad = inversion_run(false);
    event e;
    e.kind = event_kind::sched_switch;
    e.task = 77;
    e.task2 = -5;
    e.lock = 9;
    e.cpu = 1;
    bad.events.push_back(e);
    e.kind = event_kind::lock_release;
    bad.events.push_back(e);
    e.kind = event_kind::prio_change;
    bad.events.push_back(e);
    std::string t = ftrace_of(bad);
    EXPECT_NE(t.find("lock_release: "), std::string::npos);
}

// --- JSON ----------------------------------------------------------------------------------

// The trace parsed by the strict parser of support/json.hpp: malformed JSON fails the test.
json_value trace_json(const run_result& r)
{
    std::ostringstream out;
    write_trace_json(r, out);
    std::string text = out.str();
    json_value j;
    json_parser p(text);
    EXPECT_TRUE(p.parse(j)) << "invalid JSON near offset " << p.where() << ":\n"
                            << text.substr(p.where() > 80 ? p.where() - 80 : 0, 160);
    return j;
}

std::vector<const json_value*> events_named(const json_value& root, const std::string& ph, const std::string& name)
{
    std::vector<const json_value*> r;
    const json_value* evs = root.get("traceEvents");
    if (!evs)
        return r;
    for (const json_value& e : evs->a) {
        const json_value* p = e.get("ph");
        const json_value* n = e.get("name");
        if (p && n && p->s == ph && n->s == name)
            r.push_back(&e);
    }
    return r;
}

double num_of(const json_value* e, const char* key)
{
    const json_value* v = e ? e->get(key) : nullptr;
    return v ? v->n : -1;
}

TEST(SimOutputJson, ParsesAndHasTheTracks)
{
    json_value j = trace_json(inversion_run(false));
    ASSERT_EQ(j.kind, json_kind::object);
    const json_value* evs = j.get("traceEvents");
    ASSERT_TRUE(evs && evs->kind == json_kind::array);
    ASSERT_TRUE(j.get("displayTimeUnit"));
    for (const json_value& e : evs->a) {
        ASSERT_TRUE(e.get("ph") && e.get("name") && e.get("pid") && e.get("tid")) << "every event has these";
        if (e.get("ph")->s != "M") {
            EXPECT_TRUE(e.get("ts")) << e.get("name")->s;
        }
        if (e.get("ph")->s == "X") {
            EXPECT_GE(num_of(&e, "dur"), 0) << e.get("name")->s;
        }
    }

    // names of the tracks
    bool cpus = false, cpu1 = false, high = false;
    for (const json_value* m : events_named(j, "M", "process_name")) {
        cpus = cpus || m->get("args")->get("name")->s == "CPUs";
        high = high || m->get("args")->get("name")->s == "high (fifo 90)";
    }
    for (const json_value* m : events_named(j, "M", "thread_name"))
        cpu1 = cpu1 || m->get("args")->get("name")->s == "CPU 1";
    EXPECT_TRUE(cpus && cpu1 && high);

    // low runs on CPU 0 from 0 to 2 ms, then again from 22 to 26 ms
    std::vector<const json_value*> low_runs = events_named(j, "X", "low");
    ASSERT_EQ(low_runs.size(), 2u);
    EXPECT_EQ(num_of(low_runs[0], "ts"), 0);
    EXPECT_EQ(num_of(low_runs[0], "dur"), 2000);
    EXPECT_EQ(num_of(low_runs[1], "ts"), 22000);
    EXPECT_EQ(num_of(low_runs[1], "dur"), 4000);
    EXPECT_EQ(num_of(low_runs[0], "tid"), num_of(low_runs[0], "pid")); // CPU 0's thread

    // high waits 25 ms for the lock, then holds it 1 ms, on its own track (pid 2)
    std::vector<const json_value*> wait = events_named(j, "X", "wait shared");
    ASSERT_EQ(wait.size(), 1u);
    EXPECT_EQ(num_of(wait[0], "pid"), 2);
    EXPECT_EQ(num_of(wait[0], "ts"), 1000);
    EXPECT_EQ(num_of(wait[0], "dur"), 25000);
    std::vector<const json_value*> holds = events_named(j, "X", "shared");
    ASSERT_EQ(holds.size(), 2u);
    EXPECT_EQ(num_of(holds[0], "pid"), 1);
    EXPECT_EQ(num_of(holds[0], "dur"), 26000);
    EXPECT_EQ(num_of(holds[1], "pid"), 2);

    // the irq handler, nested in medium's slice on CPU 0
    std::vector<const json_value*> irq = events_named(j, "X", "irq eth0");
    ASSERT_EQ(irq.size(), 1u);
    EXPECT_EQ(num_of(irq[0], "ts"), 2500);
    EXPECT_EQ(num_of(irq[0], "dur"), 10);

    // wakeups as instants on the woken task, the failed check as a global instant
    EXPECT_EQ(events_named(j, "i", "wakeup").size(), 3u);
    std::vector<const json_value*> fail = events_named(j, "i", "FAILED: priority inversion");
    ASSERT_EQ(fail.size(), 1u);
    EXPECT_EQ(fail[0]->get("s")->s, "g");
    EXPECT_NE(fail[0]->get("args")->get("report")->s.find("preempted by medium"), std::string::npos);
    EXPECT_FALSE(j.get("otherData")->get("passed")->b);
}

TEST(SimOutputJson, PriorityBoostsAreACounterAndInstants)
{
    json_value j = trace_json(inversion_run(true));
    std::vector<const json_value*> prio = events_named(j, "C", "prio");
    ASSERT_EQ(prio.size(), 3u); // the base value, the boost, the drop
    EXPECT_EQ(prio[0]->get("args")->get("prio")->n, 89);
    EXPECT_EQ(prio[1]->get("args")->get("prio")->n, 9);
    EXPECT_EQ(num_of(prio[1], "ts"), 1000);
    EXPECT_EQ(prio[2]->get("args")->get("prio")->n, 89);
    EXPECT_EQ(num_of(prio[2], "ts"), 5000);
    EXPECT_EQ(events_named(j, "i", "prio 89->9").size(), 1u);
    EXPECT_TRUE(j.get("otherData")->get("passed")->b);
}

TEST(SimOutputJson, HandlerLockingIsOnTheCpuTrack)
{
    json_value j = trace_json(irq_locking_run());
    std::vector<const json_value*> holds = events_named(j, "X", "shared");
    std::vector<const json_value*> waits = events_named(j, "X", "wait shared");
    const json_value* in_irq = nullptr;
    for (const json_value* h : holds)
        if (num_of(h, "ts") == 2505)
            in_irq = h;
    ASSERT_TRUE(in_irq);
    EXPECT_EQ(num_of(in_irq, "pid"), 100000);
    EXPECT_EQ(num_of(in_irq, "tid"), 100000);
    EXPECT_EQ(num_of(in_irq, "dur"), 3);
    EXPECT_EQ(in_irq->get("args")->get("context")->s, "irq eth0");
    bool irq_wait = false;
    for (const json_value* w : waits)
        irq_wait = irq_wait || (num_of(w, "ts") == 2501 && num_of(w, "pid") == 100000 && num_of(w, "dur") == 4);
    EXPECT_TRUE(irq_wait);
    for (const json_value* h : holds)
        EXPECT_NE(num_of(h, "pid"), 3) << "medium itself holds nothing";
}

TEST(SimOutputJson, CrossingHoldsGoOnSeparateLanes)
{
    // lock A, lock B, unlock A, unlock B: the two hold slices overlap without nesting
    run_result r = inversion_run(false);
    r.scn.locks.push_back({"B", lock_type::mutex, 0});
    auto add = [&](std::uint64_t t, event_kind k, int lock) {
        event e;
        e.t_ns = t;
        e.kind = k;
        e.cpu = 0;
        e.task = medium;
        e.lock = lock;
        r.events.push_back(e);
    };
    r.events.clear();
    add(1 * ms, event_kind::lock_acquired, 0);
    add(2 * ms, event_kind::lock_acquired, 1);
    add(3 * ms, event_kind::lock_release, 0);
    add(4 * ms, event_kind::lock_release, 1);
    add(5 * ms, event_kind::lock_acquired, 1); // nested properly inside nothing: lane 1 is free again
    add(6 * ms, event_kind::lock_release, 1);
    json_value j = trace_json(r);
    std::vector<const json_value*> a = events_named(j, "X", "shared");
    std::vector<const json_value*> b = events_named(j, "X", "B");
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(num_of(a[0], "tid"), 3);
    EXPECT_NE(num_of(b[0], "tid"), 3);
    EXPECT_EQ(num_of(b[0], "pid"), 3);
    EXPECT_EQ(num_of(b[1], "tid"), 3);
    bool lane_named = false;
    for (const json_value* m : events_named(j, "M", "thread_name"))
        lane_named
            = lane_named || (num_of(m, "tid") == num_of(b[0], "tid") && m->get("args")->get("name")->s == "locks 2");
    EXPECT_TRUE(lane_named);
}

TEST(SimOutputJson, EscapesAndEmptyRuns)
{
    run_result r;
    r.scn.name = "quote\" back\\slash\ttab\x01";
    r.checks.push_back({"x", false, "line1\nline2 \"q\"", 5});
    json_value j = trace_json(r);
    // the control character goes out as \u0001 and comes back as itself
    EXPECT_EQ(j.get("otherData")->get("scenario")->s, "quote\" back\\slash\ttab\x01");
    EXPECT_EQ(events_named(j, "i", "FAILED: x").at(0)->get("args")->get("report")->s, "line1\nline2 \"q\"");
}

// --- SVG -----------------------------------------------------------------------------------

// A small XML well-formedness checker: one root, tags balanced and properly nested, attribute
// values quoted, each attribute once, entities among XML's five or numeric, no '<' in text.
struct xml_node {
    std::string name;
    std::map<std::string, std::string> attrs;
    std::string text;
    std::vector<std::unique_ptr<xml_node>> children;
};

class xml_checker {
public:
    explicit xml_checker(const std::string& t) : t_(t) { }
    std::unique_ptr<xml_node> parse(std::string& err)
    {
        if (t_.compare(0, 5, "<?xml") == 0) {
            std::size_t e = t_.find("?>");
            if (e == std::string::npos)
                return fail(err, "unterminated declaration");
            i_ = e + 2;
        }
        skip_ws();
        auto root = element(err);
        if (!root)
            return nullptr;
        skip_ws();
        if (i_ != t_.size())
            return fail(err, "content after the root element");
        return root;
    }

private:
    std::unique_ptr<xml_node> fail(std::string& err, const std::string& what)
    {
        if (err.empty())
            err = what + " at offset " + std::to_string(i_) + ": " + t_.substr(i_, 60);
        return nullptr;
    }
    void skip_ws()
    {
        while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_])))
            ++i_;
    }
    static bool name_char(char c)
    {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.';
    }
    std::string name()
    {
        std::size_t s = i_;
        while (i_ < t_.size() && name_char(t_[i_]))
            ++i_;
        return t_.substr(s, i_ - s);
    }
    static std::string decode(const std::string& s)
    {
        static const std::pair<const char*, char> ents[]
            = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        std::string r;
        for (std::size_t i = 0; i < s.size();) {
            bool done = false;
            for (const auto& [e, c] : ents)
                if (s.compare(i, std::char_traits<char>::length(e), e) == 0) {
                    r += c;
                    i += std::char_traits<char>::length(e);
                    done = true;
                    break;
                }
            if (!done)
                r += s[i++];
        }
        return r;
    }
    bool entities_ok(const std::string& s)
    {
        for (std::size_t p = s.find('&'); p != std::string::npos; p = s.find('&', p + 1)) {
            std::size_t semi = s.find(';', p);
            if (semi == std::string::npos)
                return false;
            std::string ent = s.substr(p + 1, semi - p - 1);
            if (ent != "amp" && ent != "lt" && ent != "gt" && ent != "quot" && ent != "apos"
                && !(ent.size() > 1 && ent[0] == '#'))
                return false;
        }
        return true;
    }
    std::unique_ptr<xml_node> element(std::string& err)
    {
        if (i_ >= t_.size() || t_[i_] != '<')
            return fail(err, "expected '<'");
        ++i_;
        auto n = std::make_unique<xml_node>();
        n->name = name();
        if (n->name.empty())
            return fail(err, "empty tag name");
        for (;;) {
            skip_ws();
            if (i_ >= t_.size())
                return fail(err, "unterminated tag");
            if (t_.compare(i_, 2, "/>") == 0) {
                i_ += 2;
                return n;
            }
            if (t_[i_] == '>') {
                ++i_;
                break;
            }
            std::string a = name();
            if (a.empty())
                return fail(err, "bad attribute");
            if (i_ >= t_.size() || t_[i_] != '=')
                return fail(err, "attribute without '='");
            ++i_;
            if (i_ >= t_.size() || (t_[i_] != '"' && t_[i_] != '\''))
                return fail(err, "unquoted attribute value");
            char q = t_[i_++];
            std::size_t e = t_.find(q, i_);
            if (e == std::string::npos)
                return fail(err, "unterminated attribute value");
            std::string v = t_.substr(i_, e - i_);
            if (v.find('<') != std::string::npos || !entities_ok(v))
                return fail(err, "bad attribute value");
            if (!n->attrs.emplace(a, decode(v)).second)
                return fail(err, "attribute given twice: " + a);
            i_ = e + 1;
        }
        for (;;) {
            std::size_t lt = t_.find('<', i_);
            if (lt == std::string::npos)
                return fail(err, "unclosed <" + n->name + ">");
            std::string text = t_.substr(i_, lt - i_);
            if (!entities_ok(text))
                return fail(err, "bad entity in text");
            n->text += decode(text);
            i_ = lt;
            if (t_.compare(i_, 2, "</") == 0) {
                i_ += 2;
                std::string close = name();
                if (close != n->name)
                    return fail(err, "</" + close + "> closes <" + n->name + ">");
                skip_ws();
                if (i_ >= t_.size() || t_[i_] != '>')
                    return fail(err, "bad closing tag");
                ++i_;
                return n;
            }
            auto child = element(err);
            if (!child)
                return nullptr;
            n->children.push_back(std::move(child));
        }
    }
    const std::string& t_;
    std::size_t i_ = 0;
};

void collect(const xml_node& n, std::vector<const xml_node*>& all)
{
    all.push_back(&n);
    for (const auto& c : n.children)
        collect(*c, all);
}

TEST(SimOutputSvg, TheCheckerRejectsWhatItMust)
{
    for (const char* bad :
        {"<a><b></a></b>", "<a x=1/>", "<a x=\"1\" x=\"2\"/>", "<a>&nbsp;</a>", "<a>", "<a/><b/>", "<a>x < y</a>"}) {
        std::string err;
        EXPECT_FALSE(xml_checker(bad).parse(err)) << bad;
    }
    std::string err;
    EXPECT_TRUE(xml_checker("<?xml version=\"1.0\"?>\n<a x='1'><b/>t &amp; &#65;<c></c></a>\n").parse(err)) << err;
}

struct svg_doc {
    std::string text;
    std::unique_ptr<xml_node> root;
    std::vector<const xml_node*> all;
    std::vector<std::string> texts() const
    {
        std::vector<std::string> r;
        for (const xml_node* n : all)
            if (n->name == "text" || n->name == "tspan")
                r.push_back(n->text);
        return r;
    }
    bool has_text(const std::string& s) const
    {
        for (const std::string& t : texts())
            if (t == s)
                return true;
        return false;
    }
    std::size_t count(const std::string& tag, const std::string& attr, const std::string& value) const
    {
        std::size_t c = 0;
        for (const xml_node* n : all)
            if (n->name == tag && n->attrs.count(attr) && n->attrs.at(attr) == value)
                ++c;
        return c;
    }
};

svg_doc svg_of(std::vector<const run_result*> runs)
{
    svg_doc d;
    std::ostringstream out;
    write_svg_timeline(std::span<const run_result* const>(runs.data(), runs.size()), out);
    d.text = out.str();
    std::string err;
    d.root = xml_checker(d.text).parse(err);
    EXPECT_TRUE(d.root) << err;
    if (d.root)
        collect(*d.root, d.all);
    return d;
}

TEST(SimOutputSvg, WellFormedSelfContainedAndShowsBothRuns)
{
    run_result mutex_run = inversion_run(false);
    run_result rt_run = inversion_run(true);
    svg_doc d = svg_of({&mutex_run, &rt_run});
    ASSERT_TRUE(d.root);
    EXPECT_EQ(d.root->name, "svg");
    EXPECT_EQ(d.root->attrs.at("xmlns"), "http://www.w3.org/2000/svg");
    EXPECT_TRUE(d.root->attrs.count("width") && d.root->attrs.count("height") && d.root->attrs.count("viewBox"));
    // self-contained: no scripts, no links to other files, no external fonts
    for (const xml_node* n : d.all) {
        EXPECT_NE(n->name, "script");
        EXPECT_NE(n->name, "image");
        EXPECT_NE(n->name, "foreignObject");
        EXPECT_NE(n->name, "style");
        for (const auto& [k, v] : n->attrs) {
            EXPECT_NE(k, "href");
            EXPECT_NE(k, "xlink:href");
            EXPECT_EQ(k.rfind("on", 0), std::string::npos) << "event handler attribute " << k;
            if (v.find("url(") != std::string::npos) {
                EXPECT_EQ(v, "url(#wait)") << "only internal references";
            }
        }
    }
    // the two titles, with their lock types
    EXPECT_TRUE(d.has_text("priority_inversion  (shared: mutex)"));
    EXPECT_TRUE(d.has_text("priority_inheritance  (shared: rt_mutex)"));
    EXPECT_TRUE(d.has_text("FAILED: priority inversion"));
    EXPECT_TRUE(d.has_text("all 2 checks passed"));
    EXPECT_TRUE(d.has_text("FAIL: priority inversion")); // the marker line's label
    // one row per CPU in each run, and a row per task
    std::size_t cpu0 = 0, cpu1 = 0, high_rows = 0;
    for (const std::string& t : d.texts()) {
        cpu0 += t == "CPU 0";
        cpu1 += t == "CPU 1";
    }
    for (const xml_node* n : d.all)
        if (n->name == "text" && n->text == "high" && n->attrs.count("font-weight"))
            ++high_rows;
    EXPECT_EQ(cpu0, 2u);
    EXPECT_EQ(cpu1, 2u);
    EXPECT_EQ(high_rows, 2u);
    // the boost, the wait, the lock name, an axis with units
    EXPECT_TRUE(d.has_text("prio 89->9"));
    EXPECT_TRUE(d.has_text("wait shared"));
    EXPECT_TRUE(d.has_text("shared"));
    EXPECT_TRUE(d.has_text("10 ms"));
    EXPECT_TRUE(d.has_text("time (virtual)"));
    EXPECT_GE(d.count("rect", "fill", "url(#wait)"), 2u);
    // the legend names every task once, in its colour
    EXPECT_TRUE(d.has_text("tasks:"));
    for (const char* name : {"low", "high", "medium"}) {
        std::size_t in_legend = 0;
        for (const xml_node* n : d.all)
            if (n->name == "text" && n->text == name && !n->attrs.count("font-weight")
                && !n->attrs.count("text-anchor"))
                ++in_legend;
        EXPECT_EQ(in_legend, 1u) << name;
    }
    EXPECT_TRUE(d.has_text("irq handler"));
    EXPECT_TRUE(d.has_text("waiting for a lock"));
    EXPECT_TRUE(d.has_text("priority boost (prio old->new)"));
}

TEST(SimOutputSvg, ATaskKeepsItsColourAcrossRunsAndSpansScaleTogether)
{
    run_result a = inversion_run(false);
    run_result b = inversion_run(true);
    svg_doc d = svg_of({&a, &b});
    // the run bars: tooltips name the task; all of low's bars share one fill
    std::map<std::string, std::set<std::string>> fills;
    double low_first_w = -1, low_rt_w = -1;
    for (const xml_node* n : d.all) {
        if (n->name != "rect" || n->children.empty() || n->children[0]->name != "title")
            continue;
        const std::string& tip = n->children[0]->text;
        std::size_t on = tip.find(" (pid ");
        if (on == std::string::npos || tip.find(" on CPU ") == std::string::npos)
            continue;
        fills[tip.substr(0, on)].insert(n->attrs.at("fill"));
        if (tip == "low (pid 1) on CPU 0: 0.000 - 2.000 ms")
            low_first_w = std::stod(n->attrs.at("width"));
        if (tip == "low (pid 1) on CPU 0: 0.000 - 5.000 ms")
            low_rt_w = std::stod(n->attrs.at("width"));
    }
    ASSERT_EQ(fills.size(), 3u);
    for (const auto& [task, f] : fills)
        EXPECT_EQ(f.size(), 1u) << task;
    EXPECT_NE(*fills["low"].begin(), *fills["high"].begin());
    // one time scale for both runs: 5 ms is 2.5 times as wide as 2 ms
    ASSERT_GT(low_first_w, 0);
    ASSERT_GT(low_rt_w, 0);
    EXPECT_NEAR(low_rt_w / low_first_w, 2.5, 0.01);
}

TEST(SimOutputSvg, HandlerLockingIsDrawnOnTheCpuRow)
{
    run_result r = irq_locking_run();
    svg_doc d = svg_of({&r});
    bool hold = false, spin = false;
    for (const xml_node* n : d.all) {
        if (n->name != "rect" || n->children.empty())
            continue;
        const std::string& tip = n->children[0]->text;
        hold = hold || tip == "irq eth0 holds shared: 2.505 - 2.508 ms";
        spin = spin || (tip == "irq eth0 spins on shared: 2.501 - 2.505 ms" && n->attrs.at("fill") == "url(#wait)");
        EXPECT_EQ(tip.find("medium holds"), std::string::npos) << tip;
    }
    EXPECT_TRUE(hold);
    EXPECT_TRUE(spin);
}

TEST(SimOutputSvg, ChecksFailingTogetherShareOneLabel)
{
    run_result r = inversion_run(false);
    r.checks.push_back({"lock bug", false, "BUG: spinlock recursion", 3 * ms});
    r.checks.push_back({"deadlock", false, "cycle", 20 * ms});
    svg_doc d = svg_of({&r});
    EXPECT_TRUE(d.has_text("FAIL: priority inversion, lock bug"));
    EXPECT_TRUE(d.has_text("FAIL: deadlock"));
    EXPECT_FALSE(d.has_text("FAIL: lock bug"));
    EXPECT_TRUE(d.has_text("FAILED: priority inversion, lock bug, deadlock"));
    r.scn.expect = {"priority inversion", "lock bug", "deadlock"};
    EXPECT_TRUE(svg_of({&r}).has_text("FAILED: priority inversion, lock bug, deadlock (as the scenario expects)"));
    EXPECT_EQ(d.count("line", "stroke-dasharray", "5,3"), 3u) << "a line per failed check";
}

TEST(SimOutputSvg, EscapesNamesAndSurvivesEmptyRuns)
{
    run_result r = inversion_run(false);
    r.scn.name = "a<b & \"c\"";
    r.tasks[high].comm = "h<i>";
    svg_doc d = svg_of({&r});
    ASSERT_TRUE(d.root);
    EXPECT_TRUE(d.has_text("h<i>"));
    run_result empty;
    svg_doc e = svg_of({&empty});
    EXPECT_TRUE(e.root);
    svg_doc none = svg_of({});
    EXPECT_TRUE(none.root);
}

// --- summaries -----------------------------------------------------------------------------

std::string summary_of(const run_result& r)
{
    std::ostringstream out;
    write_summary(r, out);
    return out.str();
}

TEST(SimOutputSummary, TaskTableIsAlignedAndHighestPriorityFirst)
{
    std::vector<std::string> l = lines_of(summary_of(inversion_run(false)));
    ASSERT_GT(l.size(), 6u);
    EXPECT_EQ(l[0], "scenario priority_inversion: 2 CPUs, seed 1, 27.000 ms virtual, 1234 steps");
    EXPECT_EQ(l[1], "");
    EXPECT_EQ(l[2], "task    pid  policy   prio  run ms  wait ms  blocked ms  max lock wait ms");
    EXPECT_EQ(l[3], "high      2  fifo 90     9   1.000    0.000      25.000            25.000");
    EXPECT_EQ(l[4], "medium    3  fifo 50    49  20.000    0.000       0.000             0.000");
    EXPECT_EQ(l[5], "low       1  fifo 10    89   5.000   20.000       0.000             0.000");
    // right-aligned numbers end under their header's end
    for (int i = 3; i <= 5; ++i)
        EXPECT_EQ(l[i].size(), l[2].size()) << l[i];
}

TEST(SimOutputSummary, LocksAndChecks)
{
    std::string s = summary_of(inversion_run(false));
    std::vector<std::string> l = lines_of(s);
    auto at = [&](const std::string& prefix) {
        for (std::size_t i = 0; i < l.size(); ++i)
            if (l[i].rfind(prefix, 0) == 0)
                return i;
        ADD_FAILURE() << "no line starts with " << prefix << " in\n" << s;
        return l.size() - 1;
    };
    std::size_t h = at("lock ");
    EXPECT_EQ(l[h], "lock    type   acquired  contended  max wait ms  by");
    EXPECT_EQ(l[h + 1], "shared  mutex         2          1       25.000  high");
    std::size_t c = at("checks:");
    EXPECT_EQ(l[c], "checks: 1 of 2 failed");
    EXPECT_EQ(l[c + 1], "  ok    mutual exclusion");
    EXPECT_EQ(l[c + 2], "  FAIL  priority inversion at 3.000 ms");
    EXPECT_EQ(l[c + 3], "        WARNING: high (pid 2, prio 9) waits for shared held by low (pid 1, prio 89)");
    EXPECT_EQ(l[c + 4], "        low is preempted by medium (pid 3, prio 49)");

    std::string ok = summary_of(inversion_run(true));
    EXPECT_NE(ok.find("checks: all 2 passed\n"), std::string::npos) << ok;
    EXPECT_NE(ok.find("shared  rt_mutex"), std::string::npos) << ok;
    run_result none;
    EXPECT_NE(summary_of(none).find("checks: none ran"), std::string::npos);
}

TEST(SimOutputSummary, StopReasonStacksAndExpectedFailures)
{
    run_result r = inversion_run(false);
    r.seed = 7;
    r.stop_reason = "all tasks exited";
    r.scn.expect = {"priority inversion"};
    for (task_record& t : r.tasks) {
        t.stack_size = 16384;
        t.stack_used = t.idle ? 0 : 1000u + static_cast<std::size_t>(t.pid);
    }
    std::vector<std::string> l = lines_of(summary_of(r));
    EXPECT_EQ(l.at(0), "scenario priority_inversion: 2 CPUs, seed 7, 27.000 ms virtual, 1234 steps, all tasks exited");
    EXPECT_EQ(l.at(2), "task    pid  policy   prio  run ms  wait ms  blocked ms  max lock wait ms  stack used");
    EXPECT_EQ(l.at(3), "high      2  fifo 90     9   1.000    0.000      25.000            25.000  1002/16384");
    std::string s = summary_of(r);
    EXPECT_NE(s.find("checks: 1 of 2 failed - as the scenario expects\n"), std::string::npos) << s;
    EXPECT_NE(s.find("  FAIL  priority inversion at 3.000 ms (expected)\n"), std::string::npos) << s;
    r.scn.expect = {"deadlock"};
    s = summary_of(r);
    EXPECT_NE(s.find("checks: 1 of 2 failed - NOT as the scenario expects\n"), std::string::npos) << s;
}

TEST(SimOutputSummary, MillisecondsRoundToTheMicrosecond)
{
    run_result r = inversion_run(false);
    r.tasks[high].run_ns = 1'234'567;    // 1.235 (rounded)
    r.tasks[high].wait_ns = 999'999'999; // 1000.000
    r.tasks[high].blocked_ns = 499;      // 0.000
    std::string s = summary_of(r);
    EXPECT_NE(
        s.find("\nhigh      2  fifo 90     9   1.235  1000.000       0.000            25.000\n"), std::string::npos)
        << s;
}

TEST(SimOutputSummary, SideBySideAlignsTheTwoColumnsAndComparesTheWaits)
{
    std::ostringstream out;
    write_summaries_side_by_side(inversion_run(false), inversion_run(true), out);
    std::string s = out.str();
    std::vector<std::string> l = lines_of(s);
    ASSERT_GT(l.size(), 10u);
    // titles name the runs and their lock types
    EXPECT_EQ(l[0].rfind("== priority_inversion [mutex] ==", 0), 0u) << l[0];
    std::size_t bar = l[0].find("| == priority_inheritance [rt_mutex] ==");
    ASSERT_NE(bar, std::string::npos) << l[0];
    // every line of the two-column part has its separator in the same column
    std::size_t i = 0;
    for (; i < l.size() && !l[i].empty() && l[i].rfind("compare", 0) != 0; ++i) {
        if (l[i].size() > bar)
            EXPECT_EQ(l[i][bar], '|') << "line " << i << ": " << l[i];
        else
            EXPECT_EQ(l[i].size(), bar + 1) << l[i];
    }
    // the left column holds the left summary, the right the right one
    bool left_high = false, right_high = false;
    for (const std::string& line : l) {
        if (line.rfind("high      2  fifo 90     9   1.000    0.000      25.000            25.000", 0) == 0)
            left_high = true;
        if (line.size() > bar
            && line.substr(bar) == "| high      2  fifo 90     9   1.000    0.000       4.000             4.000")
            right_high = true;
    }
    EXPECT_TRUE(left_high) << s;
    EXPECT_TRUE(right_high) << s;
    // the comparison: high's wait, 25 ms against 4 ms, first row, under the runs' titles
    std::size_t c = 0;
    while (c < l.size() && l[c].rfind("compare", 0) != 0)
        ++c;
    ASSERT_LT(c + 6, l.size()) << s;
    EXPECT_EQ(l[c], "compare                  priority_inversion [mutex]  priority_inheritance [rt_mutex]");
    EXPECT_EQ(l[c + 1], "  high    max lock wait                   25.000 ms                         4.000 ms");
    EXPECT_EQ(l[c + 2], "          blocked                         25.000 ms                         4.000 ms");
    EXPECT_EQ(l[c + 3].rfind("  medium  max lock wait", 0), 0u) << l[c + 3];
    EXPECT_EQ(l.back(), "  checks                                     FAILED                           passed");
}

} // namespace
