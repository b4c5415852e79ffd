// Fiber stacks and the context switch (include/klock/sim/fiber.hpp).
#include <klock/sim/fiber.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define KLOCK_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KLOCK_SIM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define KLOCK_SIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KLOCK_SIM_TSAN 1
#endif
#endif

#if KLOCK_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if KLOCK_SIM_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if !(defined(__x86_64__) || defined(__aarch64__))
#include <ucontext.h>
#endif

namespace klock::sim {

namespace {

constexpr unsigned char fill_byte = 0xa5;

std::size_t page_size() noexcept
{
    static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return p;
}

std::size_t round_up(std::size_t n, std::size_t to) noexcept { return (n + to - 1) / to * to; }

} // namespace

// ---- stacks ----

fiber_stack::fiber_stack(std::size_t size, std::size_t slack)
{
    const std::size_t page = page_size();
    size_ = round_up(size < 256 ? 256 : size, 16);
    slack_ = round_up(slack, 16);
    // [guard page][slack][magic word + usable], the usable top page-aligned.
    const std::size_t body = round_up(slack_ + sizeof(unsigned long) + size_, page);
    map_len_ = page + body;
    map_ = ::mmap(
        nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map_ == MAP_FAILED) {
        std::fprintf(stderr, "klock sim: cannot map a %zu-byte fiber stack\n", map_len_);
        std::abort();
    }
    ::mprotect(map_, page, PROT_NONE);
    top_ = static_cast<unsigned char*>(map_) + map_len_;
    end_ = reinterpret_cast<unsigned long*>(top_ - size_) - 1;
    // Whatever the rounding left below the slack belongs to the slack too.
    slack_
        = static_cast<std::size_t>(reinterpret_cast<unsigned char*>(end_) - (static_cast<unsigned char*>(map_) + page));
    reset();
}

fiber_stack::~fiber_stack()
{
    if (map_ != nullptr && map_ != MAP_FAILED)
        ::munmap(map_, map_len_);
}

void fiber_stack::reset()
{
#if KLOCK_SIM_ASAN
    // A fiber abandoned mid-run leaves poisoned frames behind; the next user starts clean.
    __asan_unpoison_memory_region(lowest(), static_cast<std::size_t>(top_ - lowest()));
#endif
    // Only the usable area gets the fill pattern (for high_water()); the slack stays untouched
    // until something overflows into it.
    std::memset(end_ + 1, fill_byte, size_);
    *end_ = STACK_END_MAGIC;
}

#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize("address")))
#endif
unsigned long
fiber_stack::magic_value() const noexcept
{
    return *end_;
}

#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize("address")))
#endif
void fiber_stack::overwrite_magic(unsigned long value) noexcept
{
    *end_ = value;
}

// Unchecked by AddressSanitizer for the same reason as the magic: the deepest frames of a run
// that ended inside them keep their redzones poisoned.
#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize("address")))
#endif
std::size_t
fiber_stack::high_water() const noexcept
{
    // A word at a time over the untouched part (exploration asks after every one of thousands of
    // runs), then byte by byte into the deepest frame. end_ + 1 is word-aligned.
    using word = std::uint64_t __attribute__((may_alias));
    const unsigned char* p = reinterpret_cast<const unsigned char*>(end_ + 1);
    constexpr std::uint64_t fill_word = 0x0101010101010101ull * fill_byte;
    for (; p + sizeof(word) <= top_; p += sizeof(word))
        if (*reinterpret_cast<const word*>(p) != fill_word)
            break;
    while (p < top_ && *p == fill_byte)
        ++p;
    return static_cast<std::size_t>(top_ - p);
}

stack_pool& stack_pool::local()
{
    static thread_local stack_pool pool;
    return pool;
}

std::unique_ptr<fiber_stack> stack_pool::get(std::size_t size, std::size_t slack)
{
    const std::size_t want = round_up(size < 256 ? 256 : size, 16);
    for (std::size_t i = free_.size(); i-- > 0;) {
        if (free_[i]->size() == want && free_[i]->slack() >= slack) {
            std::unique_ptr<fiber_stack> s = std::move(free_[i]);
            free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
            s->reset();
            return s;
        }
    }
    return std::make_unique<fiber_stack>(size, slack);
}

void stack_pool::put(std::unique_ptr<fiber_stack> s)
{
    if (free_.size() < 256)
        free_.push_back(std::move(s));
}

stack_pool::~stack_pool() = default;

// ---- the switch ----

#if defined(__x86_64__)
// klock_sim_switch(void** save_sp, void* new_sp): push the callee-saved registers and the SSE /
// x87 control words, save rsp, load the other context's rsp, pop its registers, return into it.
asm(R"(
    .text
    .p2align 4
    .globl klock_sim_switch
    .hidden klock_sim_switch
    .type klock_sim_switch,@function
klock_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size klock_sim_switch,.-klock_sim_switch

    .p2align 4
    .globl klock_sim_fiber_trampoline
    .hidden klock_sim_fiber_trampoline
    .type klock_sim_fiber_trampoline,@function
klock_sim_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size klock_sim_fiber_trampoline,.-klock_sim_fiber_trampoline
)");
#elif defined(__aarch64__)
// The same for AAPCS64: x19-x30, d8-d15 and FPCR.
asm(R"(
    .text
    .p2align 4
    .globl klock_sim_switch
    .hidden klock_sim_switch
    .type klock_sim_switch,%function
klock_sim_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldr x9, [sp, #160]
    msr fpcr, x9
    add sp, sp, #176
    ret
    .size klock_sim_switch,.-klock_sim_switch

    .p2align 4
    .globl klock_sim_fiber_trampoline
    .hidden klock_sim_fiber_trampoline
    .type klock_sim_fiber_trampoline,%function
klock_sim_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov x0, x20
    blr x19
    brk #0
    .cfi_endproc
    .size klock_sim_fiber_trampoline,.-klock_sim_fiber_trampoline
)");
#endif

#if defined(__x86_64__) || defined(__aarch64__)
extern "C" void klock_sim_switch(void** save_sp, void* new_sp);
extern "C" void klock_sim_fiber_trampoline();
#endif

namespace {

// The context being left by the switch in progress: the resumed side completes the sanitizers'
// bookkeeping with it (a host context learns its stack bounds this way).
thread_local fiber_context* switching_from = nullptr;

#if !(defined(__x86_64__) || defined(__aarch64__))
struct uc_start {
    fiber_entry entry;
    void* arg;
};
void ucontext_entry(unsigned hi, unsigned lo)
{
    auto* s = reinterpret_cast<uc_start*>((std::uintptr_t(hi) << 32) | std::uintptr_t(lo));
    s->entry(s->arg);
    std::abort();
}
ucontext_t* uc_of(fiber_context& c)
{
    if (c.ucontext == nullptr)
        c.ucontext = new ucontext_t();
    return static_cast<ucontext_t*>(c.ucontext);
}
#endif

} // namespace

fiber_context::~fiber_context()
{
#if KLOCK_SIM_TSAN
    if (tsan_owned && tsan_fiber != nullptr)
        __tsan_destroy_fiber(tsan_fiber);
#endif
#if !(defined(__x86_64__) || defined(__aarch64__))
    delete static_cast<ucontext_t*>(ucontext);
#endif
}

void make_fiber(fiber_context& ctx, fiber_stack& stack, fiber_entry entry, void* arg)
{
    ctx.stack_bottom = stack.lowest();
    ctx.stack_size = static_cast<std::size_t>(stack.top() - stack.lowest());
    ctx.fake_stack = nullptr;
#if KLOCK_SIM_TSAN
    if (ctx.tsan_owned && ctx.tsan_fiber != nullptr)
        __tsan_destroy_fiber(ctx.tsan_fiber);
    ctx.tsan_fiber = __tsan_create_fiber(0);
    ctx.tsan_owned = true;
#endif
#if defined(__x86_64__)
    // Popped by klock_sim_switch: control words, r15, r14, r13 (entry), r12 (arg), rbx, rbp, then
    // the return into the trampoline; 16 bytes of zeros above keep the first frame aligned.
    auto* sp = reinterpret_cast<std::uint64_t*>(stack.top() - 16 - 64);
    sp[0] = 0x037f00001f80ull;                      // mxcsr 0x1f80 (low half), x87 control word 0x037f (bytes 4-5)
    sp[1] = 0;                                      // r15
    sp[2] = 0;                                      // r14
    sp[3] = reinterpret_cast<std::uint64_t>(entry); // r13
    sp[4] = reinterpret_cast<std::uint64_t>(arg);   // r12
    sp[5] = 0;                                      // rbx
    sp[6] = 0;                                      // rbp
    sp[7] = reinterpret_cast<std::uint64_t>(&klock_sim_fiber_trampoline);
    sp[8] = 0;
    sp[9] = 0;
    ctx.sp = sp;
#elif defined(__aarch64__)
    auto* sp = reinterpret_cast<std::uint64_t*>(stack.top() - 176);
    std::memset(sp, 0, 176);
    sp[0] = reinterpret_cast<std::uint64_t>(entry);                        // x19
    sp[1] = reinterpret_cast<std::uint64_t>(arg);                          // x20
    sp[11] = reinterpret_cast<std::uint64_t>(&klock_sim_fiber_trampoline); // x30
    ctx.sp = sp;
#else
    ucontext_t* uc = uc_of(ctx);
    ::getcontext(uc);
    uc->uc_stack.ss_sp = stack.lowest();
    uc->uc_stack.ss_size = static_cast<std::size_t>(stack.top() - stack.lowest());
    uc->uc_link = nullptr;
    // The start record lives at the top of the fiber's own stack (below the first frame).
    auto* start = reinterpret_cast<uc_start*>(stack.top() - 64);
    start->entry = entry;
    start->arg = arg;
    uc->uc_stack.ss_size -= 64;
    const auto p = reinterpret_cast<std::uintptr_t>(start);
    ::makecontext(uc, reinterpret_cast<void (*)()>(&ucontext_entry), 2, unsigned(p >> 32), unsigned(p & 0xffffffffu));
#endif
}

namespace {

[[gnu::always_inline]] inline void finish_switch(fiber_context& me) noexcept
{
#if KLOCK_SIM_ASAN
    fiber_context* prev = switching_from;
    const void* bottom = nullptr;
    std::size_t size = 0;
    __sanitizer_finish_switch_fiber(me.fake_stack, &bottom, &size);
    if (prev != nullptr && prev->stack_bottom == nullptr) {
        prev->stack_bottom = bottom;
        prev->stack_size = size;
    }
#else
    (void)me;
#endif
    switching_from = nullptr;
}

} // namespace

void fiber_started() noexcept
{
#if KLOCK_SIM_ASAN
    fiber_context* prev = switching_from;
    const void* bottom = nullptr;
    std::size_t size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    if (prev != nullptr && prev->stack_bottom == nullptr) {
        prev->stack_bottom = bottom;
        prev->stack_size = size;
    }
#endif
    switching_from = nullptr;
}

bool stack_use_visible() noexcept
{
#if KLOCK_SIM_ASAN
    return __asan_get_current_fake_stack() == nullptr;
#else
    return true;
#endif
}

void switch_fiber(fiber_context& from, fiber_context& to, bool exiting) noexcept
{
    switching_from = &from;
#if KLOCK_SIM_TSAN
    if (from.tsan_fiber == nullptr)
        from.tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
#if KLOCK_SIM_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &from.fake_stack, to.stack_bottom, to.stack_size);
#else
    (void)exiting;
#endif
#if defined(__x86_64__) || defined(__aarch64__)
    klock_sim_switch(&from.sp, to.sp);
#else
    ::swapcontext(uc_of(from), uc_of(to));
#endif
    finish_switch(from);
}

} // namespace klock::sim
