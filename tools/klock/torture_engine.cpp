// The torture run: threads, checks, stutter, shuffle, statistics (see torture_engine.hpp).
#include "torture_engine.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <ctime>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <klock/report.hpp>
#include <klock/spinlock.hpp>

namespace klock::tool::torture {

namespace {

std::uint64_t now_ns() noexcept
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t to_ns(double s) noexcept { return static_cast<std::uint64_t>(std::llround(s * 1e9)); }

void sleep_ns(std::uint64_t ns) noexcept
{
    timespec ts{static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

// Where a thread is in its loop, for the stall report.
enum class where : int { starting, nested, acquiring, holding, releasing, stutter, done };

const char* where_text(int w) noexcept
{
    switch (static_cast<where>(w)) {
    case where::starting:
        return "before its first iteration";
    case where::nested:
        return "taking its nested locks";
    case where::acquiring:
        return "waiting to acquire the lock";
    case where::holding:
        return "holding the lock";
    case where::releasing:
        return "releasing the lock";
    case where::stutter:
        return "in a stutter pause";
    case where::done:
        return "stopped";
    }
    return "?";
}

} // namespace

// One torture thread's statistics (struct lock_stress_stats) and liveness, on its own line.
struct alignas(64) thread_slot {
    std::atomic<long> n_lock_fail{0};
    std::atomic<long> n_lock_acquired{0};
    std::atomic<std::uint64_t> iterations{0};
    std::atomic<int> where{0};
    std::atomic<int> tid{0};
    std::atomic<bool> exited{false};
    // The controller's view of its progress.
    std::uint64_t seen = 0;
    std::uint64_t since_ns = 0;
    bool reported = false;
};

struct run_state {
    run_state(const config& c, std::unique_ptr<lock_ops> o)
        : cfg(c),
          ops(std::move(o)),
          writers(std::make_unique<thread_slot[]>(static_cast<std::size_t>(c.real_writers))),
          readers(std::make_unique<thread_slot[]>(static_cast<std::size_t>(c.real_readers)))
    { }

    const config cfg;
    const std::unique_ptr<lock_ops> ops;
    std::unique_ptr<thread_slot[]> writers;
    std::unique_ptr<thread_slot[]> readers;

    std::atomic<bool> stop{false};
    std::atomic<std::uint32_t> pause{0};
    std::atomic<int> running{0};

    // The kernel's lock_is_write_held / lock_is_read_held.
    std::atomic<bool> write_held{false};
    std::atomic<int> read_held{0};

    // The critical sections' data: plain on purpose, only ever touched under the lock under
    // test (writers write, readers read), so that a lock that fails to exclude or to order
    // is visible as a lost update, a foreign owner id, or (under TSan) a data race.
    std::uint64_t cs_count = 0;
    int cs_owner = 0;
    std::uint64_t nested_count[max_nested_locks] = {};
    int nested_owner[max_nested_locks] = {};
    std::atomic<long> nested_taken[max_nested_locks] = {};
};

namespace {

int gettid_() noexcept { return static_cast<int>(::syscall(SYS_gettid)); }

// Named before the first lock call, so that klock's reports (which print the task's comm)
// say which torture thread it was.
void thread_start(thread_slot& me, const char* role, int id)
{
    char name[16];
    std::snprintf(name, sizeof name, "lt_%s_%d", role, id);
    ::pthread_setname_np(::pthread_self(), name);
    me.tid.store(gettid_(), std::memory_order_relaxed);
}

// stutter_wait(): park while the controller holds the test paused.
void stutter_wait(run_state& st, thread_slot& me)
{
    if (st.pause.load(std::memory_order_acquire) == 0)
        return;
    me.where.store(static_cast<int>(where::stutter), std::memory_order_relaxed);
    while (st.pause.load(std::memory_order_acquire) != 0 && !st.stop.load(std::memory_order_relaxed))
        st.pause.wait(1, std::memory_order_acquire);
}

void thread_end(run_state& st, thread_slot& me)
{
    me.where.store(static_cast<int>(where::done), std::memory_order_relaxed);
    me.exited.store(true, std::memory_order_release);
    st.running.fetch_sub(1, std::memory_order_acq_rel);
}

// lock_torture_writer().
void writer(std::shared_ptr<run_state> sp, int id)
{
    run_state& st = *sp;
    thread_slot& me = st.writers[id];
    lock_ops& ops = *st.ops;
    const int nested = st.cfg.nested_locks;
    const std::uint32_t nested_mask = nested > 0 ? (1u << nested) - 1 : 0;
    thread_start(me, "writer", id);
    random_state rng(now_ns() ^ (std::uint64_t{1} << 40) ^ static_cast<std::uint64_t>(id));

    do {
        if ((rng.next() & 0xfffff) == 0)
            sleep_ns(1000000); // schedule_timeout_uninterruptible(1)
        const std::uint32_t lockset = rng.next();
        // With nested locks, now and then skip the main lock, so that the nested ones form
        // chains that do not all serialise on it.
        const bool skip_main = nested > 0 && rng.below(100) == 0;

        ops.task_boost(&rng);
        if (nested > 0) {
            me.where.store(static_cast<int>(where::nested), std::memory_order_relaxed);
            ops.nested_lock(id, lockset);
            for (int i = 0; i < nested; ++i)
                if ((lockset & (1u << i)) != 0) {
                    st.nested_owner[i] = id + 1;
                    ++st.nested_count[i];
                    st.nested_taken[i].fetch_add(1, std::memory_order_relaxed);
                }
        }
        if (!skip_main) {
            me.where.store(static_cast<int>(where::acquiring), std::memory_order_relaxed);
            if (ops.write_lock(id) != 0) {
                me.n_lock_fail.fetch_add(1, std::memory_order_relaxed);
            } else {
                me.where.store(static_cast<int>(where::holding), std::memory_order_relaxed);
                if (st.write_held.exchange(true))
                    me.n_lock_fail.fetch_add(1, std::memory_order_relaxed);
                if (st.read_held.load() != 0)
                    me.n_lock_fail.fetch_add(1, std::memory_order_relaxed); // rare, but...
                st.cs_owner = id + 1;
                ++st.cs_count;
                me.n_lock_acquired.fetch_add(1, std::memory_order_relaxed);

                ops.write_delay(rng);

                if (st.cs_owner != id + 1)
                    me.n_lock_fail.fetch_add(1, std::memory_order_relaxed);
                st.write_held.store(false);
                me.where.store(static_cast<int>(where::releasing), std::memory_order_relaxed);
                ops.write_unlock(id);
            }
        }
        if ((lockset & nested_mask) != 0) {
            for (int i = 0; i < nested; ++i)
                if ((lockset & (1u << i)) != 0 && st.nested_owner[i] != id + 1)
                    me.n_lock_fail.fetch_add(1, std::memory_order_relaxed); // another writer got in
            me.where.store(static_cast<int>(where::releasing), std::memory_order_relaxed);
            ops.nested_unlock(id, lockset);
        }
        me.iterations.fetch_add(1, std::memory_order_relaxed);
        stutter_wait(st, me);
    } while (!st.stop.load(std::memory_order_relaxed));

    ops.task_boost(nullptr); // back to SCHED_OTHER
    thread_end(st, me);
}

// lock_torture_reader().
void reader(std::shared_ptr<run_state> sp, int id)
{
    run_state& st = *sp;
    thread_slot& me = st.readers[id];
    lock_ops& ops = *st.ops;
    thread_start(me, "reader", id);
    random_state rng(now_ns() ^ (std::uint64_t{2} << 40) ^ static_cast<std::uint64_t>(id));

    do {
        if ((rng.next() & 0xfffff) == 0)
            sleep_ns(1000000);
        me.where.store(static_cast<int>(where::acquiring), std::memory_order_relaxed);
        ops.read_lock(id);
        me.where.store(static_cast<int>(where::holding), std::memory_order_relaxed);
        st.read_held.fetch_add(1);
        if (st.write_held.load())
            me.n_lock_fail.fetch_add(1, std::memory_order_relaxed); // rare, but...
        const std::uint64_t seen = st.cs_count;
        me.n_lock_acquired.fetch_add(1, std::memory_order_relaxed);

        ops.read_delay(rng);

        if (st.cs_count != seen)
            me.n_lock_fail.fetch_add(1, std::memory_order_relaxed);
        st.read_held.fetch_sub(1);
        me.where.store(static_cast<int>(where::releasing), std::memory_order_relaxed);
        ops.read_unlock(id);
        me.iterations.fetch_add(1, std::memory_order_relaxed);
        stutter_wait(st, me);
    } while (!st.stop.load(std::memory_order_relaxed));

    thread_end(st, me);
}

long sum_acquired(const thread_slot* slots, int n) noexcept
{
    long s = 0;
    for (int i = 0; i < n; ++i)
        s += slots[i].n_lock_acquired.load(std::memory_order_relaxed);
    return s;
}

struct totals {
    long acquired = 0;
    long fails = 0;
};

totals print_stats(std::FILE* out, const thread_slot* slots, int n, bool write)
{
    std::vector<long> acq(static_cast<std::size_t>(n)), fail(static_cast<std::size_t>(n));
    totals t;
    for (int i = 0; i < n; ++i) {
        acq[static_cast<std::size_t>(i)] = slots[i].n_lock_acquired.load(std::memory_order_relaxed);
        fail[static_cast<std::size_t>(i)] = slots[i].n_lock_fail.load(std::memory_order_relaxed);
        t.acquired += acq[static_cast<std::size_t>(i)];
        t.fails += fail[static_cast<std::size_t>(i)];
    }
    std::fputs(stats_line(write, acq, fail).c_str(), out);
    return t;
}

// The progress bar: stderr, only on a terminal; cleared before anything else is printed.
class progress_bar {
public:
    progress_bar(bool wanted, double total_s, bool readers)
        : on_(wanted && ::isatty(STDERR_FILENO) == 1), total_(total_s), readers_(readers)
    { }
    void draw(double elapsed_s, long writes, long reads)
    {
        if (!on_)
            return;
        constexpr int width = 30;
        const int filled = std::clamp(static_cast<int>(elapsed_s / total_ * width), 0, width);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '.');
        std::fprintf(stderr, "\r  [%s] %5.1f/%.1f s  writes %ld", bar.c_str(), elapsed_s, total_, writes);
        if (readers_)
            std::fprintf(stderr, "  reads %ld", reads);
        std::fflush(stderr);
        drawn_ = true;
    }
    void clear()
    {
        if (on_ && drawn_) {
            std::fputs("\r\033[K", stderr);
            std::fflush(stderr);
            drawn_ = false;
        }
    }

private:
    bool on_;
    double total_;
    bool readers_;
    bool drawn_ = false;
};

// torture_shuffle_tasks(): every interval one CPU in turn is left idle - all torture threads
// are confined to the others - and then, for one interval, none.
class shuffler {
public:
    shuffler()
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof set, &set) == 0)
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(c, &set))
                    cpus_.push_back(c);
    }
    bool useful() const noexcept { return cpus_.size() > 1; }
    void shuffle(run_state& st)
    {
        idle_ = (idle_ + 1) % static_cast<int>(cpus_.size() + 1); // cpus_.size(): none idle
        cpu_set_t set;
        CPU_ZERO(&set);
        for (std::size_t i = 0; i < cpus_.size(); ++i)
            if (static_cast<int>(i) != idle_)
                CPU_SET(cpus_[i], &set);
        auto move = [&](thread_slot* slots, int n) {
            for (int i = 0; i < n; ++i) {
                const int tid = slots[i].tid.load(std::memory_order_relaxed);
                if (tid != 0 && !slots[i].exited.load(std::memory_order_acquire))
                    ::sched_setaffinity(tid, sizeof set, &set); // ESRCH if it just exited: fine
            }
        };
        move(st.writers.get(), st.cfg.real_writers);
        move(st.readers.get(), st.cfg.real_readers);
        ++shuffles_;
    }

private:
    std::vector<int> cpus_;
    int idle_ = -1;
    long shuffles_ = 0;
};

} // namespace

std::string stats_line(bool write, std::span<const long> acquired, std::span<const long> fails)
{
    long max = 0;
    long min = acquired.empty() ? 0 : acquired[0];
    long long sum = 0;
    long nfail = 0;
    for (std::size_t i = 0; i < acquired.size(); ++i) {
        const long cur = acquired[i];
        sum += cur;
        max = std::max(max, cur);
        min = std::min(min, cur);
        if (i < fails.size())
            nfail += fails[i];
    }
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s:  Total: %lld  Max/Min: %ld/%ld %s  Fail: %ld %s\n", write ? "Writes" : "Reads ",
        sum, max, min, max / 2 > min ? "???" : "", nfail, nfail != 0 ? "!!!" : "");
    return buf;
}

bool result::wait_stopped(double timeout_s) const
{
    if (!state)
        return true;
    const std::uint64_t end = now_ns() + to_ns(timeout_s);
    while (state->running.load(std::memory_order_acquire) != 0) {
        if (now_ns() >= end)
            return false;
        sleep_ns(2000000);
    }
    return true;
}

namespace {

// The controller: the calling thread, which starts the torture threads, drives stutter and
// shuffle, prints the statistics, watches progress, and at the end stops, joins and judges.
class controller {
public:
    controller(const config& cfg, std::unique_ptr<lock_ops> ops, std::FILE* out)
        : sp_(std::make_shared<run_state>(cfg, std::move(ops))),
          st_(*sp_),
          cfg_(st_.cfg),
          out_(out),
          prefix_(cfg.type + "-torture: "),
          readers_(find_type(cfg.type) != nullptr ? find_type(cfg.type)->readers : cfg.real_readers > 0),
          stall_ns_(to_ns(cfg.stall_bound())),
          bar_(cfg.progress_bar, cfg.duration, readers_)
    { }

    result operator()()
    {
        const std::uint64_t old_lockup = klock::spin_lockup_threshold_ns();
        klock::set_spin_lockup_threshold_ns(stall_ns_);
        const std::uint64_t reports_before = klock::report_count();

        std::fprintf(out_, "%s\n", parms_line(cfg_, "Start of test").c_str());
        std::fflush(out_);
        t0_ = now_ns();
        const bool started = start_threads();
        if (started)
            watch();
        stop_and_join();
        stats(); // lock_torture_stats_print(), after the threads stopped
        check_data();
        res_.reports = klock::report_count() - reports_before;
        if (res_.reports != 0)
            line("%llu klock report(s) during the test (BUG: splats on stderr) !!!",
                static_cast<unsigned long long>(res_.reports));
        for (const std::string& l : st_.ops->summary())
            line("%s", l.c_str());

        res_.success = started && !fail_seen_ && res_.stalls == 0 && res_.left_running == 0 && res_.lost_updates == 0
            && res_.reports == 0;
        std::fprintf(
            out_, "%s\n", parms_line(cfg_, res_.success ? "End of test: SUCCESS" : "End of test: FAILURE").c_str());
        std::fflush(out_);
        klock::set_spin_lockup_threshold_ns(old_lockup);
        res_.state = sp_;
        return res_;
    }

private:
    // "<type>-torture: <text>"
    [[gnu::format(printf, 2, 3)]] void line(const char* fmt, ...)
    {
        bar_.clear();
        std::fputs(prefix_.c_str(), out_);
        std::va_list ap;
        va_start(ap, fmt);
        std::vfprintf(out_, fmt, ap);
        va_end(ap);
        std::fputc('\n', out_);
        std::fflush(out_);
    }

    // Writers and readers interleaved, writers first, as lock_torture_init() creates them.
    bool start_threads()
    {
        for (int i = 0; i < std::max(cfg_.real_writers, cfg_.real_readers); ++i) {
            if (i < cfg_.real_writers && !start(writer, st_.writers[i], i, "writer"))
                return false;
            if (i < cfg_.real_readers && !start(reader, st_.readers[i], i, "reader"))
                return false;
        }
        return true;
    }

    bool start(void (*fn)(std::shared_ptr<run_state>, int), thread_slot& slot, int i, const char* role)
    {
        slot.since_ns = t0_;
        st_.running.fetch_add(1);
        try {
            threads_.emplace_back(fn, sp_, i);
        } catch (const std::system_error& e) {
            st_.running.fetch_sub(1);
            line("cannot create lock_torture_%s %d: %s !!!", role, i, e.what());
            return false;
        }
        who_.emplace_back(&slot, std::string("lock_torture_") + role + " " + std::to_string(i));
        return true;
    }

    // The run proper: a 10 ms tick until the duration is over or a thread stalls.
    void watch()
    {
        shuffler shuf;
        const std::uint64_t end = t0_ + to_ns(cfg_.duration);
        const std::uint64_t stat_ns = to_ns(cfg_.stat_interval);
        const std::uint64_t stutter_ns = to_ns(cfg_.stutter);
        const std::uint64_t shuffle_ns = shuf.useful() ? to_ns(cfg_.shuffle_interval) : 0;
        std::uint64_t next_stat = t0_ + stat_ns;
        std::uint64_t next_stutter = t0_ + stutter_ns;
        std::uint64_t next_shuffle = t0_ + shuffle_ns;
        std::uint64_t next_bar = t0_;
        constexpr std::uint64_t tick_ns = 10000000;

        for (std::uint64_t now = now_ns(); now < end; now = now_ns()) {
            sleep_ns(std::min(tick_ns, end - now));
            now = now_ns();
            if (stutter_ns != 0 && now >= next_stutter) {
                stutter_toggle();
                next_stutter += stutter_ns;
            }
            if (shuffle_ns != 0 && now >= next_shuffle) {
                shuf.shuffle(st_);
                next_shuffle += shuffle_ns;
            }
            if (stat_ns != 0 && now >= next_stat) {
                stats();
                next_stat += stat_ns;
            }
            if (stalled(now)) {
                line("stall detected: stopping the test early");
                return;
            }
            if (now >= next_bar) {
                bar_.draw(static_cast<double>(now - t0_) / 1e9, sum_acquired(st_.writers.get(), cfg_.real_writers),
                    sum_acquired(st_.readers.get(), cfg_.real_readers));
                next_bar = now + 100000000;
            }
        }
    }

    // torture_stutter(): run for stutter seconds, pause for stutter seconds.
    void stutter_toggle()
    {
        if (st_.pause.load(std::memory_order_relaxed) == 0) {
            st_.pause.store(1, std::memory_order_release);
        } else {
            st_.pause.store(0, std::memory_order_release);
            st_.pause.notify_all();
        }
    }

    // Each thread's iteration count must move within the bound, unless it is parked. Reports
    // each newly stuck thread; true if there was one.
    bool stalled(std::uint64_t now)
    {
        bool any = false;
        for (auto& [slot, name] : who_) {
            const std::uint64_t it = slot->iterations.load(std::memory_order_relaxed);
            const int w = slot->where.load(std::memory_order_relaxed);
            if (it != slot->seen || w == static_cast<int>(where::stutter) || w == static_cast<int>(where::done)) {
                slot->seen = it;
                slot->since_ns = now;
                continue;
            }
            if (now - slot->since_ns < stall_ns_ || slot->reported)
                continue;
            slot->reported = true;
            any = true;
            ++res_.stalls;
            const std::string state = st_.ops->describe();
            line("%s: no progress for %.1f s, stuck %s%s%s%s !!!", name.c_str(),
                static_cast<double>(now - slot->since_ns) / 1e9, where_text(w), state.empty() ? "" : " (",
                state.c_str(), state.empty() ? "" : ")");
        }
        return any;
    }

    // torture_cleanup: stop everybody, end the stutter pause, give them join_bound() to return;
    // one that does not is left running (its shared_ptr keeps the state alive).
    void stop_and_join()
    {
        st_.stop.store(true);
        st_.pause.store(0, std::memory_order_release);
        st_.pause.notify_all();
        const std::uint64_t join_end = now_ns() + to_ns(cfg_.join_bound());
        while (st_.running.load(std::memory_order_acquire) != 0 && now_ns() < join_end)
            sleep_ns(2000000);
        for (std::size_t i = 0; i < threads_.size(); ++i) {
            const thread_slot& slot = *who_[i].first;
            if (slot.exited.load(std::memory_order_acquire)) {
                threads_[i].join();
                continue;
            }
            threads_[i].detach();
            ++res_.left_running;
            line("%s did not stop within %.1f s (stuck %s): left running !!!", who_[i].second.c_str(),
                cfg_.join_bound(), where_text(slot.where.load(std::memory_order_relaxed)));
        }
    }

    void stats()
    {
        bar_.clear();
        const totals w = print_stats(out_, st_.writers.get(), cfg_.real_writers, true);
        totals r;
        if (readers_)
            r = print_stats(out_, st_.readers.get(), cfg_.real_readers, false);
        std::fflush(out_);
        fail_seen_ = fail_seen_ || w.fails != 0 || r.fails != 0;
        res_.writes = w.acquired;
        res_.reads = r.acquired;
        res_.write_fails = w.fails;
        res_.read_fails = r.fails;
    }

    // The critical sections' counters against the acquisitions: readable only once every
    // writer has been joined.
    void check_data()
    {
        if (res_.left_running != 0)
            return;
        if (st_.cs_count != static_cast<std::uint64_t>(res_.writes)) {
            ++res_.lost_updates;
            line("critical-section counter %llu != %ld write acquisitions: writers overlapped (lost updates) !!!",
                static_cast<unsigned long long>(st_.cs_count), res_.writes);
        }
        for (int i = 0; i < cfg_.nested_locks; ++i) {
            const long taken = st_.nested_taken[i].load(std::memory_order_relaxed);
            if (st_.nested_count[i] != static_cast<std::uint64_t>(taken)) {
                ++res_.lost_updates;
                line("nested lock %d: counter %llu != %ld acquisitions (lost updates) !!!", i,
                    static_cast<unsigned long long>(st_.nested_count[i]), taken);
            }
        }
    }

    std::shared_ptr<run_state> sp_;
    run_state& st_;
    const config& cfg_;
    std::FILE* out_;
    std::string prefix_;
    bool readers_;
    std::uint64_t stall_ns_;
    progress_bar bar_;
    std::uint64_t t0_ = 0;
    std::vector<std::thread> threads_;
    std::vector<std::pair<thread_slot*, std::string>> who_; // parallel to threads_
    result res_;
    bool fail_seen_ = false;
};

} // namespace

result run(const config& cfg, std::unique_ptr<lock_ops> ops, std::FILE* out)
{
    return controller(cfg, std::move(ops), out)();
}

} // namespace klock::tool::torture
