// `klock selftest`: the irq-context rows of the kernel's matrix (lib/locking-selftest.c) -
// irq-safe locks taken with irqs on, irq-safe -> irq-unsafe orders, irq lock inversion and irq
// read recursion, each over every order of its events and over hardirq and softirq.
//
// Interrupt context is faked in the test's own thread, as the kernel's self-tests fake it:
// klock::hardirq_enter()/hardirq_exit() (interrupts off + HARDIRQ_OFFSET) and, for softirqs,
// local_bh_disable + local_irq_disable + softirq_enter (SOFTIRQ_OFFSET). lockdep reads the
// context from the thread's preempt_count and irq flag, so it cannot tell the difference. Only
// spinning locks appear here, as in the kernel: sleeping locks have no place in interrupt context.
#include "selftest_harness.hpp"

#if KLOCK_LOCKDEP

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace klock::tool::selftest {

namespace {

constexpr bool FAILURE = true;
constexpr bool SUCCESS = false;

// ---- irqsafe1: locking an irq-safe lock with irqs enabled ----
void irqsafe1_E1(world& w)
{
    w.IRQ_ENTER();
    w.LOCK(A);
    w.UNLOCK(A);
    w.IRQ_EXIT();
}
void irqsafe1_E2(world& w)
{
    w.LOCK(A);
    w.UNLOCK(A);
}

// ---- irqsafe2A: enabling hardirqs with a softirq-safe lock held ----
void irqsafe2A_E1(world& w)
{
    w.SOFTIRQ_ENTER();
    w.LOCK(A);
    w.UNLOCK(A);
    w.SOFTIRQ_EXIT();
}
void irqsafe2A_E2(world& w)
{
    w.HARDIRQ_DISABLE();
    w.LOCK(A);
    w.HARDIRQ_ENABLE();
    w.UNLOCK(A);
}

// ---- irqsafe2B: enabling irqs with an irq-safe lock held ----
void irqsafe2B_E1(world& w)
{
    w.IRQ_ENTER();
    w.LOCK(A);
    w.UNLOCK(A);
    w.IRQ_EXIT();
}
void irqsafe2B_E2(world& w)
{
    w.IRQ_DISABLE();
    w.LOCK(A);
    w.IRQ_ENABLE();
    w.UNLOCK(A);
}

// ---- irqsafe3: acquiring an irq-unsafe lock while holding an irq-safe lock ----
void irqsafe3_E1(world& w)
{
    w.LOCK(A);
    w.LOCK(B);
    w.UNLOCK(B);
    w.UNLOCK(A);
}
void irqsafe3_E2(world& w)
{
    w.LOCK(B);
    w.UNLOCK(B);
}
void irqsafe3_E3(world& w)
{
    w.IRQ_ENTER();
    w.LOCK(A);
    w.UNLOCK(A);
    w.IRQ_EXIT();
}

// ---- irqsafe4: a lock turns irq-safe after it took an irq-unsafe lock ----
void irqsafe4_E1(world& w)
{
    w.IRQ_DISABLE();
    w.LOCK(A);
    w.LOCK(B);
    w.UNLOCK(B);
    w.UNLOCK(A);
    w.IRQ_ENABLE();
}
void irqsafe4_E2(world& w)
{
    w.LOCK(B);
    w.UNLOCK(B);
}
void irqsafe4_E3(world& w)
{
    w.IRQ_ENTER();
    w.LOCK(A);
    w.UNLOCK(A);
    w.IRQ_EXIT();
}

// ---- irq_inversion: CPU1 write-holds A and wants B; CPU2 holds B and its interrupt read-locks A ----
void irq_inversion_E1(world& w)
{
    w.IRQ_DISABLE();
    w.WL(A);
    w.LOCK(B);
    w.UNLOCK(B);
    w.WU(A);
    w.IRQ_ENABLE();
}
void irq_inversion_E2(world& w)
{
    w.LOCK(B);
    w.UNLOCK(B);
}
void irq_inversion_E3(world& w)
{
    w.IRQ_ENTER();
    w.RL(A);
    w.RU(A);
    w.IRQ_EXIT();
}

// ---- irq_read_recursion: read-lock / write-lock recursion that is actually safe ----
void irq_read_recursion_E1(world& w)
{
    w.IRQ_DISABLE();
    w.WL(A);
    w.WU(A);
    w.IRQ_ENABLE();
}
void irq_read_recursion_E2(world& w)
{
    w.RL(A);
    w.RU(A);
}
void irq_read_recursion_E3(world& w)
{
    w.IRQ_ENTER();
    w.LOCK(A);
    w.L(B);
    w.U(B);
    w.UNLOCK(A);
    w.IRQ_EXIT();
}

// ---- irq_read_recursion2: read-lock / write-lock recursion that is unsafe ----
void irq_read_recursion2_E1(world& w)
{
    w.IRQ_DISABLE();
    w.L(B);
    w.LOCK(A);
    w.UNLOCK(A);
    w.U(B);
    w.IRQ_ENABLE();
}
void irq_read_recursion2_E2(world& w)
{
    w.RL(A);
    w.RU(A);
}
void irq_read_recursion2_E3(world& w)
{
    w.IRQ_ENTER();
    w.L(B);
    w.U(B);
    w.IRQ_EXIT();
}

// ---- irq_read_recursion3: A is ENABLED_*_READ, B is USED_IN_*_READ:
//   read_lock(A); <irq> read_lock(B);  vs  write_lock(B); write_lock(A)  (a read_lock(A) would be fine)
void irq_read_recursion3_E1(world& w)
{
    w.IRQ_DISABLE();
    w.WL(B);
    w.LOCK(A);
    w.UNLOCK(A);
    w.WU(B);
    w.IRQ_ENABLE();
}
void irq_read_recursion3_E2(world& w)
{
    w.RL(A);
    w.RU(A);
}
void irq_read_recursion3_E3(world& w)
{
    w.IRQ_ENTER();
    w.RL(B);
    w.RU(B);
    w.IRQ_EXIT();
}

std::string irq_prefix(irq_kind irq) { return irq == irq_kind::hard ? "hard" : "soft"; }

// DO_TESTCASE_3 / 3RW: spin and wlock must report, rlock (read recursion) must not.
std::vector<cell> three(const std::string& name, const std::string& nr, const case_fn& fn, irq_kind irq)
{
    return {test(name + "_spin_" + nr, fn, kind::spin, FAILURE, irq),
        test(name + "_wlock_" + nr, fn, kind::wlock, FAILURE, irq),
        test(name + "_rlock_" + nr, fn, kind::rlock, SUCCESS, irq)};
}

// DO_TESTCASE_2x6 / 6x6 / 6x6RW: for every order, a hardirq row and a softirq row.
void irq_rows(runner& r, const char* desc, const char* name, const std::vector<event>& e)
{
    const auto& orders = e.size() == 2 ? std::vector<const char*>(std::begin(perms2), std::end(perms2))
                                       : std::vector<const char*>(std::begin(perms3), std::end(perms3));
    for (const char* nr : orders)
        for (irq_kind irq : {irq_kind::hard, irq_kind::soft}) {
            const std::string p = irq_prefix(irq);
            r.row(p + "-" + desc + "/" + nr, three(std::string(name) + "_" + p, nr, in_order(e, nr), irq));
        }
}

// DO_TESTCASE_6x2x2RW: no spin column; wlock must report, rlock must not.
void read_recursion_rows(runner& r, const char* desc, const char* name, const std::vector<event>& e)
{
    for (const char* nr : perms3)
        for (irq_kind irq : {irq_kind::hard, irq_kind::soft}) {
            const std::string p = irq_prefix(irq);
            const std::string base = std::string(name) + "_" + p;
            const case_fn fn = in_order(e, nr);
            r.row(p + "-" + desc + "/" + nr,
                {spacer(SKIP1), test(base + "_wlock_" + nr, fn, kind::wlock, FAILURE, irq),
                    test(base + "_rlock_" + nr, fn, kind::rlock, SUCCESS, irq)});
        }
}

} // namespace

void irq_tests(runner& r)
{
    r.section("  --------------------------------------------------------------------------\n");
    irq_rows(r, "irqs-on + irq-safe-A", "irqsafe1", {irqsafe1_E1, irqsafe1_E2});
    // DO_TESTCASE_2x3: softirq-safe, then hardirqs enabled: no hard/soft variants.
    for (const char* nr : perms2)
        r.row(std::string("sirq-safe-A => hirqs-on/") + nr,
            three("irqsafe2A", nr, in_order({irqsafe2A_E1, irqsafe2A_E2}, nr), irq_kind::none));
    irq_rows(r, "safe-A + irqs-on", "irqsafe2B", {irqsafe2B_E1, irqsafe2B_E2});
    irq_rows(r, "safe-A + unsafe-B #1", "irqsafe3", {irqsafe3_E1, irqsafe3_E2, irqsafe3_E3});
    irq_rows(r, "safe-A + unsafe-B #2", "irqsafe4", {irqsafe4_E1, irqsafe4_E2, irqsafe4_E3});
    irq_rows(r, "irq lock-inversion", "irq_inversion", {irq_inversion_E1, irq_inversion_E2, irq_inversion_E3});
    read_recursion_rows(r, "irq read-recursion", "irq_read_recursion",
        {irq_read_recursion_E1, irq_read_recursion_E2, irq_read_recursion_E3});
    read_recursion_rows(r, "irq read-recursion #2", "irq_read_recursion2",
        {irq_read_recursion2_E1, irq_read_recursion2_E2, irq_read_recursion2_E3});
    read_recursion_rows(r, "irq read-recursion #3", "irq_read_recursion3",
        {irq_read_recursion3_E1, irq_read_recursion3_E2, irq_read_recursion3_E3});
}

} // namespace klock::tool::selftest

#endif // KLOCK_LOCKDEP
