// The os world's task records: one per thread, created on first use.
//
// Slots are small dense numbers (1..max_slots) that queued locks store in their lock word in
// place of the kernel's CPU number; a slot is recycled when its thread exits.
#include <klock/env/os.hpp>

#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace klock::env::detail {

thread_local constinit os_task tls_task __attribute__((tls_model("initial-exec"))) = {};

namespace {

// qspinlock's tail has 14 bits of "cpu + 1": slots must fit.
constexpr std::uint32_t max_slots = (1u << 14) - 1;

std::atomic<os_task*> slot_table[max_slots + 1];

struct slot_allocator {
    std::mutex lock;
    std::vector<std::uint32_t> free_slots;
    std::uint32_t next = 1;

    std::uint32_t take()
    {
        std::lock_guard<std::mutex> g(lock);
        if (!free_slots.empty()) {
            std::uint32_t s = free_slots.back();
            free_slots.pop_back();
            return s;
        }
        return next <= max_slots ? next++ : 0;
    }
    void give_back(std::uint32_t s)
    {
        std::lock_guard<std::mutex> g(lock);
        free_slots.push_back(s);
    }
};

slot_allocator& allocator()
{
    static slot_allocator* a = new slot_allocator; // never destroyed: threads may exit after main
    return *a;
}

// Releases the thread's slot at thread exit. Only touched by os_task_init, so the hot
// accesses to tls_task never pay for a TLS destructor guard.
struct slot_release {
    ~slot_release()
    {
        os_task* t = &tls_task;
        if (t->ti.slot != 0) {
            slot_table[t->ti.slot].store(nullptr, std::memory_order_release);
            allocator().give_back(t->ti.slot);
            t->ti.slot = 0;
        }
    }
};
thread_local slot_release tls_slot_release;

// A forked child is a new task: its one thread has a new thread id (the PI futex word and
// reports use it), while its slot and name carry over.
void refresh_pid_after_fork() noexcept
{
    if (tls_task.ti.pid != 0)
        tls_task.ti.pid = static_cast<int>(::syscall(SYS_gettid));
}

} // namespace

void os_task_init(os_task* t) noexcept
{
    static const int atfork_registered = ::pthread_atfork(nullptr, nullptr, refresh_pid_after_fork);
    (void)atfork_registered;
    t->ti.pid = static_cast<int>(::syscall(SYS_gettid));
    if (::prctl(PR_GET_NAME, t->ti.comm, 0, 0, 0) != 0)
        t->ti.comm[0] = '\0';
    t->ti.comm[sizeof t->ti.comm - 1] = '\0';
    try {
        t->ti.slot = allocator().take();
    } catch (...) {
        t->ti.slot = 0;
    }
    if (t->ti.slot != 0) {
        slot_table[t->ti.slot].store(t, std::memory_order_release);
        (void)&tls_slot_release; // odr-use: registers the exit-time release
    }
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
