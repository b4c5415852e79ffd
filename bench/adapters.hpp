// The lock adapter shape shared by the Google Benchmark suite (harness.hpp) and `klock bench`
// (tools/klock/bench_locks.cpp): every lock, klock's or a peer's, as
//   struct A {
//       using node = ...;                 // per-thread, per-lock state (an MCS node, a
//                                         // tbb::queuing_mutex::scoped_lock, or no_node)
//       static constexpr bool exclusive;  // false: a reader side (critical sections overlap)
//       void lock(node&);
//       void unlock(node&);
//   };
// Nothing here needs Google Benchmark.
#pragma once

#include <type_traits>

#include <klock/thread_safety.hpp>

namespace klock::bench {

struct no_node { };

// Any std Lockable, driven through its exclusive side.
template <class L> struct exclusive_side {
    using node = no_node;
    static constexpr bool exclusive = true;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock(); }
    L l;
};

// Any std SharedLockable, driven through its reader side.
template <class L> struct shared_side {
    using node = no_node;
    static constexpr bool exclusive = false;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.lock_shared(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { l.unlock_shared(); }
    L l;
};

template <class A>
concept lock_ops = requires(A& a, typename A::node& n)
{
    a.lock(n), a.unlock(n);
};
template <class A>
concept lock_adapter
    = lock_ops<A> && std::is_default_constructible_v<A> && std::is_same_v<decltype(A::exclusive), const bool>;

} // namespace klock::bench
