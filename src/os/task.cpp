// The os world's task records: one per thread, created on first use, in a static table indexed
// by the thread's task slot (os.hpp says why the records are type-stable).
//
// Slots are small dense numbers (1..max_slots) that queued locks store in their lock word in
// place of the kernel's CPU number; a slot and its record are recycled when the thread exits.
//
// A task record may first be touched inside a signal handler (klock's hardirq context), so
// initialisation allocates nothing and takes no lock: a slot is claimed with a CAS on the slot
// table (lowest free first, so numbers stay dense), and its release at thread exit is a
// pthread-key destructor whose key exists before main. A thread that finds the table full, or
// that takes a lock after its slot went back (another key's destructor), uses a record of its own
// without a slot (queued locks then spin without a queue node).
#include <klock/env/os.hpp>

#include <cstring>

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace klock::env::detail {

thread_local constinit os_task* tls_task __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// qspinlock's tail has 14 bits of "cpu + 1": slots must fit.
constexpr std::uint32_t max_slots = (1u << 14) - 1;

// Never freed; untouched pages of it cost no memory.
constinit os_task g_records[max_slots + 1] = {};
std::atomic<bool> g_slot_used[max_slots + 1];
std::atomic<std::uint32_t> slots_ever_used{0}; // high-water mark: slots 1..this were handed out

thread_local constinit os_task tls_own_record = {};
thread_local constinit bool tls_initializing = false; // a signal handler interrupted os_task_init()

std::uint32_t claim_slot() noexcept
{
    for (;;) {
        const std::uint32_t high = slots_ever_used.load(std::memory_order_acquire);
        for (std::uint32_t s = 1; s <= high; ++s) {
            bool expected = false;
            if (!g_slot_used[s].load(std::memory_order_relaxed)
                && g_slot_used[s].compare_exchange_strong(expected, true, std::memory_order_acq_rel))
                return s;
        }
        if (high >= max_slots)
            return 0; // table full
        // Open one more slot to everybody and scan again: the slot is claimed by the CAS above,
        // never by the bump itself, so no two tasks can end up with the same slot.
        std::uint32_t want = high;
        slots_ever_used.compare_exchange_strong(want, high + 1, std::memory_order_acq_rel);
    }
}

// Thread exit: the slot and its record go back; whatever this thread still does uses a record of
// its own, with its identity.
void release_slot(void* p) noexcept
{
    auto* t = static_cast<os_task*>(p);
    os_task& own = tls_own_record;
    own.ti.pid = t->ti.pid;
    std::memcpy(own.ti.comm, t->ti.comm, sizeof own.ti.comm);
    own.ti.slot = 0;
    tls_task = &own;
    const std::uint32_t slot = t->ti.slot;
    g_slot_used[slot].store(false, std::memory_order_release);
}

pthread_key_t make_exit_key() noexcept
{
    pthread_key_t key{};
    (void)::pthread_key_create(&key, release_slot);
    return key;
}
const pthread_key_t exit_key = make_exit_key();

// A forked child is a new task: its one thread has a new thread id (the PI futex word and
// reports use it), while its slot and name carry over.
void refresh_pid_after_fork() noexcept
{
    if (tls_task != nullptr)
        tls_task->ti.pid = static_cast<int>(::syscall(SYS_gettid));
}

const int atfork_registered = ::pthread_atfork(nullptr, nullptr, refresh_pid_after_fork);

} // namespace

os_task* os_task_init() noexcept
{
    (void)atfork_registered;
    if (tls_initializing) {
        // The handler's acquisitions run as this thread, which has no record yet: lend it the
        // thread's own one for now, without a slot.
        tls_own_record.ti.pid = static_cast<int>(::syscall(SYS_gettid));
        return &tls_own_record;
    }
    tls_initializing = true;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    const std::uint32_t slot = claim_slot();
    os_task* t = slot != 0 ? &g_records[slot] : &tls_own_record;
    // A recycled record: start from a task's initial state. Others may still read `blocked`
    // (a spinner holding a stale owner pointer), so it is stored atomically.
    t->ti.preempt_count = 0;
    t->ti.irqs_disabled = false;
    t->ti.need_resched = false;
    t->ti.blocked.store(false, std::memory_order_relaxed);
    std::memset(t->ti.mcs_area, 0, sizeof t->ti.mcs_area);
    t->ti.slot = slot;
    if (::prctl(PR_GET_NAME, t->ti.comm, 0, 0, 0) != 0)
        t->ti.comm[0] = '\0';
    t->ti.comm[sizeof t->ti.comm - 1] = '\0';
    if (slot != 0)
        (void)::pthread_setspecific(exit_key, t); // non-null: release_slot runs at thread exit
    t->ti.pid = static_cast<int>(::syscall(SYS_gettid));
    tls_task = t;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    tls_initializing = false;
    return t;
}

os_task* os_task_from_slot(std::uint32_t slot) noexcept
{
    if (slot == 0 || slot > max_slots || !g_slot_used[slot].load(std::memory_order_acquire))
        return nullptr;
    return &g_records[slot];
}

int os_current_cpu() noexcept
{
    int cpu = ::sched_getcpu();
    return cpu < 0 ? 0 : cpu;
}

int os_current_prio() noexcept
{
    int policy = ::sched_getscheduler(0);
    if (policy != SCHED_FIFO && policy != SCHED_RR)
        return 0;
    sched_param p{};
    if (::sched_getparam(0, &p) != 0)
        return 0;
    return p.sched_priority;
}

} // namespace klock::env::detail
