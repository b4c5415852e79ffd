// `klock selftest`: the kernel's Wound/wait rows (ww_tests() in lib/locking-selftest.c) over
// klock::ww_mutex, and two rows of klock's own that set Wait-Die against Wound-Wait.
//
// Who catches what here: lockdep catches two contexts held at once, a ww_mutex taken without its
// context next to one taken with it (the nest_lock rules) and a ww_mutex against a spinlock;
// klock::ww_mutex's own checks (the kernel's DEBUG_WW_MUTEXES, always on in klock) catch the
// context and back-off protocol slips: lock_slow without -EDEADLK, a context of another class,
// done/fini twice, fini with locks held, locking after done, going on after -EDEADLK without
// releasing, backing off to the wrong lock.
//
// Where the kernel's cases poke at internals, klock's public API is used instead:
//   - -EDEADLK needs an older context holding the lock. The kernel points o2.ctx at a second
//     context of its own task (and hides o2 from lockdep); a klock context belongs to the task
//     that initialised it, so a second task (`older_holder`) really holds o2 with an older one.
//   - "ww api failures" copies t into t2 with stamp + 1 in the same task; here a younger context
//     in a second task takes its -EDEADLK on o.
//   - "locking mismatches": the kernel zeroes t.acquired behind the context's back and plants a
//     stale o.ctx. klock's analogues: re-initialising a context that holds a lock, and locking
//     with a finished (stale) context.
//   - "spinlock nest unlocked" / "spinlock nest test" are left out: klock's spinlock has no
//     spin_lock_nest_lock().
#include "selftest_harness.hpp"

#if KLOCK_LOCKDEP

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace klock::tool::selftest {

namespace {

constexpr bool FAILURE = true;
constexpr bool SUCCESS = false;

constexpr ww_class_wait_die wd{};

ww_acquire_ctx* no_ctx() { return nullptr; }

// Polls `cond` for up to `ms` milliseconds.
template <class F> bool eventually(F cond, int ms = 5000)
{
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!cond()) {
        if (std::chrono::steady_clock::now() >= end)
            return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// An older context (t2, initialised before the case's t) in a second task, holding `locks` until
// release(): the holder a younger context must die behind.
class older_holder {
public:
    older_holder(world& w, std::vector<ww_wd_mutex*> locks)
        : w_(w), locks_(std::move(locks)), peer_([this](peer& self) { body(self); })
    {
        w_.check(peer_.wait_for(1), "the older context did not get its locks");
    }
    ~older_holder() { release(); }
    older_holder(const older_holder&) = delete;
    older_holder& operator=(const older_holder&) = delete;

    void release()
    {
        if (released_)
            return;
        released_ = true;
        peer_.post(2);
        peer_.join();
    }

private:
    void body(peer& self)
    {
        w_.t2.init(wd);
        for (ww_wd_mutex* l : locks_) {
            const int r = l->lock(&w_.t2);
            w_.check_ret(r, 0, "older context: lock()");
            if (r == 0)
                got_.push_back(l);
        }
        self.post(1);
        self.wait_for(2, 8000);
        for (auto it = got_.rbegin(); it != got_.rend(); ++it)
            (*it)->unlock();
        w_.t2.acquire_fini();
    }

    world& w_;
    std::vector<ww_wd_mutex*> locks_;
    std::vector<ww_wd_mutex*> got_;
    bool released_ = false;
    peer peer_; // last: its thread starts once the members above exist
};

// ---- ww api failures ----

void ww_test_fail_acquire(world& w)
{
    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    w.check(w.o.context() == &w.t, "o's context is not t after lock(o, t)");
    // No lockdep test, pure API.
    w.check_ret(w.o.lock(&w.t), -EALREADY, "lock(o, t) again");
    w.check(!w.o.try_lock(), "try_lock(o) succeeded on a lock this task holds");
    {
        peer young([&](peer&) {
            w.t2.init(wd);
            w.check_ret(w.o3.lock(&w.t2), 0, "younger context: lock(o3, t2)");
            w.check_ret(w.o.lock(&w.t2), -EDEADLK, "younger context holding o3: lock(o, t2)");
            w.o3.unlock();
            w.t2.acquire_fini();
        });
    }
    w.o.unlock();
    if (w.o.try_lock())
        w.o.unlock();
    else
        w.check(false, "try_lock(o) failed on a free lock");
    w.t.acquire_fini();
}

// None of the ww paths may run for the plain mutex calls: the lock's context stays null.
void ww_test_normal(world& w)
{
    w.o.lock();
    w.check(w.o.context() == nullptr, "lock() set a context");
    w.o.unlock();

    w.check(w.o.try_lock(), "try_lock() failed on a free lock");
    w.check(w.o.context() == nullptr, "try_lock() set a context");
    w.o.unlock();

    w.o.lock();
    w.check(!w.o.try_lock(), "try_lock() succeeded on a held lock");
    w.o.unlock();

    // With a context held, but locking without it (the kernel: mutex_lock_nest_lock on o.base).
    w.t.init(wd);
    w.o.lock();
    w.check(w.o.context() == nullptr, "lock() under an open context set a context");
    w.o.unlock();
}

void ww_test_unneeded_slow(world& w)
{
    w.t.init(wd);
    w.o.lock_slow(&w.t);
}

// ---- ww contexts mixing ----

void ww_test_two_contexts(world& w)
{
    w.t.init(wd);
    w.t2.init(wd);
}

void ww_test_diff_class(world& w)
{
    w.t.init(ww_class_wound_wait{});
    (void)w.o.lock(&w.t);
}

// ---- finishing ww context ----

void ww_test_context_done_twice(world& w)
{
    w.t.init(wd);
    w.t.acquire_done();
    w.t.acquire_done();
    w.t.acquire_fini();
}

void ww_test_context_unlock_twice(world& w)
{
    w.t.init(wd);
    w.t.acquire_done();
    w.t.acquire_fini();
    w.t.acquire_fini();
}

void ww_test_context_fini_early(world& w)
{
    w.t.init(wd);
    (void)w.o.lock(&w.t);
    w.t.acquire_done();
    w.t.acquire_fini();
}

void ww_test_context_lock_after_done(world& w)
{
    w.t.init(wd);
    w.t.acquire_done();
    (void)w.o.lock(&w.t);
}

// ---- locking mismatches ----

void ww_test_object_unlock_twice(world& w)
{
    (void)w.o.lock(no_ctx());
    w.o.unlock();
    w.o.unlock();
}

void ww_test_object_lock_unbalanced(world& w)
{
    w.t.init(wd);
    (void)w.o.lock(&w.t);
    w.t.init(wd); // the context forgets the lock it holds
}

void ww_test_object_lock_stale_context(world& w)
{
    w.t.init(wd);
    w.t.acquire_fini();
    (void)w.o.lock(&w.t);
}

// ---- EDEADLK handling: o2 (and o3) held by an older context ----

void edeadlk_begin(world& w)
{
    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    w.check_ret(w.o2.lock(&w.t), -EDEADLK, "lock(o2, t) behind an older holder");
}

void ww_test_edeadlk_normal(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    h.release();
    w.o.unlock();
    w.check_ret(w.o2.lock(&w.t), 0, "lock(o2, t) after backing off");
}

void ww_test_edeadlk_normal_slow(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    h.release();
    w.o.unlock();
    w.o2.lock_slow(&w.t);
    w.check(w.o2.context() == &w.t, "lock_slow(o2, t) did not take o2");
}

void ww_test_edeadlk_no_unlock(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    h.release();
    (void)w.o2.lock(&w.t); // o is still held
}

void ww_test_edeadlk_no_unlock_slow(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    h.release();
    w.o2.lock_slow(&w.t);
}

void ww_test_edeadlk_acquire_more(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    (void)w.o3.lock(&w.t);
}

void ww_test_edeadlk_acquire_more_slow(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    w.o3.lock_slow(&w.t);
}

void ww_test_edeadlk_acquire_more_edeadlk(world& w)
{
    older_holder h(w, {&w.o2, &w.o3});
    edeadlk_begin(w);
    (void)w.o3.lock(&w.t);
}

void ww_test_edeadlk_acquire_more_edeadlk_slow(world& w)
{
    older_holder h(w, {&w.o2, &w.o3});
    edeadlk_begin(w);
    w.o3.lock_slow(&w.t);
}

void ww_test_edeadlk_acquire_wrong(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    w.o.unlock();
    (void)w.o3.lock(&w.t); // backs off to a lock that is not the contended one
}

void ww_test_edeadlk_acquire_wrong_slow(world& w)
{
    older_holder h(w, {&w.o2});
    edeadlk_begin(w);
    w.o.unlock();
    w.o3.lock_slow(&w.t);
}

// ---- Wait-Die against Wound-Wait: an ABBA between two contexts ----
//
// The older context (this task, t) holds L1, the younger one (a second task, t2) holds L2; the
// younger asks for L1 first, then the older for L2. Wait-Die: the younger dies at once
// (-EDEADLK) behind the older holder. Wound-Wait: the younger waits; the older, finding L2 held
// by a younger context, wounds it, and it wakes with -EDEADLK. Either way it backs off (releases
// L2, lock_slow(L1)) and both finish. `backoff` false: after -EDEADLK the younger first tries
// L1 again still holding L2 - the protocol slip that klock reports.
template <class Lock, class Class> void ww_abba(world& w, Lock& l1, Lock& l2, Class cls, bool backoff)
{
    constexpr int pending = 1; // the younger's lock(L1) has not returned
    std::atomic<int> young_ret{pending};
    w.t.init(cls);
    w.check_ret(l1.lock(&w.t), 0, "older: lock(L1, t)");
    peer young([&](peer& self) {
        w.t2.init(cls);
        w.check_ret(l2.lock(&w.t2), 0, "younger: lock(L2, t2)");
        self.post(1);
        const int r = l1.lock(&w.t2);
        young_ret = r;
        if (r == 0) {
            l1.unlock();
        } else if (r == -EDEADLK) {
            if (!backoff)
                (void)l1.lock(&w.t2); // refused: L2 is still held
            l2.unlock();
            l1.lock_slow(&w.t2);
            l1.unlock();
        }
        if (w.t2.acquired() != 0)
            l2.unlock();
        w.t2.acquire_fini();
    });
    w.check(young.wait_for(1), "younger: never took L2");
    if constexpr (Class::is_wait_die) {
        w.check(eventually([&] { return young_ret.load() != pending; }),
            "wait-die: the younger context did not die behind the older holder");
    } else {
        w.check(eventually([&] { return (l1.owner_word() & WW_FLAG_WAITERS) != 0; }),
            "wound-wait: the younger context did not queue on L1");
        w.check(young_ret.load() == pending, "wound-wait: the younger context did not wait for the older holder");
    }
    w.check_ret(l2.lock(&w.t), 0, "older: lock(L2, t)");
    w.check_ret(young_ret.load(), -EDEADLK, "younger: lock(L1, t2)");
    l2.unlock();
    l1.unlock();
    young.join();
    w.t.acquire_fini();
}

void ww_wait_die_abba(world& w) { ww_abba(w, w.o, w.o2, wd, true); }
void ww_wait_die_abba_no_backoff(world& w) { ww_abba(w, w.o, w.o2, wd, false); }
void ww_wound_wait_abba(world& w) { ww_abba(w, w.wo1, w.wo2, ww_class_wound_wait{}, true); }
void ww_wound_wait_abba_no_backoff(world& w) { ww_abba(w, w.wo1, w.wo2, ww_class_wound_wait{}, false); }

// ---- block / try / context: how plain, trylock and context acquisitions of one class mix ----

void ww_test_context_block(world& w)
{
    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    (void)w.o2.lock(no_ctx());
}

void ww_test_context_try(world& w)
{
    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    w.check(w.o2.try_lock(), "try_lock(o2) failed on a free lock");
    w.o2.unlock();
    w.o.unlock();
}

void ww_test_context_context(world& w)
{
    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    w.check_ret(w.o2.lock(&w.t), 0, "lock(o2, t)");
    w.o2.unlock();
    w.o.unlock();
}

void ww_test_try_block(world& w)
{
    w.check(w.o.try_lock(), "try_lock(o) failed on a free lock");
    (void)w.o2.lock(no_ctx());
    w.o2.unlock();
    w.o.unlock();
}

void ww_test_try_try(world& w)
{
    w.check(w.o.try_lock(), "try_lock(o) failed on a free lock");
    w.check(w.o2.try_lock(), "try_lock(o2) failed on a free lock");
    w.o2.unlock();
    w.o.unlock();
}

void ww_test_try_context(world& w)
{
    w.check(w.o.try_lock(), "try_lock(o) failed on a free lock");
    w.t.init(wd);
    w.check_ret(w.o2.lock(&w.t), 0, "lock(o2, t)");
}

void ww_test_block_block(world& w)
{
    (void)w.o.lock(no_ctx());
    (void)w.o2.lock(no_ctx());
}

void ww_test_block_try(world& w)
{
    (void)w.o.lock(no_ctx());
    w.check(w.o2.try_lock(), "try_lock(o2) failed on a free lock");
}

void ww_test_block_context(world& w)
{
    (void)w.o.lock(no_ctx());
    w.t.init(wd);
    w.check_ret(w.o2.lock(&w.t), 0, "lock(o2, t)");
}

void ww_test_spin_block(world& w)
{
    w.L(A);
    w.U(A);

    (void)w.o.lock(no_ctx());
    w.L(A);
    w.U(A);
    w.o.unlock();

    w.L(A);
    (void)w.o.lock(no_ctx());
    w.o.unlock();
    w.U(A);
}

void ww_test_spin_try(world& w)
{
    w.L(A);
    w.U(A);

    w.check(w.o.try_lock(), "try_lock(o) failed on a free lock");
    w.L(A);
    w.U(A);
    w.o.unlock();

    w.L(A);
    w.check(w.o.try_lock(), "try_lock(o) failed on a free lock");
    w.o.unlock();
    w.U(A);
}

void ww_test_spin_context(world& w)
{
    w.L(A);
    w.U(A);

    w.t.init(wd);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t)");
    w.L(A);
    w.U(A);
    w.o.unlock();

    w.L(A);
    w.check_ret(w.o.lock(&w.t), 0, "lock(o, t) under lock_A");
    w.o.unlock();
    w.U(A);
}

cell ww(const char* name, void (*fn)(world&), bool expect_failure)
{
    return test(name, fn, kind::mutex, expect_failure);
}

} // namespace

void ww_tests(runner& r)
{
    r.section("  --------------------------------------------------------------------------\n"
              "  | Wound/wait tests |\n"
              "  ---------------------\n");
    r.row("ww api failures",
        {ww("ww_test_fail_acquire", ww_test_fail_acquire, SUCCESS), ww("ww_test_normal", ww_test_normal, SUCCESS),
            ww("ww_test_unneeded_slow", ww_test_unneeded_slow, FAILURE)});
    r.row("ww contexts mixing",
        {ww("ww_test_two_contexts", ww_test_two_contexts, FAILURE),
            ww("ww_test_diff_class", ww_test_diff_class, FAILURE)});
    r.row("finishing ww context",
        {ww("ww_test_context_done_twice", ww_test_context_done_twice, FAILURE),
            ww("ww_test_context_unlock_twice", ww_test_context_unlock_twice, FAILURE),
            ww("ww_test_context_fini_early", ww_test_context_fini_early, FAILURE),
            ww("ww_test_context_lock_after_done", ww_test_context_lock_after_done, FAILURE)});
    r.row("locking mismatches",
        {ww("ww_test_object_unlock_twice", ww_test_object_unlock_twice, FAILURE),
            ww("ww_test_object_lock_unbalanced", ww_test_object_lock_unbalanced, FAILURE),
            ww("ww_test_object_lock_stale_context", ww_test_object_lock_stale_context, FAILURE)});
    r.row("EDEADLK handling",
        {ww("ww_test_edeadlk_normal", ww_test_edeadlk_normal, SUCCESS),
            ww("ww_test_edeadlk_normal_slow", ww_test_edeadlk_normal_slow, SUCCESS),
            ww("ww_test_edeadlk_no_unlock", ww_test_edeadlk_no_unlock, FAILURE),
            ww("ww_test_edeadlk_no_unlock_slow", ww_test_edeadlk_no_unlock_slow, FAILURE),
            ww("ww_test_edeadlk_acquire_more", ww_test_edeadlk_acquire_more, FAILURE),
            ww("ww_test_edeadlk_acquire_more_slow", ww_test_edeadlk_acquire_more_slow, FAILURE),
            ww("ww_test_edeadlk_acquire_more_edeadlk", ww_test_edeadlk_acquire_more_edeadlk, FAILURE),
            ww("ww_test_edeadlk_acquire_more_edeadlk_slow", ww_test_edeadlk_acquire_more_edeadlk_slow, FAILURE),
            ww("ww_test_edeadlk_acquire_wrong", ww_test_edeadlk_acquire_wrong, FAILURE),
            ww("ww_test_edeadlk_acquire_wrong_slow", ww_test_edeadlk_acquire_wrong_slow, FAILURE)});
    // klock's own: the two classes' rules on one ABBA (backing off properly, then not).
    r.row("wait-die context ABBA",
        {ww("ww_wait_die_abba", ww_wait_die_abba, SUCCESS),
            ww("ww_wait_die_abba_no_backoff", ww_wait_die_abba_no_backoff, FAILURE)});
    r.row("wound-wait context ABBA",
        {ww("ww_wound_wait_abba", ww_wound_wait_abba, SUCCESS),
            ww("ww_wound_wait_abba_no_backoff", ww_wound_wait_abba_no_backoff, FAILURE)});

    r.subsection("  -----------------------------------------------------\n"
                 "                                 |block | try  |context|\n"
                 "  -----------------------------------------------------\n");
    r.row("context",
        {ww("ww_test_context_block", ww_test_context_block, FAILURE),
            ww("ww_test_context_try", ww_test_context_try, SUCCESS),
            ww("ww_test_context_context", ww_test_context_context, SUCCESS)});
    r.row("try",
        {ww("ww_test_try_block", ww_test_try_block, FAILURE), ww("ww_test_try_try", ww_test_try_try, SUCCESS),
            ww("ww_test_try_context", ww_test_try_context, FAILURE)});
    r.row("block",
        {ww("ww_test_block_block", ww_test_block_block, FAILURE), ww("ww_test_block_try", ww_test_block_try, SUCCESS),
            ww("ww_test_block_context", ww_test_block_context, FAILURE)});
    r.row("spinlock",
        {ww("ww_test_spin_block", ww_test_spin_block, FAILURE), ww("ww_test_spin_try", ww_test_spin_try, SUCCESS),
            ww("ww_test_spin_context", ww_test_spin_context, FAILURE)});
}

} // namespace klock::tool::selftest

#endif // KLOCK_LOCKDEP
