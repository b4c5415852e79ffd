// Futexes and priority-inheritance futexes in the simulator (machine.hpp).
//
// futex_wait / futex_wake: a wait queue per word address, woken in priority order and FIFO
// within a priority, as the kernel's futex hash-bucket plist. A wait in atomic context halts
// the CPU instead of sleeping (pv_wait; see env.hpp).
//
// PI futexes follow the kernel's rt_mutex (kernel/locking/rtmutex.c) as the PI futex uses it:
//   lock:   word free -> take it (TID, keeping FUTEX_WAITERS if waiters remain). Our own TID ->
//           -EDEADLK. Otherwise set FUTEX_WAITERS, walk the chain owner -> lock it is blocked on
//           -> its owner ... and return -EDEADLK if it comes back to us (a circular wait) or
//           runs longer than max_lock_depth (1024) steps; else enqueue by priority and, when we
//           are the new top waiter, boost the owner to our priority and propagate the boost
//           along the chain (rt_mutex_adjust_prio_chain). Block until handed the lock or until
//           the deadline (then dequeue and re-adjust the chain: the owner is deboosted).
//   unlock: take the top waiter off the queue, deboost ourselves (our priority is recomputed
//           from the locks we still own) BEFORE waking it, write the new owner's TID |
//           FUTEX_WAITERS into the word (the kernel's hand-over; a lower-priority task cannot
//           steal in between), make it the owner (it may be boosted by the remaining waiters),
//           wake it.
// A task's effective priority is min(normal_prio, the top waiter of every PI lock it owns).
#include "machine.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include <klock/env/env.hpp>

namespace klock::sim {

namespace {

constexpr int max_lock_depth = 1024;

sim::atomic<std::uint32_t>& word_of(void* w) { return *static_cast<sim::atomic<std::uint32_t>*>(w); }

} // namespace

// ---------------------------------------------------------------------------------------------
// plain futexes

int machine::futex_wait(void* word, std::uint32_t val, std::uint64_t deadline) noexcept
{
    detail::step(opt_.futex_ns);
    sim_task* t = cur_task();
    if (word_of(word).peek() != val)
        return -EAGAIN;
    if (deadline != 0 && deadline <= hot_.now)
        return -ETIMEDOUT;
    auto& q = futexq_[word];
    auto it = q.begin();
    while (it != q.end() && (*it)->prio <= t->prio)
        ++it;
    q.insert(it, t);
    t->futex_key = word;
    t->wake_result = 0;
    ++t->wait_gen;
    if (deadline != 0)
        arm_timer(t, deadline);
    if (t->ti.preempt_count != 0 || t->ti.irqs_disabled) {
        // Atomic context may not sleep: halt the CPU with the task on it (pv_wait).
        t->halted = true;
        while (t->halted && !stop_) {
            cpu_wait_for(cpu_wait::halt, never);
            if (t->halted && irqs_on(cur_cpu())
                && (cur_cpu().tick_pending || !cur_cpu().pending_irqs.empty() || cur_cpu().resched_ipi))
                break; // an interrupt ends pv_wait: a spurious return
        }
        if (t->halted) {
            t->halted = false;
            t->timer_armed = false;
            auto f = futexq_.find(word);
            if (f != futexq_.end()) {
                f->second.erase(std::remove(f->second.begin(), f->second.end(), t), f->second.end());
                if (f->second.empty())
                    futexq_.erase(f);
            }
            t->futex_key = nullptr;
            deliver_pending();
            return 0;
        }
        deliver_pending();
        return t->wake_result;
    }
    // A task waiting for a lock sleeps uninterruptibly (D), as in the kernel's mutex and rwsem.
    block(wait_reason::futex, t->waits[t->level].lock >= 0 ? 'D' : 'S', "futex_wait");
    return t->wake_result;
}

int machine::futex_wake(void* word, int n) noexcept
{
    detail::step(opt_.futex_ns);
    sim_task* me = cur_task();
    if (opt_.planted == fault::mutex_lost_wakeup) {
        // The planted bug: a mutex unlock whose wake_up_q() wakes nobody.
        if (me->op_desc.rfind("mutex_unlock", 0) == 0)
            return 0;
    }
    auto it = futexq_.find(word);
    if (it == futexq_.end())
        return 0;
    int woken = 0;
    auto& q = it->second;
    while (!q.empty() && woken < n) {
        sim_task* t = q.front();
        q.erase(q.begin());
        t->futex_key = nullptr;
        t->wake_result = 0;
        t->timer_armed = false;
        ++t->wait_gen;
        ++woken;
        // The starvation check: with MUTEX_FLAG_HANDOFF a mutex waiter is woken at most twice
        // per lock() (the second wakeup hands it the lock).
        ctx_wait& tw = t->waits[t->level];
        if (tw.lock >= 0 && ++tw.wakeups == 3 && locks_[static_cast<std::size_t>(tw.lock)].type == lock_type::mutex)
            fail("starvation",
                "starvation: " + task_label(t) + " was woken " + std::to_string(tw.wakeups) + " times in " + t->op_desc
                    + " and lost " + locks_[static_cast<std::size_t>(tw.lock)].name
                    + " every time (no hand-over to the top waiter)");
        if (t->halted) {
            t->halted = false;
            kick(*cpus_[static_cast<std::size_t>(t->cpu)], hot_.now);
            continue;
        }
        wake_up(t, me->index, hot_.now);
    }
    if (q.empty())
        futexq_.erase(it);
    // try_to_wake_up() ends with preempt_enable(): a woken task that should preempt us on this
    // CPU runs right now, if we are preemptible.
    if (woken > 0 && me->ti.need_resched && preemptible(me))
        schedule("wake-up preemption");
    return woken;
}

// ---------------------------------------------------------------------------------------------
// priority inheritance

int machine::pi_compute_prio(sim_task* t) const
{
    int p = t->normal_prio;
    if (opt_.planted == fault::rt_mutex_no_boost)
        return p;
    for (const pi_state* ps : t->pi_owned)
        if (!ps->waiters.empty())
            p = std::min(p, ps->waiters.front()->prio);
    return p;
}

void machine::pi_sort_waiter(pi_state* ps, sim_task* t)
{
    auto& w = ps->waiters;
    w.erase(std::remove(w.begin(), w.end(), t), w.end());
    auto it = w.begin();
    while (it != w.end() && (*it)->prio <= t->prio)
        ++it;
    w.insert(it, t);
}

// rt_mutex_adjust_prio_chain(): recompute `owner`'s priority and carry the change along the
// chain of locks it is blocked on.
void machine::pi_adjust_chain(sim_task* owner, int depth)
{
    while (owner != nullptr && depth++ < max_lock_depth) {
        const int p = pi_compute_prio(owner);
        if (p == owner->prio)
            return;
        set_prio(owner, p);
        pi_state* next = owner->pi_blocked_on;
        if (next == nullptr)
            return;
        pi_sort_waiter(next, owner);
        owner = next->owner;
    }
}

bool machine::pi_would_deadlock(pi_state* ps, sim_task* me) const
{
    int depth = 0;
    for (const pi_state* s = ps; s != nullptr && s->owner != nullptr; s = s->owner->pi_blocked_on) {
        if (s->owner == me || ++depth > max_lock_depth)
            return true;
    }
    return false;
}

int machine::futex_lock_pi(void* word, std::uint64_t deadline) noexcept
{
    detail::step(opt_.futex_ns);
    sim_task* me = cur_task();
    auto& w = word_of(word);
    const std::uint32_t tid = static_cast<std::uint32_t>(me->ti.pid);
    auto& slot = pi_[word];
    if (!slot) {
        slot = std::make_unique<pi_state>();
        slot->key = word;
    }
    pi_state* ps = slot.get();
    const std::uint32_t v = w.peek();
    const std::uint32_t owner_tid = v & klock::env::futex_tid_mask;
    if (owner_tid == tid)
        return -EDEADLK;
    if (owner_tid == 0) {
        // Free (perhaps a hand-over in flight left only flags): take it.
        w.poke(tid | (ps->waiters.empty() ? 0u : klock::env::futex_waiters));
        ps->owner = me;
        me->pi_owned.push_back(ps);
        pi_adjust_chain(me, 0);
        return 0;
    }
    sim_task* owner = nullptr;
    for (auto& t : tasks_)
        if (!t->idle && static_cast<std::uint32_t>(t->ti.pid) == owner_tid && t->state != tstate::dead)
            owner = t.get();
    if (owner == nullptr)
        return -ESRCH;
    if (ps->owner != owner) {
        // The owner took the word in user space (fast path): it becomes the PI owner now.
        if (ps->owner != nullptr) {
            auto& po = ps->owner->pi_owned;
            po.erase(std::remove(po.begin(), po.end(), ps), po.end());
        }
        ps->owner = owner;
        owner->pi_owned.push_back(ps);
    }
    if (pi_would_deadlock(ps, me))
        return -EDEADLK;
    if (deadline != 0 && deadline <= hot_.now)
        return -ETIMEDOUT;
    w.poke(v | klock::env::futex_waiters);
    me->pi_blocked_on = ps;
    pi_sort_waiter(ps, me);
    me->wake_result = 1; // "still waiting"
    ++me->wait_gen;
    if (deadline != 0)
        arm_timer(me, deadline);
    pi_adjust_chain(owner, 0);
    if (me->ti.preempt_count != 0 || me->ti.irqs_disabled)
        marker("BUG: scheduling while atomic in rt_mutex lock (PI futex)", me->index);
    while (me->wake_result == 1 && !stop_)
        block(wait_reason::pi, 'D', "blocked on rt_mutex");
    return me->wake_result;
}

int machine::futex_trylock_pi(void* word) noexcept
{
    detail::step(opt_.futex_ns);
    sim_task* me = cur_task();
    auto& w = word_of(word);
    const std::uint32_t v = w.peek();
    if ((v & klock::env::futex_tid_mask) != 0)
        return -EAGAIN;
    auto& slot = pi_[word];
    if (!slot) {
        slot = std::make_unique<pi_state>();
        slot->key = word;
    }
    pi_state* ps = slot.get();
    w.poke(static_cast<std::uint32_t>(me->ti.pid) | (ps->waiters.empty() ? 0u : klock::env::futex_waiters));
    ps->owner = me;
    me->pi_owned.push_back(ps);
    pi_adjust_chain(me, 0);
    return 0;
}

int machine::futex_unlock_pi(void* word) noexcept
{
    detail::step(opt_.futex_ns);
    sim_task* me = cur_task();
    auto& w = word_of(word);
    const std::uint32_t v = w.peek();
    if ((v & klock::env::futex_tid_mask) != static_cast<std::uint32_t>(me->ti.pid))
        return -EPERM;
    auto it = pi_.find(word);
    pi_state* ps = it != pi_.end() ? it->second.get() : nullptr;
    if (ps != nullptr) {
        auto& po = me->pi_owned;
        po.erase(std::remove(po.begin(), po.end(), ps), po.end());
        ps->owner = nullptr;
    }
    if (ps == nullptr || ps->waiters.empty()) {
        w.poke(0);
        pi_adjust_chain(me, 0);
        return 0;
    }
    sim_task* top = ps->waiters.front();
    ps->waiters.erase(ps->waiters.begin());
    // Deboost before the wakeup: otherwise the new owner could not preempt us.
    pi_adjust_chain(me, 0);
    w.poke(static_cast<std::uint32_t>(top->ti.pid) | klock::env::futex_waiters);
    ps->owner = top;
    top->pi_blocked_on = nullptr;
    top->pi_owned.push_back(ps);
    top->wake_result = 0;
    top->timer_armed = false;
    ++top->wait_gen;
    pi_adjust_chain(top, 0);
    wake_up(top, me->index, hot_.now);
    if (me->ti.need_resched && preemptible(me))
        schedule("wake-up preemption");
    return 0;
}

} // namespace klock::sim
