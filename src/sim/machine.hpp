// The simulator's machine: CPUs, tasks, run queues, virtual time, interrupts, futexes and the
// checks. Internal to klock_sim (the public entry point is klock::sim::run, sim.hpp).
//
// EXECUTION MODEL
//   One OS thread runs the machine. Each task is a fiber (fiber.hpp); each CPU has a current
//   task (its idle task, pid 0 "swapper/N", when nothing else runs) and, in per-CPU irq-stack
//   mode, an irq fiber. The host loop (machine::run) repeatedly takes the earliest thing due:
//   a timed event (tick, scenario IRQ, timer, task start) or the CPU with the smallest virtual
//   clock, and resumes that CPU's active fiber. The fiber runs until its clock passes the next
//   due time (hot_state::yield_at), then switches back. Task switches on a CPU go fiber to fiber
//   (schedule()), without the host.
//
//   A CPU is either executing (wait == none) or waiting: idle (until an interrupt or
//   need_resched), work (a task's `work` step: busy until an end time, interruptible), spin (a
//   parked spin, see env.hpp) or halt (futex_wait in atomic context). A waiting CPU is woken by
//   moving its wait_until earlier (kick); the host then resumes it at that time, in time order.
//
// SCHEDULER (kernel/sched/core.c, rt.c, fair.c, simplified)
//   Kernel priority numbering: 0..98 = SCHED_FIFO/RR priority 99..1, 100..139 = SCHED_NORMAL
//   nice -20..19; lower is more important; `prio` is the effective priority (PI boost), and
//   `normal_prio` the task's own. Per-CPU run queues: RT tasks by priority (FIFO within one; a
//   preempted RT task goes back to the head), fair tasks by vruntime (weights from the kernel's
//   nice table, sleeper credit of half the latency, wakeup granularity 1 ms, slice = latency
//   share at the tick). Wake-up chooses the task's last CPU if allowed and idle, else an idle
//   allowed CPU, else (RT) the allowed CPU running the least important task, else the last CPU.
//   A wake-up that should preempt sets need_resched on the target CPU's task and, if that CPU is
//   another one, sends a reschedule IPI; the preemption itself happens where the kernel's does:
//   on interrupt return and in preempt_enable()/preempt_schedule() - only when preemptible()
//   (preempt_count == 0 and interrupts on). A local wake-up is followed by try_to_wake_up()'s own
//   preempt_enable(): the waker is preempted right there if it is preemptible - the seeds'
//   task switch inside mutex_unlock.
//
// INVARIANTS
//   - A task is on exactly one of: a run queue (runnable), a CPU (running; cpu->curr), a wait
//     (blocked), nowhere (unstarted, dead). on_cpu <=> it is some CPU's curr.
//   - Events are ordered by (time, sequence number): the same inputs give the same order.
//   - Only the host loop changes which CPU executes; only the executing fiber changes its CPU's
//     current task.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include <klock/lockdep.hpp>
#include <klock/sim/env.hpp>
#include <klock/sim/fiber.hpp>
#include <klock/sim/scenario.hpp>
#include <klock/sim/sim.hpp>
#include <klock/sim/trace.hpp>

namespace klock::sim {

inline constexpr std::uint64_t never = ~std::uint64_t(0);

enum class tstate : std::uint8_t { unstarted, runnable, running, blocked, dead };
enum class cpu_wait : std::uint8_t { none, idle, work, spin, halt };
enum class wait_reason : std::uint8_t { none, futex, pi, sleep };

struct pi_state;
struct sim_task;
struct sim_cpu;

// A lock operation in progress in one context of a task (level 0 task, 1 softirq, 2 hardirq).
struct ctx_wait {
    int lock = -1;
    bool shared = false;
    bool trylock = false;
    bool contended = false;
    std::uint64_t start = 0;
    int wakeups = 0; // futex wakeups received during this operation (starvation check)
};

class machine;

// lockdep's view of one simulated task (lockdep.cpp): the engine's per-task state, and the host
// through which the engine asks for the task's CPU and its stack - the script steps it is in,
// innermost context first - so that a report names scenario steps and is the same in every run.
struct task_lockdep : lockdep::task_host {
    const machine* m = nullptr;
    const sim_task* t = nullptr;
    lockdep::task_state state{};

    task_lockdep(const machine* mm, const sim_task* tt) noexcept;
    int cpu_of() const noexcept;
    unsigned stack_of(std::uintptr_t* out, unsigned max) const noexcept;
    std::string symbol_of(std::uintptr_t ip, bool return_address) const;
    std::uintptr_t address_of(const void* object) const noexcept;
};

// A scenario lock's lockdep identity: one class per scenario lock, named after it.
struct lock_lockdep {
    lock_class_key key;
    lockdep_map map;
};

struct sim_task : task_base {
    int index = 0; // into run_result::tasks
    bool idle = false;
    int idle_cpu = -1;
    const task_spec* spec = nullptr;
    std::unique_ptr<fiber_stack> stack;
    fiber_context ctx;
    tstate state = tstate::unstarted;
    char sleep_state = 'S'; // S: sleeping, D: blocked on a lock (for sched_switch)
    policy pol = policy::other;
    int rt_prio = 0;
    int nice = 0;
    int normal_prio = 120;
    int prio = 120;
    std::uint64_t affinity = ~std::uint64_t(0);
    int cpu = 0;
    std::uint64_t seq = 0; // enqueue order (FIFO tie-break)
    // fair class
    std::uint64_t vruntime = 0;
    std::uint64_t weight = 1024;
    std::uint64_t exec_start = 0; // when it last got the CPU
    std::uint64_t slice_exec = 0; // run time since it last got the CPU
    std::uint64_t rr_left = 0;
    // blocking
    wait_reason wr = wait_reason::none;
    const void* futex_key = nullptr;
    std::uint64_t wait_gen = 0;
    int wake_result = 0;
    bool halted = false;
    bool timer_armed = false;
    // priority inheritance
    pi_state* pi_blocked_on = nullptr;
    std::vector<pi_state*> pi_owned;
    // contexts and checks
    int level = 0; // innermost active context: 0 task, 1 softirq, 2 hardirq
    ctx_wait waits[3];
    int no_switch = 0;
    std::string op_desc;                   // the step being executed, for reports ("mutex_unlock(L)")
    std::string saved_op[3];               // op_desc of the interrupted context, per handler level
    std::vector<unsigned long> irqsave[3]; // spin_lock_irqsave flags per lock, per context level
    std::string switch_cause;
    // where each context is in its script (lockdep's stacks): the step being executed per level,
    // and the interrupt whose handler runs at levels 1 and 2 (-1: none)
    std::uint32_t pc[3] = {0, 0, 0};
    int handler[3] = {-1, -1, -1};
    std::unique_ptr<task_lockdep> ld;
    // inversion tracking (as a waiter)
    bool inv_active = false;
    std::uint64_t inv_start = 0;
    int inv_runner = -1;
    int inv_owner = -1;
    int inv_cpu = -1;
    // accounting
    std::uint64_t since = 0;
    std::uint64_t stack_reports = 0; // klock::report_count() at the last check of its stack
};

struct pi_state {
    const void* key = nullptr;
    sim_task* owner = nullptr;
    std::vector<sim_task*> waiters; // by prio, then arrival
};

struct sim_cpu {
    int id = 0;
    std::uint64_t clock = 0;
    sim_task* curr = nullptr;
    sim_task* idle = nullptr;
    std::vector<sim_task*> rt_rq;
    std::vector<sim_task*> fair_rq;
    std::uint64_t min_vruntime = 0;
    cpu_wait wait = cpu_wait::none;
    std::uint64_t wait_until = never;
    std::deque<int> pending_irqs;     // scenario hardirqs, FIFO
    std::deque<int> pending_softirqs; // scenario softirqs
    bool tick_pending = false;
    bool resched_ipi = false;
    fiber_context* active = nullptr; // the fiber to resume
    std::unique_ptr<fiber_stack> irq_stack;
    fiber_context irq_ctx;
    fiber_context* irq_return = nullptr;
    int irq_request = -1; // the hardirq the irq fiber is to run
    bool on_irq_stack = false;
    std::uint64_t watchdog_touch = 0;
    bool lockup_reported = false;
    std::uint64_t irqs_off_since = never;
    std::uint64_t access_epoch = 0;
    std::uint32_t pure_relaxes = 0;
    bool accessed = false;
    std::uint64_t irq_reports = 0;
    std::uint64_t parked_epoch = 0; // hot_state::epoch when it parked in a spin
};

struct holder {
    int hid = 0; // task index * 4 + level
    bool shared = false;
};

struct lock_obj {
    lock_type type = lock_type::spinlock;
    void* mem = nullptr;
    std::size_t size = 0;
    std::string name;
    std::vector<holder> holders;
};

enum class ev : std::uint8_t { tick, irq, timer, start };

struct timed_event {
    std::uint64_t t = 0;
    std::uint64_t seq = 0;
    ev kind = ev::tick;
    int cpu = 0;
    int a = -1;            // irq index / task index
    std::uint64_t gen = 0; // timer: the task's wait generation
    bool operator>(const timed_event& o) const noexcept { return t != o.t ? t > o.t : seq > o.seq; }
};

class machine {
public:
    machine(const scenario& s, const options& o);
    ~machine();
    machine(const machine&) = delete;
    machine& operator=(const machine&) = delete;

    run_result run();

    // ---- called from the Env (detail::) ----
    void step_slow() noexcept;
    void store_slow() noexcept;
    void relax_park() noexcept;
    task_base* task_from_slot(std::uint32_t slot) noexcept;
    int current_prio() noexcept;
    int futex_wait(void* word, std::uint32_t val, std::uint64_t deadline) noexcept;
    int futex_wake(void* word, int n) noexcept;
    int futex_lock_pi(void* word, std::uint64_t deadline) noexcept;
    int futex_trylock_pi(void* word) noexcept;
    int futex_unlock_pi(void* word) noexcept;
    void preempt_schedule() noexcept;
    void irq_enabled() noexcept;
    std::uint64_t fault_operand(const void* word, int kind, std::uint64_t expected, std::uint64_t operand) noexcept;

    // ---- fiber entry points ----
    static void task_entry(void* arg);
    static void idle_entry(void* arg);
    static void irq_entry(void* arg);

    // (Everything below is internal to klock_sim; public so that the helpers of the other
    // translation units can reach it.)

    // setup / host loop (machine.cpp)
    void setup();
    void create_locks();
    void destroy_locks() noexcept;
    std::uint64_t next_time(const sim_cpu& c) const noexcept;
    std::uint64_t compute_yield_at(const sim_cpu& c) const noexcept;
    void resume(sim_cpu& c);
    void process_event(const timed_event& e);
    void push_event(timed_event e);
    bool quiescent() const noexcept;
    void finalize();
    int choose_cpu(std::vector<int>& candidates, int last);

    // in a fiber: leaving the CPU
    void yield_to_host() noexcept;
    void cpu_wait_for(cpu_wait kind, std::uint64_t until) noexcept;
    void kick(sim_cpu& c, std::uint64_t t) noexcept;
    void note_time(std::uint64_t t) noexcept;

    // scheduler (machine.cpp)
    sim_cpu& cur_cpu() noexcept { return *cpus_[static_cast<std::size_t>(hot_.cpu)]; }
    sim_task* cur_task() noexcept { return static_cast<sim_task*>(hot_.current); }
    void enqueue(sim_cpu& c, sim_task* t, bool head = false);
    void dequeue(sim_cpu& c, sim_task* t);
    sim_task* pick_next(sim_cpu& c);
    int select_cpu(sim_task* t);
    void wake_up(sim_task* t, int waker, std::uint64_t now);
    void check_preempt(sim_cpu& c, sim_task* t);
    void resched(sim_cpu& c);
    void schedule(const char* cause) noexcept;
    void block(wait_reason why, char state, const char* cause) noexcept;
    void update_curr(sim_cpu& c, std::uint64_t now);
    void set_prio(sim_task* t, int prio);
    void account(sim_task* t, std::uint64_t now);
    void tick(sim_cpu& c);
    bool preemptible(const sim_task* t) const noexcept;
    bool irqs_on(const sim_cpu& c) const noexcept;
    void arm_timer(sim_task* t, std::uint64_t at);
    void timer_fired(sim_task* t, std::uint64_t gen, std::uint64_t now);

    // interrupts (script.cpp)
    void deliver_pending() noexcept;
    void handle_hardirq(int irq) noexcept;
    void run_softirqs() noexcept;
    void run_irq_handler(int irq, bool soft) noexcept;
    void raise_irq(int irq, int cpu) noexcept;

    // PI (futex.cpp)
    int pi_compute_prio(sim_task* t) const;
    void pi_adjust_chain(sim_task* owner, int depth);
    void pi_sort_waiter(pi_state* ps, sim_task* t);
    bool pi_would_deadlock(pi_state* ps, sim_task* me) const;

    // script (script.cpp)
    void run_task_script(sim_task* t);
    void exit_task() noexcept;

    // checks (checks.cpp)
    int hid_of(const sim_task* t, int level) const noexcept { return t->index * 4 + level; }
    std::string hid_name(int hid) const;
    void lock_op_begin(int lock, bool shared, bool trylock, const char* what);
    void lock_op_end(int lock, bool shared, bool acquired);
    void unlock_op(int lock, bool shared);
    bool conflicts(const lock_obj& l, int hid, bool shared) const noexcept;
    bool check_wait_cycle(int start_hid, std::string& cycle) const;
    void check_inversion() noexcept;
    void end_inversion(sim_task* w, std::uint64_t now);
    void check_reports() noexcept;
    void check_switch(sim_task* prev, sim_task* next, const char* cause);
    void check_stack(fiber_stack* s, const sim_task* owner, const char* where, std::uint64_t& reports_seen) noexcept;
    void soft_lockup(sim_cpu& c, bool hard);
    void quiescence_checks();
    void fail(const char* check, std::string report);
    void marker(std::string text, int task = -1, int lock = -1);
    std::string sanitize_report(const std::string& text) const;
    std::string task_label(const sim_task* t) const;

    // lockdep (lockdep.cpp): every call into the engine goes through these
    void lockdep_setup();
    void lockdep_teardown() noexcept;
    void ld_acquire(int lock, int read, bool trylock);
    void ld_release(int lock);
    void ld_hardirqs(bool on);
    void ld_softirqs(bool on);
    void ld_task_exit();
    void collect_reports(const char* check, bool sanitize);
    void on_lockdep_stack(void (*fn)(void*), void* arg) noexcept;
    static void lockdep_entry(void* arg);

    // events
    void emit(event e);
    event base_event(event_kind k) const noexcept;

public:
    // ---- state (public for the helpers in script.cpp / futex.cpp / checks.cpp) ----
    scenario scn_;
    options opt_;
    detail::hot_state hot_;
    detail::hot_state* saved_hot_ = nullptr;
    fiber_context host_ctx_;
    std::vector<std::unique_ptr<sim_task>> tasks_; // scenario tasks, then idle tasks
    std::vector<std::unique_ptr<sim_cpu>> cpus_;
    std::vector<sim_task*> slots_; // slot -> task (index 0 unused)
    std::vector<lock_obj> locks_;
    std::unique_ptr<lock_lockdep[]> lock_deps_;
    // lockdep's own stack (lockdep.cpp): the engine runs there, not on the simulated stacks
    std::unique_ptr<fiber_stack> ld_stack_;
    fiber_context ld_ctx_;
    fiber_context* ld_return_ = nullptr;
    void (*ld_fn_)(void*) = nullptr;
    void* ld_arg_ = nullptr;
    std::priority_queue<timed_event, std::vector<timed_event>, std::greater<timed_event>> events_;
    std::uint64_t event_seq_ = 0;
    std::uint64_t enqueue_seq_ = 0;
    std::unordered_map<const void*, std::vector<sim_task*>> futexq_;
    std::unordered_map<const void*, std::unique_ptr<pi_state>> pi_;
    run_result result_;
    std::vector<bool> check_failed_;
    sim_cpu* running_ = nullptr;
    bool stop_ = false;
    std::string stop_reason_;
    std::uint64_t rng_;
    std::uint64_t reports_seen_ = 0;
    std::size_t report_base_ = 0;
    int live_tasks_ = 0;
    int oneshot_events_ = 0;
    int last_cpu_ = -1;
    bool every_step_ = false;
    std::uint64_t switches_ = 0;
    int spin_parked_ = 0;
    bool periodic_irqs_ = false;
    std::uint64_t stop_at_ = never; // a deadlock was found: end the run shortly after
    std::uint64_t global_now_ = 0;  // exploration: virtual time, advanced by every step taken
};

// The kernel's name of a script operation on a lock of type t ("spin_lock", "down_read", ...).
const char* op_verb(lock_type t, op k);

// The lock word of a scenario lock, read without a scheduling point; and a readable rendering
// of it (task pointers become task names).
std::uint64_t lock_word(const lock_obj& L);
std::string describe_word(const machine& m, const lock_obj& L, std::uint64_t v);

// The running machine of this OS thread.
inline machine* current_machine() noexcept { return detail::tls_hot != nullptr ? detail::tls_hot->m : nullptr; }

} // namespace klock::sim
