// What every klock lock embeds for lockdep: its lockdep_map and the hooks that feed the engine
// (include/linux/lockdep.h's lock_acquire / lock_release / lock_contended / lock_acquired), or,
// without KLOCK_LOCKDEP, nothing at all.
//
// A lock declares `[[no_unique_address]] detail::lock_dep<E> dep_;` and calls dep_.acquire(),
// dep_.release(), ... at the kernel's places. Compiled out, lock_dep is an empty class whose
// calls are empty inline functions: the lock's size and code are exactly what they are without
// lockdep. Compiled in, each call is the one relaxed load and predicted branch of
// lockdep_hooks.hpp while lockdep is switched off at run time.
//
// Both constructors exist in both builds, so a program that names a class explicitly compiles
// either way: `lock(loc)` keys the class by the construction site (a static lock: by its own
// address), `lock(key, name)` by an explicit lock_class_key.
#pragma once

#include <cstddef>
#include <type_traits>

#include <klock/lockdep.hpp>
#include <klock/source_location.hpp>

#if KLOCK_LOCKDEP
#include <klock/detail/lockdep_hooks.hpp>
#endif

namespace klock::detail {

// True for an address inside a loaded object's image (a variable with static storage).
bool is_static_object(const void* p) noexcept;

#if KLOCK_LOCKDEP

template <class E> class lock_dep {
public:
    constexpr lock_dep(const char* type, const source_location& loc) noexcept
    {
        lockdep_init(map_, type, loc);
        // A static lock that the compiler chose to construct at run time (GCC does so for a
        // namespace-scope object that is not declared constinit) is still one object for the
        // program's whole life: key it by its own address, as the kernel keys static locks, so
        // that `static mutex a, b;` are two classes, not one class of their shared line.
        if (!std::is_constant_evaluated() && is_static_object(this))
            map_.key = nullptr;
    }
    constexpr lock_dep(lock_class_key& key, const char* name) noexcept : map_(name, &key) { }

    [[gnu::always_inline]] void acquire(unsigned subclass, int trylock, int read, lockdep_map* nest = nullptr) noexcept
    {
        lockdep_acquire<E>(map_, subclass, trylock, read, nest);
    }
    [[gnu::always_inline]] void release() noexcept { lockdep_release<E>(map_); }
    [[gnu::always_inline]] void contended() noexcept { lockdep_contended<E>(map_); }
    [[gnu::always_inline]] void acquired() noexcept { lockdep_acquired<E>(map_); }
    [[gnu::always_inline]] void downgrade() noexcept { lockdep_downgrade<E>(map_); }
    // The lock's memory [lock, lock + size) goes away: report it if the task still holds it.
    [[gnu::always_inline]] void freed(const void* lock, std::size_t size) noexcept { lockdep_free<E>(lock, size); }
    // read_lock(): recursive in interrupt context only (queued rwlocks).
    [[gnu::always_inline]] static int rwlock_read_mode() noexcept { return lockdep_rwlock_read_mode<E>(); }

    lockdep_map& map() noexcept { return map_; }

private:
    lockdep_map map_;
};

#else

template <class E> class lock_dep {
public:
    constexpr lock_dep(const char*, const source_location&) noexcept { }
    constexpr lock_dep(lock_class_key&, const char*) noexcept { }

    void acquire(unsigned, int, int, lockdep_map* = nullptr) noexcept { }
    void release() noexcept { }
    void contended() noexcept { }
    void acquired() noexcept { }
    void downgrade() noexcept { }
    void freed(const void*, std::size_t) noexcept { }
    static int rwlock_read_mode() noexcept { return lockdep::READ; }
};

#endif

} // namespace klock::detail
