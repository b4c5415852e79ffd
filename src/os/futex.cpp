// Linux futex calls for the os environment. All futexes are process-private.
//
// Waits take an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET, FUTEX_LOCK_PI2), so a
// retried wait never stretches the timeout. While a task sleeps here its `blocked` flag is
// set: optimistic spinners read it as "the owner is not running".
#include <klock/env/os.hpp>

#include <cerrno>
#include <climits>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

// ThreadSanitizer cannot see that FUTEX_UNLOCK_PI hands the lock to the waiter that
// FUTEX_LOCK_PI returns to: the kernel writes the new owner's TID into the word. Tell it, with
// a release on the word before unlocking and an acquire after a successful lock.
#if defined(__SANITIZE_THREAD__)
#define KLOCK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KLOCK_TSAN 1
#endif
#endif
#ifdef KLOCK_TSAN
#include <sanitizer/tsan_interface.h>
#define KLOCK_TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#define KLOCK_TSAN_RELEASE(addr) __tsan_release(addr)
#else
#define KLOCK_TSAN_ACQUIRE(addr) ((void)(addr))
#define KLOCK_TSAN_RELEASE(addr) ((void)(addr))
#endif

#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif

namespace klock::env::detail {

namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

std::uint32_t* word(std::atomic<std::uint32_t>& w) noexcept { return reinterpret_cast<std::uint32_t*>(&w); }

timespec to_timespec(std::uint64_t ns) noexcept
{
    return timespec{static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
}

long futex(std::atomic<std::uint32_t>& w, int op, std::uint32_t val, const timespec* ts, std::uint32_t val3) noexcept
{
    return ::syscall(SYS_futex, word(w), op | FUTEX_PRIVATE_FLAG, val, ts, nullptr, val3);
}

int result(long rc) noexcept { return rc < 0 ? -errno : static_cast<int>(rc); }

struct blocked_scope {
    thread_info& ti;
    explicit blocked_scope(thread_info& t) noexcept : ti(t) { ti.blocked.store(true, std::memory_order_relaxed); }
    ~blocked_scope() { ti.blocked.store(false, std::memory_order_relaxed); }
};

} // namespace

int os_futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t val, std::uint64_t deadline) noexcept
{
    timespec ts;
    const timespec* tsp = nullptr;
    if (deadline != 0) {
        ts = to_timespec(deadline);
        tsp = &ts;
    }
    blocked_scope b(os::current()->ti);
    int rc = result(futex(w, FUTEX_WAIT_BITSET, val, tsp, FUTEX_BITSET_MATCH_ANY));
    return rc > 0 ? 0 : rc;
}

int os_futex_wake(std::atomic<std::uint32_t>& w, int n) noexcept
{
    int rc = result(futex(w, FUTEX_WAKE, static_cast<std::uint32_t>(n), nullptr, 0));
    return rc < 0 ? 0 : rc;
}

int os_futex_lock_pi(std::atomic<std::uint32_t>& w, std::uint64_t deadline) noexcept
{
    timespec ts;
    const timespec* tsp = nullptr;
    if (deadline != 0) {
        ts = to_timespec(deadline);
        tsp = &ts;
    }
    blocked_scope b(os::current()->ti);
    for (;;) {
        // FUTEX_LOCK_PI2 measures the timeout on CLOCK_MONOTONIC (Linux 5.14+).
        long rc = futex(w, FUTEX_LOCK_PI2, 0, tsp, 0);
        if (rc == 0) {
            KLOCK_TSAN_ACQUIRE(&w);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != ENOSYS)
            return -errno;
        // Older kernels: FUTEX_LOCK_PI, whose absolute timeout is on CLOCK_REALTIME.
        timespec rt;
        if (tsp != nullptr) {
            timespec now_mono, now_rt;
            clock_gettime(CLOCK_MONOTONIC, &now_mono);
            clock_gettime(CLOCK_REALTIME, &now_rt);
            std::int64_t left
                = std::int64_t(deadline) - (std::int64_t(now_mono.tv_sec) * 1000000000 + now_mono.tv_nsec);
            if (left < 0)
                left = 0;
            rt = to_timespec(
                std::uint64_t(now_rt.tv_sec) * 1000000000u + std::uint64_t(now_rt.tv_nsec) + std::uint64_t(left));
        }
        rc = futex(w, FUTEX_LOCK_PI, 0, tsp ? &rt : nullptr, 0);
        if (rc == 0) {
            KLOCK_TSAN_ACQUIRE(&w);
            return 0;
        }
        if (errno != EINTR)
            return -errno;
    }
}

int os_futex_trylock_pi(std::atomic<std::uint32_t>& w) noexcept
{
    long rc = futex(w, FUTEX_TRYLOCK_PI, 0, nullptr, 0);
    if (rc != 0)
        return -errno;
    KLOCK_TSAN_ACQUIRE(&w);
    return 0;
}

int os_futex_unlock_pi(std::atomic<std::uint32_t>& w) noexcept
{
    KLOCK_TSAN_RELEASE(&w);
    long rc = futex(w, FUTEX_UNLOCK_PI, 0, nullptr, 0);
    return rc == 0 ? 0 : -errno;
}

} // namespace klock::env::detail
