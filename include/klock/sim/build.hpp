// Builders for scenarios in C++ (tests, the built-in scenarios): one function per step kind,
// and small helpers for tasks and locks.
//
//   using namespace klock::sim::build;
//   scenario s;
//   s.cpus = 2;
//   const int L = add_lock(s, "L", lock_type::mutex);
//   add_task(s, "A", policy::fifo, 10, {lock(L), work(ms(5)), unlock(L)}).affinity = cpu(0);
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <klock/sim/scenario.hpp>

namespace klock::sim::build {

constexpr std::uint64_t us(std::uint64_t n) noexcept { return n * 1000u; }
constexpr std::uint64_t ms(std::uint64_t n) noexcept { return n * 1000000u; }
// Affinity mask of one CPU.
constexpr std::uint64_t cpu(unsigned n) noexcept { return std::uint64_t(1) << n; }

inline step make(op k, int lock = -1)
{
    step s;
    s.kind = k;
    s.lock = lock;
    return s;
}

inline step lock(int l) { return make(op::lock, l); }
inline step unlock(int l) { return make(op::unlock, l); }
inline step trylock(int l) { return make(op::trylock, l); }
inline step lock_read(int l) { return make(op::lock_read, l); }
inline step unlock_read(int l) { return make(op::unlock_read, l); }
inline step lock_irqsave(int l) { return make(op::lock_irqsave, l); }
inline step unlock_irqrestore(int l) { return make(op::unlock_irqrestore, l); }
inline step work(std::uint64_t ns)
{
    step s = make(op::work);
    s.ns = ns;
    return s;
}
inline step sleep_for(std::uint64_t ns)
{
    step s = make(op::sleep);
    s.ns = ns;
    return s;
}
inline step preempt_disable() { return make(op::preempt_disable); }
inline step preempt_enable() { return make(op::preempt_enable); }
inline step irq_disable() { return make(op::local_irq_disable); }
inline step irq_enable() { return make(op::local_irq_enable); }
inline step bh_disable() { return make(op::local_bh_disable); }
inline step bh_enable() { return make(op::local_bh_enable); }
inline step raise_irq(int irq, int cpu_nr = -1)
{
    step s = make(op::raise_irq);
    s.irq = irq;
    s.cpu = cpu_nr;
    return s;
}
inline step recurse(unsigned frames, std::size_t bytes)
{
    step s = make(op::recurse);
    s.count = frames;
    s.bytes = bytes;
    return s;
}
inline step no_switch_begin() { return make(op::no_switch_begin); }
inline step no_switch_end() { return make(op::no_switch_end); }
// count 0: forever.
inline step loop(unsigned count)
{
    step s = make(op::loop);
    s.count = count;
    return s;
}
inline step end_loop() { return make(op::end_loop); }

inline int add_lock(scenario& s, std::string name, lock_type t)
{
    lock_spec l;
    l.name = std::move(name);
    l.type = t;
    s.locks.push_back(std::move(l));
    return static_cast<int>(s.locks.size() - 1);
}

inline task_spec& add_task(scenario& s, std::string name, policy p, int prio, std::vector<step> steps)
{
    task_spec t;
    t.name = std::move(name);
    t.sched = p;
    t.prio = prio;
    t.steps = std::move(steps);
    s.tasks.push_back(std::move(t));
    return s.tasks.back();
}

inline irq_spec& add_irq(scenario& s, std::string name, int cpu_nr, std::vector<step> handler)
{
    irq_spec q;
    q.name = std::move(name);
    q.cpu = cpu_nr;
    q.handler = std::move(handler);
    s.irqs.push_back(std::move(q));
    return s.irqs.back();
}

} // namespace klock::sim::build
