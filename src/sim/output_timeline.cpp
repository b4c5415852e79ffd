// Pairs a run's events into spans for the JSON and SVG writers (see output_timeline.hpp).
#include "output_timeline.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <tuple>

namespace klock::sim::detail {

std::uint64_t run_end(const run_result& run)
{
    std::uint64_t end = run.end_ns;
    for (const event& e : run.events)
        end = std::max(end, e.t_ns);
    return end;
}

bool is_idle(const run_result& run, int task)
{
    return task < 0 || static_cast<std::size_t>(task) >= run.tasks.size() || run.tasks[task].idle;
}

std::string task_label(const run_result& run, int task)
{
    if (task < 0)
        return "idle";
    if (static_cast<std::size_t>(task) >= run.tasks.size())
        return "?";
    return run.tasks[task].comm;
}

std::string lock_label(const run_result& run, int lock)
{
    if (lock >= 0 && static_cast<std::size_t>(lock) < run.scn.locks.size())
        return run.scn.locks[lock].name;
    return "lock" + std::to_string(lock);
}

std::string irq_span_label(const run_result& run, const span& s)
{
    return (s.soft ? "softirq " : "irq ") + irq_label(run, s.irq);
}

std::string irq_label(const run_result& run, int irq)
{
    if (irq < 0)
        return "timer";
    if (static_cast<std::size_t>(irq) < run.scn.irqs.size())
        return run.scn.irqs[irq].name;
    return "irq" + std::to_string(irq);
}

std::string policy_label(const run_result& run, int task)
{
    if (task < 0 || static_cast<std::size_t>(task) >= run.tasks.size())
        return "";
    const task_record& r = run.tasks[task];
    if (r.idle)
        return "idle";
    for (const task_spec& t : run.scn.tasks) {
        if (t.name != r.comm)
            continue;
        if (t.sched == policy::other)
            return t.nice != 0 ? "other nice " + std::to_string(t.nice) : std::string("other");
        return std::string(to_string(t.sched)) + " " + std::to_string(t.prio);
    }
    // Not in the scenario (a task the machine made): say what its kernel prio means.
    if (r.prio < 100)
        return "rt " + std::to_string(99 - r.prio);
    return "other";
}

namespace {

std::string fixed3(std::uint64_t value, std::uint64_t unit)
{
    // value / unit with three decimals, rounded to nearest (unit is 1000 or 1'000'000)
    std::uint64_t milli = value > (std::numeric_limits<std::uint64_t>::max() - unit) / 1000
        ? value / (unit / 1000)
        : (value * 1000 + unit / 2) / unit;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(milli / 1000),
        static_cast<unsigned long long>(milli % 1000));
    return buf;
}

} // namespace

std::string ms3(std::uint64_t ns) { return fixed3(ns, 1'000'000); }
std::string us3(std::uint64_t ns)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(ns / 1000),
        static_cast<unsigned long long>(ns % 1000));
    return buf;
}

timeline build_timeline(const run_result& run)
{
    timeline tl;
    tl.end = run_end(run);

    // Events in time order; the machine logs them so already, but ties keep their log order.
    std::vector<const event*> order;
    order.reserve(run.events.size());
    for (const event& e : run.events)
        order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const event* a, const event* b) { return a->t_ns < b->t_ns; });

    std::map<int, span> running;                // cpu -> open run span
    std::map<int, std::vector<span>> irq_stack; // cpu -> open handler spans
    using key = std::tuple<int, int, int>;      // task, lock, cpu (cpu only for interrupt context)
    std::map<key, std::vector<span>> holding;   // a lock may be held twice (readers)
    std::map<key, span> waiting;
    std::map<int, prio_segment> prio_open; // task -> current segment
    // A lock event names the task whose context runs; inside a handler that is the interrupted
    // task, so the handler's own locking is told apart by the CPU's open handler spans.
    auto in_irq = [&](const event& e) {
        auto it = irq_stack.find(e.cpu);
        return it != irq_stack.end() && !it->second.empty() ? &it->second.back() : nullptr;
    };
    auto key_of = [&](const event& e) {
        return in_irq(e) || e.task < 0 ? key{-1, e.lock, e.cpu} : key{e.task, e.lock, -1};
    };
    auto lock_span = [&](const event& e) {
        span s;
        s.t0 = e.t_ns;
        s.cpu = e.cpu;
        s.task = e.task;
        s.lock = e.lock;
        s.read = (e.value & 2) != 0;
        if (const span* h = in_irq(e)) {
            s.task = -1;
            s.irq = h->irq;
            s.soft = h->soft;
        }
        return s;
    };
    auto base_prio = [&](int task) {
        return task >= 0 && static_cast<std::size_t>(task) < run.tasks.size() ? run.tasks[task].prio : 120;
    };

    for (const event* ep : order) {
        const event& e = *ep;
        switch (e.kind) {
        case event_kind::sched_switch: {
            auto it = running.find(e.cpu);
            if (it != running.end()) {
                it->second.t1 = e.t_ns;
                if (it->second.t1 > it->second.t0)
                    tl.runs.push_back(it->second);
                running.erase(it);
            }
            if (!is_idle(run, e.task2)) {
                span s;
                s.t0 = e.t_ns;
                s.cpu = e.cpu;
                s.task = e.task2;
                running[e.cpu] = s;
            }
            break;
        }
        case event_kind::irq_entry:
        case event_kind::softirq_entry: {
            span s;
            s.t0 = e.t_ns;
            s.cpu = e.cpu;
            s.irq = e.irq;
            s.soft = e.kind == event_kind::softirq_entry;
            s.task = e.task; // the interrupted task
            irq_stack[e.cpu].push_back(s);
            break;
        }
        case event_kind::irq_exit:
        case event_kind::softirq_exit: {
            std::vector<span>& st = irq_stack[e.cpu];
            bool soft = e.kind == event_kind::softirq_exit;
            for (auto it = st.rbegin(); it != st.rend(); ++it) {
                if (it->soft != soft)
                    continue;
                span s = *it;
                s.t1 = e.t_ns;
                tl.irqs.push_back(s);
                st.erase(std::next(it).base());
                break;
            }
            break;
        }
        case event_kind::lock_contended:
            waiting[key_of(e)] = lock_span(e);
            break;
        case event_kind::lock_acquired: {
            auto w = waiting.find(key_of(e));
            bool read = (e.value & 2) != 0;
            if (w != waiting.end()) {
                w->second.t1 = e.t_ns;
                read = read || w->second.read;
                tl.waits.push_back(w->second);
                waiting.erase(w);
            }
            span s = lock_span(e);
            s.read = read;
            holding[key_of(e)].push_back(s);
            break;
        }
        case event_kind::lock_release: {
            auto h = holding.find(key_of(e));
            if (h != holding.end() && !h->second.empty()) {
                span s = h->second.back();
                h->second.pop_back();
                s.t1 = e.t_ns;
                tl.holds.push_back(s);
            }
            break;
        }
        case event_kind::prio_change: {
            auto it = prio_open.find(e.task);
            if (it != prio_open.end()) {
                it->second.t1 = e.t_ns;
                tl.prios.push_back(it->second);
                prio_open.erase(it);
            }
            if (e.prio2 != base_prio(e.task)) {
                prio_segment p;
                p.t0 = e.t_ns;
                p.task = e.task;
                p.from = e.prio;
                p.prio = e.prio2;
                prio_open[e.task] = p;
            }
            break;
        }
        case event_kind::sched_wakeup:
            tl.wakeups.push_back(instant{e.t_ns, e.cpu, e.task, e.task2});
            break;
        case event_kind::task_exit:
        case event_kind::lock_acquire:
        case event_kind::marker:
            break;
        }
    }

    // Close what the end of the run interrupted.
    for (auto& [cpu, s] : running) {
        s.t1 = tl.end;
        if (s.t1 > s.t0)
            tl.runs.push_back(s);
    }
    for (auto& [cpu, st] : irq_stack)
        for (span s : st) {
            s.t1 = tl.end;
            tl.irqs.push_back(s);
        }
    for (auto& [k, v] : holding)
        for (span s : v) {
            s.t1 = tl.end;
            tl.holds.push_back(s);
        }
    for (auto& [k, s] : waiting) {
        span w = s;
        w.t1 = tl.end;
        tl.waits.push_back(w);
    }
    for (auto& [task, p] : prio_open) {
        prio_segment q = p;
        q.t1 = tl.end;
        tl.prios.push_back(q);
    }
    auto by_time = [](const auto& a, const auto& b) { return std::tie(a.t0, a.t1) < std::tie(b.t0, b.t1); };
    std::stable_sort(tl.runs.begin(), tl.runs.end(), by_time);
    std::stable_sort(tl.irqs.begin(), tl.irqs.end(), by_time);
    std::stable_sort(tl.holds.begin(), tl.holds.end(), by_time);
    std::stable_sort(tl.waits.begin(), tl.waits.end(), by_time);
    std::stable_sort(tl.prios.begin(), tl.prios.end(), by_time);
    return tl;
}

} // namespace klock::sim::detail
