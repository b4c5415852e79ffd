// The checks every run makes (machine.hpp, sim.hpp), the event log, and the end of a run.
//
//   mutual exclusion   the machine tracks holders from the scripts' lock operations (added when
//                      lock() returns, removed before unlock() is called, so a hand-over is
//                      never counted twice); an acquisition that overlaps a conflicting holder
//                      fails the check.
//   deadlock           a wait-for cycle among contexts (task, softirq, hardirq of a task): a
//                      context waits for the holders of the lock it is acquiring, and an
//                      interrupted context waits for the handler running on top of it. Checked
//                      when a context starts waiting for a held lock, and when nothing can move.
//   lost wakeup        nothing can move any more, and a task still waits in a lock operation
//                      for a lock nobody holds (asleep on a futex, or spinning on a word nobody
//                      will ever write).
//   soft lockup        the kernel's watchdog in virtual time: a CPU that has not been able to
//                      schedule for soft_lockup_ns ("BUG: soft lockup - CPU#N stuck for Ns!");
//                      with interrupts off all along, the NMI watchdog's hard lockup.
//   priority inversion a blocked RT task waits for a lock whose owner (followed along the chain of
//                      owners that are themselves waiting) is runnable but not running, while a
//                      less important task runs on a CPU the owner may use. Reported with its
//                      duration when it lasts at least options::inversion_threshold_ns.
//   no task switch     a task inside no_switch_begin..no_switch_end leaves its CPU.
//   stack overflow     STACK_END_MAGIC overwritten, found at a switch (the run ends: a panic).
//   lock bug           a report from klock's own code (misuse, might_sleep) or a sleep in
//                      atomic context.
//   starvation         a mutex waiter woken more than twice within one lock operation: with
//                      MUTEX_FLAG_HANDOFF the second wakeup hands it the lock.
//   lockdep            a report of klock's lockdep engine on the simulated tasks (lockdep.cpp):
//                      a lock order or irq-safety problem proven from the orders seen, whether or
//                      not this run deadlocked.
#include "machine.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include <klock/mutex.hpp>
#include <klock/report.hpp>

namespace klock::sim {

namespace {

std::string fmt_ms(std::uint64_t ns)
{
    char b[48];
    std::snprintf(b, sizeof b, "%.3f ms", static_cast<double>(ns) / 1e6);
    return b;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// events

event machine::base_event(event_kind k) const noexcept
{
    event e;
    e.t_ns = hot_.now;
    e.kind = k;
    e.cpu = hot_.cpu;
    return e;
}

void machine::emit(event e) { result_.events.push_back(std::move(e)); }

void machine::marker(std::string text, int task, int lock)
{
    event e = base_event(event_kind::marker);
    e.task = task;
    e.lock = lock;
    e.text = std::move(text);
    emit(std::move(e));
}

std::string machine::task_label(const sim_task* t) const
{
    return std::string(t->ti.comm) + "/" + std::to_string(t->ti.pid);
}

std::string machine::hid_name(int hid) const
{
    const sim_task* t = tasks_[static_cast<std::size_t>(hid / 4)].get();
    std::string s = task_label(t);
    if (hid % 4 == 2)
        s += " in hardirq";
    else if (hid % 4 == 1)
        s += " in softirq";
    return s;
}

void machine::fail(const char* check, std::string report)
{
    for (std::size_t i = 0; i < std::size(check_names); ++i) {
        if (std::strcmp(check_names[i], check) != 0)
            continue;
        check_result& c = result_.checks[i];
        if (!report.empty() && report.back() != '\n')
            report.push_back('\n');
        if (c.passed) {
            c.passed = false;
            c.t_ns = hot_.now;
            c.report = report;
        } else if (std::count(c.report.begin(), c.report.end(), '\n') < 200) {
            c.report += report;
        }
        std::string first = report.substr(0, report.find('\n'));
        marker(std::move(first));
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// lock operations

bool machine::conflicts(const lock_obj& l, int hid, bool shared) const noexcept
{
    for (const holder& h : l.holders)
        if (h.hid != hid && (!shared || !h.shared))
            return true;
    return false;
}

void machine::lock_op_begin(int lock, bool shared, bool trylock, const char*)
{
    sim_task* t = cur_task();
    const int lvl = t->level;
    ctx_wait& w = t->waits[lvl];
    w = ctx_wait{};
    w.lock = lock;
    w.shared = shared;
    w.trylock = trylock;
    w.start = hot_.now;
    const int hid = hid_of(t, lvl);
    event e = base_event(event_kind::lock_acquire);
    e.task = t->index;
    e.lock = lock;
    e.value = (trylock ? 1 : 0) | (shared ? 2 : 0); // the lock tracepoint's flags
    emit(e);
    const lock_obj& L = locks_[static_cast<std::size_t>(lock)];
    int holder_hid = -1;
    for (const holder& h : L.holders)
        if (!shared || !h.shared) {
            holder_hid = h.hid;
            break;
        }
    if (holder_hid >= 0) {
        w.contended = true;
        e = base_event(event_kind::lock_contended);
        e.task = t->index;
        e.task2 = holder_hid / 4;
        e.lock = lock;
        emit(e);
        std::string cycle;
        if (!trylock && check_wait_cycle(hid, cycle)) {
            fail("deadlock", cycle);
            // Nothing in the cycle can move again. Let the immediate consequences (klock's own
            // reports) show, then end the run.
            stop_at_ = std::min(stop_at_, hot_.now + 10 * 1000000);
        }
    }
    check_inversion();
}

void machine::lock_op_end(int lock, bool shared, bool acquired)
{
    sim_task* t = cur_task();
    const int lvl = t->level;
    ctx_wait& w = t->waits[lvl];
    const int hid = hid_of(t, lvl);
    lock_obj& L = locks_[static_cast<std::size_t>(lock)];
    const std::uint64_t waited = hot_.now > w.start ? hot_.now - w.start : 0;
    if (acquired) {
        for (const holder& h : L.holders)
            if (h.hid != hid && (!shared || !h.shared)) {
                fail("mutual exclusion",
                    "BUG: mutual exclusion violated: " + hid_name(hid) + " acquired " + L.name
                        + (shared ? " (shared)" : "") + " while " + hid_name(h.hid) + " holds it"
                        + (h.shared ? " (shared)" : ""));
                break;
            }
        L.holders.push_back({hid, shared});
        event e = base_event(event_kind::lock_acquired);
        e.task = t->index;
        e.lock = lock;
        e.value = w.trylock ? 1 : 0;
        e.word = lock_word(L);
        emit(e);
        lock_summary& ls = result_.locks[static_cast<std::size_t>(lock)];
        ++ls.acquisitions;
        if (w.contended)
            ++ls.contentions;
        if (waited > ls.max_wait_ns || ls.max_wait_task < 0) {
            ls.max_wait_ns = waited;
            ls.max_wait_task = t->index;
        }
        task_record& r = result_.tasks[static_cast<std::size_t>(t->index)];
        r.max_lock_wait_ns = std::max(r.max_lock_wait_ns, waited);
    } else if (w.trylock) {
        marker("trylock of " + L.name + " failed", t->index, lock);
    }
    w.lock = -1;
    w.wakeups = 0;
    check_inversion();
}

void machine::unlock_op(int lock, bool shared)
{
    sim_task* t = cur_task();
    const int hid = hid_of(t, t->level);
    lock_obj& L = locks_[static_cast<std::size_t>(lock)];
    auto it = std::find_if(
        L.holders.begin(), L.holders.end(), [&](const holder& h) { return h.hid == hid && h.shared == shared; });
    if (it == L.holders.end()) // an unlock from another context of the same task, or a misuse
        it = std::find_if(L.holders.begin(), L.holders.end(), [&](const holder& h) { return h.hid / 4 == t->index; });
    if (it != L.holders.end())
        L.holders.erase(it);
    event e = base_event(event_kind::lock_release);
    e.task = t->index;
    e.lock = lock;
    e.word = lock_word(L);
    emit(e);
}

// ---------------------------------------------------------------------------------------------
// deadlock: wait-for cycles

bool machine::check_wait_cycle(int start, std::string& out) const
{
    struct edge {
        int to;
        int lock; // -1: interrupted by its own handler
    };
    auto edges = [&](int hid) {
        std::vector<edge> r;
        const sim_task* u = tasks_[static_cast<std::size_t>(hid / 4)].get();
        const int lvl = hid % 4;
        if (u->state == tstate::dead)
            return r;
        if (u->level > lvl)
            r.push_back({hid_of(u, u->level), -1});
        const ctx_wait& w = u->waits[lvl];
        if (w.lock >= 0 && !w.trylock)
            for (const holder& h : locks_[static_cast<std::size_t>(w.lock)].holders)
                if (!w.shared || !h.shared)
                    r.push_back({h.hid, w.lock});
        return r;
    };
    // Depth-first search for a path back to `start`.
    std::vector<int> path{start};
    std::vector<int> path_lock;
    std::vector<int> visited;
    std::vector<std::vector<edge>> stack{edges(start)};
    std::vector<std::size_t> next{0};
    while (!stack.empty()) {
        if (next.back() >= stack.back().size()) {
            stack.pop_back();
            next.pop_back();
            path.pop_back();
            if (!path_lock.empty())
                path_lock.pop_back();
            continue;
        }
        const edge e = stack.back()[next.back()++];
        if (e.to == start) {
            path_lock.push_back(e.lock);
            std::string s = "BUG: deadlock: wait-for cycle\n";
            for (std::size_t i = 0; i < path.size(); ++i) {
                const int from = path[i];
                const int to = i + 1 < path.size() ? path[i + 1] : start;
                const sim_task* u = tasks_[static_cast<std::size_t>(from / 4)].get();
                s += " " + hid_name(from) + " [CPU#" + std::to_string(u->cpu) + "] ";
                if (path_lock[i] < 0) {
                    s += "was interrupted by " + hid_name(to) + ", which must return first\n";
                } else {
                    const lock_obj& L = locks_[static_cast<std::size_t>(path_lock[i])];
                    s += "waits for " + L.name + " (" + to_string(L.type) + "), held by "
                        + (to == from ? std::string("itself") : hid_name(to)) + "\n";
                }
            }
            out = s;
            return true;
        }
        if (std::find(visited.begin(), visited.end(), e.to) != visited.end() || path.size() > 4 * tasks_.size())
            continue;
        visited.push_back(e.to);
        path.push_back(e.to);
        path_lock.push_back(e.lock);
        stack.push_back(edges(e.to));
        next.push_back(0);
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// priority inversion

void machine::end_inversion(sim_task* w, std::uint64_t now)
{
    if (!w->inv_active)
        return;
    w->inv_active = false;
    const std::uint64_t d = now > w->inv_start ? now - w->inv_start : 0;
    if (d < opt_.inversion_threshold_ns)
        return;
    const sim_task* o = tasks_[static_cast<std::size_t>(w->inv_owner)].get();
    const sim_task* r = tasks_[static_cast<std::size_t>(w->inv_runner)].get();
    const lock_obj* L = nullptr;
    for (const ctx_wait& cw : w->waits)
        if (cw.lock >= 0)
            L = &locks_[static_cast<std::size_t>(cw.lock)];
    char buf[512];
    std::snprintf(buf, sizeof buf,
        "priority inversion: %s (prio %d) waited for %s, held by %s (prio %d),\n"
        " while %s (prio %d) ran on CPU#%d instead of %s, for %s",
        task_label(w).c_str(), w->prio < 100 ? 99 - w->prio : 0, L != nullptr ? L->name.c_str() : "a lock",
        task_label(o).c_str(), o->normal_prio < 100 ? 99 - o->normal_prio : 0, task_label(r).c_str(),
        r->prio < 100 ? 99 - r->prio : 0, w->inv_cpu, o->ti.comm, fmt_ms(d).c_str());
    const std::uint64_t saved = hot_.now;
    hot_.now = now;
    fail("priority inversion", buf);
    hot_.now = saved;
}

void machine::check_inversion() noexcept
{
    const std::uint64_t now = hot_.now;
    for (auto& wp : tasks_) {
        sim_task* w = wp.get();
        if (w->idle || w->state == tstate::dead)
            continue;
        const ctx_wait& cw = w->waits[0];
        bool inverted = false;
        int owner = -1, runner = -1, where = -1;
        // A waiter that spins is running, not blocked: only a blocked one is inverted (a
        // spin's length is the algorithm's, and exploration stretches it at will).
        if (cw.lock >= 0 && !cw.trylock && w->prio < 100 && w->state == tstate::blocked) {
            // Follow the owners: the first one that is not itself waiting must run for w to go on.
            const sim_task* o = nullptr;
            int lock = cw.lock;
            bool shared = cw.shared;
            for (std::size_t hops = 0; hops <= tasks_.size() && lock >= 0; ++hops) {
                const sim_task* next = nullptr;
                for (const holder& h : locks_[static_cast<std::size_t>(lock)].holders)
                    if ((!shared || !h.shared) && h.hid / 4 != w->index) {
                        next = tasks_[static_cast<std::size_t>(h.hid / 4)].get();
                        break;
                    }
                if (next == nullptr)
                    break;
                o = next;
                const ctx_wait& ow = o->waits[o->level];
                lock = ow.trylock ? -1 : ow.lock;
                shared = ow.shared;
            }
            if (o != nullptr && o->state == tstate::runnable) {
                for (const auto& c : cpus_) {
                    if (c->id < 64 && !(o->affinity >> c->id & 1))
                        continue;
                    const sim_task* r = c->curr;
                    if (r->idle || r == o || r == w || r->prio <= w->prio)
                        continue;
                    inverted = true;
                    owner = o->index;
                    runner = r->index;
                    where = c->id;
                    break;
                }
            }
        }
        if (inverted && !w->inv_active) {
            w->inv_active = true;
            w->inv_start = now;
            w->inv_owner = owner;
            w->inv_runner = runner;
            w->inv_cpu = where;
        } else if (!inverted && w->inv_active) {
            end_inversion(w, now);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// reports, switches, stacks, lockups

std::string machine::sanitize_report(const std::string& text) const
{
    std::string s = text;
    const std::size_t ct = s.find("Call Trace:");
    if (ct != std::string::npos)
        s.erase(ct);
    // Addresses differ from run to run: name the ones we know, hide the rest.
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        if (s.compare(i, 2, "0x") == 0) {
            std::size_t j = i + 2;
            while (j < s.size() && std::isxdigit(static_cast<unsigned char>(s[j])))
                ++j;
            if (j - i - 2 > 8) {
                const std::uintptr_t a = std::strtoull(s.substr(i + 2, j - i - 2).c_str(), nullptr, 16);
                std::string name = "<addr>";
                for (const lock_obj& L : locks_) {
                    const auto b = reinterpret_cast<std::uintptr_t>(L.mem);
                    if (a >= b && a < b + L.size)
                        name = a == b ? L.name : L.name + "+" + std::to_string(a - b);
                }
                for (const auto& t : tasks_)
                    if (t->stack && t->stack->contains(reinterpret_cast<const void*>(a)))
                        name = "<stack of " + task_label(t.get()) + ">";
                out += name;
                i = j;
                continue;
            }
        }
        out += s[i++];
    }
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    return out;
}

void machine::check_reports() noexcept
{
    if (klock::report_count() != reports_seen_)
        collect_reports("lock bug", true);
}

// Files every report captured since the last call under `check`. lockdep's need no sanitizing:
// a simulated task's reports carry only simulated names and addresses (lockdep.cpp).
void machine::collect_reports(const char* check, bool sanitize)
{
    reports_seen_ = klock::report_count();
    klock::report_capture peek; // nested: does not clear the machine's capture
    const std::vector<std::string> all = peek.reports();
    for (std::size_t i = report_base_; i < all.size(); ++i)
        fail(check, sanitize ? sanitize_report(all[i]) : all[i]);
    report_base_ = all.size();
}

void machine::check_switch(sim_task* prev, sim_task* next, const char* cause)
{
    if (prev->no_switch == 0 || prev->state == tstate::dead)
        return;
    fail("no task switch",
        "BUG: task switch inside a no-task-switch region: " + task_label(prev) + " -> " + task_label(next) + " on CPU#"
            + std::to_string(hot_.cpu) + " in " + (prev->op_desc.empty() ? std::string("?") : prev->op_desc) + ": "
            + cause);
}

void machine::check_stack(fiber_stack* s, const sim_task* owner, const char* where, std::uint64_t& seen) noexcept
{
    if (s == nullptr || stop_)
        return;
    const std::uint64_t reports = klock::report_count();
    if (s->magic_intact()) {
        seen = reports;
        return;
    }
    if (reports != seen) {
        // klock's report machinery ran on this stack since the last check (see report_slack).
        s->restore_magic();
        seen = reports;
        return;
    }
    std::string who = owner != nullptr ? task_label(owner) : "the irq stack of CPU#" + std::to_string(hot_.cpu);
    fail("stack overflow",
        "Kernel panic - not syncing: corrupted stack end detected inside scheduler\n " + who
            + ": STACK_END_MAGIC (0x57ac6e9d) at the end of its " + std::to_string(s->size() / stack_scale)
            + "-byte stack was overwritten; found at the " + where + " (switch #" + std::to_string(switches_) + ")");
    stop_ = true;
    stop_reason_ = "stack overflow";
    hot_.yield_at = 0;
}

void machine::soft_lockup(sim_cpu& c, bool hard)
{
    c.lockup_reported = true;
    const sim_task* t = c.curr;
    char buf[512];
    const std::uint64_t stuck = hot_.now > c.watchdog_touch ? hot_.now - c.watchdog_touch : 0;
    if (hard)
        std::snprintf(buf, sizeof buf,
            "NMI watchdog: Watchdog detected hard LOCKUP on cpu %d\n CPU: %d PID: %d Comm: %s (interrupts off for %s)",
            c.id, c.id, t->ti.pid, t->ti.comm, fmt_ms(stuck).c_str());
    else
        std::snprintf(buf, sizeof buf,
            "watchdog: BUG: soft lockup - CPU#%d stuck for %llus! [%s:%d]\n CPU: %d PID: %d Comm: %s preempt_count: %x",
            c.id, static_cast<unsigned long long>(stuck / 1000000000u), t->ti.comm, t->ti.pid, c.id, t->ti.pid,
            t->ti.comm, t->ti.preempt_count & ~HARDIRQ_OFFSET);
    std::string text = buf;
    for (const ctx_wait& w : t->waits)
        if (w.lock >= 0) {
            const lock_obj& L = locks_[static_cast<std::size_t>(w.lock)];
            text += "\n " + task_label(t) + " is in " + (t->op_desc.empty() ? "a lock operation" : t->op_desc);
            if (!L.holders.empty())
                text += " (" + L.name + " held by " + hid_name(L.holders.front().hid) + ")";
        }
    fail("soft lockup", text);
    if (opt_.stop_on_soft_lockup) {
        stop_ = true;
        stop_reason_ = "soft lockup";
        hot_.yield_at = 0;
    }
}

// Nothing can move any more: every task is blocked with no timer (or halted, or spinning on a
// word nobody can write).
void machine::quiescence_checks()
{
    bool deadlock = false, lost = false;
    for (auto& tp : tasks_) {
        sim_task* t = tp.get();
        if (t->idle || t->state == tstate::dead)
            continue;
        for (int lvl = 2; lvl >= 0; --lvl) {
            const ctx_wait& w = t->waits[lvl];
            if (w.lock < 0 || w.trylock)
                continue;
            const lock_obj& L = locks_[static_cast<std::size_t>(w.lock)];
            const int hid = hid_of(t, lvl);
            bool held = false;
            for (const holder& h : L.holders)
                if (!w.shared || !h.shared)
                    held = true;
            if (held) {
                std::string cycle;
                if (check_wait_cycle(hid, cycle)) {
                    if (!deadlock && find_check(result_, "deadlock")->passed)
                        fail("deadlock", "BUG: deadlock: every task is blocked\n" + cycle.substr(cycle.find('\n') + 1));
                    deadlock = true;
                } else {
                    for (const holder& h : L.holders) {
                        const sim_task* o = tasks_[static_cast<std::size_t>(h.hid / 4)].get();
                        if (o->state == tstate::dead) {
                            fail("deadlock",
                                "BUG: deadlock: " + hid_name(hid) + " waits for " + L.name + ", held by "
                                    + task_label(o) + ", which exited holding it");
                            deadlock = true;
                            break;
                        }
                    }
                }
            } else {
                const char* how = t->state == tstate::blocked ? "sleeps" : t->halted ? "is halted" : "spins";
                fail("lost wakeup",
                    "BUG: lost wakeup: " + hid_name(hid) + " " + how + " in " + t->op_desc + ", but " + L.name
                        + " is free and nothing is left to wake it");
                lost = true;
            }
            break;
        }
    }
    stop_reason_ = deadlock ? "deadlock" : lost ? "lost wakeup" : "every task is blocked";
}

// ---------------------------------------------------------------------------------------------
// the end of a run

void machine::finalize()
{
    std::uint64_t end = 0;
    for (const auto& c : cpus_)
        end = std::max(end, c->clock);
    if (stop_reason_ == "time limit")
        end = scn_.time_limit_ns;
    else if (stop_reason_ == "deadlock" && stop_at_ != never)
        end = std::max(end, std::min(stop_at_, scn_.time_limit_ns));
    hot_.now = end;
    for (auto& t : tasks_) {
        if (t->inv_active)
            end_inversion(t.get(), end);
        account(t.get(), end);
        task_record& r = result_.tasks[static_cast<std::size_t>(t->index)];
        if (t->stack)
            r.stack_used = t->stack->high_water() / stack_scale;
        r.prio = t->normal_prio;
    }
    detail::hot_state* h = &hot_;
    (void)h;
    for (std::size_t i = 0; i < locks_.size(); ++i)
        result_.locks[i].word = lock_word(locks_[i]);
    check_reports();
    // CPUs run ahead of each other between scheduling points; the log is read in time order.
    std::stable_sort(
        result_.events.begin(), result_.events.end(), [](const event& a, const event& b) { return a.t_ns < b.t_ns; });
    result_.end_ns = end;
    result_.steps = hot_.steps;
}

// ---------------------------------------------------------------------------------------------
// planted bugs

std::uint64_t machine::fault_operand(const void* word, int kind, std::uint64_t expected, std::uint64_t operand) noexcept
{
    switch (opt_.planted) {
    case fault::ticket_skip:
        // A ticket unlock (fetch_add 1 on the word) that, with a waiter queued, serves the ticket
        // after the next one: the next waiter is never served.
        if (kind == 0 && operand == 1)
            for (const lock_obj& L : locks_)
                if (L.type == lock_type::ticket_spinlock && L.mem == word) {
                    const std::uint64_t next = expected >> 16, owner = expected & 0xffff;
                    if (((next - owner) & 0xffff) > 1)
                        return 2;
                }
        return operand;
    case fault::ticket_no_next:
        // spin_lock's fetch_add(1 << 16) that adds nothing: every arrival draws the ticket being served.
        if (kind == 0 && operand == (1u << 16))
            for (const lock_obj& L : locks_)
                if (L.type == lock_type::ticket_spinlock && L.mem == word)
                    return 0;
        return operand;
    case fault::mutex_no_handoff:
        if (kind == 1 && (operand & MUTEX_FLAG_HANDOFF) && !(expected & MUTEX_FLAG_HANDOFF))
            for (const lock_obj& L : locks_)
                if (L.type == lock_type::mutex && L.mem == word)
                    return operand & ~MUTEX_FLAG_HANDOFF;
        return operand;
    default:
        return operand;
    }
}

} // namespace klock::sim
