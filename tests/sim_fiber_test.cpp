// The simulator's fibers: context switches, stacks with STACK_END_MAGIC, the stack pool.
#include <gtest/gtest.h>

#include <klock/sim/fiber.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using klock::sim::fiber_context;
using klock::sim::fiber_stack;

struct ping {
    fiber_context host;
    fiber_context f;
    std::vector<int> log;
    int rounds = 0;
    bool done = false;
};

void ping_entry(void* arg)
{
    klock::sim::fiber_started();
    auto* p = static_cast<ping*>(arg);
    for (int i = 0; i < p->rounds; ++i) {
        p->log.push_back(i);
        klock::sim::switch_fiber(p->f, p->host);
    }
    p->done = true;
    klock::sim::switch_fiber(p->f, p->host, true);
    std::abort(); // never resumed
}

TEST(SimFiber, SwitchesBackAndForthKeepingState)
{
    fiber_stack stack(16 * 1024, 4096);
    ping p;
    p.rounds = 5;
    klock::sim::make_fiber(p.f, stack, &ping_entry, &p);
    for (int i = 0; i < 5; ++i) {
        klock::sim::switch_fiber(p.host, p.f);
        ASSERT_EQ(p.log.size(), static_cast<std::size_t>(i + 1));
        EXPECT_EQ(p.log.back(), i);
    }
    EXPECT_FALSE(p.done);
    klock::sim::switch_fiber(p.host, p.f);
    EXPECT_TRUE(p.done);
    EXPECT_TRUE(stack.magic_intact());
}

// Callee-saved registers survive a switch: a computation with many live values across the
// switch comes out right.
struct regs {
    fiber_context host;
    fiber_context f;
    double result = 0;
};

[[gnu::noinline]] double heavy(double a, double b, fiber_context& me, fiber_context& back)
{
    double x1 = a * 1.5, x2 = b * 2.5, x3 = a + b, x4 = a - b, x5 = a * b, x6 = a / (b + 1), x7 = x1 + x2, x8 = x3 * x4;
    klock::sim::switch_fiber(me, back);
    return x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8;
}

void regs_entry(void* arg)
{
    klock::sim::fiber_started();
    auto* r = static_cast<regs*>(arg);
    r->result = heavy(3.0, 4.0, r->f, r->host);
    klock::sim::switch_fiber(r->f, r->host, true);
}

TEST(SimFiber, CalleeSavedStateSurvives)
{
    fiber_stack stack(16 * 1024, 4096);
    regs r;
    klock::sim::make_fiber(r.f, stack, &regs_entry, &r);
    klock::sim::switch_fiber(r.host, r.f);
    // Clobber everything the host can between the two halves.
    volatile double junk = 0;
    for (int i = 0; i < 100; ++i)
        junk = junk + i * 0.5;
    klock::sim::switch_fiber(r.host, r.f);
    const double a = 3.0, b = 4.0;
    const double x1 = a * 1.5, x2 = b * 2.5, x3 = a + b, x4 = a - b, x5 = a * b, x6 = a / (b + 1), x7 = x1 + x2,
                 x8 = x3 * x4;
    EXPECT_DOUBLE_EQ(r.result, x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8);
}

TEST(SimFiber, StackLayoutPutsTheMagicAtTheFarEnd)
{
    fiber_stack s(16 * 1024, 8192);
    EXPECT_EQ(*s.end_of_stack(), klock::sim::STACK_END_MAGIC);
    EXPECT_EQ(klock::sim::STACK_END_MAGIC, 0x57AC6E9Dul);
    EXPECT_EQ(s.size(), 16u * 1024);
    // The usable stack is exactly the bytes between the magic word and the top.
    EXPECT_EQ(s.top() - reinterpret_cast<unsigned char*>(s.end_of_stack() + 1), 16 * 1024);
    EXPECT_GE(s.slack(), 8192u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s.top()) % 16, 0u);
    EXPECT_TRUE(s.contains(s.lowest()));
    EXPECT_FALSE(s.contains(s.top()));
}

struct deep {
    fiber_context host;
    fiber_context f;
    fiber_stack* stack;
    std::size_t bytes;
};

[[gnu::noinline]] void use_stack(std::size_t bytes)
{
    auto* p = static_cast<unsigned char*>(__builtin_alloca(bytes));
    std::memset(p, 0x42, bytes);
    asm volatile("" : : "r"(p) : "memory");
}

void deep_entry(void* arg)
{
    klock::sim::fiber_started();
    auto* d = static_cast<deep*>(arg);
    use_stack(d->bytes);
    klock::sim::switch_fiber(d->f, d->host, true);
}

TEST(SimFiber, AnOverflowPastTheEndOverwritesTheMagic)
{
    fiber_stack s(16 * 1024, 16 * 1024);
    deep d{{}, {}, &s, 20 * 1024};
    klock::sim::make_fiber(d.f, s, &deep_entry, &d);
    klock::sim::switch_fiber(d.host, d.f);
    EXPECT_FALSE(s.magic_intact());
    EXPECT_GE(s.high_water(), 16u * 1024);
    // reset() restores it for the next user.
    s.reset();
    EXPECT_TRUE(s.magic_intact());
    EXPECT_EQ(s.high_water(), 0u);
}

TEST(SimFiber, UseWithinTheStackLeavesTheMagicAlone)
{
    fiber_stack s(64 * 1024, 4096);
    deep d{{}, {}, &s, 8 * 1024};
    klock::sim::make_fiber(d.f, s, &deep_entry, &d);
    klock::sim::switch_fiber(d.host, d.f);
    EXPECT_TRUE(s.magic_intact());
    EXPECT_GE(s.high_water(), 8u * 1024);
    EXPECT_LT(s.high_water(), 32u * 1024);
}

TEST(SimFiber, PoolReusesStacks)
{
    auto& pool = klock::sim::stack_pool::local();
    auto a = pool.get(16 * 1024, 4096);
    unsigned char* top = a->top();
    *a->end_of_stack() = 0; // a previous user overflowed
    pool.put(std::move(a));
    auto b = pool.get(16 * 1024, 4096);
    EXPECT_EQ(b->top(), top);
    EXPECT_TRUE(b->magic_intact());
    pool.put(std::move(b));
}

// The context switch is what bounds the simulator's speed: well under a microsecond.
TEST(SimFiber, SwitchIsFast)
{
    fiber_stack stack(16 * 1024, 4096);
    ping p;
    p.rounds = 200000;
    klock::sim::make_fiber(p.f, stack, &ping_entry, &p);
    p.log.reserve(200000);
    const auto t0 = std::chrono::steady_clock::now();
    while (!p.done)
        klock::sim::switch_fiber(p.host, p.f);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    const double per_switch = ns / (2.0 * 200001);
    std::printf("fiber switch: %.1f ns\n", per_switch);
    EXPECT_LT(per_switch, 2000.0);
}

} // namespace
