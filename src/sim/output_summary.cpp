// write_summary / write_summaries_side_by_side: the text a person reads after `klock sim`.
//
//   scenario priority_inversion: 2 CPUs, seed 1, 26.000 ms virtual, 1234 steps, all tasks exited
//
//   task     pid  policy    prio   run ms  wait ms  blocked ms  max lock wait ms  stack used
//   high       2  fifo 90      9    1.000    0.000      24.000            24.000    1232/16384
//   ...
//
//   lock     type   acquired  contended  max wait ms  by
//   shared   mutex         2          1       24.000  high
//
//   checks: 1 of 3 failed  (" - as the scenario expects" when scenario::expect lists it)
//     ok    mutual exclusion
//     FAIL  priority inversion at 3.000 ms
//           <the report, indented>
//
// Tables are aligned on their widest cell; numbers are right-aligned, milliseconds with three
// decimals. Tasks are listed highest priority first, so that the task a priority inversion
// hurts is the first row. The side-by-side form prints two summaries in two titled columns,
// then a comparison of each task's worst lock wait and blocked time in the two runs.
#include <klock/sim/output.hpp>

#include "output_timeline.hpp"

#include <algorithm>
#include <sstream>

namespace klock::sim {

namespace {

// A table whose columns are as wide as their widest cell.
class table {
public:
    explicit table(std::vector<bool> right_aligned) : right_(std::move(right_aligned)) { }
    void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
    void print(std::vector<std::string>& lines, const std::string& indent = "") const
    {
        std::vector<std::size_t> w(right_.size(), 0);
        for (const auto& r : rows_)
            for (std::size_t i = 0; i < r.size() && i < w.size(); ++i)
                w[i] = std::max(w[i], r[i].size());
        for (const auto& r : rows_) {
            std::string l = indent;
            for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) {
                std::string pad(w[i] - r[i].size(), ' ');
                l += right_[i] ? pad + r[i] : r[i] + pad;
                if (i + 1 < r.size())
                    l += "  ";
            }
            while (!l.empty() && l.back() == ' ')
                l.pop_back();
            lines.push_back(l);
        }
    }

private:
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

std::vector<int> tasks_by_priority(const run_result& run)
{
    std::vector<int> order;
    for (std::size_t t = 0; t < run.tasks.size(); ++t)
        if (!run.tasks[t].idle)
            order.push_back(static_cast<int>(t));
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return run.tasks[a].prio < run.tasks[b].prio; });
    return order;
}

std::vector<std::string> summary_lines(const run_result& run)
{
    std::vector<std::string> out;
    std::uint64_t end = detail::run_end(run);
    out.push_back("scenario " + run.scn.name + ": " + std::to_string(run.scn.cpus)
        + (run.scn.cpus == 1 ? " CPU, " : " CPUs, ") + "seed " + std::to_string(run.seed ? run.seed : run.scn.seed)
        + ", " + detail::ms3(end) + " ms virtual, " + std::to_string(run.steps) + " steps"
        + (run.stop_reason.empty() ? "" : ", " + run.stop_reason));
    out.emplace_back();

    // the stack column only when the machine measured stacks
    bool stacks = false;
    for (const task_record& r : run.tasks)
        stacks = stacks || (!r.idle && r.stack_size > 0);
    table tasks({false, true, false, true, true, true, true, true, true});
    std::vector<std::string> head
        = {"task", "pid", "policy", "prio", "run ms", "wait ms", "blocked ms", "max lock wait ms"};
    if (stacks)
        head.push_back("stack used");
    tasks.row(head);
    for (int t : tasks_by_priority(run)) {
        const task_record& r = run.tasks[t];
        std::vector<std::string> row = {r.comm, std::to_string(r.pid), detail::policy_label(run, t),
            std::to_string(r.prio), detail::ms3(r.run_ns), detail::ms3(r.wait_ns), detail::ms3(r.blocked_ns),
            detail::ms3(r.max_lock_wait_ns)};
        if (stacks)
            row.push_back(std::to_string(r.stack_used) + "/" + std::to_string(r.stack_size));
        tasks.row(row);
    }
    tasks.print(out);

    if (!run.scn.locks.empty()) {
        out.emplace_back();
        table locks({false, false, true, true, true, false});
        locks.row({"lock", "type", "acquired", "contended", "max wait ms", "by"});
        for (std::size_t l = 0; l < run.scn.locks.size(); ++l) {
            lock_summary s = l < run.locks.size() ? run.locks[l] : lock_summary{};
            locks.row({run.scn.locks[l].name, to_string(run.scn.locks[l].type), std::to_string(s.acquisitions),
                std::to_string(s.contentions), detail::ms3(s.max_wait_ns),
                s.max_wait_task >= 0 ? detail::task_label(run, s.max_wait_task) : "-"});
        }
        locks.print(out);
    }

    out.emplace_back();
    std::size_t failed = 0;
    for (const check_result& c : run.checks)
        failed += c.passed ? 0 : 1;
    auto expected = [&](const std::string& name) {
        return std::find(run.scn.expect.begin(), run.scn.expect.end(), name) != run.scn.expect.end();
    };
    std::string verdict;
    if (run.checks.empty())
        verdict = "checks: none ran";
    else if (failed == 0)
        verdict = "checks: all " + std::to_string(run.checks.size()) + " passed";
    else
        verdict = "checks: " + std::to_string(failed) + " of " + std::to_string(run.checks.size()) + " failed";
    if (!run.scn.expect.empty())
        verdict += run.as_expected() ? " - as the scenario expects" : " - NOT as the scenario expects";
    out.push_back(verdict);
    for (const check_result& c : run.checks) {
        if (c.passed) {
            out.push_back("  ok    " + c.name + (expected(c.name) ? " (expected to fail)" : ""));
            continue;
        }
        out.push_back(
            "  FAIL  " + c.name + " at " + detail::ms3(c.t_ns) + " ms" + (expected(c.name) ? " (expected)" : ""));
        std::istringstream report(c.report);
        std::string l;
        while (std::getline(report, l)) {
            while (!l.empty() && (l.back() == ' ' || l.back() == '\r'))
                l.pop_back();
            out.push_back(l.empty() ? std::string() : "        " + l);
        }
    }
    return out;
}

// The title of a run in the side-by-side form: its name and the types of its locks, which is
// what tells "the same scenario with a mutex" from "... with an rt_mutex".
std::string title_of(const run_result& run)
{
    std::vector<std::string> types;
    for (const lock_spec& l : run.scn.locks) {
        std::string t = to_string(l.type);
        if (std::find(types.begin(), types.end(), t) == types.end())
            types.push_back(t);
    }
    std::string s = run.scn.name;
    if (!types.empty()) {
        s += " [";
        for (std::size_t i = 0; i < types.size(); ++i)
            s += (i ? ", " : "") + types[i];
        s += "]";
    }
    return s;
}

void print(const std::vector<std::string>& lines, std::ostream& out)
{
    for (const std::string& l : lines)
        out << l << '\n';
}

} // namespace

void write_summary(const run_result& run, std::ostream& out) { print(summary_lines(run), out); }

void write_summaries_side_by_side(const run_result& left, const run_result& right, std::ostream& out)
{
    std::vector<std::string> a = summary_lines(left);
    std::vector<std::string> b = summary_lines(right);
    std::string ta = "== " + title_of(left) + " ==";
    std::string tb = "== " + title_of(right) + " ==";
    a.insert(a.begin(), {ta, ""});
    b.insert(b.begin(), {tb, ""});
    std::size_t w = 0;
    for (const std::string& l : a)
        w = std::max(w, l.size());
    w += 4;
    std::vector<std::string> lines;
    for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        std::string l = i < a.size() ? a[i] : "";
        if (i < b.size() && !b[i].empty())
            l += std::string(w - l.size(), ' ') + "| " + b[i];
        else if (i < b.size() || i < a.size())
            l += std::string(w - l.size(), ' ') + "|";
        lines.push_back(l);
    }

    // The numbers to compare, next to each other, for the tasks the two runs share.
    lines.emplace_back();
    table cmp({false, false, true, true});
    cmp.row({"compare", "", title_of(left), title_of(right)});
    for (int t : tasks_by_priority(left)) {
        const task_record& x = left.tasks[t];
        auto it = std::find_if(
            right.tasks.begin(), right.tasks.end(), [&](const task_record& y) { return !y.idle && y.comm == x.comm; });
        if (it == right.tasks.end())
            continue;
        cmp.row({"  " + x.comm, "max lock wait", detail::ms3(x.max_lock_wait_ns) + " ms",
            detail::ms3(it->max_lock_wait_ns) + " ms"});
        cmp.row({"", "blocked", detail::ms3(x.blocked_ns) + " ms", detail::ms3(it->blocked_ns) + " ms"});
    }
    cmp.row({"  checks", "", left.passed() ? "passed" : "FAILED", right.passed() ? "passed" : "FAILED"});
    cmp.print(lines);
    print(lines, out);
}

} // namespace klock::sim
