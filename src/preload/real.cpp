// The real functions behind the interposers: the next definition after this library in symbol
// lookup order (normally glibc's).
//
// glibc keeps two versions of pthread_cond_*: the old LinuxThreads-compatible one (GLIBC_2.2.5 on
// x86-64) and the current one (GLIBC_2.3.2). dlsym() may hand back the old one, which expects a
// different pthread_cond_t layout, so the condition variable functions are looked up with dlvsym()
// for the current version first.
//
// Resolution may itself call interposed functions (dlsym can free memory): it runs with the
// re-entrancy flag set, and free() called before its real address is known simply leaks the block.
#include "preload.hpp"

#include <cerrno>
#include <dlfcn.h>

namespace klock::preload {

real_functions real = {};

namespace {

template <class F> void lookup(F& slot, const char* name, const char* version = nullptr)
{
    void* p = nullptr;
    if (version != nullptr)
        p = ::dlvsym(RTLD_NEXT, name, version);
    if (p == nullptr)
        p = ::dlsym(RTLD_NEXT, name);
    slot = reinterpret_cast<F>(p);
}

// Stubs for functions this glibc does not have: the program could not have called them natively
// either, but keep the interposer safe.
int enosys1(void*) { return ENOSYS; }
int enosys3(void*, clockid_t, const timespec*) { return ENOSYS; }
int enosys4(void*, void*, clockid_t, const timespec*) { return ENOSYS; }

template <class F, class S> void fallback(F& slot, S stub)
{
    if (slot == nullptr)
        slot = reinterpret_cast<F>(reinterpret_cast<void*>(stub));
}

// Set while this thread resolves: an interposed call made by dlsym itself must not start over.
thread_local constinit bool t_resolving __attribute__((tls_model("initial-exec"))) = false;

} // namespace

void resolve_all() noexcept
{
    if (__atomic_load_n(&real.mutex_lock, __ATOMIC_ACQUIRE) != nullptr)
        return;
    if (t_resolving)
        return;
    tool_scope scope;
    t_resolving = true;
    // Two threads may race here before the constructor ran: both store the same values.
    real_functions r = {};
    lookup(r.free, "free");
    lookup(r.realloc, "realloc");
    lookup(r.mutex_init, "pthread_mutex_init");
    lookup(r.mutex_destroy, "pthread_mutex_destroy");
    lookup(r.mutex_trylock, "pthread_mutex_trylock");
    lookup(r.mutex_timedlock, "pthread_mutex_timedlock");
    lookup(r.mutex_clocklock, "pthread_mutex_clocklock");
    lookup(r.mutex_unlock, "pthread_mutex_unlock");
    lookup(r.rwlock_init, "pthread_rwlock_init");
    lookup(r.rwlock_destroy, "pthread_rwlock_destroy");
    lookup(r.rwlock_rdlock, "pthread_rwlock_rdlock");
    lookup(r.rwlock_tryrdlock, "pthread_rwlock_tryrdlock");
    lookup(r.rwlock_timedrdlock, "pthread_rwlock_timedrdlock");
    lookup(r.rwlock_clockrdlock, "pthread_rwlock_clockrdlock");
    lookup(r.rwlock_wrlock, "pthread_rwlock_wrlock");
    lookup(r.rwlock_trywrlock, "pthread_rwlock_trywrlock");
    lookup(r.rwlock_timedwrlock, "pthread_rwlock_timedwrlock");
    lookup(r.rwlock_clockwrlock, "pthread_rwlock_clockwrlock");
    lookup(r.rwlock_unlock, "pthread_rwlock_unlock");
    lookup(r.spin_init, "pthread_spin_init");
    lookup(r.spin_destroy, "pthread_spin_destroy");
    lookup(r.spin_lock, "pthread_spin_lock");
    lookup(r.spin_trylock, "pthread_spin_trylock");
    lookup(r.spin_unlock, "pthread_spin_unlock");
    lookup(r.cond_wait, "pthread_cond_wait", "GLIBC_2.3.2");
    lookup(r.cond_timedwait, "pthread_cond_timedwait", "GLIBC_2.3.2");
    lookup(r.cond_clockwait, "pthread_cond_clockwait");
    lookup(r.mtx_init, "mtx_init");
    lookup(r.mtx_lock, "mtx_lock");
    lookup(r.mtx_timedlock, "mtx_timedlock");
    lookup(r.mtx_trylock, "mtx_trylock");
    lookup(r.mtx_unlock, "mtx_unlock");
    lookup(r.mtx_destroy, "mtx_destroy");
    lookup(r.cnd_wait, "cnd_wait");
    lookup(r.cnd_timedwait, "cnd_timedwait");
    lookup(r.sigaction, "sigaction");
    lookup(r.sigprocmask, "sigprocmask");
    lookup(r.pthread_sigmask, "pthread_sigmask");
    lookup(r.dlclose, "dlclose");
    lookup(r.libc_start_main, "__libc_start_main", "GLIBC_2.34");
    // The allocator's own malloc_usable_size (jemalloc and tcmalloc export one too).
    r.malloc_usable_size = reinterpret_cast<std::size_t (*)(void*)>(::dlsym(RTLD_DEFAULT, "malloc_usable_size"));
    fallback(r.mutex_clocklock, enosys3);
    fallback(r.rwlock_clockrdlock, enosys3);
    fallback(r.rwlock_clockwrlock, enosys3);
    fallback(r.cond_clockwait, enosys4);
    fallback(r.mtx_init, enosys1);
    fallback(r.mtx_lock, enosys1);
    fallback(r.mtx_trylock, enosys1);
    fallback(r.mtx_unlock, enosys1);
    // Last: a non-null mutex_lock tells R() that everything else is in place. The struct copy
    // leaves mutex_lock as it finds it (null, or the same value a racing thread published).
    int (*lock)(pthread_mutex_t*) = nullptr;
    lookup(lock, "pthread_mutex_lock");
    r.mutex_lock = __atomic_load_n(&real.mutex_lock, __ATOMIC_RELAXED);
    real = r;
    __atomic_store_n(&real.mutex_lock, lock, __ATOMIC_RELEASE);
    t_resolving = false;
}

} // namespace klock::preload
