// lockdep's usage states and irq-safety checks: inconsistent lock state, safe -> unsafe lock order
// on a new dependency, irq lock inversion on a new usage bit, locks held across irq enable, and the
// irq-state tracing hooks (klock::hardirq_enter/exit, softirq_enter/exit, lockdep::hardirqs_on/off).
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/preempt.hpp>
#include <klock/report.hpp>

#include <atomic>
#include <csignal>
#include <string>

namespace {

namespace ld = klock::lockdep;
using klock::lock_class_key;
using klock::lockdep_map;

lock_class_key key_a, key_b, key_c;
lockdep_map lock_a{"A", &key_a};
lockdep_map lock_b{"B", &key_b};
lockdep_map lock_c{"C", &key_c};

void acq(lockdep_map& m, int read = 0, int trylock = 0) { ld::lock_acquire(m, 0, trylock, read, 1, nullptr); }
void rel(lockdep_map& m) { ld::lock_release(m); }

// Interrupts off with the tracing hook, as the wired local_irq_disable() will do.
void irq_off()
{
    klock::local_irq_disable();
#if !KLOCK_LOCKDEP // wired (KLOCK_LOCKDEP): local_irq_disable() traces it itself
    ld::hardirqs_off();
#endif
}
void irq_on()
{
#if KLOCK_LOCKDEP // wired: local_irq_enable() traces a real transition itself; only a redundant
                  // one (irqs already on) must be passed on by hand
    if (!klock::irqs_disabled())
        ld::hardirqs_on();
#else
    ld::hardirqs_on();
#endif
    klock::local_irq_enable();
}

void in_hardirq(lockdep_map& m, int read = 0)
{
    klock::hardirq_enter();
    EXPECT_TRUE(klock::in_hardirq());
    EXPECT_TRUE(klock::irqs_disabled());
    acq(m, read);
    rel(m);
    klock::hardirq_exit();
    EXPECT_FALSE(klock::in_hardirq());
}

void in_softirq(lockdep_map& m)
{
    klock::softirq_enter();
    acq(m);
    rel(m);
    klock::softirq_exit();
}

// The usage string of a class in the /proc/lockdep dump ("... FD:  1 BD:  1 +.+.: name").
std::string usage_of(const std::string& dump, const std::string& name)
{
    const auto at = dump.find(": " + name + "\n");
    if (at == std::string::npos || at < 4)
        return "";
    return dump.substr(at - 4, 4);
}

class LockdepIrq : public ::testing::Test {
protected:
    void SetUp() override
    {
        ld::reset();
        ld::set_one_shot(false);
    }
    void TearDown() override { ld::reset(); }
    std::string only_report()
    {
        auto r = cap.reports();
        EXPECT_EQ(r.size(), 1u);
        return r.empty() ? std::string() : r.front();
    }
    klock::report_capture cap;
};

TEST_F(LockdepIrq, UsageCharacters)
{
    in_hardirq(lock_a); // '-' hardirq write
    acq(lock_b);        // '+' hardirq, '+' softirq
    rel(lock_b);
    in_softirq(lock_c); // softirq '-', and hardirq/softirq? irqs on, softirqs off inside a softirq
    const std::string dump = ld::proc_lockdep();
    EXPECT_EQ(usage_of(dump, "A"), "-...") << dump;
    EXPECT_EQ(usage_of(dump, "B"), "+.+.") << dump;
    EXPECT_EQ(usage_of(dump, "C"), "+.-.") << dump;
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(LockdepIrq, InconsistentStateInHardirqThenIrqsOn)
{
    in_hardirq(lock_a);
    EXPECT_EQ(cap.count(), 0u);
    acq(lock_a); // with interrupts enabled
    const std::string r = only_report();
    const std::string title = "WARNING: inconsistent lock state";
    EXPECT_EQ(r.rfind("\n" + std::string(title.size(), '=') + "\n" + title + "\n", 0), 0u) << r;
    EXPECT_NE(r.find("inconsistent {IN-HARDIRQ-W} -> {HARDIRQ-ON-W} usage.\n"), std::string::npos) << r;
    EXPECT_NE(r.find(" [HC0[0]:SC0[0]:HE1:SE1] takes:\n"), std::string::npos) << r;
    EXPECT_NE(r.find(" (A){?...}, at: "), std::string::npos) << r;
    EXPECT_NE(r.find("{IN-HARDIRQ-W} state was registered at:\n  "), std::string::npos) << r;
    EXPECT_NE(r.find("irq event stamp: "), std::string::npos);
    EXPECT_NE(r.find("hardirqs last  enabled at ("), std::string::npos);
    EXPECT_NE(r.find("hardirqs last disabled at ("), std::string::npos);
    EXPECT_NE(r.find("softirqs last  enabled at ("), std::string::npos);
    EXPECT_NE(r.find("softirqs last disabled at ("), std::string::npos);
    EXPECT_NE(r.find(" Possible unsafe locking scenario:\n\n       CPU0\n       ----\n  lock(A);\n  <Interrupt>\n"
                     "    lock(A);\n\n *** DEADLOCK ***\n\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("no locks held by "), std::string::npos);
    rel(lock_a);
}

TEST_F(LockdepIrq, InconsistentStateIrqsOnThenHardirq)
{
    acq(lock_a);
    rel(lock_a);
    klock::hardirq_enter();
    acq(lock_a);
    const std::string r = only_report();
    EXPECT_NE(r.find("inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage.\n"), std::string::npos) << r;
    EXPECT_NE(r.find(" [HC1[1]:SC0[0]:HE0:SE1] takes:\n"), std::string::npos) << r;
    rel(lock_a);
    klock::hardirq_exit();
}

TEST_F(LockdepIrq, InconsistentStateInSoftirq)
{
    in_softirq(lock_a);
    acq(lock_a);
    const std::string r = only_report();
    EXPECT_NE(r.find("inconsistent {IN-SOFTIRQ-W} -> {SOFTIRQ-ON-W} usage.\n"), std::string::npos) << r;
    rel(lock_a);
}

TEST_F(LockdepIrq, LockTakenWithIrqsOffIsSafe)
{
    in_hardirq(lock_a);
    irq_off();
    acq(lock_a);
    rel(lock_a);
    irq_on();
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

TEST_F(LockdepIrq, HeldAcrossIrqEnableBecomesUnsafe)
{
    in_hardirq(lock_a); // A is hardirq-safe
    irq_off();
    acq(lock_a);
    EXPECT_EQ(cap.count(), 0u);
    irq_on(); // A is now held with interrupts enabled
    const std::string r = only_report();
    EXPECT_NE(r.find("inconsistent {IN-HARDIRQ-W} -> {HARDIRQ-ON-W} usage.\n"), std::string::npos) << r;
    rel(lock_a);
}

TEST_F(LockdepIrq, SafeToUnsafeLockOrderOnANewDependency)
{
    in_hardirq(lock_a); // hardirq-safe
    acq(lock_b);        // hardirq-unsafe
    rel(lock_b);
    irq_off();
    acq(lock_a);
    acq(lock_b); // A -> B would let an interrupt on B's holder wait for A
    const std::string r = only_report();
    const std::string title = "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected";
    EXPECT_NE(r.find("\n" + title + "\n"), std::string::npos) << r;
    EXPECT_NE(r.find(" [HC0[0]:SC0[0]:HE0:SE1] is trying to acquire:\n"), std::string::npos) << r;
    EXPECT_NE(r.find("\nand this task is already holding:\n"), std::string::npos);
    EXPECT_NE(r.find("which would create a new lock dependency:\n (A){-...} -> (B){+.+.}\n"), std::string::npos) << r;
    EXPECT_NE(r.find("\nbut this new dependency connects a HARDIRQ-irq-safe lock:\n (A){-...}\n"
                     "... which became HARDIRQ-irq-safe at:\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("\nto a HARDIRQ-irq-unsafe lock:\n (B){+.+.}\n... which became HARDIRQ-irq-unsafe at:\n...\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find(" Possible interrupt unsafe locking scenario:\n\n"
                     "       CPU0                    CPU1\n"
                     "       ----                    ----\n"
                     "  lock(B);\n"
                     "                               local_irq_disable();\n"
                     "                               lock(A);\n"
                     "                               lock(B);\n"
                     "  <Interrupt>\n"
                     "    lock(A);\n"
                     "\n *** DEADLOCK ***\n\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("\nthe dependencies between HARDIRQ-irq-safe lock and the holding lock:\n-> (A){-...} {\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find("   IN-HARDIRQ-W at:\n"), std::string::npos);
    EXPECT_NE(r.find(" ... key      at: [<"), std::string::npos);
    EXPECT_NE(r.find("\nthe dependencies between the lock to be acquired\n and HARDIRQ-irq-unsafe lock:\n"),
        std::string::npos);
    rel(lock_b);
    rel(lock_a);
    irq_on();
}

TEST_F(LockdepIrq, IrqLockInversionWhenALockBecomesSafe)
{
    acq(lock_b); // B: hardirq-unsafe
    rel(lock_b);
    irq_off();
    acq(lock_a); // A -> B, both with irqs off: nothing wrong yet
    acq(lock_b);
    rel(lock_b);
    rel(lock_a);
    irq_on();
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    in_hardirq(lock_a); // now A is taken in an interrupt, and A leads to the unsafe B
    const std::string r = only_report();
    const std::string title = "WARNING: possible irq lock inversion dependency detected";
    EXPECT_EQ(r.rfind("\n" + std::string(title.size(), '=') + "\n" + title + "\n", 0), 0u) << r;
    EXPECT_NE(r.find(" just changed the state of lock:\n"), std::string::npos);
    EXPECT_NE(r.find("but this lock took another, HARDIRQ-unsafe lock in the past:\n (B){+.+.}\n\n"
                     "and interrupts could create inverse lock ordering between them.\n\n"),
        std::string::npos)
        << r;
    EXPECT_NE(r.find(" Possible interrupt unsafe locking scenario:"), std::string::npos);
    EXPECT_NE(r.find("\nthe shortest dependencies between 2nd lock and 1st lock:\n"), std::string::npos);
    EXPECT_NE(r.find(" ... acquired at:\n"), std::string::npos);
}

TEST_F(LockdepIrq, IrqLockInversionWhenALockBecomesUnsafe)
{
    in_hardirq(lock_a); // A: hardirq-safe
    irq_off();
    acq(lock_a);
    acq(lock_b); // A -> B with irqs off
    rel(lock_b);
    rel(lock_a);
    irq_on();
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
    acq(lock_b); // B with irqs on: the safe A leads to an unsafe B
    const std::string r = only_report();
    EXPECT_NE(
        r.find("but this lock was taken by another, HARDIRQ-safe lock in the past:\n (A){-...}\n"), std::string::npos)
        << r;
    rel(lock_b);
}

TEST_F(LockdepIrq, ReadUsageInIrqAndWriteWithIrqsOnConflict)
{
    in_hardirq(lock_a, ld::READ_RECURSIVE); // IN-HARDIRQ-R
    acq(lock_a);                            // HARDIRQ-ON-W: a writer with irqs on vs a reader in irq
    const std::string r = only_report();
    EXPECT_NE(r.find("inconsistent {IN-HARDIRQ-R} -> {HARDIRQ-ON-W} usage.\n"), std::string::npos) << r;
    rel(lock_a);
}

TEST_F(LockdepIrq, ReadersInIrqAndReadersWithIrqsOnAreFine)
{
    // A reader in an interrupt and a recursive reader with irqs on cannot deadlock each other.
    in_hardirq(lock_a, ld::READ_RECURSIVE);
    acq(lock_a, ld::READ_RECURSIVE);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

TEST_F(LockdepIrq, TrylockInIrqDoesNotMakeTheClassSafe)
{
    klock::hardirq_enter();
    acq(lock_a, 0, /*trylock=*/1);
    rel(lock_a);
    klock::hardirq_exit();
    acq(lock_a);
    rel(lock_a);
    EXPECT_EQ(cap.count(), 0u) << cap.reports()[0];
}

TEST_F(LockdepIrq, HardirqNestingRestoresIrqState)
{
    EXPECT_FALSE(klock::irqs_disabled());
    klock::hardirq_enter();
    klock::hardirq_enter();
    EXPECT_EQ(klock::preempt_count() & klock::HARDIRQ_MASK, 2 * klock::HARDIRQ_OFFSET);
    klock::hardirq_exit();
    EXPECT_TRUE(klock::irqs_disabled());
    klock::hardirq_exit();
    EXPECT_FALSE(klock::irqs_disabled());
    EXPECT_EQ(klock::preempt_count(), 0u);
}

TEST_F(LockdepIrq, ChainKeyRestartsInIrqContext)
{
    // A lock taken inside an interrupt while another is held in task context adds no dependency
    // (the interrupt's chain starts afresh).
    acq(lock_a);
    klock::hardirq_enter();
    acq(lock_b);
    rel(lock_b);
    klock::hardirq_exit();
    rel(lock_a);
    const std::string dump = ld::proc_lockdep();
    EXPECT_EQ(dump.find(" -> ["), std::string::npos) << dump;
    const std::string chains = ld::proc_lockdep_chains();
    EXPECT_NE(chains.find("irq_context: 2\n"), std::string::npos) << chains;
}

// A real signal handler as the hardirq: klock::hardirq_enter()/exit() around the handler's body.
std::atomic<bool> handler_saw_hardirq{false};

void irq_handler(int)
{
    klock::hardirq_enter();
    handler_saw_hardirq = klock::in_hardirq() && klock::irqs_disabled();
    acq(lock_c);
    rel(lock_c);
    klock::hardirq_exit();
}

TEST_F(LockdepIrq, SignalHandlerAsHardirq)
{
    struct sigaction sa { };
    struct sigaction old { };
    sa.sa_handler = irq_handler;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    ASSERT_EQ(raise(SIGUSR1), 0); // the "interrupt" takes C: C is hardirq-safe
    sigaction(SIGUSR1, &old, nullptr);
    EXPECT_TRUE(handler_saw_hardirq.load());
    EXPECT_FALSE(klock::in_hardirq());
    EXPECT_FALSE(klock::irqs_disabled());
    EXPECT_EQ(cap.count(), 0u);
    acq(lock_c); // with interrupts enabled (the report is built here, not in the handler)
    const std::string r = only_report();
    EXPECT_NE(r.find("inconsistent {IN-HARDIRQ-W} -> {HARDIRQ-ON-W} usage.\n"), std::string::npos) << r;
    EXPECT_NE(r.find(" [HC0[0]:SC0[0]:HE1:SE1] takes:\n"), std::string::npos) << r;
    rel(lock_c);
}

TEST_F(LockdepIrq, EventStampsCountTransitions)
{
    const std::string before = ld::proc_lockdep_stats();
    irq_off();
    irq_on();
    irq_on(); // redundant
    const std::string stats = ld::proc_lockdep_stats();
    auto value = [&stats](const char* label) {
        const auto at = stats.find(std::string(" ") + label);
        return at == std::string::npos ? -1L : std::stol(stats.substr(at + 32, 11));
    };
    EXPECT_EQ(value("hardirq on events:"), 1) << stats;
    EXPECT_EQ(value("hardirq off events:"), 1);
    EXPECT_EQ(value("redundant hardirq ons:"), 1);
    klock::softirq_enter();
    klock::softirq_exit();
    const std::string stats2 = ld::proc_lockdep_stats();
    const auto at = stats2.find(" softirq on events:");
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(std::stol(stats2.substr(at + 32, 11)), 1);
}

} // namespace
