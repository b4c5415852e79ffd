// `klock selftest`: the lock-type rows of the kernel's matrix (lib/locking-selftest.c) - the
// dependency cycles A-A .. A-B-C-D-B-C-D-A over every lock type (rt_mutex included), double
// unlock, "initialize held", the recursive-read rules, the queued read lock tests and the
// hardirq-unsafe/softirq-safe chain. The irq rows are in selftest_irq.cpp, ww_mutex in
// selftest_ww.cpp.
//
// Each case is a plain sequence of lock operations in one thread: lockdep proves a deadlock from
// the order of acquisitions alone, so nothing here ever blocks (X1 and X2 are two locks of one
// class, not one lock taken twice).
#include "selftest_harness.hpp"

#if KLOCK_LOCKDEP

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace klock::tool::selftest {

namespace {

constexpr bool FAILURE = true; // lockdep (or the lock) must report
constexpr bool SUCCESS = false;

constexpr kind all_kinds[] = {kind::spin, kind::wlock, kind::rlock, kind::mutex, kind::wsem, kind::rsem, kind::rtmutex};

// DO_TESTCASE_6R (rlock_ok: read locks may recurse, so the rlock column must stay silent) and
// DO_TESTCASE_6 (every column must report).
std::vector<cell> all_columns(const std::string& base, void (*fn)(world&), bool rlock_ok)
{
    std::vector<cell> cells;
    for (kind k : all_kinds)
        cells.push_back(test(base + "_" + kind_name(k), fn, k, !(rlock_ok && k == kind::rlock)));
    return cells;
}

// ---- the dependency cycles ----

void AA(world& w)
{
    w.LOCK(X1);
    w.LOCK(X2); // this one should fail
}

void ABBA(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(B, A); // fail
}

void ABBCCA(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(B, C);
    w.LOCK_UNLOCK_2(C, A); // fail
}

void ABCABC(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(C, A);
    w.LOCK_UNLOCK_2(B, C); // fail
}

void ABBCCDDA(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(B, C);
    w.LOCK_UNLOCK_2(C, D);
    w.LOCK_UNLOCK_2(D, A); // fail
}

void ABCDBDDA(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(C, D);
    w.LOCK_UNLOCK_2(B, D);
    w.LOCK_UNLOCK_2(D, A); // fail
}

void ABCDBCDA(world& w)
{
    w.LOCK_UNLOCK_2(A, B);
    w.LOCK_UNLOCK_2(C, D);
    w.LOCK_UNLOCK_2(B, C);
    w.LOCK_UNLOCK_2(D, A); // fail
}

void double_unlock(world& w)
{
    w.LOCK(A);
    w.UNLOCK(A);
    w.UNLOCK(A); // fail
}

void init_held(world& w)
{
    w.LOCK(A);
    w.INIT(A); // fail
}

// ---- recursive read-locking: the read side may nest (rlock), rw_semaphore readers may not ----

void rlock_AA1(world& w)
{
    w.RL(X1);
    w.RL(X1); // this one should NOT fail
}

void rlock_AA1B(world& w)
{
    w.RL(X1);
    w.RL(X2); // this one should NOT fail
}

void rsem_AA1(world& w)
{
    w.RSL(X1);
    w.RSL(X1); // this one should fail
}

void rsem_AA1B(world& w)
{
    w.RSL(X1);
    w.RSL(X2); // this one should fail
}

// Mixing read and write holds of one class is never allowed.
void rlock_AA2(world& w)
{
    w.RL(X1);
    w.WL(X2); // this one should fail
}

void rsem_AA2(world& w)
{
    w.RSL(X1);
    w.WSL(X2); // this one should fail
}

void rlock_AA3(world& w)
{
    w.WL(X1);
    w.RL(X2); // this one should fail
}

void rsem_AA3(world& w)
{
    w.WSL(X1);
    w.RSL(X2); // this one should fail
}

// read_lock(A); spin_lock(B)  vs  spin_lock(B); write_lock(A)
void rlock_ABBA1(world& w)
{
    w.RL(X1);
    w.L(Y1);
    w.U(Y1);
    w.RU(X1);

    w.L(Y1);
    w.WL(X1);
    w.WU(X1);
    w.U(Y1); // should fail
}

void rwsem_ABBA1(world& w)
{
    w.RSL(X1);
    w.ML(Y1);
    w.MU(Y1);
    w.RSU(X1);

    w.ML(Y1);
    w.WSL(X1);
    w.WSU(X1);
    w.MU(Y1); // should fail
}

// As rlock_ABBA1, with the harmless B -> read(A) order seen first: the chain cache must tell a
// read acquisition from a write one, or the B -> write(A) chain would hit the cached B -> A.
void rlock_chaincache_ABBA1(world& w)
{
    w.RL(X1);
    w.L(Y1);
    w.U(Y1);
    w.RU(X1);

    w.L(Y1);
    w.RL(X1);
    w.RU(X1);
    w.U(Y1);

    w.L(Y1);
    w.WL(X1);
    w.WU(X1);
    w.U(Y1); // should fail
}

// read_lock(A); spin_lock(B)  vs  spin_lock(B); read_lock(A): recursive readers do not deadlock.
void rlock_ABBA2(world& w)
{
    w.RL(X1);
    w.L(Y1);
    w.U(Y1);
    w.RU(X1);

    w.L(Y1);
    w.RL(X1);
    w.RU(X1);
    w.U(Y1); // should NOT fail
}

void rwsem_ABBA2(world& w)
{
    w.RSL(X1);
    w.ML(Y1);
    w.MU(Y1);
    w.RSU(X1);

    w.ML(Y1);
    w.RSL(X1);
    w.RSU(X1);
    w.MU(Y1); // should fail
}

void rlock_ABBA3(world& w)
{
    w.WL(X1);
    w.L(Y1);
    w.U(Y1);
    w.WU(X1);

    w.L(Y1);
    w.WL(X1);
    w.WU(X1);
    w.U(Y1); // should fail
}

void rwsem_ABBA3(world& w)
{
    w.WSL(X1);
    w.ML(Y1);
    w.MU(Y1);
    w.WSU(X1);

    w.ML(Y1);
    w.WSL(X1);
    w.WSU(X1);
    w.MU(Y1); // should fail
}

// ---- three-class cycles through recursive readers: a cycle counts only along a strong path ----

// write-read / write-read / write-read: a deadlock even if read is recursive
void W1R2_E1(world& w)
{
    w.WL(X1);
    w.RL(Y1);
    w.RU(Y1);
    w.WU(X1);
}
void W1R2_E2(world& w)
{
    w.WL(Y1);
    w.RL(Z1);
    w.RU(Z1);
    w.WU(Y1);
}
void W3R1_E3(world& w)
{
    w.WL(Z1);
    w.RL(X1);
    w.RU(X1);
    w.WU(Z1);
}
// write-write / read-read / write-read: a deadlock even if read is recursive
void W1W2_E1(world& w)
{
    w.WL(X1);
    w.WL(Y1);
    w.WU(Y1);
    w.WU(X1);
}
void R2R3_E2(world& w)
{
    w.RL(Y1);
    w.RL(Z1);
    w.RU(Z1);
    w.RU(Y1);
}
// write-write / read-read / read-write: not a deadlock when read is recursive
void R3W1_E3(world& w)
{
    w.RL(Z1);
    w.WL(X1);
    w.WU(X1);
    w.RU(Z1);
}
// write-read / read-read / write-write: not a deadlock when read is recursive
void W3W1_E3(world& w)
{
    w.WL(Z1);
    w.WL(X1);
    w.WU(X1);
    w.WU(Z1);
}

// DO_TESTCASE_6x1RR / 6x1RRB: only the rlock column, every order of the three events.
void rlock_rows(runner& r, const char* desc, const char* name, std::vector<event> e, bool expect_failure)
{
    for (const char* nr : perms3)
        r.row(std::string(desc) + "/" + nr,
            {spacer(SKIP2), test(std::string(name) + "_" + nr, in_order(e, nr), kind::rlock, expect_failure)});
}

// ---- queued read locks (force_read_lock_recursive = 0: readers recursive only in irq) ----

// <in hardirq> read_lock(A); lock(B)  vs  <hardirqs off> lock(B); read_lock(A): a deadlock.
void queued_read_lock_hardirq_RE_Er(world& w)
{
    w.use_queued_read_semantics();
    w.HARDIRQ_ENTER();
    w.RL(A);
    w.WL(B);
    w.WU(B);
    w.RU(A);
    w.HARDIRQ_EXIT();

    w.HARDIRQ_DISABLE();
    w.WL(B);
    w.RL(A);
    w.RU(A);
    w.WU(B);
    w.HARDIRQ_ENABLE();
}

// <in hardirq> lock(B); read_lock(A)  vs  <hardirqs off> read_lock(A); lock(B): not a deadlock.
void queued_read_lock_hardirq_ER_rE(world& w)
{
    w.use_queued_read_semantics();
    w.HARDIRQ_ENTER();
    w.WL(B);
    w.RL(A);
    w.RU(A);
    w.WU(B);
    w.HARDIRQ_EXIT();

    w.HARDIRQ_DISABLE();
    w.RL(A);
    w.WL(B);
    w.WU(B);
    w.RU(A);
    w.HARDIRQ_ENABLE();
}

// <hardirqs off> lock(B); read_lock(A)  vs  <in hardirq> lock(B), with read_lock(A) taken with
// irqs on: both read_lock()s are non-recursive in task context, so this is a deadlock.
void queued_read_lock_hardirq_inversion(world& w)
{
    w.use_queued_read_semantics();
    w.HARDIRQ_ENTER();
    w.WL(B);
    w.WU(B);
    w.HARDIRQ_EXIT();

    w.HARDIRQ_DISABLE();
    w.WL(B);
    w.RL(A);
    w.RU(A);
    w.WU(B);
    w.HARDIRQ_ENABLE();

    w.RL(A);
    w.RU(A);
}

// ---- hardirq-safe -> hardirq-unsafe through a chain that is only softirq-unsafe -> softirq-safe ----

void hardirq_deadlock_softirq_not_deadlock(world& w)
{
    // mutex_A is hardirq-unsafe and softirq-unsafe; mutex_A -> lock_C
    w.ML(A);
    w.HARDIRQ_DISABLE();
    w.L(C);
    w.U(C);
    w.HARDIRQ_ENABLE();
    w.MU(A);

    // lock_A is hardirq-safe
    w.HARDIRQ_ENTER();
    w.L(A);
    w.U(A);
    w.HARDIRQ_EXIT();

    // lock_A -> lock_B
    w.HARDIRQ_DISABLE();
    w.L(A);
    w.L(B);
    w.U(B);
    w.U(A);
    w.HARDIRQ_ENABLE();

    // lock_B -> lock_C
    w.HARDIRQ_DISABLE();
    w.L(B);
    w.L(C);
    w.U(C);
    w.U(B);
    w.HARDIRQ_ENABLE();

    // lock_D is softirq-safe
    w.SOFTIRQ_ENTER();
    w.L(D);
    w.U(D);
    w.SOFTIRQ_EXIT();

    // and lock_D is hardirq-unsafe
    w.SOFTIRQ_DISABLE();
    w.L(D);
    w.U(D);
    w.SOFTIRQ_ENABLE();

    // mutex_A -> lock_C -> lock_D is softirq-unsafe -> softirq-safe: no deadlock;
    // lock_A -> lock_B -> lock_C -> lock_D is hardirq-safe -> hardirq-unsafe: a deadlock.
    w.HARDIRQ_DISABLE();
    w.L(C);
    w.L(D);
    w.U(D);
    w.U(C);
    w.HARDIRQ_ENABLE();
}

} // namespace

void lock_type_tests(runner& r)
{
    r.row("A-A deadlock", all_columns("AA", AA, true));
    r.row("A-B-B-A deadlock", all_columns("ABBA", ABBA, true));
    r.row("A-B-B-C-C-A deadlock", all_columns("ABBCCA", ABBCCA, true));
    r.row("A-B-C-A-B-C deadlock", all_columns("ABCABC", ABCABC, true));
    r.row("A-B-B-C-C-D-D-A deadlock", all_columns("ABBCCDDA", ABBCCDDA, true));
    r.row("A-B-C-D-B-D-D-A deadlock", all_columns("ABCDBDDA", ABCDBDDA, true));
    r.row("A-B-C-D-B-C-D-A deadlock", all_columns("ABCDBCDA", ABCDBCDA, true));
    r.row("double unlock", all_columns("double_unlock", double_unlock, false));
    r.row("initialize held", all_columns("init_held", init_held, false));
}

void recursive_read_tests(runner& r)
{
    r.section("  --------------------------------------------------------------------------\n");
    r.row("recursive read-lock",
        {spacer(SKIP2), test("rlock_AA1", rlock_AA1, kind::rlock, SUCCESS), spacer(SKIP2),
            test("rsem_AA1", rsem_AA1, kind::rsem, FAILURE)});
    r.row("recursive read-lock #2",
        {spacer(SKIP2), test("rlock_AA1B", rlock_AA1B, kind::rlock, SUCCESS), spacer(SKIP2),
            test("rsem_AA1B", rsem_AA1B, kind::rsem, FAILURE)});
    r.row("mixed read-write-lock",
        {spacer(SKIP2), test("rlock_AA2", rlock_AA2, kind::rlock, FAILURE), spacer(SKIP2),
            test("rsem_AA2", rsem_AA2, kind::rsem, FAILURE)});
    r.row("mixed write-read-lock",
        {spacer(SKIP2), test("rlock_AA3", rlock_AA3, kind::rlock, FAILURE), spacer(SKIP2),
            test("rsem_AA3", rsem_AA3, kind::rsem, FAILURE)});
    r.row("mixed read-lock/lock-write ABBA",
        {spacer(SKIP2), test("rlock_ABBA1", rlock_ABBA1, kind::rlock, FAILURE), spacer(SKIP2),
            test("rwsem_ABBA1", rwsem_ABBA1, kind::rsem, FAILURE)});
    r.row("mixed read-lock/lock-read ABBA",
        {spacer(SKIP2), test("rlock_ABBA2", rlock_ABBA2, kind::rlock, SUCCESS), spacer(SKIP2),
            test("rwsem_ABBA2", rwsem_ABBA2, kind::rsem, FAILURE)});
    r.row("mixed write-lock/lock-write ABBA",
        {spacer(SKIP2), test("rlock_ABBA3", rlock_ABBA3, kind::rlock, FAILURE), spacer(SKIP2),
            test("rwsem_ABBA3", rwsem_ABBA3, kind::rsem, FAILURE)});
    r.row("chain cached mixed R-L/L-W ABBA",
        {spacer(SKIP2), test("rlock_chaincache_ABBA1", rlock_chaincache_ABBA1, kind::rlock, FAILURE)});

    rlock_rows(r, "rlock W1R2/W2R3/W3R1", "W1R2_W2R3_W3R1", {W1R2_E1, W1R2_E2, W3R1_E3}, FAILURE);
    rlock_rows(r, "rlock W1W2/R2R3/W3R1", "W1W2_R2R3_W3R1", {W1W2_E1, R2R3_E2, W3R1_E3}, FAILURE);
    rlock_rows(r, "rlock W1W2/R2R3/R3W1", "W1W2_R2R3_R3W1", {W1W2_E1, R2R3_E2, R3W1_E3}, SUCCESS);
    rlock_rows(r, "rlock W1R2/R2R3/W3W1", "W1R2_R2R3_W3W1", {W1R2_E1, R2R3_E2, W3W1_E3}, SUCCESS);
}

void queued_read_lock_tests(runner& r)
{
    r.section("  --------------------------------------------------------------------------\n"
              "  | queued read lock tests |\n"
              "  ---------------------------\n");
    r.row("hardirq read-lock/lock-read",
        {test("queued_read_lock_hardirq_RE_Er", queued_read_lock_hardirq_RE_Er, kind::rlock, FAILURE)});
    r.row("hardirq lock-read/read-lock",
        {test("queued_read_lock_hardirq_ER_rE", queued_read_lock_hardirq_ER_rE, kind::rlock, SUCCESS)});
    r.row("hardirq inversion",
        {test("queued_read_lock_hardirq_inversion", queued_read_lock_hardirq_inversion, kind::rlock, FAILURE)});
}

void special_tests(runner& r)
{
    r.section("");
    r.row("hardirq_unsafe_softirq_safe",
        {test("hardirq_deadlock_softirq_not_deadlock", hardirq_deadlock_softirq_not_deadlock, kind::spin, FAILURE)});
}

} // namespace klock::tool::selftest

#endif // KLOCK_LOCKDEP
