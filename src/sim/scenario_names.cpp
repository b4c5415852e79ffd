// The names of the scenario enums. They are also the keywords of the scenario text format
// (docs/sim.md, "Scenario format"): the parser looks words up through these functions, so a
// name printed in a trace or a summary is always one a scenario file can use.
#include <klock/sim/scenario.hpp>

namespace klock::sim {

const char* to_string(policy p) noexcept
{
    switch (p) {
    case policy::fifo:
        return "fifo";
    case policy::rr:
        return "rr";
    case policy::other:
        return "other";
    }
    return "?";
}

const char* to_string(lock_type t) noexcept
{
    switch (t) {
    case lock_type::spinlock:
        return "spinlock";
    case lock_type::ticket_spinlock:
        return "ticket_spinlock";
    case lock_type::qspinlock:
        return "qspinlock";
    case lock_type::rwlock:
        return "rwlock";
    case lock_type::mutex:
        return "mutex";
    case lock_type::rt_mutex:
        return "rt_mutex";
    case lock_type::rw_semaphore:
        return "rw_semaphore";
    }
    return "?";
}

const char* to_string(op o) noexcept
{
    switch (o) {
    case op::lock:
        return "lock";
    case op::unlock:
        return "unlock";
    case op::trylock:
        return "trylock";
    case op::lock_read:
        return "read_lock";
    case op::unlock_read:
        return "read_unlock";
    case op::lock_irqsave:
        return "lock_irqsave";
    case op::unlock_irqrestore:
        return "unlock_irqrestore";
    case op::work:
        return "work";
    case op::sleep:
        return "sleep";
    case op::preempt_disable:
        return "preempt_disable";
    case op::preempt_enable:
        return "preempt_enable";
    case op::local_irq_disable:
        return "local_irq_disable";
    case op::local_irq_enable:
        return "local_irq_enable";
    case op::local_bh_disable:
        return "local_bh_disable";
    case op::local_bh_enable:
        return "local_bh_enable";
    case op::raise_irq:
        return "raise";
    case op::recurse:
        return "recurse";
    case op::no_switch_begin:
        return "no_switch_begin";
    case op::no_switch_end:
        return "no_switch_end";
    case op::loop:
        return "loop";
    case op::end_loop:
        return "end_loop";
    }
    return "?";
}

} // namespace klock::sim
