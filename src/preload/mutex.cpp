// pthread_mutex_* and C11 mtx_* (glibc's mtx_t is a pthread_mutex_t), every type: normal,
// adaptive, recursive, errorcheck, robust, priority-inheritance, priority-protect.
//
// The interposers read glibc's mutex words, whose layout is part of the ABI
// (bits/struct_mutex.h): __lock is non-zero while locked, __owner is the holder's thread id,
// __count the recursion depth, __kind the type and flags.
//   * recursive / errorcheck mutex already owned by the caller: the real call does the counting
//     (or returns EDEADLK); lockdep sees only the outermost lock and unlock;
//   * unlock: an unlocked mutex is "already unlocked", another holder's is "wrong owner"; both are
//     reported and then handed to glibc unchanged (a normal mutex unlocks, errorcheck returns
//     EPERM); lockdep is not told, so the report is not doubled as a "bad unlock balance";
//   * destroy while locked: reported; the record goes only if glibc destroyed the mutex.
// Elided (TSX) and priority-protect mutexes keep other things in __lock: their misuse is not
// checked.
#include "preload.hpp"

#include <cerrno>

namespace klock::preload {

namespace {

constexpr int TYPE_MASK = 3; // PTHREAD_MUTEX_KIND_MASK_NP
constexpr int PRIO_PROTECT = 64;
constexpr int ELISION = 256 | 512;
constexpr int CEILING_MASK = static_cast<int>(0xfff80000u);
constexpr int OWNER_DEAD = 0x7fffffff; // PTHREAD_MUTEX_INCONSISTENT
constexpr int NOT_RECOVERABLE = 0x7ffffffe;

[[gnu::always_inline]] inline int kind_of(const pthread_mutex_t* m)
{
    return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED);
}

[[gnu::always_inline]] inline int owner_of(const pthread_mutex_t* m)
{
    return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED);
}

[[gnu::always_inline]] inline bool counts_recursion(int kind)
{
    const int type = kind & TYPE_MASK;
    return type == PTHREAD_MUTEX_RECURSIVE || type == PTHREAD_MUTEX_ERRORCHECK;
}

[[gnu::always_inline]] inline bool acquired(int ret) { return ret == 0 || ret == EOWNERDEAD; }

// Blocking (or timed) lock: lockdep hears of it before the real lock may block.
template <class F> [[gnu::always_inline]] inline int lock_common(pthread_mutex_t* m, std::uintptr_t ip, F real_lock)
{
    const int kind = kind_of(m);
    const int me = current_tid();
    if (counts_recursion(kind) && owner_of(m) == me)
        return real_lock(); // recursion (counted by glibc) or EDEADLK: no new acquisition
    enter_op();
    record* r = get_record(m, lock_kind::mutex);
    if (__builtin_expect(r == nullptr, 0))
        return real_lock();
    stack_record_check(r);
    ld_acquire(r, 0, 0, ip);
    int ret;
    if (__builtin_expect(lock_stat_on(), 0)) {
        ret = R().mutex_trylock(m);
        if (ret == EBUSY) {
            ld_contended(r, ip);
            ret = real_lock();
        }
        if (acquired(ret))
            ld_acquired(r, ip);
    } else {
        ret = real_lock();
    }
    if (acquired(ret))
        r->owner.store(me, std::memory_order_relaxed);
    else
        ld_release(r, ip); // timed out, EDEADLK, ENOTRECOVERABLE...: not held after all
    return ret;
}

template <class F> [[gnu::always_inline]] inline int trylock_common(pthread_mutex_t* m, std::uintptr_t ip, F real_try)
{
    const int kind = kind_of(m);
    const int me = current_tid();
    if (counts_recursion(kind) && owner_of(m) == me)
        return real_try();
    const int ret = real_try();
    if (acquired(ret)) {
        enter_op();
        if (record* r = get_record(m, lock_kind::mutex)) {
            stack_record_check(r);
            ld_acquire(r, 1, 0, ip);
            r->owner.store(me, std::memory_order_relaxed);
        }
    }
    return ret;
}

template <class F> [[gnu::always_inline]] inline int unlock_common(pthread_mutex_t* m, std::uintptr_t ip, F real_unlock)
{
    const int kind = kind_of(m);
    const int me = current_tid();
    if (__builtin_expect((kind & ELISION) == 0, 1)) {
        int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
        if (kind & PRIO_PROTECT)
            word &= ~CEILING_MASK;
        const int owner = owner_of(m);
        if (__builtin_expect(word == 0, 0)) {
            misuse("pthread_mutex already unlocked", m, 0, find_record(m), ip);
            return real_unlock();
        }
        if (__builtin_expect(!is_me(owner, me), 0) && owner != 0 && owner != OWNER_DEAD && owner != NOT_RECOVERABLE) {
            misuse("pthread_mutex wrong owner", m, owner, find_record(m), ip);
            return real_unlock();
        }
    }
    if ((kind & TYPE_MASK) == PTHREAD_MUTEX_RECURSIVE && m->__data.__count > 1)
        return real_unlock(); // an inner unlock
    enter_op();
    if (record* r = find_record(m)) {
        r->owner.store(0, std::memory_order_relaxed);
        ld_release(r, ip);
    }
    return real_unlock();
}

void destroy_common(pthread_mutex_t* m, std::uintptr_t ip)
{
    const int kind = kind_of(m);
    if ((kind & ELISION) == 0) {
        int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
        if (kind & PRIO_PROTECT)
            word &= ~CEILING_MASK;
        const int owner = owner_of(m);
        if (word != 0 && owner != OWNER_DEAD && owner != NOT_RECOVERABLE)
            misuse("pthread_mutex destroyed while locked", m, owner, find_record(m), ip);
    }
}

inline pthread_mutex_t* as_mutex(mtx_t* m) { return reinterpret_cast<pthread_mutex_t*>(m); }

} // namespace

} // namespace klock::preload

using namespace klock::preload;

// ---- pthread_mutex ----

extern "C" int pthread_mutex_init(pthread_mutex_t* m, const pthread_mutexattr_t* attr) noexcept
{
    const real_functions& r = R();
    const int ret = r.mutex_init(m, attr);
    if (ret == 0 && tracked(KLOCK_RA))
        init_record(m, lock_kind::mutex);
    return ret;
}

extern "C" int pthread_mutex_destroy(pthread_mutex_t* m) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_destroy(m);
    destroy_common(m, KLOCK_RA);
    const int ret = r.mutex_destroy(m);
    if (ret == 0)
        forget_record(m);
    return ret;
}

extern "C" int pthread_mutex_lock(pthread_mutex_t* m) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_lock(m);
    return lock_common(m, KLOCK_RA, [&] { return r.mutex_lock(m); });
}

extern "C" int pthread_mutex_trylock(pthread_mutex_t* m) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_trylock(m);
    return trylock_common(m, KLOCK_RA, [&] { return r.mutex_trylock(m); });
}

extern "C" int pthread_mutex_timedlock(pthread_mutex_t* m, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_timedlock(m, abstime);
    return lock_common(m, KLOCK_RA, [&] { return r.mutex_timedlock(m, abstime); });
}

extern "C" int pthread_mutex_clocklock(pthread_mutex_t* m, clockid_t clock, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_clocklock(m, clock, abstime);
    return lock_common(m, KLOCK_RA, [&] { return r.mutex_clocklock(m, clock, abstime); });
}

extern "C" int pthread_mutex_unlock(pthread_mutex_t* m) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mutex_unlock(m);
    return unlock_common(m, KLOCK_RA, [&] { return r.mutex_unlock(m); });
}

// ---- C11 mtx ----

extern "C" int mtx_init(mtx_t* m, int type)
{
    const real_functions& r = R();
    const int ret = r.mtx_init(m, type);
    if (ret == thrd_success && tracked(KLOCK_RA))
        init_record(m, lock_kind::mutex);
    return ret;
}

extern "C" void mtx_destroy(mtx_t* m)
{
    const real_functions& r = R();
    if (tracked(KLOCK_RA)) {
        destroy_common(as_mutex(m), KLOCK_RA);
        forget_record(m);
    }
    r.mtx_destroy(m);
}

extern "C" int mtx_lock(mtx_t* m)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mtx_lock(m);
    return lock_common(as_mutex(m), KLOCK_RA, [&] { return r.mtx_lock(m); });
}

extern "C" int mtx_timedlock(mtx_t* m, const timespec* abstime)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mtx_timedlock(m, abstime);
    return lock_common(as_mutex(m), KLOCK_RA, [&] { return r.mtx_timedlock(m, abstime); });
}

extern "C" int mtx_trylock(mtx_t* m)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mtx_trylock(m);
    return trylock_common(as_mutex(m), KLOCK_RA, [&] { return r.mtx_trylock(m); });
}

extern "C" int mtx_unlock(mtx_t* m)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.mtx_unlock(m);
    return unlock_common(as_mutex(m), KLOCK_RA, [&] { return r.mtx_unlock(m); });
}
