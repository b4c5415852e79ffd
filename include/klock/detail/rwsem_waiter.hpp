// The pieces of the rw_semaphore slow path that live outside the lock: the waiter record a
// blocked task keeps on its own stack, and the wake queue a releaser fills while it holds
// wait_lock and empties after dropping it (kernel/locking/rwsem.c: struct rwsem_waiter,
// DEFINE_WAKE_Q / wake_up_q).
//
// The record's `state` word is the futex a waiter sleeps on. It moves
//
//     WAITING --(waiter, before sleeping)--> SLEEPING --(waker)--> WOKEN
//     WAITING --(waker)-----------------------------------------> WOKEN
//
// and the waker changes it with one exchange, so the value it replaces tells it whether the
// waiter may be inside futex_wait (SLEEPING: a futex_wake is owed) or will see WOKEN on its
// own before it sleeps (WAITING: no system call at all). A reader's WOKEN means "the read
// lock is yours"; a writer's WOKEN only means "try again" and the writer sets its word back
// to WAITING, under wait_lock, each time it fails.
#pragma once

#include <atomic>
#include <cstdint>

#include <klock/env/env.hpp>

namespace klock::detail {

inline constexpr std::uint32_t RWSEM_WAITER_WAITING = 0;
inline constexpr std::uint32_t RWSEM_WAITER_SLEEPING = 1;
inline constexpr std::uint32_t RWSEM_WAITER_WOKEN = 2;

// The kernel's MAX_READERS_WAKEUP: one release grants at most this many queued readers, which
// bounds both the wait_lock hold time and the wake queue below. Readers left queued are
// granted by a later release (the waiters bit stays set for them).
inline constexpr unsigned RWSEM_MAX_READERS_WAKEUP = 0x100;

template <env::Env E> struct rwsem_waiter {
    using task = typename E::task;

    rwsem_waiter(task* t, bool is_writer, std::uint64_t handoff_after) noexcept
        : owner_task(t), timeout(handoff_after), writer(is_writer)
    { }
    rwsem_waiter(const rwsem_waiter&) = delete;
    rwsem_waiter& operator=(const rwsem_waiter&) = delete;

    // FIFO links; read and written only under wait_lock.
    rwsem_waiter* prev = nullptr;
    rwsem_waiter* next = nullptr;
    task* owner_task;      // the blocked task (becomes the reader owner when granted first)
    std::uint64_t timeout; // E::now_ns() after which this waiter may demand a handoff
    bool writer;
    bool handoff_set = false; // this waiter set (or inherited) RWSEM_FLAG_HANDOFF; wait_lock
    signed char rt = -1;      // writer only: is the task real-time? -1 until first needed
    typename E::template atomic<std::uint32_t> state{RWSEM_WAITER_WAITING};
};

// Futex words to wake once wait_lock is dropped. Holds word addresses, never waiter records:
// after a waker's exchange makes a record WOKEN the record may be gone at any moment (see the
// "waker after the waiter returned" paragraph in rw_semaphore.hpp), so nothing reached
// through it may be read again; the address only serves as the futex key.
template <env::Env E> class rwsem_wake_q {
public:
    using word = typename E::template atomic<std::uint32_t>;

    rwsem_wake_q() noexcept = default;
    rwsem_wake_q(const rwsem_wake_q&) = delete;
    rwsem_wake_q& operator=(const rwsem_wake_q&) = delete;

    bool empty() const noexcept { return n_ == 0; }
    unsigned size() const noexcept { return n_; }

    // Record a reader about to be granted (its state is still WAITING or SLEEPING).
    void add_pending(word* w) noexcept { words_[n_++] = w; }

    // Mark every recorded word WOKEN with release order (the granted reader's critical section
    // starts after everything the waker did) and keep only the ones whose owner may sleep.
    void grant_pending() noexcept
    {
        unsigned kept = 0;
        for (unsigned i = 0; i < n_; ++i) {
            word* w = words_[i];
            if (w->exchange(RWSEM_WAITER_WOKEN, std::memory_order_release) == RWSEM_WAITER_SLEEPING)
                words_[kept++] = w;
        }
        n_ = kept;
    }

    // Tell one waiter to look again (a writer at the head of the queue).
    void wake_one(word* w) noexcept
    {
        if (w->exchange(RWSEM_WAITER_WOKEN, std::memory_order_release) == RWSEM_WAITER_SLEEPING)
            words_[n_++] = w;
    }

    // wake_up_q(): called with wait_lock dropped.
    void wake_up() noexcept
    {
        for (unsigned i = 0; i < n_; ++i)
            E::futex_wake(*words_[i], 1);
        n_ = 0;
    }

private:
    word* words_[RWSEM_MAX_READERS_WAKEUP];
    unsigned n_ = 0;
};

} // namespace klock::detail
