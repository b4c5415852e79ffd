// RAII guards with thread-safety annotations, for any klock lock (std::lock_guard and
// std::shared_lock work too, but clang's analysis cannot see through them).
#pragma once

#include <klock/thread_safety.hpp>

namespace klock {

template <class Lock> class KLOCK_SCOPED_CAPABILITY lock_guard {
public:
    explicit lock_guard(Lock& l) KLOCK_ACQUIRE(l) : lock_(l) { lock_.lock(); }
    ~lock_guard() KLOCK_RELEASE() { lock_.unlock(); }
    lock_guard(const lock_guard&) = delete;
    lock_guard& operator=(const lock_guard&) = delete;

private:
    Lock& lock_;
};

template <class Lock> class KLOCK_SCOPED_CAPABILITY shared_lock_guard {
public:
    explicit shared_lock_guard(Lock& l) KLOCK_ACQUIRE_SHARED(l) : lock_(l) { lock_.lock_shared(); }
    ~shared_lock_guard() KLOCK_RELEASE() { lock_.unlock_shared(); }
    shared_lock_guard(const shared_lock_guard&) = delete;
    shared_lock_guard& operator=(const shared_lock_guard&) = delete;

private:
    Lock& lock_;
};

} // namespace klock
