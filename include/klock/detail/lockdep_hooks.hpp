// The glue between klock's locks and the lockdep engine (include/linux/lockdep.h's
// spin_acquire / mutex_acquire / rwsem_acquire_read / lock_acquired ... wrappers).
//
// Only with KLOCK_LOCKDEP (the CMake option of that name): without it this header declares
// nothing and the locks carry neither the map nor a branch. With it, each hook is one relaxed
// load and a predicted branch while both validation and lock_stat are switched off at run time
// (lockdep::active(): two bits of one state word), and a call into the engine otherwise.
// lock_contended/lock_acquired pass no ip: the engine uses the one lock_acquire recorded, the
// waiter's call site, wherever in the lock's slow path the hook sits.
// The engine's entry points without a task argument are the os world's (the calling thread's
// thread_local task state), so the hooks are live only for Envs whose tasks are os threads
// (env::os and wrappers of it such as the tests' counting_env); for any other Env (a simulator)
// they compile to nothing.
#pragma once

#if KLOCK_LOCKDEP

#include <type_traits>

#include <klock/env/os.hpp>
#include <klock/lockdep.hpp>
#include <klock/source_location.hpp>

namespace klock::detail {

template <class E> inline constexpr bool lockdep_tracks = std::is_same_v<typename E::task, env::os::task>;

// lockdep_init_map() for a lock built at `loc`. A lock constant-initialised (a static object) has
// no call to make at compile time: a null key makes lockdep key it by its own (static) address.
// A lock built at run time gets the key of its construction site, named "type@file:line".
[[gnu::always_inline]] constexpr void lockdep_init(
    lockdep_map& m, const char* type, const source_location& loc) noexcept
{
    if (std::is_constant_evaluated()) {
        m.name = type;
        m.key = nullptr;
    } else {
        const lockdep::site_class& s = lockdep::site_key(type, loc.file_name(), loc.line());
        m.name = s.name;
        m.key = &s.key;
    }
}

template <class E>
[[gnu::always_inline]] inline void lockdep_acquire(
    lockdep_map& m, unsigned subclass, int trylock, int read, lockdep_map* nest = nullptr) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::active(), 0))
            lockdep::lock_acquire(m, subclass, trylock, read, 1, nest);
}

template <class E> [[gnu::always_inline]] inline void lockdep_release(lockdep_map& m) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::active(), 0))
            lockdep::lock_release(m);
}

template <class E> [[gnu::always_inline]] inline void lockdep_contended(lockdep_map& m) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::active(), 0))
            lockdep::lock_contended(m);
}

template <class E> [[gnu::always_inline]] inline void lockdep_acquired(lockdep_map& m) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::active(), 0))
            lockdep::lock_acquired(m);
}

template <class E> [[gnu::always_inline]] inline void lockdep_downgrade(lockdep_map& m) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::active(), 0))
            lockdep::lock_downgrade(m);
}

// A lock's destructor: the memory is going away; report it if the task still holds it.
template <class E> [[gnu::always_inline]] inline void lockdep_free(const void* mem, std::size_t len) noexcept
{
    if constexpr (lockdep_tracks<E>)
        if (__builtin_expect(lockdep::enabled(), 0))
            debug_check_no_locks_freed(mem, len);
}

// rwlock read side: recursive in irq context only (queued rwlocks).
template <class E> [[gnu::always_inline]] inline int lockdep_rwlock_read_mode() noexcept
{
    return lockdep::rwlock_read_mode(E::info(E::current()));
}

} // namespace klock::detail

#endif // KLOCK_LOCKDEP
