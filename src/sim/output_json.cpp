// write_trace_json: a run in the Chrome trace-event JSON format, which Perfetto's UI and
// chrome://tracing open ("JSON Array/Object Format", the legacy format both still read).
//
// Tracks, as processes and threads of the JSON model:
//   process "CPUs" (pid 100000): one thread per CPU ("CPU 0", tid 100000 + cpu) with a complete
//       ("X") slice for each stretch a task runs there, and the irq handlers nested inside
//       the slice of the task they interrupted.
//   one process per task (pid = the task's pid): its main thread carries the lock waits
//       ("wait A") and holds ("A"), instants for its wakeups, and a "prio" counter that steps
//       when priority inheritance boosts it and when it drops back.
// Slices on one thread must nest (a viewer drops the ones that overlap partly), and lock
// holds need not: "lock A, lock B, unlock A, unlock B" is legal. Holds that would cross go on
// an extra lane, a second thread of the task's process ("locks 2").
// Failed checks are global instants named after the check, with the report as an argument.
// Timestamps are microseconds with three decimals: virtual nanoseconds, exactly.
#include <klock/sim/output.hpp>
#include <klock/detail/json.hpp>

#include "output_timeline.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace klock::sim {

namespace {

constexpr int cpu_pid = 100000;
constexpr int lane_tid_base = 200000;

class json_writer {
public:
    explicit json_writer(const run_result& run) : run_(run), tl_(detail::build_timeline(run)) { }

    void write(std::ostream& out)
    {
        metadata();
        cpu_tracks();
        task_tracks();
        checks();
        out << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
        for (std::size_t i = 0; i < events_.size(); ++i)
            out << events_[i] << (i + 1 < events_.size() ? ",\n" : "\n");
        out << "],\n\"otherData\":{\"scenario\":" << klock::detail::json_quote(run_.scn.name)
            << ",\"description\":" << klock::detail::json_quote(run_.scn.description) << ",\"cpus\":" << run_.scn.cpus
            << ",\"end_ns\":" << tl_.end << ",\"steps\":" << run_.steps
            << ",\"passed\":" << (run_.passed() ? "true" : "false") << "}}\n";
    }

private:
    int task_pid(int task) const { return run_.tasks[task].pid; }

    std::string ev(const std::string& ph, const std::string& name, int pid, int tid, std::uint64_t ts)
    {
        return "{\"ph\":\"" + ph + "\",\"name\":" + klock::detail::json_quote(name) + ",\"pid\":" + std::to_string(pid)
            + ",\"tid\":" + std::to_string(tid) + ",\"ts\":" + detail::us3(ts);
    }

    void meta(const char* what, int pid, int tid, const std::string& key, const std::string& value)
    {
        events_.push_back("{\"ph\":\"M\",\"name\":\"" + std::string(what) + "\",\"pid\":" + std::to_string(pid)
            + ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"" + key + "\":" + value + "}}");
    }

    void metadata()
    {
        meta("process_name", cpu_pid, cpu_pid, "name", klock::detail::json_quote("CPUs"));
        meta("process_sort_index", cpu_pid, cpu_pid, "sort_index", "0");
        for (unsigned c = 0; c < run_.scn.cpus; ++c) {
            meta("thread_name", cpu_pid, cpu_pid + static_cast<int>(c), "name",
                klock::detail::json_quote("CPU " + std::to_string(c)));
            meta("thread_sort_index", cpu_pid, cpu_pid + static_cast<int>(c), "sort_index", std::to_string(c));
        }
        int order = 1;
        for (std::size_t t = 0; t < run_.tasks.size(); ++t) {
            if (run_.tasks[t].idle)
                continue;
            int pid = run_.tasks[t].pid;
            std::string label = run_.tasks[t].comm + " (" + detail::policy_label(run_, static_cast<int>(t)) + ")";
            meta("process_name", pid, pid, "name", klock::detail::json_quote(label));
            meta("process_sort_index", pid, pid, "sort_index", std::to_string(order++));
            meta("thread_name", pid, pid, "name", klock::detail::json_quote("locks"));
        }
    }

    void cpu_tracks()
    {
        for (const detail::span& s : tl_.runs) {
            const task_record& r = run_.tasks[s.task];
            events_.push_back(ev("X", r.comm, cpu_pid, cpu_pid + s.cpu, s.t0) + ",\"dur\":" + detail::us3(s.t1 - s.t0)
                + ",\"cat\":\"sched\",\"args\":{\"pid\":" + std::to_string(r.pid) + "}}");
        }
        for (const detail::span& s : tl_.irqs) {
            std::string name = detail::irq_span_label(run_, s);
            events_.push_back(ev("X", name, cpu_pid, cpu_pid + s.cpu, s.t0) + ",\"dur\":" + detail::us3(s.t1 - s.t0)
                + ",\"cat\":\"irq\"}");
        }
    }

    // Lanes keep each thread's slices properly nested: a span goes on the first lane whose
    // open slices all contain it.
    int lane_for(int task, const detail::span& s)
    {
        std::vector<std::vector<std::uint64_t>>& lanes = lanes_[task];
        for (std::size_t i = 0; i < lanes.size(); ++i) {
            std::vector<std::uint64_t>& open = lanes[i]; // end times of the enclosing slices
            while (!open.empty() && open.back() <= s.t0)
                open.pop_back();
            if (open.empty() || s.t1 <= open.back()) {
                open.push_back(s.t1);
                return static_cast<int>(i);
            }
        }
        lanes.push_back({s.t1});
        return static_cast<int>(lanes.size() - 1);
    }

    int lane_tid(int task, int lane)
    {
        int pid = task_pid(task);
        if (lane == 0)
            return pid;
        int tid = lane_tid_base + pid * 16 + lane;
        if (named_lanes_.insert(tid).second)
            meta("thread_name", pid, tid, "name", klock::detail::json_quote("locks " + std::to_string(lane + 1)));
        return tid;
    }

    void task_tracks()
    {
        // waits and holds merged in time order, so that lanes see them as they happened
        struct item {
            const detail::span* s;
            bool wait;
        };
        std::vector<item> items;
        for (const detail::span& s : tl_.waits)
            if (!detail::is_idle(run_, s.task))
                items.push_back({&s, true});
        for (const detail::span& s : tl_.holds)
            if (!detail::is_idle(run_, s.task))
                items.push_back({&s, false});
        std::stable_sort(items.begin(), items.end(), [](const item& a, const item& b) {
            if (a.s->t0 != b.s->t0)
                return a.s->t0 < b.s->t0;
            return a.s->t1 > b.s->t1; // the enclosing one first
        });
        for (const item& it : items) {
            const detail::span& s = *it.s;
            int tid = lane_tid(s.task, lane_for(s.task, s));
            std::string lock = detail::lock_label(run_, s.lock);
            std::string name = (it.wait ? "wait " : "") + lock + (s.read ? " (read)" : "");
            events_.push_back(ev("X", name, task_pid(s.task), tid, s.t0) + ",\"dur\":" + detail::us3(s.t1 - s.t0)
                + ",\"cat\":\"" + (it.wait ? "lock_wait" : "lock_hold") + "\",\"args\":{\"lock\":"
                + klock::detail::json_quote(lock) + ",\"cpu\":" + std::to_string(s.cpu) + "}}");
        }
        // in interrupt context: on the CPU track, nested in the handler's slice
        for (const auto* list : {&tl_.waits, &tl_.holds})
            for (const detail::span& s : *list)
                if (s.task < 0) {
                    bool wait = list == &tl_.waits;
                    events_.push_back(ev("X", (wait ? "wait " : "") + detail::lock_label(run_, s.lock), cpu_pid,
                                          cpu_pid + s.cpu, s.t0)
                        + ",\"dur\":" + detail::us3(s.t1 - s.t0) + ",\"cat\":\"" + (wait ? "lock_wait" : "lock_hold")
                        + "\",\"args\":{\"context\":" + klock::detail::json_quote(detail::irq_span_label(run_, s))
                        + "}}");
                }
        for (const detail::instant& w : tl_.wakeups) {
            if (detail::is_idle(run_, w.task))
                continue;
            int pid = task_pid(w.task);
            std::string waker = w.task2 >= 0 ? detail::task_label(run_, w.task2) : "irq";
            events_.push_back(ev("i", "wakeup", pid, pid, w.t) + ",\"s\":\"t\",\"args\":{\"waker\":"
                + klock::detail::json_quote(waker) + ",\"target_cpu\":" + std::to_string(w.cpu) + "}}");
        }
        // prio counters: the base value at 0, then every change
        std::map<int, bool> started;
        for (const event& e : run_.events) {
            if (e.kind != event_kind::prio_change || detail::is_idle(run_, e.task))
                continue;
            int pid = task_pid(e.task);
            if (!started[e.task]) {
                started[e.task] = true;
                events_.push_back(
                    ev("C", "prio", pid, pid, 0) + ",\"args\":{\"prio\":" + std::to_string(e.prio) + "}}");
            }
            events_.push_back(
                ev("C", "prio", pid, pid, e.t_ns) + ",\"args\":{\"prio\":" + std::to_string(e.prio2) + "}}");
            events_.push_back(
                ev("i", "prio " + std::to_string(e.prio) + "->" + std::to_string(e.prio2), pid, pid, e.t_ns)
                + ",\"s\":\"t\",\"cat\":\"pi\"}");
        }
    }

    void checks()
    {
        for (const check_result& c : run_.checks) {
            if (c.passed)
                continue;
            events_.push_back(ev("i", "FAILED: " + c.name, cpu_pid, cpu_pid, c.t_ns)
                + ",\"s\":\"g\",\"cat\":\"check\",\"args\":{\"report\":" + klock::detail::json_quote(c.report) + "}}");
        }
        for (const event& e : run_.events)
            if (e.kind == event_kind::marker) {
                std::string first = e.text.substr(0, e.text.find('\n'));
                events_.push_back(ev("i", first, cpu_pid, cpu_pid + std::max(e.cpu, 0), e.t_ns)
                    + ",\"s\":\"t\",\"cat\":\"marker\",\"args\":{\"text\":" + klock::detail::json_quote(e.text) + "}}");
            }
    }

    const run_result& run_;
    detail::timeline tl_;
    std::vector<std::string> events_;
    std::map<int, std::vector<std::vector<std::uint64_t>>> lanes_;
    std::set<int> named_lanes_;
};

} // namespace

void write_trace_json(const run_result& run, std::ostream& out)
{
    json_writer w(run);
    w.write(out);
}

} // namespace klock::sim
