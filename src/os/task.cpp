// The os world's task records: one per thread, created on first use.
//
// Slots are small dense numbers (1..max_slots) that queued locks store in their lock word in
// place of the kernel's CPU number; a slot is recycled when its thread exits.
//
// A task record may first be touched inside a signal handler (klock's hardirq context), so
// initialisation allocates nothing and takes no lock: a slot is claimed with a CAS on the slot
// table (lowest free first, so numbers stay dense), and its release at thread exit is a
// pthread-key destructor whose key exists before main.
#include <klock/env/os.hpp>

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace klock::env::detail {

thread_local constinit os_task tls_task __attribute__((tls_model("initial-exec"))) = {};

namespace {

// qspinlock's tail has 14 bits of "cpu + 1": slots must fit.
constexpr std::uint32_t max_slots = (1u << 14) - 1;

std::atomic<os_task*> slot_table[max_slots + 1];
std::atomic<std::uint32_t> slots_ever_used{0}; // high-water mark: slots 1..this were handed out

std::uint32_t claim_slot(os_task* t) noexcept
{
    for (;;) {
        const std::uint32_t high = slots_ever_used.load(std::memory_order_acquire);
        for (std::uint32_t s = 1; s <= high; ++s) {
            os_task* expected = nullptr;
            if (slot_table[s].load(std::memory_order_relaxed) == nullptr
                && slot_table[s].compare_exchange_strong(expected, t, std::memory_order_acq_rel))
                return s;
        }
        if (high >= max_slots)
            return 0; // table full: queued locks fall back to spinning without a queue node
        // Open one more slot to everybody and scan again: the slot is claimed by the CAS above,
        // never by the bump itself, so no two tasks can end up with the same slot.
        std::uint32_t want = high;
        slots_ever_used.compare_exchange_strong(want, high + 1, std::memory_order_acq_rel);
    }
}

void release_slot(void*) noexcept
{
    os_task* t = &tls_task;
    if (t->ti.slot != 0) {
        slot_table[t->ti.slot].store(nullptr, std::memory_order_release);
        t->ti.slot = 0;
    }
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
    if (tls_task.ti.pid != 0)
        tls_task.ti.pid = static_cast<int>(::syscall(SYS_gettid));
}

const int atfork_registered = ::pthread_atfork(nullptr, nullptr, refresh_pid_after_fork);

} // namespace

void os_task_init(os_task* t) noexcept
{
    (void)atfork_registered;
    if (::prctl(PR_GET_NAME, t->ti.comm, 0, 0, 0) != 0)
        t->ti.comm[0] = '\0';
    t->ti.comm[sizeof t->ti.comm - 1] = '\0';
    if (t->ti.slot == 0) {
        t->ti.slot = claim_slot(t);
        if (t->ti.slot != 0)
            (void)::pthread_setspecific(exit_key, t); // non-null: release_slot runs at thread exit
    }
    // Last: a non-zero pid marks the record initialised.
    t->ti.pid = static_cast<int>(::syscall(SYS_gettid));
}

os_task* os_task_from_slot(std::uint32_t slot) noexcept
{
    return slot <= max_slots ? slot_table[slot].load(std::memory_order_acquire) : nullptr;
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
