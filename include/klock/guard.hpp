// RAII guards with thread-safety annotations, for any klock lock (std::lock_guard and
// std::shared_lock work too, but clang's analysis cannot see through them).
#pragma once

#include <klock/source_location.hpp>
#include <klock/thread_safety.hpp>

namespace klock {

template <class Lock> class KLOCK_SCOPED_CAPABILITY lock_guard {
public:
    // Sleeping locks take the caller's location for might_sleep() reports; pass it through.
    explicit lock_guard(Lock& l, source_location loc = source_location::current()) KLOCK_ACQUIRE(l) : lock_(l)
    {
        if constexpr (requires { l.lock(loc); })
            lock_.lock(loc);
        else
            lock_.lock();
    }
    ~lock_guard() KLOCK_RELEASE() { lock_.unlock(); }
    lock_guard(const lock_guard&) = delete;
    lock_guard& operator=(const lock_guard&) = delete;

private:
    Lock& lock_;
};

template <class Lock> class KLOCK_SCOPED_CAPABILITY shared_lock_guard {
public:
    explicit shared_lock_guard(Lock& l, source_location loc = source_location::current()) KLOCK_ACQUIRE_SHARED(l)
        : lock_(l)
    {
        if constexpr (requires { l.lock_shared(loc); })
            lock_.lock_shared(loc);
        else
            lock_.lock_shared();
    }
    ~shared_lock_guard() KLOCK_RELEASE() { lock_.unlock_shared(); }
    shared_lock_guard(const shared_lock_guard&) = delete;
    shared_lock_guard& operator=(const shared_lock_guard&) = delete;

private:
    Lock& lock_;
};

} // namespace klock
