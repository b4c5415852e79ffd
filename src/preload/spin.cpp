// pthread_spin_*. glibc's spinlock is a bare int (non-zero: locked) with no owner, so the record
// keeps the holder's thread id for the misuse checks (unlock by another thread, destroy or free
// while locked).
#include "preload.hpp"

#include <cerrno>

namespace klock::preload {
std::atomic<int> g_spin_free{INT_MIN};
} // namespace klock::preload

using namespace klock::preload;

extern "C" int pthread_spin_init(pthread_spinlock_t* l, int pshared) noexcept
{
    const real_functions& r = R();
    const int ret = r.spin_init(l, pshared);
    if (ret == 0 && g_spin_free.load(std::memory_order_relaxed) == INT_MIN)
        g_spin_free.store(__atomic_load_n(l, __ATOMIC_RELAXED), std::memory_order_relaxed);
    if (ret == 0 && tracked(KLOCK_RA))
        init_record(const_cast<int*>(l), lock_kind::spin);
    return ret;
}

extern "C" int pthread_spin_destroy(pthread_spinlock_t* l) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.spin_destroy(l);
    if (spin_state(l) == 1) {
        record* rec = find_record(const_cast<int*>(l));
        misuse("pthread_spin destroyed while locked", const_cast<int*>(l),
            rec != nullptr ? rec->owner.load(std::memory_order_relaxed) : 0, rec, KLOCK_RA);
    }
    const int ret = r.spin_destroy(l);
    if (ret == 0)
        forget_record(const_cast<int*>(l));
    return ret;
}

extern "C" int pthread_spin_lock(pthread_spinlock_t* l) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.spin_lock(l);
    const std::uintptr_t ip = KLOCK_RA;
    enter_op();
    record* rec = get_record(const_cast<int*>(l), lock_kind::spin);
    if (__builtin_expect(rec == nullptr, 0))
        return r.spin_lock(l);
    stack_record_check(rec);
    ld_acquire(rec, 0, 0, ip);
    int ret;
    if (__builtin_expect(lock_stat_on(), 0)) {
        ret = r.spin_trylock(l);
        if (ret == EBUSY) {
            ld_contended(rec, ip);
            ret = r.spin_lock(l);
        }
        if (ret == 0)
            ld_acquired(rec, ip);
    } else {
        ret = r.spin_lock(l);
    }
    if (ret == 0)
        rec->owner.store(current_tid(), std::memory_order_relaxed);
    else
        ld_release(rec, ip);
    return ret;
}

extern "C" int pthread_spin_trylock(pthread_spinlock_t* l) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.spin_trylock(l);
    const int ret = r.spin_trylock(l);
    if (ret == 0) {
        enter_op();
        if (record* rec = get_record(const_cast<int*>(l), lock_kind::spin)) {
            stack_record_check(rec);
            ld_acquire(rec, 1, 0, KLOCK_RA);
            rec->owner.store(current_tid(), std::memory_order_relaxed);
        }
    }
    return ret;
}

extern "C" int pthread_spin_unlock(pthread_spinlock_t* l) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.spin_unlock(l);
    const std::uintptr_t ip = KLOCK_RA;
    record* rec = find_record(const_cast<int*>(l));
    if (spin_state(l) == 0) {
        misuse("pthread_spin already unlocked", const_cast<int*>(l), 0, rec, ip);
        return r.spin_unlock(l);
    }
    if (rec != nullptr) {
        const int owner = rec->owner.load(std::memory_order_relaxed);
        if (owner != 0 && !is_me(owner, current_tid())) {
            misuse("pthread_spin wrong owner", const_cast<int*>(l), owner, rec, ip);
            return r.spin_unlock(l);
        }
        enter_op();
        rec->owner.store(0, std::memory_order_relaxed);
        ld_release(rec, ip);
    }
    return r.spin_unlock(l);
}
