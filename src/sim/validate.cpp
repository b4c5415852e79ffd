// The machine's validation of a scenario (sim.hpp): what it cannot run. (The names of the
// scenario vocabulary, to_string(), are in scenario_names.cpp.)
#include <klock/sim/scenario.hpp>
#include <klock/sim/sim.hpp>

#include <string>

namespace klock::sim {

namespace {

bool is_spin(lock_type t)
{
    return t == lock_type::spinlock || t == lock_type::qspinlock || t == lock_type::ticket_spinlock;
}

std::string where(const std::string& owner, std::size_t i, const step& s)
{
    std::string w = owner + " step " + std::to_string(i + 1);
    if (s.line != 0)
        w += " (line " + std::to_string(s.line) + ")";
    return w + ": ";
}

std::string check_steps(const scenario& sc, const std::vector<step>& steps, const std::string& owner)
{
    int depth = 0;
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const step& s = steps[i];
        switch (s.kind) {
        case op::lock:
        case op::unlock:
        case op::trylock:
        case op::lock_read:
        case op::unlock_read:
        case op::lock_irqsave:
        case op::unlock_irqrestore: {
            if (s.lock < 0 || static_cast<std::size_t>(s.lock) >= sc.locks.size())
                return where(owner, i, s) + to_string(s.kind) + " names no declared lock";
            const lock_type t = sc.locks[static_cast<std::size_t>(s.lock)].type;
            if ((s.kind == op::lock_read || s.kind == op::unlock_read) && t != lock_type::rwlock
                && t != lock_type::rw_semaphore)
                return where(owner, i, s) + to_string(s.kind) + " needs an rwlock or rw_semaphore, "
                    + sc.locks[static_cast<std::size_t>(s.lock)].name + " is a " + to_string(t);
            if ((s.kind == op::lock_irqsave || s.kind == op::unlock_irqrestore) && !is_spin(t)
                && t != lock_type::rwlock)
                return where(owner, i, s) + to_string(s.kind) + " needs a spinning lock, "
                    + sc.locks[static_cast<std::size_t>(s.lock)].name + " is a " + to_string(t);
            break;
        }
        case op::raise_irq:
            if (s.irq < 0 || static_cast<std::size_t>(s.irq) >= sc.irqs.size())
                return where(owner, i, s) + "raise_irq names no declared irq";
            if (s.cpu >= static_cast<int>(sc.cpus))
                return where(owner, i, s) + "raise_irq targets CPU " + std::to_string(s.cpu) + " of "
                    + std::to_string(sc.cpus);
            break;
        case op::recurse:
            if (s.bytes > 1024 * 1024)
                return where(owner, i, s) + "recurse frames are limited to 1 MiB";
            break;
        case op::loop:
            if (++depth > max_loop_nesting)
                return where(owner, i, s) + "loops nest more than " + std::to_string(max_loop_nesting) + " deep";
            break;
        case op::end_loop:
            if (--depth < 0)
                return where(owner, i, s) + "end_loop without loop";
            break;
        default:
            break;
        }
    }
    if (depth != 0)
        return owner + ": loop without end_loop";
    return {};
}

} // namespace

std::string validate(const scenario& sc)
{
    if (sc.cpus < 1 || sc.cpus > 64)
        return "cpus must be 1..64 (is " + std::to_string(sc.cpus) + ")";
    if (sc.time_limit_ns == 0)
        return "the time limit must be positive";
    const std::uint64_t cpumask = sc.cpus >= 64 ? ~std::uint64_t(0) : ((std::uint64_t(1) << sc.cpus) - 1);
    for (const irq_spec& q : sc.irqs) {
        if (q.cpu < 0 || q.cpu >= static_cast<int>(sc.cpus))
            return "irq " + q.name + ": cpu " + std::to_string(q.cpu) + " does not exist";
        if (std::string e = check_steps(sc, q.handler, "irq " + q.name); !e.empty())
            return e;
    }
    for (const task_spec& t : sc.tasks) {
        if (t.sched != policy::other && (t.prio < 1 || t.prio > 99))
            return "task " + t.name + ": SCHED_FIFO/RR priority must be 1..99";
        if ((t.affinity & cpumask) == 0)
            return "task " + t.name + ": its affinity allows none of the " + std::to_string(sc.cpus) + " CPUs";
        if (t.stack_size != 0 && t.stack_size < 4096)
            return "task " + t.name + ": stack_size must be at least 4096";
        if (std::string e = check_steps(sc, t.steps, "task " + t.name); !e.empty())
            return e;
    }
    return {};
}

} // namespace klock::sim
