// What simulated tasks and interrupt handlers execute: the scenario's step scripts over klock's
// real locks instantiated on the sim Env; interrupt entry/exit; the fibers' entry points.
#include "machine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>

#include <type_traits>

#include <klock/lockdep.hpp>
#include <klock/mutex.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/thread_safety.hpp>

namespace klock::sim {

namespace {

using ticket_t = basic_ticket_spinlock<env>;
using qspin_t = basic_qspinlock<env>;
using rwlock_t = basic_rwlock<env>;
using mutex_t = basic_mutex<env>;
using rtmutex_t = basic_rt_mutex<env>;
using rwsem_t = basic_rw_semaphore<env>;

template <class L> void* make_lock(std::size_t& size)
{
    size = sizeof(L);
    void* p = ::operator new(sizeof(L), std::align_val_t(alignof(L)));
    return ::new (p) L();
}

std::size_t lock_align(lock_type t)
{
    switch (t) {
    case lock_type::spinlock:
    case lock_type::qspinlock:
        return alignof(qspin_t);
    case lock_type::ticket_spinlock:
        return alignof(ticket_t);
    case lock_type::rwlock:
        return alignof(rwlock_t);
    case lock_type::mutex:
        return alignof(mutex_t);
    case lock_type::rt_mutex:
        return alignof(rtmutex_t);
    case lock_type::rw_semaphore:
        return alignof(rwsem_t);
    }
    return alignof(std::max_align_t);
}

// One script operation on one lock, through the standard Lockable / SharedLockable names every
// klock lock has (a rwlock's lock() is write_lock(), a rw_semaphore's lock_shared() is
// down_read(), ...) and the irqsave pair where the lock has one (spinlocks: lock_irqsave, the
// rwlock: write_lock_irqsave). Returns whether it acquired (for lock-type operations) or true;
// false for an operation the lock lacks (validate() keeps scripts from asking for one).
// Thread-safety analysis cannot follow a lock taken in one call and released in another.
template <class L> bool apply(L& l, op k, irq_flags& f) KLOCK_NO_THREAD_SAFETY_ANALYSIS
{
    switch (k) {
    case op::lock:
        l.lock();
        return true;
    case op::unlock:
        l.unlock();
        return true;
    case op::trylock:
        return l.try_lock();
    case op::lock_read:
        if constexpr (requires { l.lock_shared(); }) {
            l.lock_shared();
            return true;
        }
        return false;
    case op::unlock_read:
        if constexpr (requires { l.unlock_shared(); }) {
            l.unlock_shared();
            return true;
        }
        return false;
    case op::lock_irqsave:
        if constexpr (requires { l.lock_irqsave(); }) {
            f = l.lock_irqsave();
            return true;
        } else if constexpr (requires { l.write_lock_irqsave(); }) {
            f = l.write_lock_irqsave();
            return true;
        }
        return false;
    case op::unlock_irqrestore:
        if constexpr (requires { l.unlock_irqrestore(f); }) {
            l.unlock_irqrestore(f);
            return true;
        } else if constexpr (requires { l.write_unlock_irqrestore(f); }) {
            l.write_unlock_irqrestore(f);
            return true;
        }
        return false;
    default:
        return false;
    }
}

bool apply_any(lock_obj& L, op k, irq_flags& f)
{
    switch (L.type) {
    case lock_type::spinlock:
    case lock_type::qspinlock:
        return apply(*static_cast<qspin_t*>(L.mem), k, f);
    case lock_type::ticket_spinlock:
        return apply(*static_cast<ticket_t*>(L.mem), k, f);
    case lock_type::rwlock:
        return apply(*static_cast<rwlock_t*>(L.mem), k, f);
    case lock_type::mutex:
        return apply(*static_cast<mutex_t*>(L.mem), k, f);
    case lock_type::rt_mutex:
        return apply(*static_cast<rtmutex_t*>(L.mem), k, f);
    case lock_type::rw_semaphore:
        return apply(*static_cast<rwsem_t*>(L.mem), k, f);
    }
    return false;
}

// The kernel function a step stands for, for traces and reports.
} // namespace

const char* op_verb(lock_type t, op k)
{
    const bool spin = t == lock_type::spinlock || t == lock_type::qspinlock || t == lock_type::ticket_spinlock;
    switch (k) {
    case op::lock:
        return spin                    ? "spin_lock"
            : t == lock_type::rwlock   ? "write_lock"
            : t == lock_type::mutex    ? "mutex_lock"
            : t == lock_type::rt_mutex ? "rt_mutex_lock"
                                       : "down_write";
    case op::unlock:
        return spin                    ? "spin_unlock"
            : t == lock_type::rwlock   ? "write_unlock"
            : t == lock_type::mutex    ? "mutex_unlock"
            : t == lock_type::rt_mutex ? "rt_mutex_unlock"
                                       : "up_write";
    case op::trylock:
        return spin                    ? "spin_trylock"
            : t == lock_type::rwlock   ? "write_trylock"
            : t == lock_type::mutex    ? "mutex_trylock"
            : t == lock_type::rt_mutex ? "rt_mutex_trylock"
                                       : "down_write_trylock";
    case op::lock_read:
        return t == lock_type::rwlock ? "read_lock" : "down_read";
    case op::unlock_read:
        return t == lock_type::rwlock ? "read_unlock" : "up_read";
    case op::lock_irqsave:
        return t == lock_type::rwlock ? "write_lock_irqsave" : "spin_lock_irqsave";
    case op::unlock_irqrestore:
        return t == lock_type::rwlock ? "write_unlock_irqrestore" : "spin_unlock_irqrestore";
    default:
        return to_string(k);
    }
}

// ---------------------------------------------------------------------------------------------
// locks

void machine::create_locks()
{
    locks_.resize(scn_.locks.size());
    for (std::size_t i = 0; i < scn_.locks.size(); ++i) {
        lock_obj& L = locks_[i];
        L.type = scn_.locks[i].type;
        L.name = scn_.locks[i].name;
        switch (L.type) {
        case lock_type::spinlock:
        case lock_type::qspinlock:
            L.mem = make_lock<qspin_t>(L.size);
            break;
        case lock_type::ticket_spinlock:
            L.mem = make_lock<ticket_t>(L.size);
            break;
        case lock_type::rwlock:
            L.mem = make_lock<rwlock_t>(L.size);
            break;
        case lock_type::mutex:
            L.mem = make_lock<mutex_t>(L.size);
            break;
        case lock_type::rt_mutex:
            L.mem = make_lock<rtmutex_t>(L.size);
            break;
        case lock_type::rw_semaphore:
            L.mem = make_lock<rwsem_t>(L.size);
            break;
        }
    }
}

// The locks are never destroyed: a lock still held when a run ends (a deadlock, say) would
// report "destroyed while held" from a destructor that runs outside any simulated task. Their
// words are plain values, so freeing the memory is all the cleanup there is.
void machine::destroy_locks() noexcept
{
    for (lock_obj& L : locks_)
        if (L.mem != nullptr)
            ::operator delete(L.mem, std::align_val_t(lock_align(L.type)));
    locks_.clear();
}

// The lock word, read without a scheduling point.
std::uint64_t lock_word(const lock_obj& L)
{
    detail::hot_state* h = detail::tls_hot;
    ++h->quiet;
    std::uint64_t v = 0;
    switch (L.type) {
    case lock_type::spinlock:
    case lock_type::qspinlock:
        v = static_cast<const qspin_t*>(L.mem)->raw();
        break;
    case lock_type::ticket_spinlock:
        v = static_cast<const ticket_t*>(L.mem)->raw();
        break;
    case lock_type::rwlock:
        v = static_cast<const rwlock_t*>(L.mem)->raw();
        break;
    case lock_type::mutex: {
        // The owner word holds a task pointer, which differs between runs: the trace keeps
        // the owner's pid in its place (pid << 3 | flags).
        const std::uintptr_t o = static_cast<const mutex_t*>(L.mem)->owner_word();
        const auto* t = reinterpret_cast<const task_base*>(o & ~MUTEX_FLAGS);
        v = (t != nullptr ? std::uint64_t(static_cast<unsigned>(t->ti.pid)) << 3 : 0) | (o & MUTEX_FLAGS);
        break;
    }
    case lock_type::rt_mutex:
        v = static_cast<const rtmutex_t*>(L.mem)->raw();
        break;
    case lock_type::rw_semaphore:
        v = static_cast<const rwsem_t*>(L.mem)->raw_count();
        break;
    }
    --h->quiet;
    return v;
}

// A readable rendering of a lock word (task pointers become task names).
std::string describe_word(const machine& m, const lock_obj& L, std::uint64_t v)
{
    char buf[160];
    switch (L.type) {
    case lock_type::ticket_spinlock:
        std::snprintf(buf, sizeof buf, "slock 0x%08llx (next %llu, owner %llu)", static_cast<unsigned long long>(v),
            static_cast<unsigned long long>(v >> 16), static_cast<unsigned long long>(v & 0xffff));
        break;
    case lock_type::mutex: {
        const int pid = static_cast<int>(v >> 3);
        std::string who = "0";
        for (const auto& k : m.tasks_)
            if (pid != 0 && k->ti.pid == pid)
                who = std::string(k->ti.comm) + "/" + std::to_string(k->ti.pid);
        std::snprintf(buf, sizeof buf, "owner %s%s%s%s", who.c_str(), (v & MUTEX_FLAG_WAITERS) ? " | WAITERS" : "",
            (v & MUTEX_FLAG_HANDOFF) ? " | HANDOFF" : "", (v & MUTEX_FLAG_PICKUP) ? " | PICKUP" : "");
        break;
    }
    default:
        std::snprintf(buf, sizeof buf, "word 0x%08llx", static_cast<unsigned long long>(v));
        break;
    }
    return buf;
}

// ---------------------------------------------------------------------------------------------
// the script interpreter

namespace {

// Out of line, so that its strings take no room in every recursion frame.
[[gnu::cold, gnu::noinline]] void recurse_into_guard(machine& m, sim_task* t)
{
    m.fail("stack overflow",
        "Kernel panic - not syncing: kernel stack overflow\n " + std::string(t->ti.comm) + "/"
            + std::to_string(t->ti.pid)
            + ": a `recurse` frame would run past the end of the stack into the guard page");
    m.stop_ = true;
    m.stop_reason_ = "stack overflow";
    detail::step(1); // back to the machine, for good
}

// A `recurse` step: `n` nested calls whose frames take `bytes` of stack each, in any build. Each
// level fills the stack down to its own target address (the step's start minus k * bytes), so
// this function's own frame - larger under a sanitizer, laid out differently by each compiler -
// takes from the level's share instead of adding to it.
[[gnu::noinline]] void recurse_frames(machine& m, sim_task* t, unsigned n, std::size_t bytes, std::uintptr_t target)
{
    if (n == 0 || m.stop_)
        return;
    fiber_stack* s = t->stack.get();
    sim_cpu& c = *m.cpus_[static_cast<std::size_t>(detail::tls_hot->cpu)];
    if (c.on_irq_stack)
        s = c.irq_stack.get();
    auto* here = static_cast<unsigned char*>(__builtin_frame_address(0));
    const bool on_stack = s != nullptr && s->contains(here);
    const auto at = reinterpret_cast<std::uintptr_t>(here);
    const std::size_t fill = on_stack && at > target + 16 ? at - target : 16;
    // Never run into the guard page: that would be a fault, not a report. (The kernel's
    // VMAP_STACK guard page makes this an oops; the magic catches smaller overflows first.)
    if (on_stack && static_cast<std::size_t>(here - s->lowest()) < fill + 1024 * stack_scale) {
        recurse_into_guard(m, t);
        return;
    }
    auto* frame = static_cast<unsigned char*>(__builtin_alloca(fill));
    std::memset(frame, 0x5a, fill);
    // A frame holds data from its alloca up to its caller's frame. When that span has reached
    // the stack's end, its data is on the magic word, as a kernel call chain's would be: the
    // alloca alone may leave the word in a gap between frames (padding, a sanitizer's redzone),
    // and whether an overflow is seen would depend on the build's frame layout.
    if (on_stack && frame <= reinterpret_cast<unsigned char*>(s->end_of_stack()))
        s->overwrite_magic(0x5a5a5a5a5a5a5a5aul);
    asm volatile("" : : "r"(frame) : "memory");
    detail::step(m.opt_.atomic_ns); // a scheduling point per frame
    recurse_frames(m, t, n - 1, bytes, target - bytes);
    asm volatile("" : : "r"(frame) : "memory");
}

} // namespace

// Runs one script. It lives on the fiber's stack, which is abandoned (never unwound) when a
// run ends with the task still in it, so it owns no heap memory: loop frames are a fixed array
// (validate() bounds the nesting) and the irqsave flags live in the task.
struct script_runner {
    machine& m;
    sim_task* t;
    irq_flags* flags;

    script_runner(machine& mm, sim_task* tt) : m(mm), t(tt), flags(tt->irqsave[tt->level].data()) { }

    void run(const std::vector<step>& steps)
    {
        struct frame {
            std::size_t pc;
            unsigned left; // 0: forever
        };
        frame loops[max_loop_nesting];
        int depth = 0;
        std::size_t pc = 0;
        while (pc < steps.size() && !m.stop_) {
            const step& s = steps[pc];
            if (s.kind == op::loop) {
                if (depth < max_loop_nesting)
                    loops[depth++] = {pc, s.count};
                ++pc;
                continue;
            }
            if (s.kind == op::end_loop) {
                if (depth > 0) {
                    frame& f = loops[depth - 1];
                    if (f.left == 0 || --f.left > 0) {
                        pc = f.pc + 1;
                        // A scheduling point per iteration, so that an empty loop still lets time pass.
                        detail::step(m.opt_.atomic_ns);
                        continue;
                    }
                    --depth;
                }
                ++pc;
                continue;
            }
            t->pc[t->level] = static_cast<std::uint32_t>(pc);
            exec(s);
            ++pc;
        }
    }

    void exec(const step& s)
    {
        switch (s.kind) {
        case op::lock:
        case op::lock_read:
        case op::lock_irqsave:
        case op::trylock:
            lock_step(s);
            break;
        case op::unlock:
        case op::unlock_read:
        case op::unlock_irqrestore:
            unlock_step(s);
            break;
        case op::work:
            work(s.ns);
            break;
        case op::sleep:
            sleep(s.ns);
            break;
        case op::preempt_disable:
            kernel::preempt_disable<env>();
            break;
        case op::preempt_enable:
            t->op_desc = "preempt_enable()";
            kernel::preempt_enable<env>();
            break;
        case op::local_irq_disable: {
            const bool was_on = !t->ti.irqs_disabled;
            kernel::local_irq_disable<env>();
            if (was_on)
                m.ld_hardirqs(false); // trace_hardirqs_off(): after the fact
            break;
        }
        case op::local_irq_enable:
            t->op_desc = "local_irq_enable()";
            if (t->ti.irqs_disabled)
                m.ld_hardirqs(true); // trace_hardirqs_on(): before interrupts can arrive
            kernel::local_irq_enable<env>();
            break;
        case op::local_bh_disable:
            kernel::local_bh_disable<env>();
            if ((t->ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_DISABLE_OFFSET)
                m.ld_softirqs(false);
            break;
        case op::local_bh_enable:
            t->op_desc = "local_bh_enable()";
            if ((t->ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_DISABLE_OFFSET)
                m.ld_softirqs(true);
            kernel::local_bh_enable<env>();
            m.deliver_pending(); // __local_bh_enable_ip() runs pending softirqs
            break;
        case op::raise_irq:
            m.raise_irq(s.irq, s.cpu < 0 ? detail::tls_hot->cpu : s.cpu);
            detail::step(m.opt_.atomic_ns);
            break;
        case op::recurse:
            recurse_frames(m, t, s.count, s.bytes * stack_scale,
                reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)) - s.bytes * stack_scale);
            break;
        case op::no_switch_begin:
            ++t->no_switch;
            break;
        case op::no_switch_end:
            if (t->no_switch > 0)
                --t->no_switch;
            break;
        case op::loop:
        case op::end_loop:
            break;
        }
        m.check_reports();
    }

    void lock_step(const step& s)
    {
        detail::step(0); // let the other CPUs catch up: the checks below read global state
        lock_obj& L = m.locks_[static_cast<std::size_t>(s.lock)];
        const bool shared = s.kind == op::lock_read;
        const bool trylock = s.kind == op::trylock;
        t->op_desc = std::string(op_verb(L.type, s.kind)) + "(" + L.name + ")";
        m.lock_op_begin(s.lock, shared, trylock, t->op_desc.c_str());
        // lockdep hears of a lock before it is waited for (so that a deadlock is reported before
        // it happens), of a trylock only once it succeeded - where the kernel's wrappers call it.
        const int read = !shared          ? lockdep::WRITE
            : L.type == lock_type::rwlock ? lockdep::rwlock_read_mode(t->ti)
                                          : lockdep::READ;
        if (!trylock)
            lockdep_acquire_before(s, read);
        const std::uint64_t before = klock::report_count();
        const bool ok = apply_any(L, s.kind, flags[s.lock]);
        // A lock that reported a misuse (recursion) did not take the lock again.
        const bool refused = klock::report_count() != before;
        if (trylock && ok && !refused)
            m.ld_acquire(s.lock, read, true);
        m.lock_op_end(s.lock, shared, ok && !refused);
        if (m.scn_.trace_lock_words || m.opt_.trace_lock_words)
            m.marker(L.name + ": " + describe_word(m, L, lock_word(L)) + " after " + t->op_desc, t->index, s.lock);
    }

    void unlock_step(const step& s)
    {
        detail::step(0);
        lock_obj& L = m.locks_[static_cast<std::size_t>(s.lock)];
        const bool shared = s.kind == op::unlock_read;
        t->op_desc = std::string(op_verb(L.type, s.kind)) + "(" + L.name + ")";
        m.unlock_op(s.lock, shared);
        m.ld_release(s.lock);
        // spin_unlock_irqrestore() to interrupts on: traced before they are on.
        if (s.kind == op::unlock_irqrestore && flags[s.lock] == 0 && t->ti.irqs_disabled)
            m.ld_hardirqs(true);
        apply_any(L, s.kind, flags[s.lock]);
        if (m.scn_.trace_lock_words || m.opt_.trace_lock_words)
            m.marker(L.name + ": " + describe_word(m, L, lock_word(L)) + " after " + t->op_desc, t->index, s.lock);
    }

    // spin_lock_irqsave() disables interrupts before it takes the lock: lockdep sees them off
    // (traced, and in the acquisition's context) although the lock call below does the disabling.
    void lockdep_acquire_before(const step& s, int read)
    {
        if (s.kind != op::lock_irqsave || t->ti.irqs_disabled) {
            m.ld_acquire(s.lock, read, false);
            return;
        }
        t->ti.irqs_disabled = true; // no scheduling point until it is cleared again
        m.ld_hardirqs(false);
        m.ld_acquire(s.lock, read, false);
        t->ti.irqs_disabled = false;
    }

    // Busy for `ns` of this CPU's time: interruptible, preemptible if the context is.
    void work(std::uint64_t ns)
    {
        t->op_desc = "work";
        std::uint64_t left = ns;
        while (left > 0 && !m.stop_) {
            m.deliver_pending();
            const std::uint64_t start = detail::tls_hot->now;
            m.cpu_wait_for(cpu_wait::work, start + left);
            const std::uint64_t done = detail::tls_hot->now - start;
            left = done >= left ? 0 : left - done;
        }
        m.deliver_pending();
    }

    void sleep(std::uint64_t ns)
    {
        t->op_desc = "sleep";
        if (t->level != 0 || t->ti.preempt_count != 0 || t->ti.irqs_disabled) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "BUG: scheduling while atomic: %s/%d/0x%08x\n", t->ti.comm, t->ti.pid,
                t->ti.preempt_count);
            m.fail("lock bug", buf);
            m.marker(buf, t->index);
            if (t->level != 0)
                return; // an interrupt handler cannot sleep at all
        }
        detail::step(m.opt_.futex_ns);
        ++t->wait_gen;
        m.arm_timer(t, detail::tls_hot->now + ns);
        m.block(wait_reason::sleep, 'S', "sleep");
    }
};

void machine::run_task_script(sim_task* t)
{
    script_runner r(*this, t);
    r.run(t->spec->steps);
}

void machine::run_irq_handler(int irq, bool soft) noexcept
{
    sim_task* t = cur_task();
    const int saved_level = t->level;
    t->level = soft ? 1 : 2;
    t->saved_op[t->level] = t->op_desc; // (not a local: see script_runner)
    t->handler[t->level] = irq;
    script_runner r(*this, t);
    r.run(scn_.irqs[static_cast<std::size_t>(irq)].handler);
    t->handler[t->level] = -1;
    t->op_desc = t->saved_op[t->level];
    t->level = saved_level;
}

void machine::exit_task() noexcept
{
    sim_task* t = cur_task();
    if (t->ti.preempt_count != 0 || t->ti.irqs_disabled) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "BUG: scheduling while atomic: %s/%d/0x%08x (exiting)\n", t->ti.comm, t->ti.pid,
            t->ti.preempt_count);
        fail("lock bug", buf);
    }
    ld_task_exit();
    account(t, hot_.now);
    t->state = tstate::dead;
    result_.tasks[static_cast<std::size_t>(t->index)].exited = true;
    event e = base_event(event_kind::task_exit);
    e.task = t->index;
    emit(e);
    --live_tasks_;
    // A task exiting with preemption or interrupts off would leave the CPU that way.
    t->ti.preempt_count = 0;
    t->ti.irqs_disabled = false;
    schedule("exit");
    __builtin_unreachable();
}

// ---------------------------------------------------------------------------------------------
// fibers

void machine::task_entry(void* arg)
{
    fiber_started();
    auto* t = static_cast<sim_task*>(arg);
    machine* m = current_machine();
    m->run_task_script(t);
    m->exit_task();
}

void machine::idle_entry(void* arg)
{
    fiber_started();
    auto* t = static_cast<sim_task*>(arg);
    machine* m = current_machine();
    for (;;) {
        m->deliver_pending();
        if (t->ti.need_resched) {
            m->schedule("idle");
            continue;
        }
        sim_cpu& c = m->cur_cpu();
        if (c.tick_pending || c.resched_ipi || !c.pending_irqs.empty() || !c.pending_softirqs.empty())
            continue;
        if (!c.rt_rq.empty() || !c.fair_rq.empty()) {
            t->ti.need_resched = true;
            continue;
        }
        c.watchdog_touch = detail::tls_hot->now;
        m->cpu_wait_for(cpu_wait::idle, never);
        c.watchdog_touch = detail::tls_hot->now;
    }
}

// The per-CPU irq stack: runs the requested hardirq handler, then switches back to the
// interrupted context.
void machine::irq_entry(void* arg)
{
    fiber_started();
    auto* c = static_cast<sim_cpu*>(arg);
    machine* m = current_machine();
    for (;;) {
        m->run_irq_handler(c->irq_request, false);
        fiber_context* back = c->irq_return;
        c->active = back;
        c->on_irq_stack = false;
        m->check_stack(c->irq_stack.get(), nullptr, "return from the irq stack", c->irq_reports);
        switch_fiber(c->irq_ctx, *back);
    }
}

// ---------------------------------------------------------------------------------------------
// interrupts

void machine::raise_irq(int irq, int cpu) noexcept
{
    if (cpu < 0 || cpu >= static_cast<int>(cpus_.size()))
        return;
    sim_cpu& c = *cpus_[static_cast<std::size_t>(cpu)];
    const irq_spec& is = scn_.irqs[static_cast<std::size_t>(irq)];
    if (is.softirq)
        c.pending_softirqs.push_back(irq);
    else
        c.pending_irqs.push_back(irq);
    if (running_ == &c) {
        hot_.yield_at = 0; // taken at the next scheduling point
        return;
    }
    if (irqs_on(c) || is.softirq)
        kick(c, hot_.now);
}

void machine::irq_enabled() noexcept
{
    if (running_ == nullptr)
        return;
    deliver_pending();
}

// Interrupt delivery at a scheduling point of the current CPU: hardirqs while interrupts are on,
// then softirqs outside interrupt context; on the way out, preemption if needed and allowed
// (the kernel's irq exit path).
void machine::deliver_pending() noexcept
{
    if (running_ == nullptr)
        return;
    sim_cpu& c = cur_cpu();
    sim_task* t = cur_task();
    bool handled = false;
    for (int guard = 0; guard < 1000 && !stop_; ++guard) {
        if (t->ti.irqs_disabled)
            break;
        if (c.tick_pending) {
            c.tick_pending = false;
            t->ti.irqs_disabled = true;
            t->ti.preempt_count += HARDIRQ_OFFSET;
            hot_.now += opt_.irq_ns;
            tick(c);
            t->ti.preempt_count -= HARDIRQ_OFFSET;
            t->ti.irqs_disabled = false;
            handled = true;
            continue;
        }
        if (c.resched_ipi) {
            c.resched_ipi = false;
            handled = true;
            continue;
        }
        if (!c.pending_irqs.empty()) {
            const int irq = c.pending_irqs.front();
            c.pending_irqs.pop_front();
            handle_hardirq(irq);
            handled = true;
            continue;
        }
        if (!c.pending_softirqs.empty() && (t->ti.preempt_count & (SOFTIRQ_MASK | HARDIRQ_MASK | NMI_MASK)) == 0) {
            run_softirqs();
            handled = true;
            continue;
        }
        break;
    }
    if (handled && !t->idle && t->ti.need_resched && preemptible(t))
        schedule("interrupt return");
}

void machine::handle_hardirq(int irq) noexcept
{
    sim_cpu& c = cur_cpu();
    sim_task* t = cur_task();
    // Delivered only while interrupts are on (deliver_pending): entry turns them off.
    t->ti.irqs_disabled = true;
    ld_hardirqs(false);
    t->ti.preempt_count += HARDIRQ_OFFSET;
    event e = base_event(event_kind::irq_entry);
    e.irq = irq;
    e.task = t->index;
    emit(e);
    hot_.now += opt_.irq_ns;
    if (scn_.irq_stacks == irq_stack_mode::per_cpu && !c.on_irq_stack && c.irq_stack) {
        c.irq_request = irq;
        c.irq_return = c.active;
        c.active = &c.irq_ctx;
        c.on_irq_stack = true;
        switch_fiber(*c.irq_return, c.irq_ctx);
    } else {
        run_irq_handler(irq, false);
    }
    sim_cpu& c2 = cur_cpu();
    (void)c2;
    e = base_event(event_kind::irq_exit);
    e.irq = irq;
    e.task = t->index;
    emit(e);
    t->ti.preempt_count -= HARDIRQ_OFFSET;
    ld_hardirqs(true);
    t->ti.irqs_disabled = false;
}

void machine::run_softirqs() noexcept
{
    sim_cpu& c = cur_cpu();
    sim_task* t = cur_task();
    while (!c.pending_softirqs.empty() && !stop_) {
        const int irq = c.pending_softirqs.front();
        c.pending_softirqs.pop_front();
        t->ti.preempt_count += SOFTIRQ_OFFSET;
        if ((t->ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_OFFSET)
            ld_softirqs(false);
        event e = base_event(event_kind::softirq_entry);
        e.irq = irq;
        e.task = t->index;
        emit(e);
        run_irq_handler(irq, true);
        e = base_event(event_kind::softirq_exit);
        e.irq = irq;
        e.task = t->index;
        emit(e);
        if ((t->ti.preempt_count & SOFTIRQ_MASK) == SOFTIRQ_OFFSET)
            ld_softirqs(true);
        t->ti.preempt_count -= SOFTIRQ_OFFSET;
    }
}

} // namespace klock::sim
