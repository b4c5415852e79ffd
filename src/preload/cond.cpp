// pthread_cond_wait / timedwait / clockwait and C11 cnd_wait / cnd_timedwait (and so
// std::condition_variable): the wait releases the mutex and takes it again before returning,
// which lockdep must see as a release and a new acquisition (taken again while the locks the
// waiter still holds are held: a real dependency). The re-acquisition is announced from a
// destructor, so that a thread cancelled inside the wait (glibc re-locks the mutex before it
// unwinds) is still known to hold the mutex.
//
// Only a mutex the caller holds once is annotated: if it does not own it, glibc returns EPERM (or,
// for a normal mutex, the behaviour is undefined); if a recursive mutex is held more than once,
// the wait does not release it.
#include "preload.hpp"

namespace klock::preload {

namespace {

class reacquire {
public:
    reacquire(record* r, std::uintptr_t ip, int me) noexcept : r_(r), ip_(ip), me_(me) { }
    ~reacquire()
    {
        r_->owner.store(me_, std::memory_order_relaxed);
        ld_acquire(r_, 0, 0, ip_);
    }
    reacquire(const reacquire&) = delete;
    reacquire& operator=(const reacquire&) = delete;

private:
    record* r_;
    std::uintptr_t ip_;
    int me_;
};

template <class F> int wait_common(pthread_mutex_t* m, std::uintptr_t ip, F real_wait)
{
    const int me = current_tid();
    const int kind = __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED);
    if (__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) != me
        || ((kind & 3) == PTHREAD_MUTEX_RECURSIVE && m->__data.__count > 1))
        return real_wait();
    enter_op();
    record* r = find_record(m);
    if (r == nullptr)
        return real_wait();
    r->owner.store(0, std::memory_order_relaxed);
    ld_release(r, ip);
    reacquire again(r, ip, me);
    return real_wait();
}

} // namespace

} // namespace klock::preload

using namespace klock::preload;

extern "C" int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.cond_wait(c, m);
    return wait_common(m, KLOCK_RA, [&] { return r.cond_wait(c, m); });
}

extern "C" int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* abstime)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.cond_timedwait(c, m, abstime);
    return wait_common(m, KLOCK_RA, [&] { return r.cond_timedwait(c, m, abstime); });
}

extern "C" int pthread_cond_clockwait(pthread_cond_t* c, pthread_mutex_t* m, clockid_t clock, const timespec* abstime)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.cond_clockwait(c, m, clock, abstime);
    return wait_common(m, KLOCK_RA, [&] { return r.cond_clockwait(c, m, clock, abstime); });
}

extern "C" int cnd_wait(cnd_t* c, mtx_t* m)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.cnd_wait(c, m);
    return wait_common(reinterpret_cast<pthread_mutex_t*>(m), KLOCK_RA, [&] { return r.cnd_wait(c, m); });
}

extern "C" int cnd_timedwait(cnd_t* c, mtx_t* m, const timespec* abstime)
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.cnd_timedwait(c, m, abstime);
    return wait_common(reinterpret_cast<pthread_mutex_t*>(m), KLOCK_RA, [&] { return r.cnd_timedwait(c, m, abstime); });
}
