// Fibers for the simulator: each simulated task (and each per-CPU irq stack) is an execution
// context with a stack of its own, switched to and from by the machine on one OS thread.
//
// The stack follows the kernel's (seeds/003, set_task_stack_end_magic / end_of_stack()): it
// grows down, and its last usable word - the lowest one - holds STACK_END_MAGIC. A task that
// writes past its stack overwrites the magic; the machine checks it at every switch, as the
// kernel's scheduler does (schedule_debug -> task_stack_end_corrupted).
//
//   high  +--------------------------+ top (16-byte aligned): the first frame starts here
//         |  usable: `size` bytes    |
//         |                          |
//         +--------------------------+ end_of_stack(): STACK_END_MAGIC (one unsigned long)
//         |  slack: `slack` bytes    | an overflow lands here: it is caught by the magic
//         +--------------------------+
//   low   |  guard page (PROT_NONE)  | an overrun past the slack faults instead of
//         +--------------------------+ silently corrupting another stack
//
// Invariants: a stack is mapped once and reused (stack_pool) so that exploration, which runs
// thousands of short simulations, does not mmap per run; the magic is rewritten whenever a stack
// is handed out.
//
// Context switch: callee-saved registers and the stack pointer, in assembly for x86-64 and
// aarch64 (a few nanoseconds, no system call); other architectures fall back to ucontext, whose
// swapcontext makes a sigprocmask system call per switch. Under AddressSanitizer every switch is
// announced with __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber, and under
// ThreadSanitizer with __tsan_switch_to_fiber, so that both follow the stack changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace klock::sim {

// The kernel's STACK_END_MAGIC (include/uapi/linux/magic.h).
inline constexpr unsigned long STACK_END_MAGIC = 0x57AC6E9Dul;

// Sanitizer builds run instrumented code with much larger frames; they scale every simulated
// stack (and the frames of a scenario's `recurse` step) by this factor, so that scenarios
// behave the same in both builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::size_t stack_scale = 4;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr std::size_t stack_scale = 4;
#else
inline constexpr std::size_t stack_scale = 1;
#endif
#else
inline constexpr std::size_t stack_scale = 1;
#endif

class fiber_stack {
public:
    // `size`: usable bytes above the magic (rounded up to 16); `slack`: mapped bytes below it.
    fiber_stack(std::size_t size, std::size_t slack);
    ~fiber_stack();
    fiber_stack(const fiber_stack&) = delete;
    fiber_stack& operator=(const fiber_stack&) = delete;

    std::size_t size() const noexcept { return size_; }
    std::size_t slack() const noexcept { return slack_; }
    // One past the highest usable byte; the initial stack pointer.
    unsigned char* top() const noexcept { return top_; }
    // The magic word (the kernel's end_of_stack()).
    unsigned long* end_of_stack() const noexcept { return end_; }
    // The lowest mapped byte above the guard page (bottom of the slack).
    unsigned char* lowest() const noexcept { return reinterpret_cast<unsigned char*>(end_) - slack_; }
    // Read without AddressSanitizer's check: frames that overflowed into the magic's word left
    // their redzones' poison there, and reading it is this checker's whole job.
    bool magic_intact() const noexcept { return magic_value() == STACK_END_MAGIC; }
    unsigned long magic_value() const noexcept;
    // A frame's data lands on the magic word (a simulated call chain that ran past the end).
    void overwrite_magic(unsigned long value) noexcept;
    // Writes the magic and a fill pattern over the usable area (for the high-water mark);
    // restore_magic() only the magic.
    void reset();
    void restore_magic() noexcept { *end_ = STACK_END_MAGIC; }
    // Deepest use since reset(), in bytes from the top (found by the fill pattern).
    std::size_t high_water() const noexcept;
    bool contains(const void* p) const noexcept
    {
        auto* b = static_cast<const unsigned char*>(p);
        return b >= lowest() && b < top_;
    }

private:
    void* map_ = nullptr;
    std::size_t map_len_ = 0;
    std::size_t size_ = 0;
    std::size_t slack_ = 0;
    unsigned char* top_ = nullptr;
    unsigned long* end_ = nullptr;
};

// A per-thread pool of stacks, keyed by (size, slack).
class stack_pool {
public:
    static stack_pool& local();
    std::unique_ptr<fiber_stack> get(std::size_t size, std::size_t slack);
    void put(std::unique_ptr<fiber_stack> s);
    ~stack_pool();

private:
    std::vector<std::unique_ptr<fiber_stack>> free_;
};

// A saved execution context. `host` contexts (the OS thread's own stack) are filled in by the
// first switch away from them.
struct fiber_context {
    void* sp = nullptr;
    // Sanitizer bookkeeping.
    const void* stack_bottom = nullptr;
    std::size_t stack_size = 0;
    void* fake_stack = nullptr;
    void* tsan_fiber = nullptr;
    bool tsan_owned = false;
#if !(defined(__x86_64__) || defined(__aarch64__))
    void* ucontext = nullptr; // ucontext_t*, fallback only
#endif
    ~fiber_context();
};

using fiber_entry = void (*)(void* arg);

// Prepares `ctx` so that the first switch to it runs entry(arg) on `stack`. The entry function
// must never return: it ends by switching away for the last time (switch_fiber with `exiting`).
void make_fiber(fiber_context& ctx, fiber_stack& stack, fiber_entry entry, void* arg);

// Saves the current context in `from` and resumes `to`. Returns when something switches back to
// `from`. `exiting`: `from` will never be resumed (lets the sanitizers free its state).
void switch_fiber(fiber_context& from, fiber_context& to, bool exiting = false) noexcept;

// Must be the first call of a fiber's entry function (completes the sanitizers' switch).
void fiber_started() noexcept;

// False when stack use cannot be seen on the fiber stacks: AddressSanitizer with
// detect_stack_use_after_return puts frames (and allocas) on its own fake stacks, so nothing
// overflows a fiber stack and STACK_END_MAGIC cannot catch anything.
bool stack_use_visible() noexcept;

} // namespace klock::sim
