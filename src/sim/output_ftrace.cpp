// write_ftrace: a run as the text of /sys/kernel/tracing/trace.
//
// The layout is the kernel's default one (kernel/trace/trace.c, trace_output.c): a "# tracer:"
// header, the irq-info legend, then one line per event:
//
//   "%16s-%-7d [%03d] %5s %5llu.%06lu: event: args"
//    comm-pid      cpu   flags  seconds.micros
//
// Perfetto (and catapult's systrace importer before it) recognises this text by its "# tracer"
// first line and splits each line with a pattern that wants exactly this shape: the pid after
// the last '-', the CPU in brackets, at most five flag characters, and a "seconds.micros:"
// timestamp. The event arguments follow the TP_printk formats of the kernel's tracepoints:
//   sched_switch      include/trace/events/sched.h
//   sched_waking, sched_wakeup   include/trace/events/sched.h (sched_wakeup_template)
//   sched_pi_setprio  include/trace/events/sched.h
//   sched_process_exit
//   irq_handler_entry/exit, softirq_entry/exit   include/trace/events/irq.h
//   lock_acquire/contended/acquired/release      include/trace/events/lock.h ("%p %s")
//
// The comm-pid column is the task current on that CPU, which the writer follows through the
// sched_switch events ("<idle>-0" for the idle task, as ftrace prints it). The five flags are
// derived from what the log tells: 'd' inside a handler and in the scheduler's own events, 'h'
// and 's' for hardirq and softirq context, the preempt depth from the spinning locks the
// context holds (spin_lock disables preemption before it takes the lock and enables it after
// it releases it), the scheduler's events at depth 2 (preemption off plus the runqueue lock).
//
// Names: a lock is printed as its scenario name, as lockdep names a statically defined lock;
// its "%p" is a stable 64-bit-looking hash of the name, so two runs of one scenario print the
// same address. Scenario irqs are numbered from 1 in declaration order; irq 0 is the timer
// tick; scenario softirqs share that numbering (vec=N), and a softirq event without a scenario
// softirq (irq -1) carries a kernel vector in `value`. lock_acquire's `value` holds the
// tracepoint's flags (1: try, 2: read).
#include <klock/sim/output.hpp>

#include "output_timeline.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <sstream>

namespace klock::sim {

namespace {

constexpr std::array<const char*, 10> softirq_names
    = {"HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"};

bool spinning(const run_result& run, int lock)
{
    if (lock < 0 || static_cast<std::size_t>(lock) >= run.scn.locks.size())
        return false;
    lock_type t = run.scn.locks[lock].type;
    return t == lock_type::spinlock || t == lock_type::ticket_spinlock || t == lock_type::qspinlock
        || t == lock_type::rwlock;
}

// The comm as ftrace stores it: at most 15 characters, no spaces (a space would split the
// line's arguments for a parser).
std::string comm_of(std::string_view name)
{
    std::string c(name.substr(0, 15));
    std::replace(c.begin(), c.end(), ' ', '_');
    return c;
}

std::string lock_address(const run_result& run, int lock)
{
    // FNV-1a of the name, then the index: stable across runs, distinct across locks.
    std::uint32_t h = 2166136261u;
    for (char c : detail::lock_label(run, lock)) {
        h ^= static_cast<unsigned char>(c);
        h *= 16777619u;
    }
    h ^= static_cast<std::uint32_t>(lock) * 0x9e3779b9u;
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

class ftrace_writer {
public:
    explicit ftrace_writer(const run_result& run) : run_(run) { }

    std::string body()
    {
        std::vector<const event*> order;
        order.reserve(run_.events.size());
        for (const event& e : run_.events)
            order.push_back(&e);
        std::stable_sort(order.begin(), order.end(), [](const event* a, const event* b) { return a->t_ns < b->t_ns; });
        for (const event* e : order)
            one(*e);
        return out_.str();
    }
    std::size_t lines() const { return lines_; }

private:
    struct cpu_state {
        int current = -1; // task index, -1: idle
        int hardirq = 0;
        int softirq = 0;
        int irq_spins = 0; // spinning locks held by handlers on this CPU
    };

    cpu_state& cpu(int c) { return cpus_[c]; }

    // comm and pid of the context column
    void context(int task, int c)
    {
        std::string comm = "<idle>";
        int pid = 0;
        if (!detail::is_idle(run_, task)) {
            comm = comm_of(run_.tasks[task].comm);
            pid = run_.tasks[task].pid;
        }
        char buf[64];
        std::snprintf(buf, sizeof buf, "%16s-%-7d [%03d] ", comm.c_str(), pid, c);
        out_ << buf;
    }

    void stamp(std::uint64_t t)
    {
        char buf[48];
        std::snprintf(buf, sizeof buf, " %5llu.%06llu: ", static_cast<unsigned long long>(t / 1'000'000'000),
            static_cast<unsigned long long>(t % 1'000'000'000 / 1000));
        out_ << buf;
    }

    static char depth_char(int depth)
    {
        if (depth <= 0)
            return '.';
        return "0123456789abcdef"[std::min(depth, 15)];
    }

    std::string flags(int c, bool irqs_off, int depth)
    {
        const cpu_state& s = cpus_[c];
        std::string f(5, '.');
        if (irqs_off || s.hardirq > 0)
            f[0] = 'd';
        if (s.hardirq > 0 && s.softirq > 0)
            f[2] = 'H';
        else if (s.hardirq > 0)
            f[2] = 'h';
        else if (s.softirq > 0)
            f[2] = 's';
        f[3] = depth_char(depth);
        return f;
    }

    // Spinning locks held by whoever runs now on CPU c (the handler if one is running).
    int& spins(int c, int task)
    {
        cpu_state& s = cpus_[c];
        if (s.hardirq > 0 || s.softirq > 0 || task < 0)
            return s.irq_spins;
        return task_spins_[task];
    }

    // The task shown for an event that names one: the task itself, else CPU c's current task.
    int shown(const event& e) { return e.task >= 0 ? e.task : cpu(e.cpu).current; }

    void line(int task, int c, const std::string& fl, std::uint64_t t, const std::string& rest)
    {
        context(task, c);
        out_ << fl;
        stamp(t);
        out_ << rest << '\n';
        ++lines_;
    }

    std::string comm(int task) const
    {
        if (task < 0 || static_cast<std::size_t>(task) >= run_.tasks.size())
            return "<idle>";
        return comm_of(run_.tasks[task].comm);
    }
    int pid(int task) const
    {
        if (task < 0 || static_cast<std::size_t>(task) >= run_.tasks.size())
            return 0;
        return run_.tasks[task].pid;
    }
    int prio(int task) const
    {
        if (task < 0 || static_cast<std::size_t>(task) >= run_.tasks.size())
            return 120;
        return run_.tasks[task].prio;
    }

    void one(const event& e)
    {
        int c = e.cpu < 0 ? 0 : e.cpu;
        std::ostringstream a;
        switch (e.kind) {
        case event_kind::sched_switch: {
            int prev = e.task;
            int next = e.task2;
            std::string state(1, e.state);
            if (e.state == 'R' && !detail::is_idle(run_, prev))
                state = "R+"; // switched out while runnable: preempted (the idle task just yields)
            a << "sched_switch: prev_comm=" << comm_name(prev, c) << " prev_pid=" << pid(prev)
              << " prev_prio=" << e.prio << " prev_state=" << state << " ==> next_comm=" << comm_name(next, c)
              << " next_pid=" << pid(next) << " next_prio=" << e.prio2;
            line(prev, c, flags(c, true, 2), e.t_ns, a.str());
            cpu(c).current = detail::is_idle(run_, next) ? -1 : next;
            break;
        }
        case event_kind::sched_wakeup: {
            // Printed from the waker's CPU when the waker is a task that is running somewhere.
            int ctx_cpu = c;
            int ctx_task = cpu(c).current;
            if (e.task2 >= 0)
                for (auto& [n, s] : cpus_)
                    if (s.current == e.task2) {
                        ctx_cpu = n;
                        ctx_task = e.task2;
                    }
            char target[16];
            std::snprintf(target, sizeof target, "%03d", c);
            a << "comm=" << comm(e.task) << " pid=" << pid(e.task) << " prio=" << prio_now(e.task)
              << " target_cpu=" << target;
            // sched_waking (the start of try_to_wake_up) is what Perfetto's text importer turns
            // into its wakeup arrows; sched_wakeup (the task is on a runqueue) follows it.
            std::string fl = flags(ctx_cpu, true, 2 + spins(ctx_cpu, ctx_task));
            line(ctx_task, ctx_cpu, fl, e.t_ns, "sched_waking: " + a.str());
            line(ctx_task, ctx_cpu, fl, e.t_ns, "sched_wakeup: " + a.str());
            break;
        }
        case event_kind::prio_change: {
            a << "sched_pi_setprio: comm=" << comm(e.task) << " pid=" << pid(e.task) << " oldprio=" << e.prio
              << " newprio=" << e.prio2;
            int ctx = cpu(c).current;
            line(ctx, c, flags(c, true, 2 + spins(c, ctx)), e.t_ns, a.str());
            prio_now_[e.task] = e.prio2;
            break;
        }
        case event_kind::lock_acquire:
        case event_kind::lock_contended:
        case event_kind::lock_acquired:
        case event_kind::lock_release: {
            int task = shown(e);
            int& held = spins(c, e.task);
            bool spin = spinning(run_, e.lock);
            std::string name = detail::lock_label(run_, e.lock);
            std::string addr = lock_address(run_, e.lock);
            int depth = held;
            if (e.kind == event_kind::lock_acquire) {
                bool try_ = (e.value & 1) != 0;
                a << "lock_acquire: " << addr << ' ' << (try_ ? "try " : "") << ((e.value & 2) ? "read " : "") << name;
                if (spin)
                    depth = held + 1;
            } else if (e.kind == event_kind::lock_contended) {
                a << "lock_contended: " << addr << ' ' << name;
                if (spin)
                    depth = held + 1;
            } else if (e.kind == event_kind::lock_acquired) {
                a << "lock_acquired: " << addr << ' ' << name;
                if (spin)
                    depth = ++held;
            } else {
                a << "lock_release: " << addr << ' ' << name;
                if (spin && held > 0)
                    --held;
            }
            line(task, c, flags(c, false, depth), e.t_ns, a.str());
            break;
        }
        case event_kind::irq_entry: {
            cpu(c).hardirq++;
            a << "irq_handler_entry: irq=" << irq_number(e.irq) << " name=" << comm_of(detail::irq_label(run_, e.irq));
            line(cpu(c).current, c, flags(c, true, spins(c, -1)), e.t_ns, a.str());
            break;
        }
        case event_kind::irq_exit: {
            a << "irq_handler_exit: irq=" << irq_number(e.irq) << " ret=handled";
            line(cpu(c).current, c, flags(c, true, spins(c, -1)), e.t_ns, a.str());
            if (cpu(c).hardirq > 0)
                cpu(c).hardirq--;
            break;
        }
        case event_kind::softirq_entry:
        case event_kind::softirq_exit: {
            bool entry = e.kind == event_kind::softirq_entry;
            if (entry)
                cpu(c).softirq++;
            // A scenario softirq is numbered like the irqs; without one, `value` is a kernel vector.
            std::int64_t vec = e.irq >= 0 ? irq_number(e.irq) : e.value;
            std::string action = e.irq >= 0 ? comm_of(detail::irq_label(run_, e.irq))
                : vec >= 0 && vec < static_cast<std::int64_t>(softirq_names.size()) ? softirq_names[vec]
                                                                                    : "UNKNOWN";
            a << (entry ? "softirq_entry" : "softirq_exit") << ": vec=" << vec << " [action=" << action << "]";
            line(cpu(c).current, c, flags(c, false, spins(c, -1)), e.t_ns, a.str());
            if (!entry && cpu(c).softirq > 0)
                cpu(c).softirq--;
            break;
        }
        case event_kind::task_exit: {
            a << "sched_process_exit: comm=" << comm(e.task) << " pid=" << pid(e.task) << " prio=" << prio_now(e.task);
            line(shown(e), c, flags(c, false, 0), e.t_ns, a.str());
            break;
        }
        case event_kind::marker: {
            // One tracing_mark_write line per line of text (a check's report is several).
            std::istringstream text(e.text);
            std::string l;
            bool any = false;
            while (std::getline(text, l)) {
                any = true;
                line(shown(e), c, flags(c, false, 0), e.t_ns, "tracing_mark_write: " + l);
            }
            if (!any)
                line(shown(e), c, flags(c, false, 0), e.t_ns, "tracing_mark_write: ");
            break;
        }
        }
    }

    // sched_switch's comm fields name the idle task "swapper/N" (its real comm), unlike the
    // context column's "<idle>".
    std::string comm_name(int task, int c) const
    {
        if (task >= 0 && static_cast<std::size_t>(task) < run_.tasks.size())
            return comm_of(run_.tasks[task].comm);
        return "swapper/" + std::to_string(c);
    }

    int prio_now(int task) const
    {
        auto it = prio_now_.find(task);
        return it != prio_now_.end() ? it->second : prio(task);
    }

    static int irq_number(int irq) { return irq < 0 ? 0 : irq + 1; }

    const run_result& run_;
    std::ostringstream out_;
    std::size_t lines_ = 0;
    std::map<int, cpu_state> cpus_;
    std::map<int, int> task_spins_;
    std::map<int, int> prio_now_;
};

} // namespace

void write_ftrace(const run_result& run, std::ostream& out)
{
    ftrace_writer w(run);
    std::string body = w.body();
    out << "# tracer: nop\n"
           "#\n"
           "# entries-in-buffer/entries-written: "
        << w.lines() << '/' << w.lines() << "   #P:" << run.scn.cpus
        << "\n"
           "#\n"
           "#                                _-----=> irqs-off/BH-disabled\n"
           "#                               / _----=> need-resched\n"
           "#                              | / _---=> hardirq/softirq\n"
           "#                              || / _--=> preempt-depth\n"
           "#                              ||| / _-=> migrate-disable\n"
           "#                              |||| /     delay\n"
           "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
           "#              | |         |   |||||     |         |\n"
        << body;
}

} // namespace klock::sim
