// pthread_rwlock_* (std::shared_mutex and std::shared_timed_mutex are built on them).
//
// Read semantics follow the rwlock's kind (glibc's __flags, set by pthread_rwlockattr_setkind_np):
//   PTHREAD_RWLOCK_PREFER_READER_NP (the default) and PREFER_WRITER_NP (which glibc treats alike)
//     let a reader in while other readers hold the lock even if a writer waits: a reader may
//     recurse, so reads are lockdep's recursive reads (read = 2) and read-read cycles are not
//     deadlocks;
//   PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP queues new readers behind a waiting writer: reads
//     are non-recursive (read = 1) and a cycle through a read lock is a deadlock.
// pthread_rwlock_unlock() releases whatever the caller holds: a write lock if glibc's __cur_writer
// is the caller, a read lock otherwise. An unlock with no reader and no writer is "already
// unlocked"; a read unlock while another thread holds the write lock is "wrong owner".
#include "preload.hpp"

#include <cerrno>

namespace klock::preload {

namespace {

constexpr unsigned READERS_SHIFT = 3; // glibc's PTHREAD_RWLOCK_READER_SHIFT
constexpr unsigned NONRECURSIVE_KIND = PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP;

[[gnu::always_inline]] inline int writer_of(const pthread_rwlock_t* rw)
{
    return __atomic_load_n(&rw->__data.__cur_writer, __ATOMIC_RELAXED);
}

[[gnu::always_inline]] inline int read_mode(const pthread_rwlock_t* rw)
{
    return __atomic_load_n(&rw->__data.__flags, __ATOMIC_RELAXED) == NONRECURSIVE_KIND ? lockdep::READ
                                                                                       : lockdep::READ_RECURSIVE;
}

template <class F, class T>
[[gnu::always_inline]] inline int lock_common(
    pthread_rwlock_t* rw, bool write, std::uintptr_t ip, F real_lock, T real_try)
{
    const int me = current_tid();
    if (writer_of(rw) == me)
        return real_lock(); // EDEADLK from glibc: nothing acquired
    enter_op();
    record* r = get_record(rw, lock_kind::rwlock);
    if (__builtin_expect(r == nullptr, 0))
        return real_lock();
    stack_record_check(r);
    ld_acquire(r, 0, write ? lockdep::WRITE : read_mode(rw), ip);
    int ret;
    if (__builtin_expect(lock_stat_on(), 0)) {
        ret = real_try();
        if (ret == EBUSY) {
            ld_contended(r, ip);
            ret = real_lock();
        }
        if (ret == 0)
            ld_acquired(r, ip);
    } else {
        ret = real_lock();
    }
    if (ret != 0)
        ld_release(r, ip);
    else if (write)
        r->owner.store(me, std::memory_order_relaxed);
    return ret;
}

template <class F>
[[gnu::always_inline]] inline int trylock_common(pthread_rwlock_t* rw, bool write, std::uintptr_t ip, F real_try)
{
    const int ret = real_try();
    if (ret == 0) {
        enter_op();
        if (record* r = get_record(rw, lock_kind::rwlock)) {
            stack_record_check(r);
            ld_acquire(r, 1, write ? lockdep::WRITE : read_mode(rw), ip);
            if (write)
                r->owner.store(current_tid(), std::memory_order_relaxed);
        }
    }
    return ret;
}

} // namespace

} // namespace klock::preload

using namespace klock::preload;

extern "C" int pthread_rwlock_init(pthread_rwlock_t* rw, const pthread_rwlockattr_t* attr) noexcept
{
    const real_functions& r = R();
    const int ret = r.rwlock_init(rw, attr);
    if (ret == 0 && tracked(KLOCK_RA))
        init_record(rw, lock_kind::rwlock);
    return ret;
}

extern "C" int pthread_rwlock_destroy(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_destroy(rw);
    const int writer = writer_of(rw);
    const unsigned readers = __atomic_load_n(&rw->__data.__readers, __ATOMIC_RELAXED) >> READERS_SHIFT;
    if (writer != 0 || readers != 0)
        misuse("pthread_rwlock destroyed while locked", rw, writer, find_record(rw), KLOCK_RA);
    const int ret = r.rwlock_destroy(rw);
    if (ret == 0)
        forget_record(rw);
    return ret;
}

extern "C" int pthread_rwlock_rdlock(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_rdlock(rw);
    return lock_common(
        rw, false, KLOCK_RA, [&] { return r.rwlock_rdlock(rw); }, [&] { return r.rwlock_tryrdlock(rw); });
}

extern "C" int pthread_rwlock_timedrdlock(pthread_rwlock_t* rw, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_timedrdlock(rw, abstime);
    return lock_common(
        rw, false, KLOCK_RA, [&] { return r.rwlock_timedrdlock(rw, abstime); }, [&] { return r.rwlock_tryrdlock(rw); });
}

extern "C" int pthread_rwlock_clockrdlock(pthread_rwlock_t* rw, clockid_t clock, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_clockrdlock(rw, clock, abstime);
    return lock_common(
        rw, false, KLOCK_RA, [&] { return r.rwlock_clockrdlock(rw, clock, abstime); },
        [&] { return r.rwlock_tryrdlock(rw); });
}

extern "C" int pthread_rwlock_tryrdlock(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_tryrdlock(rw);
    return trylock_common(rw, false, KLOCK_RA, [&] { return r.rwlock_tryrdlock(rw); });
}

extern "C" int pthread_rwlock_wrlock(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_wrlock(rw);
    return lock_common(
        rw, true, KLOCK_RA, [&] { return r.rwlock_wrlock(rw); }, [&] { return r.rwlock_trywrlock(rw); });
}

extern "C" int pthread_rwlock_timedwrlock(pthread_rwlock_t* rw, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_timedwrlock(rw, abstime);
    return lock_common(
        rw, true, KLOCK_RA, [&] { return r.rwlock_timedwrlock(rw, abstime); }, [&] { return r.rwlock_trywrlock(rw); });
}

extern "C" int pthread_rwlock_clockwrlock(pthread_rwlock_t* rw, clockid_t clock, const timespec* abstime) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_clockwrlock(rw, clock, abstime);
    return lock_common(
        rw, true, KLOCK_RA, [&] { return r.rwlock_clockwrlock(rw, clock, abstime); },
        [&] { return r.rwlock_trywrlock(rw); });
}

extern "C" int pthread_rwlock_trywrlock(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_trywrlock(rw);
    return trylock_common(rw, true, KLOCK_RA, [&] { return r.rwlock_trywrlock(rw); });
}

extern "C" int pthread_rwlock_unlock(pthread_rwlock_t* rw) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.rwlock_unlock(rw);
    const std::uintptr_t ip = KLOCK_RA;
    const int me = current_tid();
    const int writer = writer_of(rw);
    if (writer == 0 || !is_me(writer, me)) {
        const unsigned readers = __atomic_load_n(&rw->__data.__readers, __ATOMIC_RELAXED) >> READERS_SHIFT;
        if (writer != 0) {
            misuse("pthread_rwlock wrong owner", rw, writer, find_record(rw), ip);
            return r.rwlock_unlock(rw);
        }
        if (readers == 0) {
            misuse("pthread_rwlock already unlocked", rw, 0, find_record(rw), ip);
            return r.rwlock_unlock(rw);
        }
    }
    enter_op();
    if (record* rec = find_record(rw)) {
        if (writer != 0)
            rec->owner.store(0, std::memory_order_relaxed);
        ld_release(rec, ip);
    }
    return r.rwlock_unlock(rw);
}
