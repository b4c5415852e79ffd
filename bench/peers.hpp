// The peers klock's locks are measured against, as harness adapters (see harness.hpp).
//
// Always present: std::mutex, std::shared_mutex, pthread_spinlock_t and glibc's
// priority-inheritance mutex (PTHREAD_PRIO_INHERIT: every contended lock and unlock is a
// FUTEX_LOCK_PI / FUTEX_UNLOCK_PI system call, the baseline klock::rt_mutex's adaptive spin
// has to beat). Present when bench/CMakeLists.txt found them (KLOCK_HAVE_*):
// absl::Mutex, tbb::spin_mutex, tbb::queuing_mutex, Concurrency Kit's ticket and MCS locks.
#pragma once

#include <mutex>
#include <shared_mutex>

#include <pthread.h>

#include "adapters.hpp"

#if KLOCK_HAVE_ABSL
#include <absl/synchronization/mutex.h>
#endif
#if KLOCK_HAVE_TBB
#include <tbb/queuing_mutex.h>
#include <tbb/spin_mutex.h>
#endif
#if KLOCK_HAVE_CK
#include <type_traits>
#include <ck_pr.h>
// CK's headers are C: its MCS lock assigns ck_pr_fas_ptr()'s void* result to a node pointer,
// which C++ does not convert implicitly. Cast it to the target's type while the spinlock
// headers are read; the functions stay inline, so CK is measured as C callers see it.
#define ck_pr_fas_ptr(t, v) (static_cast<std::remove_reference_t<decltype(*(t))>>(::ck_pr_fas_ptr((t), (v))))
#include <spinlock/mcs.h>
#include <spinlock/ticket.h>
#undef ck_pr_fas_ptr
#endif

namespace klock::bench {

class pthread_spinlock {
public:
    pthread_spinlock() noexcept { pthread_spin_init(&l_, PTHREAD_PROCESS_PRIVATE); }
    ~pthread_spinlock() { pthread_spin_destroy(&l_); }
    pthread_spinlock(const pthread_spinlock&) = delete;
    pthread_spinlock& operator=(const pthread_spinlock&) = delete;
    void lock() noexcept { pthread_spin_lock(&l_); }
    void unlock() noexcept { pthread_spin_unlock(&l_); }

private:
    pthread_spinlock_t l_;
};

class glibc_pi_mutex {
public:
    glibc_pi_mutex() noexcept
    {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
        pthread_mutex_init(&m_, &a);
        pthread_mutexattr_destroy(&a);
    }
    ~glibc_pi_mutex() { pthread_mutex_destroy(&m_); }
    glibc_pi_mutex(const glibc_pi_mutex&) = delete;
    glibc_pi_mutex& operator=(const glibc_pi_mutex&) = delete;
    void lock() noexcept { pthread_mutex_lock(&m_); }
    void unlock() noexcept { pthread_mutex_unlock(&m_); }

private:
    pthread_mutex_t m_;
};

#if KLOCK_HAVE_ABSL
struct absl_writer {
    using node = no_node;
    static constexpr bool exclusive = true;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.Lock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.Unlock(); }
    absl::Mutex m;
};
struct absl_reader {
    using node = no_node;
    static constexpr bool exclusive = false;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.ReaderLock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.ReaderUnlock(); }
    absl::Mutex m;
};
#endif

#if KLOCK_HAVE_TBB
// A queuing lock's waiter spins on its own node, which here is the scoped_lock object.
struct tbb_queuing {
    using node = tbb::queuing_mutex::scoped_lock;
    static constexpr bool exclusive = true;
    void lock(node& n) KLOCK_NO_THREAD_SAFETY_ANALYSIS { n.acquire(m); }
    void unlock(node& n) KLOCK_NO_THREAD_SAFETY_ANALYSIS { n.release(); }
    tbb::queuing_mutex m;
};
#endif

#if KLOCK_HAVE_CK
struct ck_ticket {
    using node = no_node;
    static constexpr bool exclusive = true;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { ck_spinlock_ticket_lock(&t); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { ck_spinlock_ticket_unlock(&t); }
    ck_spinlock_ticket_t t = CK_SPINLOCK_TICKET_INITIALIZER;
};
struct ck_mcs {
    using node = ck_spinlock_mcs_context_t;
    static constexpr bool exclusive = true;
    void lock(node& n) KLOCK_NO_THREAD_SAFETY_ANALYSIS { ck_spinlock_mcs_lock(&q, &n); }
    void unlock(node& n) KLOCK_NO_THREAD_SAFETY_ANALYSIS { ck_spinlock_mcs_unlock(&q, &n); }
    ck_spinlock_mcs_t q = CK_SPINLOCK_MCS_INITIALIZER;
};
#endif

// The peers compiled into this binary, for the benchmark context and the log.
inline const char* peers_found()
{
    return "std::mutex std::shared_mutex pthread_spinlock glibc_pi_mutex"
#if KLOCK_HAVE_ABSL
           " absl::Mutex"
#endif
#if KLOCK_HAVE_TBB
           " tbb::spin_mutex tbb::queuing_mutex"
#endif
#if KLOCK_HAVE_CK
           " ck_spinlock_ticket ck_spinlock_mcs"
#endif
        ;
}

} // namespace klock::bench
