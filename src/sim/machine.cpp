// The machine: setup, the host loop, the scheduler, virtual time (machine.hpp).
#include "machine.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <klock/report.hpp>

namespace klock::sim {

namespace detail {

thread_local constinit hot_state* tls_hot __attribute__((tls_model("initial-exec"))) = nullptr;

void step_slow() noexcept { tls_hot->m->step_slow(); }
void store_slow() noexcept { tls_hot->m->store_slow(); }
void relax_park() noexcept { tls_hot->m->relax_park(); }
task_base* task_from_slot(std::uint32_t slot) noexcept { return tls_hot->m->task_from_slot(slot); }
int current_prio() noexcept { return tls_hot->m->current_prio(); }
int futex_wait(void* w, std::uint32_t val, std::uint64_t deadline) noexcept
{
    return tls_hot->m->futex_wait(w, val, deadline);
}
int futex_wake(void* w, int n) noexcept { return tls_hot->m->futex_wake(w, n); }
int futex_lock_pi(void* w, std::uint64_t deadline) noexcept { return tls_hot->m->futex_lock_pi(w, deadline); }
int futex_trylock_pi(void* w) noexcept { return tls_hot->m->futex_trylock_pi(w); }
int futex_unlock_pi(void* w) noexcept { return tls_hot->m->futex_unlock_pi(w); }
void preempt_schedule() noexcept { tls_hot->m->preempt_schedule(); }
void irq_enabled() noexcept { tls_hot->m->irq_enabled(); }
std::uint64_t fault_operand(const void* w, int kind, std::uint64_t expected, std::uint64_t operand) noexcept
{
    return tls_hot->m->fault_operand(w, kind, expected, operand);
}

} // namespace detail

namespace {

// The kernel's sched_prio_to_weight[] (kernel/sched/core.c): nice -20..19.
constexpr std::uint64_t nice_weight[40] = {
    88761,
    71755,
    56483,
    46273,
    36291,
    29154,
    23254,
    18705,
    14949,
    11916,
    9548,
    7620,
    6100,
    4904,
    3906,
    3121,
    2501,
    1991,
    1586,
    1277,
    1024,
    820,
    655,
    526,
    423,
    335,
    272,
    215,
    172,
    137,
    110,
    87,
    70,
    56,
    45,
    36,
    29,
    23,
    18,
    15,
};
constexpr std::uint64_t sched_latency_ns = 6000000;
constexpr std::uint64_t sched_min_granularity_ns = 750000;
constexpr std::uint64_t sched_wakeup_granularity_ns = 1000000;

// Mapped room below each stack's STACK_END_MAGIC. klock's report machinery (a backtrace,
// symbolized with libdw) runs on the simulated stack when a lock reports a misuse, and needs far
// more than a kernel stack; a magic overwritten across such a report is excused (checks.cpp).
constexpr std::size_t report_slack = 512 * 1024;

std::uint64_t splitmix(std::uint64_t& s) noexcept
{
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// setup

machine::machine(const scenario& s, const options& o) : scn_(s), opt_(o)
{
    if (opt_.cpus > 0)
        scn_.cpus = opt_.cpus;
    if (opt_.seed != 0)
        scn_.seed = opt_.seed;
    rng_ = scn_.seed;
    hot_.m = this;
    hot_.atomic_ns = opt_.atomic_ns == 0 ? 1 : opt_.atomic_ns;
    hot_.relax_ns = opt_.relax_ns == 0 ? 1 : opt_.relax_ns;
    hot_.park_after = opt_.park_after == 0 ? 1 : opt_.park_after;
    hot_.faults = opt_.planted != fault::none;
    every_step_ = opt_.chooser != nullptr && opt_.chooser->every_step();
}

machine::~machine()
{
    lockdep_teardown();
    destroy_locks();
    stack_pool& pool = stack_pool::local();
    for (auto& t : tasks_)
        if (t->stack)
            pool.put(std::move(t->stack));
    for (auto& c : cpus_)
        if (c->irq_stack)
            pool.put(std::move(c->irq_stack));
}

void machine::setup()
{
    const unsigned ncpu = scn_.cpus;
    const std::uint64_t cpumask = ncpu >= 64 ? ~std::uint64_t(0) : ((std::uint64_t(1) << ncpu) - 1);
    stack_pool& pool = stack_pool::local();
    result_.scn = scn_;
    result_.seed = scn_.seed;

    // Scenario tasks first (their index in run_result::tasks is their index in the scenario),
    // then one idle task per CPU.
    std::uint32_t slot = 1;
    slots_.push_back(nullptr);
    for (std::size_t i = 0; i < scn_.tasks.size(); ++i) {
        const task_spec& ts = scn_.tasks[i];
        auto t = std::make_unique<sim_task>();
        t->index = static_cast<int>(i);
        t->spec = &scn_.tasks[i];
        t->ti.pid = 101 + static_cast<int>(i);
        std::snprintf(t->ti.comm, sizeof t->ti.comm, "%s", ts.name.c_str());
        t->ti.slot = slot++;
        t->pol = ts.sched;
        if (ts.sched == policy::other) {
            t->nice = std::clamp(ts.nice, -20, 19);
            t->normal_prio = 120 + t->nice;
            t->weight = nice_weight[t->nice + 20];
        } else {
            t->rt_prio = std::clamp(ts.prio, 1, 99);
            t->normal_prio = 99 - t->rt_prio;
        }
        t->prio = t->normal_prio;
        t->affinity = ts.affinity & cpumask;
        t->rr_left = scn_.rr_timeslice_ns;
        for (auto& f : t->irqsave)
            f.assign(scn_.locks.size() + 1, 0);
        const std::size_t size = (ts.stack_size == 0 ? 16 * 1024 : ts.stack_size) * stack_scale;
        t->stack = pool.get(size, report_slack);
        make_fiber(t->ctx, *t->stack, &machine::task_entry, t.get());
        slots_.push_back(t.get());
        task_record rec;
        rec.comm = t->ti.comm;
        rec.pid = t->ti.pid;
        rec.policy_prio = t->rt_prio;
        rec.prio = t->normal_prio;
        rec.stack_size = size / stack_scale;
        result_.tasks.push_back(rec);
        tasks_.push_back(std::move(t));
    }
    for (unsigned c = 0; c < ncpu; ++c) {
        auto cpu = std::make_unique<sim_cpu>();
        cpu->id = static_cast<int>(c);
        auto t = std::make_unique<sim_task>();
        t->index = static_cast<int>(tasks_.size());
        t->idle = true;
        t->idle_cpu = static_cast<int>(c);
        t->ti.pid = 0;
        std::snprintf(t->ti.comm, sizeof t->ti.comm, "swapper/%u", c % 100u);
        t->ti.slot = slot++;
        t->pol = policy::other;
        t->normal_prio = t->prio = 140;
        t->affinity = std::uint64_t(1) << (c % 64);
        t->cpu = static_cast<int>(c);
        t->state = tstate::running;
        t->on_cpu = true;
        for (auto& f : t->irqsave)
            f.assign(scn_.locks.size() + 1, 0);
        const std::size_t size = 16 * 1024 * stack_scale;
        t->stack = pool.get(size, report_slack);
        make_fiber(t->ctx, *t->stack, &machine::idle_entry, t.get());
        slots_.push_back(t.get());
        task_record rec;
        rec.comm = t->ti.comm;
        rec.pid = 0;
        rec.prio = 120;
        rec.idle = true;
        rec.cpu = static_cast<int>(c);
        rec.stack_size = size / stack_scale;
        result_.tasks.push_back(rec);
        cpu->idle = t.get();
        cpu->curr = t.get();
        cpu->active = &t->ctx;
        if (scn_.irq_stacks == irq_stack_mode::per_cpu && !scn_.irqs.empty()) {
            const std::size_t isz = (scn_.irq_stack_size == 0 ? 16 * 1024 : scn_.irq_stack_size) * stack_scale;
            cpu->irq_stack = pool.get(isz, report_slack);
            make_fiber(cpu->irq_ctx, *cpu->irq_stack, &machine::irq_entry, cpu.get());
        }
        tasks_.push_back(std::move(t));
        cpus_.push_back(std::move(cpu));
    }
    create_locks();
    lockdep_setup();
    result_.locks.resize(scn_.locks.size());
    check_failed_.assign(std::size(check_names), false);
    for (const char* name : check_names) {
        check_result c;
        c.name = name;
        result_.checks.push_back(c);
    }

    // Timed events: ticks, scenario interrupts, task starts.
    if (scn_.tick_ns > 0)
        for (unsigned c = 0; c < ncpu; ++c)
            push_event({scn_.tick_ns, 0, ev::tick, static_cast<int>(c), -1, 0});
    for (std::size_t i = 0; i < scn_.irqs.size(); ++i) {
        const irq_spec& is = scn_.irqs[i];
        if (is.at_ns == 0 && is.period_ns == 0)
            continue;
        push_event({is.at_ns != 0 ? is.at_ns : is.period_ns, 0, ev::irq, is.cpu, static_cast<int>(i), 0});
        if (is.period_ns > 0)
            periodic_irqs_ = true;
        else
            ++oneshot_events_;
    }
    for (std::size_t i = 0; i < scn_.tasks.size(); ++i) {
        sim_task* t = tasks_[i].get();
        int cpu = scn_.tasks[i].start_cpu;
        if (cpu < 0 || cpu >= static_cast<int>(ncpu) || !(t->affinity >> cpu & 1))
            cpu = __builtin_ctzll(t->affinity);
        t->cpu = cpu;
        push_event({scn_.tasks[i].start_ns, 0, ev::start, cpu, static_cast<int>(i), 0});
        ++oneshot_events_;
        ++live_tasks_;
    }
}

void machine::push_event(timed_event e)
{
    e.seq = ++event_seq_;
    events_.push(e);
    note_time(e.t);
}

// ---------------------------------------------------------------------------------------------
// the host loop

std::uint64_t machine::next_time(const sim_cpu& c) const noexcept
{
    return c.wait == cpu_wait::none ? c.clock : c.wait_until;
}

std::uint64_t machine::compute_yield_at(const sim_cpu& c) const noexcept
{
    if (every_step_)
        return 0;
    std::uint64_t t = events_.empty() ? never : events_.top().t;
    for (const auto& o : cpus_)
        if (o.get() != &c)
            t = std::min(t, next_time(*o));
    return t;
}

void machine::note_time(std::uint64_t t) noexcept
{
    if (t < hot_.yield_at)
        hot_.yield_at = t;
}

void machine::kick(sim_cpu& c, std::uint64_t t) noexcept
{
    if (c.wait == cpu_wait::none)
        return;
    const std::uint64_t at = std::max(c.clock, t);
    if (at < c.wait_until) {
        c.wait_until = at;
        if (running_ != nullptr && running_ != &c)
            note_time(at);
    }
}

int machine::choose_cpu(std::vector<int>& candidates, int last)
{
    if (candidates.size() == 1)
        return candidates[0];
    std::size_t i;
    if (opt_.chooser != nullptr)
        i = opt_.chooser->choose(std::span<const int>(candidates), last) % candidates.size();
    else
        i = static_cast<std::size_t>(splitmix(rng_) % candidates.size());
    return candidates[i];
}

void machine::resume(sim_cpu& c)
{
    if (c.wait != cpu_wait::none) {
        c.clock = std::max(c.clock, c.wait_until);
        c.wait = cpu_wait::none;
        c.wait_until = never;
    }
    running_ = &c;
    last_cpu_ = c.id;
    hot_.now = c.clock;
    hot_.cpu = c.id;
    hot_.current = c.curr;
    hot_.access_epoch = c.access_epoch;
    hot_.pure_relaxes = c.pure_relaxes;
    hot_.accessed = c.accessed;
    hot_.yield_at = compute_yield_at(c);
    hot_.quiet = 0;
    fiber_context* to = c.active;
    switch_fiber(host_ctx_, *to);
    hot_.quiet = 1;
    // The fiber that returned is the CPU's active one.
    c.clock = hot_.now;
    c.access_epoch = hot_.access_epoch;
    c.pure_relaxes = hot_.pure_relaxes;
    c.accessed = hot_.accessed;
    running_ = nullptr;
    if (c.active == &c.irq_ctx)
        check_stack(c.irq_stack.get(), nullptr, "switch to the machine from the irq stack", c.irq_reports);
    else
        check_stack(c.curr->stack.get(), c.curr, "switch to the machine", c.curr->stack_reports);
}

void machine::yield_to_host() noexcept
{
    sim_cpu& c = *running_;
    switch_fiber(*c.active, host_ctx_);
}

void machine::cpu_wait_for(cpu_wait kind, std::uint64_t until) noexcept
{
    sim_cpu& c = cur_cpu();
    c.wait = kind;
    c.wait_until = until;
    if (kind == cpu_wait::spin) {
        ++spin_parked_;
        hot_.watch_stores = true;
        c.parked_epoch = hot_.epoch;
    }
    yield_to_host();
    if (kind == cpu_wait::spin) {
        --spin_parked_;
        hot_.watch_stores = spin_parked_ > 0;
    }
}

// Nothing will ever change again: no one-shot event is pending, every CPU is idle, halted or
// parked in a spin (which only a store could end, and no CPU is left to store; periodic scenario
// interrupts could, so they rule the parked spins out), and every task is blocked or halted
// without a timer, or spinning.
bool machine::quiescent() const noexcept
{
    if (oneshot_events_ > 0)
        return false;
    for (const auto& c : cpus_) {
        if (c->wait == cpu_wait::idle || c->wait == cpu_wait::halt)
            continue;
        // A parked spin stays quiet only if nothing has been written since it parked.
        if (c->wait == cpu_wait::spin && c->parked_epoch == hot_.epoch && !periodic_irqs_ && c->pending_irqs.empty()
            && c->pending_softirqs.empty())
            continue;
        return false;
    }
    for (const auto& t : tasks_) {
        if (t->idle || t->state == tstate::dead)
            continue;
        if (t->timer_armed)
            return false;
        if (t->state == tstate::blocked)
            continue;
        if (t->state == tstate::running)
            continue; // halted or spinning: its CPU passed the test above
        return false;
    }
    return true;
}

void machine::process_event(const timed_event& e)
{
    hot_.now = e.t;
    hot_.cpu = e.cpu;
    sim_cpu& c = *cpus_[static_cast<std::size_t>(e.cpu)];
    switch (e.kind) {
    case ev::tick: {
        push_event({e.t + scn_.tick_ns, 0, ev::tick, e.cpu, -1, 0});
        if (c.curr->idle && c.wait == cpu_wait::idle) {
            c.watchdog_touch = e.t; // NO_HZ idle: no tick on an idle CPU
            break;
        }
        c.tick_pending = true;
        if (irqs_on(c))
            kick(c, e.t);
        else if (!c.lockup_reported && e.t > c.watchdog_touch && e.t - c.watchdog_touch >= scn_.soft_lockup_ns)
            soft_lockup(c, true); // the NMI watchdog: interrupts have been off all along
        break;
    }
    case ev::irq: {
        const irq_spec& is = scn_.irqs[static_cast<std::size_t>(e.a)];
        if (is.period_ns > 0)
            push_event({e.t + is.period_ns, 0, ev::irq, e.cpu, e.a, 0});
        else
            --oneshot_events_;
        raise_irq(e.a, e.cpu);
        break;
    }
    case ev::timer:
        --oneshot_events_;
        timer_fired(tasks_[static_cast<std::size_t>(e.a)].get(), e.gen, e.t);
        break;
    case ev::start: {
        --oneshot_events_;
        sim_task* t = tasks_[static_cast<std::size_t>(e.a)].get();
        t->state = tstate::blocked; // wake_up starts it like a wakeup from another CPU
        t->since = e.t;
        t->vruntime = c.min_vruntime;
        wake_up(t, -1, e.t);
        break;
    }
    }
}

run_result machine::run()
{
    saved_hot_ = detail::tls_hot;
    detail::tls_hot = &hot_;
    hot_.quiet = 1;
    klock::report_capture capture;
    report_base_ = capture.count();
    reports_seen_ = klock::report_count();
    setup();

    std::vector<int> cand;
    cand.reserve(cpus_.size());
    while (!stop_) {
        if (live_tasks_ == 0) {
            stop_reason_ = "all tasks exited";
            break;
        }
        if (opt_.max_steps != 0 && hot_.steps >= opt_.max_steps) {
            stop_reason_ = "step limit";
            marker("step limit reached");
            break;
        }
        const std::uint64_t tev = events_.empty() ? never : events_.top().t;
        std::uint64_t tc = never;
        for (const auto& c : cpus_)
            tc = std::min(tc, next_time(*c));
        bool settled = true;
        for (const auto& c : cpus_)
            settled = settled && (c->wait == cpu_wait::idle || c->wait == cpu_wait::halt || c->wait == cpu_wait::spin);
        if (settled && quiescent()) {
            quiescence_checks();
            break;
        }
        if (every_step_) {
            // Exploration: any CPU able to run may take the next step. Virtual time is global
            // and moves forward with every step taken, so that the log's order is the order in
            // which things happened.
            if (tev <= global_now_) {
                timed_event e = events_.top();
                events_.pop();
                e.t = std::max(e.t, global_now_);
                process_event(e);
                continue;
            }
            // The CPUs executing compete - a `work` step is execution too: switching away from
            // it is a preemption. A CPU that waits (a parked spin, idle, halted) runs when it
            // is due and none is executing: waiting is being slow, in this model. (Letting due
            // waiters compete too multiplies the schedules by the spins' wakeups.)
            cand.clear();
            for (const auto& c : cpus_)
                if (c->wait == cpu_wait::none || c->wait == cpu_wait::work)
                    cand.push_back(c->id);
            if (cand.empty())
                for (const auto& c : cpus_)
                    if (c->wait_until <= global_now_)
                        cand.push_back(c->id);
            if (cand.empty()) {
                const std::uint64_t t = std::min(tev, tc);
                if (t == never) {
                    stop_reason_ = "nothing left to run";
                    break;
                }
                global_now_ = std::max(global_now_, t);
                if (global_now_ > scn_.time_limit_ns) {
                    stop_reason_ = "time limit";
                    hot_.now = scn_.time_limit_ns;
                    break;
                }
                continue;
            }
            sim_cpu& c = *cpus_[static_cast<std::size_t>(choose_cpu(cand, last_cpu_))];
            c.clock = std::max(c.clock, global_now_);
            resume(c);
            global_now_ = std::max(global_now_, c.clock);
            if (global_now_ > scn_.time_limit_ns) {
                stop_reason_ = "time limit";
                hot_.now = scn_.time_limit_ns;
                break;
            }
            if (global_now_ > stop_at_) {
                stop_reason_ = "deadlock";
                break;
            }
            continue;
        }
        const std::uint64_t t = std::min(tev, tc);
        if (t == never) {
            stop_reason_ = "nothing left to run";
            break;
        }
        if (t > stop_at_) {
            stop_reason_ = "deadlock";
            break;
        }
        if (t > scn_.time_limit_ns) {
            stop_reason_ = "time limit";
            hot_.now = scn_.time_limit_ns;
            break;
        }
        if (tev <= tc) {
            const timed_event e = events_.top();
            events_.pop();
            process_event(e);
            continue;
        }
        cand.clear();
        for (const auto& c : cpus_)
            if (next_time(*c) == tc)
                cand.push_back(c->id);
        resume(*cpus_[static_cast<std::size_t>(choose_cpu(cand, last_cpu_))]);
    }
    finalize();
    if (stop_reason_.empty())
        stop_reason_ = "stopped";
    result_.stop_reason = stop_reason_;
    detail::tls_hot = saved_hot_;
    return std::move(result_);
}

// ---------------------------------------------------------------------------------------------
// Env entry points that belong to the scheduler

void machine::step_slow() noexcept
{
    if (stop_) {
        yield_to_host();
        return;
    }
    if (every_step_ || hot_.now >= hot_.yield_at || (opt_.max_steps != 0 && hot_.steps >= opt_.max_steps))
        yield_to_host();
    deliver_pending();
}

void machine::store_slow() noexcept
{
    if (hot_.quiet != 0 && running_ == nullptr)
        return;
    for (auto& c : cpus_)
        if (c->wait == cpu_wait::spin)
            kick(*c, hot_.now);
}

void machine::relax_park() noexcept
{
    cpu_wait_for(cpu_wait::spin, hot_.now + opt_.park_period_ns);
    deliver_pending();
}

task_base* machine::task_from_slot(std::uint32_t slot) noexcept
{
    return slot < slots_.size() ? slots_[slot] : nullptr;
}

int machine::current_prio() noexcept
{
    const sim_task* t = cur_task();
    return t->prio < 100 ? 99 - t->prio : 0;
}

void machine::preempt_schedule() noexcept
{
    sim_task* t = cur_task();
    if (t->ti.need_resched && preemptible(t))
        schedule("preempt_enable() rescheduled");
}

bool machine::preemptible(const sim_task* t) const noexcept { return t->ti.preempt_count == 0 && !t->ti.irqs_disabled; }

bool machine::irqs_on(const sim_cpu& c) const noexcept { return c.curr->idle ? true : !c.curr->ti.irqs_disabled; }

// ---------------------------------------------------------------------------------------------
// run queues

void machine::enqueue(sim_cpu& c, sim_task* t, bool head)
{
    t->seq = ++enqueue_seq_;
    if (t->prio < 100) {
        auto it = c.rt_rq.begin();
        while (it != c.rt_rq.end() && ((*it)->prio < t->prio || (!head && (*it)->prio == t->prio)))
            ++it;
        c.rt_rq.insert(it, t);
    } else {
        auto it = c.fair_rq.begin();
        while (it != c.fair_rq.end() && (*it)->vruntime <= t->vruntime)
            ++it;
        c.fair_rq.insert(it, t);
    }
    t->cpu = c.id;
}

void machine::dequeue(sim_cpu& c, sim_task* t)
{
    auto& q = t->prio < 100 ? c.rt_rq : c.fair_rq;
    auto it = std::find(q.begin(), q.end(), t);
    if (it != q.end()) {
        q.erase(it);
        return;
    }
    auto& other = t->prio < 100 ? c.fair_rq : c.rt_rq; // queued before a class change
    it = std::find(other.begin(), other.end(), t);
    if (it != other.end())
        other.erase(it);
}

sim_task* machine::pick_next(sim_cpu& c)
{
    if (!c.rt_rq.empty()) {
        sim_task* t = c.rt_rq.front();
        c.rt_rq.erase(c.rt_rq.begin());
        return t;
    }
    if (!c.fair_rq.empty()) {
        sim_task* t = c.fair_rq.front();
        c.fair_rq.erase(c.fair_rq.begin());
        c.min_vruntime = std::max(c.min_vruntime, t->vruntime);
        return t;
    }
    return c.idle;
}

int machine::select_cpu(sim_task* t)
{
    const int n = static_cast<int>(cpus_.size());
    auto allowed = [&](int c) { return c >= 0 && c < n && (t->affinity >> (c % 64) & 1) != 0; };
    auto idle = [&](int c) {
        const sim_cpu& k = *cpus_[static_cast<std::size_t>(c)];
        return k.curr->idle && k.rt_rq.empty() && k.fair_rq.empty();
    };
    if (allowed(t->cpu) && idle(t->cpu))
        return t->cpu;
    for (int i = 0; i < n; ++i) {
        const int c = (t->cpu + i) % n;
        if (allowed(c) && idle(c))
            return c;
    }
    if (t->prio < 100) {
        int best = -1;
        int worst_prio = t->prio;
        for (int i = 0; i < n; ++i) {
            const int c = (t->cpu + i) % n;
            if (!allowed(c))
                continue;
            const sim_cpu& k = *cpus_[static_cast<std::size_t>(c)];
            int p = k.curr->prio;
            if (!k.rt_rq.empty())
                p = std::min(p, k.rt_rq.front()->prio);
            if (p > worst_prio) {
                worst_prio = p;
                best = c;
            }
        }
        if (best >= 0)
            return best;
    }
    if (allowed(t->cpu))
        return t->cpu;
    return __builtin_ctzll(t->affinity);
}

void machine::account(sim_task* t, std::uint64_t now)
{
    if (t->idle) {
        t->since = now;
        return;
    }
    const std::uint64_t d = now > t->since ? now - t->since : 0;
    task_record& r = result_.tasks[static_cast<std::size_t>(t->index)];
    switch (t->state) {
    case tstate::running:
        r.run_ns += d;
        break;
    case tstate::runnable:
        r.wait_ns += d;
        break;
    case tstate::blocked:
        r.blocked_ns += d;
        break;
    default:
        break;
    }
    t->since = now;
}

void machine::wake_up(sim_task* t, int waker, std::uint64_t now)
{
    if (t->state != tstate::blocked)
        return;
    account(t, now);
    t->state = tstate::runnable;
    t->wr = wait_reason::none;
    t->timer_armed = false;
    ++t->wait_gen;
    const int cpu = select_cpu(t);
    sim_cpu& c = *cpus_[static_cast<std::size_t>(cpu)];
    if (t->prio >= 100) {
        const std::uint64_t floor = c.min_vruntime > sched_latency_ns / 2 ? c.min_vruntime - sched_latency_ns / 2 : 0;
        t->vruntime = std::max(t->vruntime, floor);
    }
    enqueue(c, t);
    event e = base_event(event_kind::sched_wakeup);
    e.t_ns = now;
    e.cpu = cpu;
    e.task = t->index;
    e.task2 = waker;
    e.prio = t->prio;
    emit(e);
    ++hot_.epoch;
    check_preempt(c, t);
    check_inversion();
}

void machine::check_preempt(sim_cpu& c, sim_task* t)
{
    sim_task* curr = c.curr;
    bool preempt;
    if (curr->idle)
        preempt = true;
    else if (t->prio < 100 || curr->prio < 100)
        preempt = t->prio < curr->prio;
    else
        preempt = t->vruntime + sched_wakeup_granularity_ns < curr->vruntime;
    if (preempt)
        resched(c);
}

void machine::resched(sim_cpu& c)
{
    c.curr->ti.need_resched = true;
    if (running_ == &c)
        return; // local: the caller reschedules where the kernel would
    c.resched_ipi = true;
    if (c.wait == cpu_wait::idle || irqs_on(c))
        kick(c, hot_.now);
}

void machine::update_curr(sim_cpu& c, std::uint64_t now)
{
    sim_task* t = c.curr;
    const std::uint64_t d = now > t->exec_start ? now - t->exec_start : 0;
    t->exec_start = now;
    t->slice_exec += d;
    if (!t->idle && t->prio >= 100) {
        t->vruntime += d * 1024 / t->weight;
        std::uint64_t minv = t->vruntime;
        if (!c.fair_rq.empty())
            minv = std::min(minv, c.fair_rq.front()->vruntime);
        c.min_vruntime = std::max(c.min_vruntime, minv);
    }
}

void machine::set_prio(sim_task* t, int prio)
{
    if (t->prio == prio)
        return;
    const int old = t->prio;
    sim_cpu& c = *cpus_[static_cast<std::size_t>(t->cpu)];
    if (t->state == tstate::runnable) {
        dequeue(c, t);
        t->prio = prio;
        enqueue(c, t);
        check_preempt(c, t);
    } else {
        t->prio = prio;
        if (t->state == tstate::running && prio > old) {
            // Deboosted while running: a queued task may now come first.
            int best = 200;
            if (!c.rt_rq.empty())
                best = c.rt_rq.front()->prio;
            else if (!c.fair_rq.empty())
                best = c.fair_rq.front()->prio;
            if (best < prio || (best >= 100 && prio >= 100 && !c.fair_rq.empty() && old < 100))
                resched(c);
        }
    }
    event e = base_event(event_kind::prio_change);
    e.cpu = t->cpu;
    e.task = t->index;
    e.prio = old;
    e.prio2 = prio;
    emit(e);
    check_inversion();
}

// ---------------------------------------------------------------------------------------------
// schedule(): the context switch, in the fiber of the task leaving the CPU

void machine::schedule(const char* cause) noexcept
{
    sim_cpu& c = cur_cpu();
    sim_task* prev = cur_task();
    const std::uint64_t now = hot_.now;
    update_curr(c, now);
    bool rr_tail = false;
    if (prev->state == tstate::running && !prev->idle && !prev->halted) {
        account(prev, now);
        prev->state = tstate::runnable;
        // A preempted RT task keeps its place at the head of its priority (sched(7)); one whose
        // round-robin slice ran out goes to the tail.
        rr_tail = prev->pol == policy::rr && prev->rr_left == 0;
        if (rr_tail)
            prev->rr_left = scn_.rr_timeslice_ns;
        enqueue(c, prev, prev->prio < 100 && !rr_tail);
    }
    prev->ti.need_resched = false;
    c.resched_ipi = false;
    sim_task* next = pick_next(c);
    if (next == prev) {
        account(prev, now);
        prev->state = tstate::running;
        return;
    }
    // The switch.
    if (!next->idle)
        account(next, now);
    event e = base_event(event_kind::sched_switch);
    e.cpu = c.id;
    e.task = prev->index;
    e.task2 = next->index;
    e.prio = prev->prio;
    e.prio2 = next->prio;
    e.state = prev->state == tstate::dead ? 'X' : prev->state == tstate::blocked ? prev->sleep_state : 'R';
    emit(e);
    check_switch(prev, next, cause);
    prev->on_cpu = false;
    next->on_cpu = true;
    next->state = tstate::running;
    next->cpu = c.id;
    next->exec_start = now;
    next->slice_exec = 0;
    result_.tasks[static_cast<std::size_t>(next->index)].cpu = c.id;
    c.curr = next;
    c.active = &next->ctx;
    c.watchdog_touch = now;
    hot_.current = next;
    hot_.now += opt_.switch_ns;
    ++switches_;
    ++hot_.epoch;
    if (hot_.watch_stores)
        store_slow();
    check_inversion();
    check_stack(prev->stack.get(), prev, "context switch", prev->stack_reports);
    if (stop_) {
        // A fatal check (stack overflow) ends the run here: the machine takes over.
        yield_to_host();
    }
    switch_fiber(prev->ctx, next->ctx, prev->state == tstate::dead);
    // Back on a CPU (maybe another one): hot_ describes it.
}

void machine::block(wait_reason why, char state, const char* cause) noexcept
{
    sim_task* t = cur_task();
    account(t, hot_.now);
    t->state = tstate::blocked;
    t->sleep_state = state;
    t->wr = why;
    schedule(cause);
    t->wr = wait_reason::none;
}

void machine::arm_timer(sim_task* t, std::uint64_t at)
{
    t->timer_armed = true;
    ++oneshot_events_;
    push_event({at, 0, ev::timer, t->cpu, t->index, t->wait_gen});
}

void machine::tick(sim_cpu& c)
{
    const std::uint64_t now = hot_.now;
    update_curr(c, now);
    sim_task* curr = c.curr;
    if (curr->idle) {
        c.watchdog_touch = now;
        return;
    }
    // The soft-lockup watchdog (kernel/watchdog.c): its per-CPU thread runs whenever the CPU can
    // schedule; interrupting a preemptible context means it could have run.
    if ((curr->ti.preempt_count & ~HARDIRQ_OFFSET) == 0)
        c.watchdog_touch = now;
    else if (!c.lockup_reported && now - c.watchdog_touch >= scn_.soft_lockup_ns)
        soft_lockup(c, false);
    if (curr->pol == policy::rr && curr->prio < 100) {
        curr->rr_left = curr->rr_left > scn_.tick_ns ? curr->rr_left - scn_.tick_ns : 0;
        if (curr->rr_left == 0) {
            bool others = false;
            for (sim_task* q : c.rt_rq)
                others = others || q->prio == curr->prio;
            if (others)
                resched(c);
            else
                curr->rr_left = scn_.rr_timeslice_ns;
        }
    } else if (curr->prio >= 100 && !c.fair_rq.empty()) {
        std::uint64_t total = curr->weight;
        for (sim_task* q : c.fair_rq)
            total += q->weight;
        const std::uint64_t nr = c.fair_rq.size() + 1;
        std::uint64_t period = sched_latency_ns;
        if (nr * sched_min_granularity_ns > period)
            period = nr * sched_min_granularity_ns;
        const std::uint64_t ideal = std::max(period * curr->weight / total, sched_min_granularity_ns);
        if (curr->slice_exec >= ideal)
            resched(c);
    }
}

void machine::timer_fired(sim_task* t, std::uint64_t gen, std::uint64_t now)
{
    if (!t->timer_armed || gen != t->wait_gen)
        return;
    t->timer_armed = false;
    t->wake_result = -ETIMEDOUT;
    if (t->wr == wait_reason::futex || (t->halted && t->futex_key != nullptr)) {
        auto it = futexq_.find(t->futex_key);
        if (it != futexq_.end()) {
            auto& q = it->second;
            q.erase(std::remove(q.begin(), q.end(), t), q.end());
            if (q.empty())
                futexq_.erase(it);
        }
        t->futex_key = nullptr;
    }
    if (t->wr == wait_reason::pi && t->pi_blocked_on != nullptr) {
        pi_state* ps = t->pi_blocked_on;
        ps->waiters.erase(std::remove(ps->waiters.begin(), ps->waiters.end(), t), ps->waiters.end());
        t->pi_blocked_on = nullptr;
        if (ps->owner != nullptr)
            pi_adjust_chain(ps->owner, 0);
    }
    if (t->halted) {
        t->halted = false;
        kick(*cpus_[static_cast<std::size_t>(t->cpu)], now);
        return;
    }
    wake_up(t, -1, now);
}

// ---------------------------------------------------------------------------------------------
// API

const char* to_string(fault f) noexcept
{
    switch (f) {
    case fault::none:
        return "none";
    case fault::mutex_lost_wakeup:
        return "mutex-lost-wakeup";
    case fault::mutex_no_handoff:
        return "mutex-no-handoff";
    case fault::rt_mutex_no_boost:
        return "rt_mutex-no-boost";
    case fault::ticket_skip:
        return "ticket-skip";
    case fault::ticket_no_next:
        return "ticket-no-next";
    }
    return "?";
}

const check_result* find_check(const run_result& r, const char* name) noexcept
{
    for (const check_result& c : r.checks)
        if (c.name == name)
            return &c;
    return nullptr;
}

run_result run(const scenario& s, const options& o)
{
    scenario copy = s;
    if (o.cpus > 0)
        copy.cpus = o.cpus;
    const std::string err = validate(copy);
    if (!err.empty())
        throw std::invalid_argument("klock sim: " + err);
    if (detail::tls_hot != nullptr && detail::tls_hot->quiet == 0)
        throw std::logic_error("klock sim: run() called from inside a simulated task");
    machine m(s, o);
    return m.run();
}

} // namespace klock::sim
