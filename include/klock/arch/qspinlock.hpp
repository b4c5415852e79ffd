// klock::arch::qspinlock<E>: the kernel's queued spinlock (kernel/locking/qspinlock.c) with
// the paravirt idea of kernel/locking/qspinlock_paravirt.h - waiters that have spun too long
// sleep and are kicked - so that the lock survives more runnable threads than cores.
//
// This is the raw arch layer (arch_spin_lock): no preempt_count, no debug checks. Those are
// klock/spinlock.hpp's job.
//
// The lock word (32 bits, kernel layout for NR_CPUS < 16K):
//
//   bits  0- 7  locked byte: 0 free, Q_LOCKED_VAL (1) held,
//               Q_SLOW_VAL (3) held and some waiter may sleep on the lock word
//   bit      8  pending: the one waiter that found the lock held and nobody queued
//   bit      9  reserved (klock): a waiter with the right to the lock (the pending waiter,
//               or the queue head when nobody is pending) has waited long: no stealing
//   bits 16-17  tail index: which of the tail task's 4 MCS nodes (nesting level)
//   bits 18-31  tail slot: thread_info::slot of the last queued task (1-based, 0 = no tail)
//
// Acquisition, in order of precedence:
//   - fast path: CAS 0 -> Q_LOCKED_VAL.
//   - pending: the first contender sets the pending bit and waits for the locked byte to
//     clear; it never queues. The queue head defers to it.
//   - queue: later contenders take a node from their own task record (thread_info::mcs_area;
//     the kernel's per-CPU qnodes[4] - per task here, because a user-space thread can be
//     preempted while queued), swap their tail code into the word and wait on their own node
//     until their predecessor makes them head. The head waits for locked and pending to clear,
//     takes the lock (clearing the tail if it is still the last) and passes headship on.
//
// Departures from the native kernel algorithm, all from pvqspinlock's playbook:
//   - Stealing: a contender that finds a queue spins a short while before queueing, and takes
//     the lock if it sees it free and not reserved (pv_hybrid_queued_unfair_trylock). This is
//     what keeps throughput up when the head is not running: with more runnable threads than
//     cores a strictly FIFO handoff waits for a preempted thread on every acquisition.
//     Queued waiters never overtake each other, and the pending waiter and the head always
//     precede everyone queued after them, so FIFO order is exact when nobody new arrives.
//   - Reservation: the pending waiter or head that has spun Q_RESERVE_SPINS sets the reserved
//     bit, which stops stealing; it clears the bit when it takes the lock or goes to sleep,
//     bounding how long it can be overtaken while it is running.
//   - Sleeping: a queued (non-head) waiter that spun Q_SLEEP_SPINS marks its node SLEEPING and
//     futex-waits on it; its predecessor's handoff exchanges the node to HEAD and, if it saw
//     SLEEPING, wakes it. The pending waiter and the head, after Q_SLEEP_SPINS, turn the
//     locked byte from LOCKED into SLOW (dropping any reservation in the same CAS) and
//     futex-wait on the lock word; unlock sees SLOW and wakes the lock word's sleepers.
//
// Invariants:
//   I1 The locked byte leaves SLOW only in unlock() by the owner (3 -> 2 -> 0), which then
//      wakes every sleeper on the lock word. A sleeper waits only with an expected value whose
//      locked byte is SLOW, so it either sees the change (futex EAGAIN) or is woken: no lost
//      wakeup. Byte 2 is a transient "still held" seen only between unlock's two steps.
//   I2 SLOW is set only by a CAS from LOCKED, i.e. while the lock is held, so the unlock that
//      follows is the one that sees it.
//   I3 A node's state goes WAITING -> SLEEPING only by its owner's CAS, and WAITING/SLEEPING
//      -> HEAD only by the predecessor's exchange, which wakes iff it replaced SLEEPING; the
//      owner sleeps only while the state is SLEEPING: no lost wakeup.
//   I4 The reserved bit is set only by the pending waiter (while pending is set) or by the
//      queue head (while pending is clear), and cleared by the same waiter. So the pending
//      waiter, and the head when pending is clear, may ignore it; stealers must respect it.
//   I5 Lock word sleepers are only the pending waiter, the queue head and non-queued
//      fallback waiters, so waking all of them on a SLOW unlock is a small herd.
//   I6 A node is reused only after its task's lock() returned; its successor touches it
//      (writing ->next) before the task can return, because the new owner waits for the link.
//      A handoff's futex_wake may reach a node (or, after unlock, a lock word) that has been
//      reused or freed: that is at worst a spurious wakeup, which every waiter tolerates.
//   I7 Nesting (signal handlers are hardirqs) uses the task's next node; the nesting counter
//      is raised before the node is touched and lowered after it is released, with compiler
//      barriers, so an interrupting handler always finds a node nobody is using.
//   Tasks without a slot (table exhausted) or nested more than 4 deep do not queue: they spin
//   and steal, and sleep on the lock word like the head does.
//
// Memory ordering: the fast path, every taking CAS and the handoff are acquire; unlock is a
// release RMW; publishing a tail is acq_rel so a node's initialisation happens-before any use
// by its neighbours; linking prev->next and the handoff exchange are release.
//
// Unlock is a fetch_sub of Q_LOCKED_VAL (one RMW; the kernel stores a byte, which a 32-bit
// Env atomic cannot express); a result that was not LOCKED means SLOW and takes the slow path.
//
// thread_info::mcs_area belongs to this lock: bytes 0-3 hold the task's nesting counter (the
// kernel keeps it in qnodes[0].count), nodes start at byte 64, 48 bytes apart. Another
// queued algorithm (an OSQ for mutex spinning, say) needs its own area: its nodes would be
// in use while a signal handler queues here.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <new>

#include <klock/env/env.hpp>
#include <klock/thread_info.hpp>

namespace klock::arch {

inline constexpr std::uint32_t Q_LOCKED_MASK = 0x000000ffu;
inline constexpr std::uint32_t Q_LOCKED_VAL = 1u;
inline constexpr std::uint32_t Q_SLOW_VAL = 3u;
inline constexpr std::uint32_t Q_PENDING_VAL = 1u << 8;
inline constexpr std::uint32_t Q_RESERVED_VAL = 1u << 9;
inline constexpr std::uint32_t Q_TAIL_IDX_SHIFT = 16;
inline constexpr std::uint32_t Q_TAIL_IDX_MASK = 0x3u << Q_TAIL_IDX_SHIFT;
inline constexpr std::uint32_t Q_TAIL_SLOT_SHIFT = 18;
inline constexpr std::uint32_t Q_TAIL_SLOT_BITS = 14;
inline constexpr std::uint32_t Q_TAIL_MASK = 0xffff0000u;
inline constexpr std::uint32_t Q_MAX_NODES = 4;

// Spin budgets, in cpu_relax() iterations.
inline constexpr unsigned Q_STEAL_SPINS = 256;    // a newcomer's look for a free lock before queueing
inline constexpr unsigned Q_RESERVE_SPINS = 2048; // pending waiter / head: then stop stealers
inline constexpr unsigned Q_SLEEP_SPINS = 4096;   // any waiter: then sleep
inline constexpr unsigned Q_POLL_MASK = 1023;     // how often a spin watch is polled

constexpr std::uint32_t q_encode_tail(std::uint32_t slot, std::uint32_t idx) noexcept
{
    return (slot << Q_TAIL_SLOT_SHIFT) | (idx << Q_TAIL_IDX_SHIFT);
}
constexpr std::uint32_t q_tail_slot(std::uint32_t val) noexcept { return val >> Q_TAIL_SLOT_SHIFT; }
constexpr std::uint32_t q_tail_idx(std::uint32_t val) noexcept { return (val & Q_TAIL_IDX_MASK) >> Q_TAIL_IDX_SHIFT; }

// A spin watch lets a debug layer look at a long wait (lockup detection) without a second
// copy of the algorithm. poll() is called every Q_POLL_MASK+1 spins and after every sleep;
// while enabled, sleeps end by deadline() so that poll() keeps being called.
struct no_spin_watch {
    static constexpr bool enabled = false;
    void poll() noexcept { }
    std::uint64_t deadline() const noexcept { return 0; }
};

template <env::Env E> class qspinlock {
    using atomic_u32 = typename E::template atomic<std::uint32_t>;

public:
    constexpr qspinlock() noexcept : val_(0) { }
    qspinlock(const qspinlock&) = delete;
    qspinlock& operator=(const qspinlock&) = delete;

    [[gnu::always_inline]] void lock() noexcept
    {
        no_spin_watch w;
        lock(w);
    }

    template <class Watch> [[gnu::always_inline]] void lock(Watch& w) noexcept
    {
        std::uint32_t v = 0;
        if (__builtin_expect(
                val_.compare_exchange_strong(v, Q_LOCKED_VAL, std::memory_order_acquire, std::memory_order_relaxed), 1))
            return;
        lock_slow(v, w);
    }

    // lock() in two halves, for a debug layer that checks things only when contended:
    // lock_fast() is the fast path alone (one CAS, no side effect when it fails);
    // lock_slowpath() completes the acquisition after it failed.
    [[gnu::always_inline]] bool lock_fast() noexcept
    {
        std::uint32_t v = 0;
        return val_.compare_exchange_strong(v, Q_LOCKED_VAL, std::memory_order_acquire, std::memory_order_relaxed);
    }
    template <class Watch> void lock_slowpath(Watch& w) noexcept { lock_slow(val_.load(std::memory_order_relaxed), w); }

    // Succeeds only on an entirely idle word, as the kernel's queued_spin_trylock: a free lock
    // with waiters belongs to them.
    [[gnu::always_inline]] bool try_lock() noexcept
    {
        std::uint32_t v = val_.load(std::memory_order_relaxed);
        if (v != 0)
            return false;
        return val_.compare_exchange_strong(v, Q_LOCKED_VAL, std::memory_order_acquire, std::memory_order_relaxed);
    }

    [[gnu::always_inline]] void unlock() noexcept
    {
        std::uint32_t old = val_.fetch_sub(Q_LOCKED_VAL, std::memory_order_release);
        if (__builtin_expect((old & Q_LOCKED_MASK) != Q_LOCKED_VAL, 0))
            unlock_slow();
    }

    // Kernel semantics (queued_spin_is_locked): any non-zero word counts, since a pending
    // waiter or queue head will own the lock without anyone else getting in first.
    bool is_locked() const noexcept { return val_.load(std::memory_order_relaxed) != 0; }
    bool is_contended() const noexcept { return (val_.load(std::memory_order_relaxed) & ~Q_LOCKED_MASK) != 0; }
    std::uint32_t raw() const noexcept { return val_.load(std::memory_order_relaxed); }

private:
    // A queued waiter's MCS node. `next` holds the successor's tail code rather than a
    // pointer, so that every shared word is an Env atomic<uint32_t>.
    enum : std::uint32_t { node_waiting = 0, node_head = 1, node_sleeping = 2 };
    struct qnode {
        qnode() noexcept : next(0), state(node_waiting) { }
        atomic_u32 next;
        atomic_u32 state;
    };
    // thread_info::mcs_area layout: the nesting counter, then 4 nodes.
    static constexpr std::size_t nodes_offset = 64;
    static constexpr std::size_t node_stride = 48;
    static_assert(sizeof(qnode) <= node_stride);
    static_assert(nodes_offset + Q_MAX_NODES * node_stride <= TASK_MCS_AREA_BYTES);

    static std::uint32_t* nesting(thread_info& ti) noexcept
    {
        return std::launder(reinterpret_cast<std::uint32_t*>(ti.mcs_area));
    }
    static unsigned char* node_storage(thread_info& ti, std::uint32_t idx) noexcept
    {
        return ti.mcs_area + nodes_offset + idx * node_stride;
    }
    static qnode* decode(std::uint32_t tail) noexcept
    {
        typename E::task* t = E::task_from_slot(q_tail_slot(tail));
        return std::launder(reinterpret_cast<qnode*>(node_storage(E::info(t), q_tail_idx(tail))));
    }

    template <class Watch> static void spin_step(unsigned spins, Watch& w) noexcept
    {
        if constexpr (Watch::enabled)
            if ((spins & Q_POLL_MASK) == 0)
                w.poll();
        E::cpu_relax();
    }

    bool try_steal(std::uint32_t& v) noexcept
    {
        return (v & (Q_LOCKED_MASK | Q_RESERVED_VAL)) == 0
            && val_.compare_exchange_strong(v, v | Q_LOCKED_VAL, std::memory_order_acquire, std::memory_order_relaxed);
    }

    template <class Watch> [[gnu::noinline]] void lock_slow(std::uint32_t v, Watch& w) noexcept
    {
        for (;;) {
            // A pending -> locked handover in flight is a few instructions away: wait for it
            // rather than queue behind it (the kernel's same short wait).
            for (unsigned i = 0; v == Q_PENDING_VAL && i < 64; ++i) {
                E::cpu_relax();
                v = val_.load(std::memory_order_relaxed);
            }
            if ((v & ~Q_LOCKED_MASK) == 0) {
                std::uint32_t old = val_.fetch_or(Q_PENDING_VAL, std::memory_order_acquire);
                if ((old & ~Q_LOCKED_MASK) == 0) {
                    wait_and_take<false>(0, w);
                    return;
                }
                // Someone got ahead of us: undo the pending bit if it was ours, then queue.
                if ((old & Q_PENDING_VAL) == 0)
                    val_.fetch_and(~Q_PENDING_VAL, std::memory_order_relaxed);
                v = val_.load(std::memory_order_relaxed);
            }
            // The unfair window: take the lock if it shows up free and unreserved.
            bool requeue = false;
            for (unsigned i = 1; i <= Q_STEAL_SPINS; ++i) {
                if (try_steal(v))
                    return;
                if ((v & ~Q_LOCKED_MASK) == 0) {
                    requeue = true; // the queue drained: try for pending again
                    break;
                }
                if (v & Q_RESERVED_VAL)
                    break;
                spin_step(i, w);
                v = val_.load(std::memory_order_relaxed);
            }
            if (!requeue)
                break;
        }
        queue(w);
    }

    template <class Watch> void queue(Watch& w) noexcept
    {
        thread_info& ti = E::info(E::current());
        std::uint32_t* nest = nesting(ti);
        const std::uint32_t idx = *nest;
        if (ti.slot == 0 || ti.slot >= (1u << Q_TAIL_SLOT_BITS) || idx >= Q_MAX_NODES) {
            wait_unqueued(w);
            return;
        }
        *nest = idx + 1;
        std::atomic_signal_fence(std::memory_order_seq_cst); // I7: count before node use
        qnode* node = ::new (static_cast<void*>(node_storage(ti, idx))) qnode();
        const std::uint32_t tail = q_encode_tail(ti.slot, idx);

        // Publish our tail (the kernel's xchg_tail; a CAS loop keeps the low half intact).
        std::uint32_t old = val_.load(std::memory_order_relaxed);
        for (;;) {
            // The node set-up took a while: one more look for a free lock first.
            if (try_steal(old)) {
                release_node(nest, idx);
                return;
            }
            if (val_.compare_exchange_weak(
                    old, (old & ~Q_TAIL_MASK) | tail, std::memory_order_acq_rel, std::memory_order_relaxed))
                break;
        }
        if (old & Q_TAIL_MASK) {
            decode(old)->next.store(tail, std::memory_order_release);
            wait_for_headship(node, w);
        }

        // Head of the queue: wait for the owner and the pending waiter, then take the lock.
        const std::uint32_t prev = wait_and_take<true>(tail, w);
        if ((prev & Q_TAIL_MASK) != tail) {
            // Someone queued behind us: wait for the link, then make them head.
            std::uint32_t next;
            for (unsigned i = 1; (next = node->next.load(std::memory_order_acquire)) == 0; ++i)
                spin_step(i, w);
            qnode* succ = decode(next);
            if (succ->state.exchange(node_head, std::memory_order_release) == node_sleeping)
                E::futex_wake(succ->state, 1);
        }
        release_node(nest, idx);
    }

    static void release_node(std::uint32_t* nest, std::uint32_t idx) noexcept
    {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        *nest = idx;
    }

    template <class Watch> void wait_for_headship(qnode* node, Watch& w) noexcept
    {
        for (unsigned i = 1; i <= Q_SLEEP_SPINS; ++i) {
            if (node->state.load(std::memory_order_acquire) == node_head)
                return;
            spin_step(i, w);
        }
        std::uint32_t s = node_waiting;
        if (!node->state.compare_exchange_strong(
                s, node_sleeping, std::memory_order_acquire, std::memory_order_acquire))
            return; // already head (I3)
        while (node->state.load(std::memory_order_acquire) != node_head) {
            E::futex_wait(node->state, node_sleeping, w.deadline());
            w.poll();
        }
    }

    // The pending waiter (Head == false) or the queue head (Head == true) waits until it may
    // take the lock, and takes it. Returns the word it replaced.
    template <bool Head, class Watch> std::uint32_t wait_and_take(std::uint32_t tail, Watch& w) noexcept
    {
        bool reserved = false;
        unsigned spins = 0;
        std::uint32_t v = val_.load(std::memory_order_relaxed);
        for (;;) {
            // I4: the reserved bit, if set, is ours (or the pending waiter's, when we defer to it).
            const bool free = Head ? (v & (Q_LOCKED_MASK | Q_PENDING_VAL)) == 0 : (v & Q_LOCKED_MASK) == 0;
            if (free) {
                std::uint32_t nv;
                if constexpr (Head)
                    nv = ((v & Q_TAIL_MASK) == tail ? 0 : (v & Q_TAIL_MASK)) | Q_LOCKED_VAL;
                else
                    nv = (v & ~(Q_PENDING_VAL | Q_RESERVED_VAL)) | Q_LOCKED_VAL;
                if (val_.compare_exchange_weak(v, nv, std::memory_order_acquire, std::memory_order_relaxed))
                    return v;
                continue;
            }
            const std::uint32_t byte = v & Q_LOCKED_MASK;
            if (!reserved && spins >= Q_RESERVE_SPINS && byte != 0 && (v & Q_RESERVED_VAL) == 0
                && (!Head || (v & Q_PENDING_VAL) == 0)) {
                if (val_.compare_exchange_weak(v, v | Q_RESERVED_VAL, std::memory_order_relaxed)) {
                    reserved = true;
                    v |= Q_RESERVED_VAL;
                }
                continue;
            }
            if (spins >= Q_SLEEP_SPINS && (byte == Q_LOCKED_VAL || byte == Q_SLOW_VAL)) {
                std::uint32_t nv = v + (Q_SLOW_VAL - byte);
                if (reserved)
                    nv &= ~Q_RESERVED_VAL; // asleep, we must not hold others off (pv's clear_pending)
                if (nv != v && !val_.compare_exchange_weak(v, nv, std::memory_order_relaxed))
                    continue;
                reserved = false;
                E::futex_wait(val_, nv, w.deadline());
                w.poll();
                v = val_.load(std::memory_order_relaxed);
                // Still held (only other bits changed, or a timeout): back to sleep at once.
                spins = (v & Q_LOCKED_MASK) == Q_SLOW_VAL ? Q_SLEEP_SPINS : 0;
                continue;
            }
            spin_step(++spins, w);
            v = val_.load(std::memory_order_relaxed);
        }
    }

    // No node available: compete like a stealer, sleep like the head.
    template <class Watch> void wait_unqueued(Watch& w) noexcept
    {
        unsigned spins = 0;
        std::uint32_t v = val_.load(std::memory_order_relaxed);
        for (;;) {
            if (try_steal(v))
                return;
            const std::uint32_t byte = v & Q_LOCKED_MASK;
            if ((v & (Q_LOCKED_MASK | Q_RESERVED_VAL)) == 0)
                continue; // the CAS lost a race; v is fresh
            if (spins >= Q_SLEEP_SPINS && (byte == Q_LOCKED_VAL || byte == Q_SLOW_VAL)) {
                std::uint32_t nv = v + (Q_SLOW_VAL - byte);
                if (nv != v && !val_.compare_exchange_weak(v, nv, std::memory_order_relaxed))
                    continue;
                E::futex_wait(val_, nv, w.deadline());
                w.poll();
                v = val_.load(std::memory_order_relaxed);
                spins = (v & Q_LOCKED_MASK) == Q_SLOW_VAL ? Q_SLEEP_SPINS : 0;
                continue;
            }
            spin_step(++spins, w);
            v = val_.load(std::memory_order_relaxed);
        }
    }

    [[gnu::noinline]] void unlock_slow() noexcept
    {
        // I1: finish the release (2 -> 0), then wake whoever slept on SLOW.
        val_.fetch_sub(Q_SLOW_VAL - Q_LOCKED_VAL, std::memory_order_release);
        E::futex_wake(val_, INT_MAX);
    }

    atomic_u32 val_;
};

} // namespace klock::arch
