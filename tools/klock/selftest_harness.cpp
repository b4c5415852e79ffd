// `klock selftest`: the test-case world, the runner that prints the kernel's table, the watchdog
// and the helper task of the ww cases (selftest_harness.hpp says how a case runs).
#include "selftest_harness.hpp"

#if KLOCK_LOCKDEP

#include <algorithm>
#include <cstdlib>

#include <klock/preempt.hpp>
#include <klock/report.hpp>

// The world takes a lock in one member function and releases it in another, on purpose and in
// the wrong order when a case asks for it: nothing clang's static analysis could follow.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

namespace klock::tool::selftest {

namespace {

// One key per lock type and class: A, B, C, D, X (X1 and X2), Y, Z. lockdep::reset() forgets the
// classes between cases; the keys themselves stay valid (static storage).
constexpr unsigned NR_TYPES = 5;
constexpr unsigned NR_CLASSES = 7;
lock_class_key g_keys[NR_TYPES][NR_CLASSES];
const char* const g_names[NR_TYPES][NR_CLASSES] = {
    {"lock_A", "lock_B", "lock_C", "lock_D", "lock_X", "lock_Y", "lock_Z"},
    {"rwlock_A", "rwlock_B", "rwlock_C", "rwlock_D", "rwlock_X", "rwlock_Y", "rwlock_Z"},
    {"mutex_A", "mutex_B", "mutex_C", "mutex_D", "mutex_X", "mutex_Y", "mutex_Z"},
    {"rwsem_A", "rwsem_B", "rwsem_C", "rwsem_D", "rwsem_X", "rwsem_Y", "rwsem_Z"},
    {"rtmutex_A", "rtmutex_B", "rtmutex_C", "rtmutex_D", "rtmutex_X", "rtmutex_Y", "rtmutex_Z"},
};

unsigned class_of(lock_id x) { return x < X1 ? unsigned(x) : 4 + (unsigned(x) - X1) / 2; }

thread_info& my_info() { return env::os::info(env::os::current()); }

constexpr int WATCHDOG_SECONDS = 10;

} // namespace

const char* kind_name(kind k)
{
    static const char* const names[] = {"spin", "wlock", "rlock", "mutex", "wsem", "rsem", "rtmutex"};
    return names[static_cast<unsigned>(k)];
}

// ---------------------------------------------------------------------------------------------
// world

world::world(kind kk, irq_kind ik) : k(kk), irq(ik)
{
    const thread_info& ti = my_info();
    saved_preempt_count_ = ti.preempt_count;
    saved_irqs_disabled_ = ti.irqs_disabled;
    rw_env::force_read_lock_recursive = true;
    for (unsigned x = 0; x < NR_LOCK_IDS; ++x)
        for (ltype type : {ltype::spin, ltype::rw, ltype::mutex, ltype::sem, ltype::rt})
            make(type, lock_id(x));
}

world::~world() { rw_env::force_read_lock_recursive = true; }

void world::make(ltype type, lock_id x)
{
    const unsigned ti = static_cast<unsigned>(type), ci = class_of(x);
    lock_class_key& key = g_keys[ti][ci];
    const char* name = g_names[ti][ci];
    switch (type) {
    case ltype::spin:
        spin_[x].make(key, name);
        break;
    case ltype::rw:
        rw_[x].make(key, name);
        break;
    case ltype::mutex:
        mutex_[x].make(key, name);
        break;
    case ltype::sem:
        sem_[x].make(key, name);
        break;
    case ltype::rt:
        rt_[x].make(key, name);
        break;
    }
}

void world::released(ltype type, lock_id x, bool read)
{
    for (auto it = holds_.rbegin(); it != holds_.rend(); ++it)
        if (it->type == type && it->id == x && it->read == read) {
            holds_.erase(std::next(it).base());
            return;
        }
    // An unlock of something not held (double unlock): the lock reports it; nothing to forget.
}

void world::forget(ltype type, lock_id x)
{
    std::erase_if(holds_, [&](const hold& h) { return h.type == type && h.id == x; });
}

void world::L(lock_id x)
{
    spin(x).lock();
    held(ltype::spin, x, false);
}
void world::U(lock_id x)
{
    spin(x).unlock();
    released(ltype::spin, x, false);
}
void world::WL(lock_id x)
{
    rw(x).write_lock();
    held(ltype::rw, x, false);
}
void world::WU(lock_id x)
{
    rw(x).write_unlock();
    released(ltype::rw, x, false);
}
void world::RL(lock_id x)
{
    rw(x).read_lock();
    held(ltype::rw, x, true);
}
void world::RU(lock_id x)
{
    rw(x).read_unlock();
    released(ltype::rw, x, true);
}
void world::ML(lock_id x)
{
    mtx(x).lock();
    held(ltype::mutex, x, false);
}
void world::MU(lock_id x)
{
    mtx(x).unlock();
    released(ltype::mutex, x, false);
}
void world::WSL(lock_id x)
{
    sem(x).down_write();
    held(ltype::sem, x, false);
}
void world::WSU(lock_id x)
{
    sem(x).up_write();
    released(ltype::sem, x, false);
}
void world::RSL(lock_id x)
{
    sem(x).down_read();
    held(ltype::sem, x, true);
}
void world::RSU(lock_id x)
{
    sem(x).up_read();
    released(ltype::sem, x, true);
}
void world::RTL(lock_id x)
{
    rt(x).lock();
    held(ltype::rt, x, false);
}
void world::RTU(lock_id x)
{
    rt(x).unlock();
    released(ltype::rt, x, false);
}

void world::LOCK(lock_id x)
{
    switch (k) {
    case kind::spin:
        return L(x);
    case kind::wlock:
        return WL(x);
    case kind::rlock:
        return RL(x);
    case kind::mutex:
        return ML(x);
    case kind::wsem:
        return WSL(x);
    case kind::rsem:
        return RSL(x);
    case kind::rtmutex:
        return RTL(x);
    }
}

void world::UNLOCK(lock_id x)
{
    switch (k) {
    case kind::spin:
        return U(x);
    case kind::wlock:
        return WU(x);
    case kind::rlock:
        return RU(x);
    case kind::mutex:
        return MU(x);
    case kind::wsem:
        return WSU(x);
    case kind::rsem:
        return RSU(x);
    case kind::rtmutex:
        return RTU(x);
    }
}

void world::INIT(lock_id x)
{
    ltype type = ltype::spin;
    switch (k) {
    case kind::spin:
        type = ltype::spin;
        break;
    case kind::wlock:
    case kind::rlock:
        type = ltype::rw;
        break;
    case kind::mutex:
        type = ltype::mutex;
        break;
    case kind::wsem:
    case kind::rsem:
        type = ltype::sem;
        break;
    case kind::rtmutex:
        type = ltype::rt;
        break;
    }
    // The old lock's holds die with it (its preempt_count share is restored by cleanup()).
    forget(type, x);
    make(type, x);
}

// HARDIRQ_ENTER: the kernel disables interrupts and calls __irq_enter(); klock::hardirq_enter()
// does both. SOFTIRQ_ENTER: bottom halves off, interrupts off, then "serving a softirq".
void world::HARDIRQ_ENTER() { klock::hardirq_enter(); }
void world::HARDIRQ_EXIT() { klock::hardirq_exit(); }
void world::HARDIRQ_DISABLE() { klock::local_irq_disable(); }
void world::HARDIRQ_ENABLE() { klock::local_irq_enable(); }
void world::SOFTIRQ_ENTER()
{
    klock::local_bh_disable();
    klock::local_irq_disable();
    klock::softirq_enter();
}
void world::SOFTIRQ_EXIT()
{
    klock::softirq_exit();
    klock::local_irq_enable();
    klock::local_bh_enable();
}
void world::SOFTIRQ_DISABLE() { klock::local_bh_disable(); }
void world::SOFTIRQ_ENABLE() { klock::local_bh_enable(); }

void world::IRQ_ENTER() { irq == irq_kind::soft ? SOFTIRQ_ENTER() : HARDIRQ_ENTER(); }
void world::IRQ_EXIT() { irq == irq_kind::soft ? SOFTIRQ_EXIT() : HARDIRQ_EXIT(); }
void world::IRQ_DISABLE() { irq == irq_kind::soft ? SOFTIRQ_DISABLE() : HARDIRQ_DISABLE(); }
void world::IRQ_ENABLE() { irq == irq_kind::soft ? SOFTIRQ_ENABLE() : HARDIRQ_ENABLE(); }

void world::check(bool ok, const std::string& what)
{
    if (ok)
        return;
    std::lock_guard<std::mutex> g(check_lock_);
    check_failures_.push_back(what);
}

void world::check_ret(int got, int want, const char* what)
{
    if (got == want)
        return;
    check(false, std::string(what) + " returned " + std::to_string(got) + ", expected " + std::to_string(want));
}

std::vector<std::string> world::check_failures() const
{
    std::lock_guard<std::mutex> g(check_lock_);
    return check_failures_;
}

void world::release(const hold& h)
{
    switch (h.type) {
    case ltype::spin:
        spin(h.id).unlock();
        break;
    case ltype::rw:
        h.read ? rw(h.id).read_unlock() : rw(h.id).write_unlock();
        break;
    case ltype::mutex:
        mtx(h.id).unlock();
        break;
    case ltype::sem:
        h.read ? sem(h.id).up_read() : sem(h.id).up_write();
        break;
    case ltype::rt:
        rt(h.id).unlock();
        break;
    }
}

void world::cleanup()
{
    // Newest first, as a well-behaved caller would have released them.
    while (!holds_.empty()) {
        const hold h = holds_.back();
        holds_.pop_back();
        release(h);
    }
    const int me = env::os::task_pid(env::os::current());
    auto drop = [me](auto& l) {
        for (int i = 0; i < 4 && l.owner_pid() == me; ++i)
            l.unlock();
    };
    drop(o);
    drop(o2);
    drop(o3);
    drop(wo1);
    drop(wo2);
    if (t.active())
        t.acquire_fini();
    if (t2.active())
        t2.acquire_fini();
    // Like the kernel's dotest(): a misused lock (double unlock, a lock destroyed while held)
    // leaves preempt_count off by one; put it back, and interrupts with it.
    thread_info& ti = my_info();
    ti.preempt_count = saved_preempt_count_;
    if (ti.irqs_disabled && !saved_irqs_disabled_)
        klock::local_irq_enable();
}

// ---------------------------------------------------------------------------------------------
// cells

cell test(std::string name, case_fn fn, kind k, bool expect_failure, irq_kind irq)
{
    cell c;
    c.name = std::move(name);
    c.fn = std::move(fn);
    c.k = k;
    c.irq = irq;
    c.expect_failure = expect_failure;
    return c;
}

case_fn in_order(std::vector<event> e, const char* order)
{
    return [e = std::move(e), order](world& w) {
        for (const char* p = order; *p != '\0'; ++p)
            e[static_cast<std::size_t>(*p - '1')](w);
    };
}

cell spacer(const char* text)
{
    cell c;
    c.spacer = text;
    return c;
}

// ---------------------------------------------------------------------------------------------
// runner

runner::runner(const options& opt, std::FILE* out) : opt_(opt), out_(out)
{
    // The kernel's lockdep stops at its first report; the matrix's expectations assume that.
    lockdep::set_one_shot(true);
    wd_thread_ = std::thread([this] { watchdog_main(); });
}

runner::~runner()
{
    {
        std::lock_guard<std::mutex> g(wd_lock_);
        wd_stop_ = true;
    }
    wd_cv_.notify_all();
    wd_thread_.join();
    lockdep::set_one_shot(false);
    lockdep::reset();
}

void runner::watchdog_main()
{
    std::unique_lock<std::mutex> lk(wd_lock_);
    while (!wd_stop_) {
        if (!wd_armed_) {
            wd_cv_.wait(lk);
            continue;
        }
        if (wd_cv_.wait_until(lk, wd_deadline_) == std::cv_status::timeout && wd_armed_ && !wd_stop_
            && std::chrono::steady_clock::now() >= wd_deadline_) {
            std::fflush(out_);
            std::fprintf(stderr,
                "\nklock selftest: %s did not finish within %d s (a lost -EDEADLK or a real deadlock); giving up\n",
                wd_case_.c_str(), WATCHDOG_SECONDS);
            std::fflush(stderr);
            std::_Exit(1);
        }
    }
}

runner::result runner::run(const cell& c)
{
    {
        std::lock_guard<std::mutex> g(wd_lock_);
        wd_case_ = c.name;
        wd_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(WATCHDOG_SECONDS);
        wd_armed_ = true;
    }
    wd_cv_.notify_all();

    result r;
    lockdep::reset();
    {
        report_capture cap;
        // A capture opened by our caller (a test) keeps the reports from before; skip those.
        const std::size_t before = cap.count();
        {
            world w(c.k, c.irq);
            c.fn(w);
            const std::vector<std::string> all = cap.reports();
            r.reports.assign(all.begin() + static_cast<std::ptrdiff_t>(std::min(before, all.size())), all.end());
            r.detected = !r.reports.empty() || !lockdep::debug_locks();
            r.check_failures = w.check_failures();
            // Every case takes a lock; if lockdep registered no class, it never saw the case, and
            // a silent "success" would prove nothing.
            if (lockdep::get_stats().lock_classes == 0)
                r.check_failures.emplace_back(
                    "lockdep saw no lock at all (switched off, or not wired into the locks?)");
            lockdep::set_enabled(false);
            w.cleanup();
        } // the world's locks are destroyed here, still under the capture
    }
    lockdep::reset();

    {
        std::lock_guard<std::mutex> g(wd_lock_);
        wd_armed_ = false;
    }
    const bool expect_failure = c.expect_failure != opt_.expect_inverted;
    r.ok = r.detected == expect_failure && r.check_failures.empty();
    return r;
}

void runner::row(const std::string& name, const std::vector<cell>& cells)
{
    if (!opt_.filter.empty() && name.find(opt_.filter) == std::string::npos)
        return;
    if (!header_.empty()) {
        std::fputs(header_.c_str(), out_);
        header_.clear();
    }
    if (!pending_.empty()) {
        std::fputs(pending_.c_str(), out_);
        pending_.clear();
    }
    std::fprintf(out_, "%33s:", name.c_str());
    std::fflush(out_);
    std::vector<std::pair<const cell*, result>> details;
    for (const cell& c : cells) {
        if (c.spacer != nullptr) {
            std::fputs(c.spacer, out_);
            continue;
        }
        result r = run(c);
        ++total_;
        if (!r.ok)
            ++unexpected_;
        std::fputs(r.ok ? "  ok  |" : "FAILED|", out_);
        std::fflush(out_);
        if (opt_.verbose && (!r.ok || !r.reports.empty() || !r.check_failures.empty()))
            details.emplace_back(&c, std::move(r));
    }
    std::fputc('\n', out_);
    for (const auto& [c, r] : details) {
        const bool expect_failure = c->expect_failure != opt_.expect_inverted;
        std::fprintf(out_, " --- %s: expected %s; %s (%zu report%s) ---\n", c->name.c_str(),
            expect_failure ? "a report" : "no report", r.ok ? "as expected" : "UNEXPECTED", r.reports.size(),
            r.reports.size() == 1 ? "" : "s");
        for (const std::string& f : r.check_failures)
            std::fprintf(out_, " --- check failed: %s\n", f.c_str());
        for (const std::string& text : r.reports)
            std::fputs(text.c_str(), out_);
    }
    std::fflush(out_);
}

int runner::finish()
{
    if (unexpected_ != 0) {
        std::fputs("-----------------------------------------------------------------\n", out_);
        std::fprintf(out_, "BUG: %3d unexpected failures (out of %3d) - debugging disabled! |\n", unexpected_, total_);
        std::fputs("-----------------------------------------------------------------\n", out_);
        std::fflush(out_);
        return 1;
    }
    std::fputs("-------------------------------------------------------\n", out_);
    std::fprintf(out_, "Good, all %3d testcases passed! |\n", total_);
    std::fputs("---------------------------------\n", out_);
    std::fflush(out_);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// peer

peer::peer(std::function<void(peer&)> body) : thread_([this, b = std::move(body)] { b(*this); }) { }

peer::~peer() { join(); }

void peer::join()
{
    if (thread_.joinable())
        thread_.join();
}

void peer::post(int step)
{
    {
        std::lock_guard<std::mutex> g(lock_);
        step_ = std::max(step_, step);
    }
    cv_.notify_all();
}

bool peer::wait_for(int step, int timeout_ms)
{
    std::unique_lock<std::mutex> lk(lock_);
    return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return step_ >= step; });
}

// ---------------------------------------------------------------------------------------------
// the matrix

int run_matrix(const options& opt, std::FILE* out)
{
    int status = 0;
    int total = 0;
    {
        runner r(opt, out);
        r.header("------------------------\n"
                 "| Locking API testsuite:\n"
                 "----------------------------------------------------------------------------\n"
                 "                                 | spin |wlock |rlock |mutex | wsem | rsem |rtmutex\n"
                 "  --------------------------------------------------------------------------\n");
        lock_type_tests(r);
        recursive_read_tests(r);
        irq_tests(r);
        ww_tests(r);
        queued_read_lock_tests(r);
        special_tests(r);
        total = r.total();
        if (total != 0)
            status = r.finish();
    }
    if (total == 0) {
        std::fprintf(stderr, "klock selftest: no test row matches --filter '%s'\n", opt.filter.c_str());
        return 2;
    }
    return status;
}

} // namespace klock::tool::selftest

#endif // KLOCK_LOCKDEP
