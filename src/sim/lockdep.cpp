// lockdep on simulated tasks: klock's lockdep engine (lockdep.hpp) fed by the scenario scripts,
// with each simulated task's own task_state, in its simulated irq contexts.
//
// WHERE THE ENGINE IS CALLED
//   Where the kernel's lock wrappers call it (include/linux/spinlock_api_smp.h, mutex.c, ...):
//   lock_acquire before the lock is waited for, so that a deadlock about to happen is reported
//   first; a trylock's acquire only once it succeeded; lock_release before the unlock. Interrupt
//   state is traced where the kernel traces it: hardirqs_off right after interrupts go off
//   (local_irq_disable, spin_lock_irqsave, interrupt entry), hardirqs_on right before they come
//   back on (local_irq_enable, spin_unlock_irqrestore, interrupt exit), softirqs_off/on around
//   local_bh_disable/enable and softirq processing. The engine reads the context (hardirq,
//   softirq, interrupts on) from the task's thread_info, which the machine keeps exactly as the
//   kernel keeps preempt_count and the irq flag, so an interrupt handler's acquisitions are
//   IN-HARDIRQ usage and a task's acquisition with interrupts on is HARDIRQ-ON usage.
//   The timer tick is not traced: its handler takes no scenario lock.
//
//   The lock templates' own lockdep hooks are compiled out for the sim Env (lockdep_hooks.hpp):
//   these calls are the only ones, in every build, KLOCK_LOCKDEP or not.
//
// CLASSES: one per scenario lock, named after it (each scenario lock is a separate static lock
//   in kernel terms). The engine is the process's one lockdep: a run resets it when it starts
//   and when it ends (its classes name this machine's locks), so runs are independent and the
//   same inputs give the same reports. Simulations with lockdep are not meant to share a process
//   with os-world lockdep users; klock's own tools do not.
//
// NAMES AND ADDRESSES (task_lockdep, the engine's task_host): a task's stack is the script steps
//   it is in, innermost context first - the hardirq handler's step, the handler, the softirq's,
//   the task's step, the task. Such a frame is a made-up kernel-text-like ip:
//       0xffffff0000000000 | context << 24 | step index      (step ENTRY_PC: the context itself)
//   with context 1 + task index for a task and 0x8000 + irq index for a handler; the reports
//   print it as "A: mutex_lock(L1) at abba.scn:12" ("at step 3" for a scenario built in code).
//   Lock instances and keys get fixed addresses per lock index. No real address reaches a
//   report, so reports are deterministic.
//
// STACK: the engine runs on a stack of its own, switched to for each call (two fiber switches,
//   no scheduling point in between: the engine touches no simulated word). A scenario's stack use
//   is then its own frames and klock's lock code, as on the kernel's stacks; the validator's C++
//   frames (reports build strings) are far larger than the kernel's lockdep frames and would
//   distort it, and on a 16 KiB simulated stack a report could overflow it.
//
// REPORTS go through klock's report sink like all others. Every engine call first files what
// was already reported as "lock bug" and then files what the call added as the "lockdep" check.
#include "machine.hpp"

#include <cstdio>

#include <klock/detail/symbolize.hpp>
#include <klock/report.hpp>

namespace klock::sim {

namespace {

constexpr std::uintptr_t IP_BASE = 0xffffff0000000000ull;
constexpr std::uintptr_t IP_MASK = 0xffffff0000000000ull;
constexpr std::uint32_t ENTRY_PC = 0xffffff;
constexpr std::uint32_t HANDLER_CTX = 0x8000;
constexpr std::uintptr_t LOCK_BASE = 0xffff888000100000ull; // the kernel's direct map
constexpr std::uintptr_t KEY_BASE = 0xffffffff83000000ull;  // the kernel's .data
constexpr std::uintptr_t OBJ_STRIDE = 0x40;

std::uintptr_t make_ip(std::uint32_t ctx, std::uint32_t pc) noexcept
{
    return IP_BASE | (std::uintptr_t(ctx & 0xffff) << 24) | (pc & ENTRY_PC);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// the engine's view of a simulated task

namespace {
const task_lockdep& self_of(const lockdep::task_host& h) noexcept { return static_cast<const task_lockdep&>(h); }
} // namespace

task_lockdep::task_lockdep(const machine* mm, const sim_task* tt) noexcept
    : lockdep::task_host{
        [](const task_host& h) noexcept { return self_of(h).cpu_of(); },
        [](const task_host& h, std::uintptr_t* out, unsigned max) noexcept { return self_of(h).stack_of(out, max); },
        [](const task_host& h, std::uintptr_t ip, bool ra) { return self_of(h).symbol_of(ip, ra); },
        [](const task_host& h, const void* object) noexcept { return self_of(h).address_of(object); },
    },
      m(mm),
      t(tt)
{
    state.host = this;
}

int task_lockdep::cpu_of() const noexcept { return t->cpu; }

unsigned task_lockdep::stack_of(std::uintptr_t* out, unsigned max) const noexcept
{
    unsigned n = 0;
    auto push = [&](std::uintptr_t ip) {
        if (n < max)
            out[n++] = ip;
    };
    for (int level = t->level; level > 0; --level) {
        if (t->handler[level] < 0)
            continue;
        const auto ctx = HANDLER_CTX + static_cast<std::uint32_t>(t->handler[level]);
        push(make_ip(ctx, t->pc[level]));
        push(make_ip(ctx, ENTRY_PC));
    }
    const auto ctx = static_cast<std::uint32_t>(t->index + 1);
    if (!t->idle)
        push(make_ip(ctx, t->pc[0]));
    push(make_ip(ctx, ENTRY_PC));
    return n;
}

std::string task_lockdep::symbol_of(std::uintptr_t ip, bool return_address) const
{
    const machine& mm = *m;
    const std::size_t nlocks = mm.locks_.size();
    if (ip >= KEY_BASE && ip < KEY_BASE + nlocks * OBJ_STRIDE)
        return mm.locks_[(ip - KEY_BASE) / OBJ_STRIDE].name + ".key";
    if ((ip & IP_MASK) != IP_BASE)
        return klock::detail::format_symbol(ip, return_address);
    const auto ctx = static_cast<std::uint32_t>((ip >> 24) & 0xffff);
    const auto pc = static_cast<std::uint32_t>(ip & ENTRY_PC);
    std::string who;
    const std::vector<step>* steps = nullptr;
    const char* kind = "task";
    if (ctx >= HANDLER_CTX && ctx - HANDLER_CTX < mm.scn_.irqs.size()) {
        const irq_spec& is = mm.scn_.irqs[ctx - HANDLER_CTX];
        who = is.name;
        steps = &is.handler;
        kind = is.softirq ? "softirq handler" : "hardirq handler";
    } else if (ctx >= 1 && ctx - 1 < mm.tasks_.size()) {
        const sim_task& k = *mm.tasks_[ctx - 1];
        who = k.ti.comm;
        if (k.spec != nullptr)
            steps = &k.spec->steps;
        else
            kind = "idle task";
    } else {
        return klock::detail::format_symbol(ip, return_address);
    }
    if (pc == ENTRY_PC || steps == nullptr || pc >= steps->size())
        return who + " (" + kind + ")";
    const step& s = (*steps)[pc];
    std::string what = to_string(s.kind);
    if (s.lock >= 0 && static_cast<std::size_t>(s.lock) < nlocks) {
        const lock_obj& L = mm.locks_[static_cast<std::size_t>(s.lock)];
        what = std::string(op_verb(L.type, s.kind)) + "(" + L.name + ")";
    }
    // The file's base name, so that the report does not depend on where the file was read from.
    const std::string& file = mm.scn_.file;
    const std::size_t slash = file.find_last_of('/');
    char where[48];
    if (s.line != 0 && !file.empty())
        std::snprintf(where, sizeof where, ":%u", s.line);
    else if (s.line != 0)
        std::snprintf(where, sizeof where, " at line %u", s.line);
    else
        std::snprintf(where, sizeof where, " at step %u", pc + 1);
    if (s.line != 0 && !file.empty())
        return who + ": " + what + " at " + file.substr(slash == std::string::npos ? 0 : slash + 1) + where;
    return who + ": " + what + where;
}

std::uintptr_t task_lockdep::address_of(const void* object) const noexcept
{
    const std::size_t n = m->locks_.size();
    const lock_lockdep* deps = m->lock_deps_.get();
    for (std::size_t i = 0; deps != nullptr && i < n; ++i) {
        if (object == &deps[i].map)
            return LOCK_BASE + i * OBJ_STRIDE;
        if (object == &deps[i].key)
            return KEY_BASE + i * OBJ_STRIDE;
    }
    return reinterpret_cast<std::uintptr_t>(object);
}

// ---------------------------------------------------------------------------------------------
// the machine's calls

namespace {

// One call into the engine for the current task, on lockdep's stack: reports already made belong
// to other checks; what the call reports is lockdep's.
template <class F> void engine_call(machine& m, F&& f)
{
    sim_task* t = m.cur_task();
    if (t->ld == nullptr)
        return;
    struct call {
        machine* m;
        F* f;
        sim_task* t;
    } c{&m, &f, t};
    m.on_lockdep_stack(
        [](void* p) {
            auto* k = static_cast<call*>(p);
            k->m->check_reports();
            const std::uint64_t before = lockdep::report_count();
            (*k->f)(k->t->ld->state, k->t->ti);
            if (lockdep::report_count() != before)
                k->m->collect_reports("lockdep", false);
        },
        &c);
}

std::uintptr_t current_ip(const sim_task* t) noexcept
{
    const int level = t->level;
    if (level > 0 && t->handler[level] >= 0)
        return make_ip(HANDLER_CTX + static_cast<std::uint32_t>(t->handler[level]), t->pc[level]);
    return make_ip(static_cast<std::uint32_t>(t->index + 1), t->idle ? ENTRY_PC : t->pc[0]);
}

} // namespace

void machine::on_lockdep_stack(void (*fn)(void*), void* arg) noexcept
{
    fiber_context* back = running_ != nullptr ? cur_cpu().active : nullptr;
    if (back == nullptr || ld_stack_ == nullptr) {
        fn(arg);
        return;
    }
    ld_fn_ = fn;
    ld_arg_ = arg;
    ld_return_ = back;
    switch_fiber(*back, ld_ctx_);
}

void machine::lockdep_entry(void* arg)
{
    fiber_started();
    auto* m = static_cast<machine*>(arg);
    for (;;) {
        m->ld_fn_(m->ld_arg_);
        switch_fiber(m->ld_ctx_, *m->ld_return_);
    }
}

void machine::lockdep_setup()
{
    lockdep::reset();
    ld_stack_ = stack_pool::local().get(256 * 1024 * stack_scale, 4096);
    make_fiber(ld_ctx_, *ld_stack_, &machine::lockdep_entry, this);
    lock_deps_ = std::make_unique<lock_lockdep[]>(locks_.size());
    for (std::size_t i = 0; i < locks_.size(); ++i)
        lock_deps_[i].map.init(locks_[i].name.c_str(), &lock_deps_[i].key);
    for (auto& t : tasks_) {
        t->ld = std::make_unique<task_lockdep>(this, t.get());
    }
}

void machine::lockdep_teardown() noexcept
{
    if (lock_deps_ == nullptr)
        return;
    for (auto& t : tasks_)
        if (t->ld != nullptr)
            lockdep::task_forget(t->ld->state);
    // The engine's classes name this machine's locks and keys, which go away with it.
    lockdep::reset();
    for (auto& t : tasks_)
        t->ld.reset();
    lock_deps_.reset();
    if (ld_stack_ != nullptr)
        stack_pool::local().put(std::move(ld_stack_));
}

void machine::ld_acquire(int lock, int read, bool trylock)
{
    if (lock_deps_ == nullptr)
        return;
    const std::uintptr_t ip = current_ip(cur_task());
    lockdep_map& map = lock_deps_[static_cast<std::size_t>(lock)].map;
    engine_call(*this, [&](lockdep::task_state& ts, const thread_info& ti) {
        lockdep::lock_acquire(ts, ti, map, 0, trylock ? 1 : 0, read, 1, nullptr, ip);
    });
}

void machine::ld_release(int lock)
{
    if (lock_deps_ == nullptr)
        return;
    const std::uintptr_t ip = current_ip(cur_task());
    lockdep_map& map = lock_deps_[static_cast<std::size_t>(lock)].map;
    engine_call(*this, [&](lockdep::task_state& ts, const thread_info& ti) { lockdep::lock_release(ts, ti, map, ip); });
}

void machine::ld_hardirqs(bool on)
{
    const std::uintptr_t ip = current_ip(cur_task());
    engine_call(*this, [&](lockdep::task_state& ts, const thread_info& ti) {
        if (on)
            lockdep::hardirqs_on(ts, ti, ip);
        else
            lockdep::hardirqs_off(ts, ti, ip);
    });
}

void machine::ld_softirqs(bool on)
{
    const std::uintptr_t ip = current_ip(cur_task());
    engine_call(*this, [&](lockdep::task_state& ts, const thread_info& ti) {
        if (on)
            lockdep::softirqs_on(ts, ti, ip);
        else
            lockdep::softirqs_off(ts, ti, ip);
    });
}

void machine::ld_task_exit()
{
    engine_call(*this, [&](lockdep::task_state& ts, const thread_info& ti) { lockdep::task_exit(ts, ti); });
}

} // namespace klock::sim
