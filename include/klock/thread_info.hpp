// The per-task record the lock code consults: the kernel's thread_info.
//
// preempt_count keeps the kernel's bit layout (include/linux/preempt.h):
//
//   bits  0- 7  PREEMPT  preempt_disable() nesting
//   bits  8-15  SOFTIRQ  softirq running (odd multiples) / bh disabled (SOFTIRQ_DISABLE_OFFSET)
//   bits 16-19  HARDIRQ  hardirq nesting
//   bits 20-23  NMI      NMI nesting
//   bit  31     PREEMPT_NEED_RESCHED (kept as a separate flag here, as on non-x86 kernels)
//
// Invariants: only the owning task writes preempt_count, irqs_disabled and need_resched
// (an interrupt handler runs on the interrupted task, so it is that task too); other tasks
// read only pid/comm/on_cpu, and only through a pointer they obtained with acquire ordering
// from a lock word.
#pragma once

#include <atomic>
#include <cstdint>

namespace klock {

inline constexpr std::uint32_t PREEMPT_BITS = 8;
inline constexpr std::uint32_t SOFTIRQ_BITS = 8;
inline constexpr std::uint32_t HARDIRQ_BITS = 4;
inline constexpr std::uint32_t NMI_BITS = 4;

inline constexpr std::uint32_t PREEMPT_SHIFT = 0;
inline constexpr std::uint32_t SOFTIRQ_SHIFT = PREEMPT_SHIFT + PREEMPT_BITS;
inline constexpr std::uint32_t HARDIRQ_SHIFT = SOFTIRQ_SHIFT + SOFTIRQ_BITS;
inline constexpr std::uint32_t NMI_SHIFT = HARDIRQ_SHIFT + HARDIRQ_BITS;

inline constexpr std::uint32_t PREEMPT_MASK = ((1u << PREEMPT_BITS) - 1) << PREEMPT_SHIFT; // 0x000000ff
inline constexpr std::uint32_t SOFTIRQ_MASK = ((1u << SOFTIRQ_BITS) - 1) << SOFTIRQ_SHIFT; // 0x0000ff00
inline constexpr std::uint32_t HARDIRQ_MASK = ((1u << HARDIRQ_BITS) - 1) << HARDIRQ_SHIFT; // 0x000f0000
inline constexpr std::uint32_t NMI_MASK = ((1u << NMI_BITS) - 1) << NMI_SHIFT;             // 0x00f00000

inline constexpr std::uint32_t PREEMPT_OFFSET = 1u << PREEMPT_SHIFT;
inline constexpr std::uint32_t SOFTIRQ_OFFSET = 1u << SOFTIRQ_SHIFT;
inline constexpr std::uint32_t HARDIRQ_OFFSET = 1u << HARDIRQ_SHIFT;
inline constexpr std::uint32_t NMI_OFFSET = 1u << NMI_SHIFT;
// local_bh_disable() adds twice SOFTIRQ_OFFSET so that "serving a softirq" (odd count) and
// "bottom halves disabled" (even count) can be told apart.
inline constexpr std::uint32_t SOFTIRQ_DISABLE_OFFSET = 2 * SOFTIRQ_OFFSET;
inline constexpr std::uint32_t PREEMPT_NEED_RESCHED = 0x80000000u;

// Size of the per-task area that queued locks use for their MCS nodes. The kernel keeps
// four qnodes per CPU (task, softirq, hardirq, NMI nesting); a user-space thread can be
// preempted while queued, so klock keeps them per task instead.
inline constexpr std::size_t TASK_MCS_AREA_BYTES = 4 * 64;

struct alignas(64) thread_info {
    std::uint32_t preempt_count;
    bool irqs_disabled;
    bool need_resched;
    // Set while the task sleeps in the kernel (futex wait): the "owner is not on a CPU" hint
    // that optimistic spinners read.
    std::atomic<bool> blocked;
    int pid;            // thread id; 0 until the task record is initialised
    std::uint32_t slot; // small dense task number, 1-based (0: none); queued locks encode it
    char comm[16];
    alignas(64) unsigned char mcs_area[TASK_MCS_AREA_BYTES];
};

// Context predicates over a preempt_count value (include/linux/preempt.h).
constexpr std::uint32_t irq_count(std::uint32_t pc) noexcept { return pc & (HARDIRQ_MASK | SOFTIRQ_MASK | NMI_MASK); }
constexpr bool in_hardirq(std::uint32_t pc) noexcept { return (pc & HARDIRQ_MASK) != 0; }
constexpr bool in_serving_softirq(std::uint32_t pc) noexcept { return (pc & SOFTIRQ_MASK & SOFTIRQ_OFFSET) != 0; }
constexpr bool in_nmi(std::uint32_t pc) noexcept { return (pc & NMI_MASK) != 0; }
constexpr bool in_task(std::uint32_t pc) noexcept
{
    return (pc & (NMI_MASK | HARDIRQ_MASK)) == 0 && (pc & SOFTIRQ_OFFSET) == 0;
}

} // namespace klock
