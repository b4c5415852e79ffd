// lock_stat: contention and hold-time statistics per lock class, on lockdep's hooks
// (CONFIG_LOCK_STAT: kernel/locking/lockdep.c's __lock_contended, __lock_acquired and
// lock_release_holdtime; kernel/locking/lockdep_proc.c's /proc/lock_stat; described in the
// kernel's Documentation/locking/lockstat.rst).
//
// WHAT IS MEASURED, PER ACQUISITION
//   lock_acquire ............ lock_contended ........ lock_acquired ............ lock_release
//   (stamp the hold)          (stamp the wait)        (wait ends; hold restarts)  (hold ends)
//   An uncontended acquisition never calls the middle two: its hold runs from lock_acquire to
//   lock_release. A contended one waits from lock_contended to lock_acquired and holds from
//   there. The hold time's count is the "acquisitions" column, the wait time's count the
//   "contentions" column, both split by reader (-R row) and writer (-W row).
//   Where: a contention point is the call site that waited (the waiter's lock_acquire ip), a
//   contending point is where the holder it waited for had taken the lock (the lock instance's
//   last acquisition ip). Each class keeps the first 4 distinct ips of each kind; counts of
//   later ones are dropped, as in the kernel.
//   A bounce is an acquisition (acq-bounces) or a wait (con-bounces) on another CPU than the
//   lock instance's previous acquisition: its cache lines had to move.
//
// THE LOCK INSTANCE'S WORD (lockdep_map::stat_word): the last acquisition's ip and CPU+1.
//   The kernel writes lock->ip and lock->cpu in lock_acquired(), which its lock functions call
//   after every acquisition, and a waiter's lock_contended() reads them to name the holder it
//   waits for. klock's fast paths call nothing once the lock is taken (that is what keeps them
//   fast), so every lock_acquire - made before the lock is taken - publishes its ip and CPU and
//   keeps the word it replaced in the held lock (stat_prev). Most acquisitions are uncontended,
//   and then the word is right. An acquisition that turns out to wait takes the holder from
//   stat_prev, hands the word back to it, and publishes itself again in lock_acquired(), when
//   it really has the lock. Invariant: each count and time is exact; only which holder a
//   contending point names, or whether a wait counts as a bounce, can be wrong, and only when
//   two acquirers publish within the moment between one's lock_acquire and its
//   lock_contended, or several readers hold the lock at once (any of them is then "the holder").
//
// PER-TASK COUNTERS, NOT PER-CPU
//   The kernel keeps one counter set per CPU per class and updates it with interrupts off. A user
//   thread can be preempted or migrated in the middle of such an update, so per-CPU slots would
//   need atomic read-modify-writes (locked instructions on every release). Instead each task owns
//   its counters (a table of 64-class chunks, mapped on first use): updates are plain load+store
//   with no other writer, and the cache lines stay with the task. Readers (proc(), the fold at
//   exit) sum all live tasks' tables plus the total of the tasks that ended, under the task
//   registry's lock. clear() bumps an epoch instead of zeroing other tasks' memory under them:
//   a table of an older epoch counts as zero, and its owner zeroes it before its next update.
//   The contention/contending point ips are per class and shared (filled once, by compare-and-
//   swap, off the fast path); only their counts are per task.
//
// THE CLOCK: the TSC when the kernel itself uses it as clocksource (constant and synchronised;
//   about 13 ns a read on this VM against 29 ns for clock_gettime), calibrated against
//   CLOCK_MONOTONIC over the whole time lock_stat has run and converted to ns when printed;
//   otherwise CLOCK_MONOTONIC. Output: microseconds with two decimals, as the kernel prints.
//
// Deviations: per-task instead of per-CPU counters (above); an uncontended acquisition is
// accounted at lock_acquire (its bounce counted at release), not in lock_acquired (above); a
// zero-length wait still counts as a contention; the first acquisition of an instance counts no
// bounce (the kernel seeds lock->cpu with the CPU that initialised the lock); symbols print as
// klock's symbolizer writes them (function+off/size, and file:line when known), not as %pS.
#include "internal.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <sched.h>
#include <sys/mman.h>
#include <vector>

namespace klock::lockdep {

namespace detail {

// docs/lockdep.md ("Memory") quotes these x86-64 sizes: change the two together.
#if defined(__x86_64__) && defined(__LP64__)
static_assert(sizeof(lock_class) == 104 && sizeof(lock_list) == 40 && sizeof(lock_chain) == 16);
static_assert(sizeof(held_lock) == 88 && sizeof(task_state) == 4416 && sizeof(lockdep_map) == 40);
static_assert(sizeof(class_stats) == 224 && sizeof(stat_points) == 64 && sizeof(stat_table) == 1032);
#endif

stat_points g_stat_points[MAX_LOCKDEP_KEYS];
std::atomic<std::uint32_t> g_stat_epoch{1};
std::atomic<std::uint32_t> g_stat_clock_mode{STAT_CLOCK_MONO};

namespace {

std::atomic<std::uint64_t (*)() noexcept> g_test_clock{nullptr};

// Chosen once, the first time lock_stat is switched on (graph lock held), then fixed: held
// locks carry stamps of this clock.
struct clock_choice {
    bool chosen = false;
    std::uint32_t mode = STAT_CLOCK_MONO;
    std::uint64_t tsc0 = 0, mono0 = 0; // the calibration's start
};
clock_choice g_clock;

std::uint64_t mono_ns() noexcept
{
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return std::uint64_t(t.tv_sec) * 1000000000u + std::uint64_t(t.tv_nsec);
}

#if defined(__x86_64__)
// The kernel keeps the TSC as its clocksource only while it trusts it (constant rate, in step on
// all CPUs, not stopping in idle); then so can we.
bool kernel_trusts_tsc() noexcept
{
    std::FILE* f = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == nullptr)
        return false;
    char buf[32] = {};
    const bool ok = std::fgets(buf, sizeof buf, f) != nullptr && std::strncmp(buf, "tsc", 3) == 0
        && (buf[3] == '\n' || buf[3] == '\0');
    std::fclose(f);
    return ok;
}
#endif

void choose_clock_locked() noexcept
{
    if (g_clock.chosen)
        return;
    g_clock.chosen = true;
#if defined(__x86_64__)
    if (kernel_trusts_tsc()) {
        g_clock.mode = STAT_CLOCK_TSC;
        g_clock.mono0 = mono_ns();
        g_clock.tsc0 = __builtin_ia32_rdtsc();
    }
#endif
    if (g_test_clock.load(std::memory_order_relaxed) == nullptr)
        g_stat_clock_mode.store(g_clock.mode, std::memory_order_relaxed);
}

// Nanoseconds per clock tick, for printing. The TSC's rate is measured over the whole time since
// the clock was chosen (at least 5 ms: a fresh start sleeps the rest), so it only gets better.
double ns_per_tick() noexcept
{
    if (g_stat_clock_mode.load(std::memory_order_relaxed) != STAT_CLOCK_TSC)
        return 1.0;
    std::uint64_t mono0, tsc0;
    {
        std::lock_guard<std::mutex> g(graph().lock);
        mono0 = g_clock.mono0;
        tsc0 = g_clock.tsc0;
    }
    constexpr std::uint64_t min_window_ns = 5000000;
    std::uint64_t mono1 = mono_ns();
    if (mono1 - mono0 < min_window_ns) {
        const std::uint64_t rest = min_window_ns - (mono1 - mono0);
        timespec t{static_cast<time_t>(rest / 1000000000u), static_cast<long>(rest % 1000000000u)};
        while (nanosleep(&t, &t) != 0) { }
        mono1 = mono_ns();
    }
    const std::uint64_t tsc1 = __builtin_ia32_rdtsc();
    if (tsc1 <= tsc0)
        return 1.0;
    return static_cast<double>(mono1 - mono0) / static_cast<double>(tsc1 - tsc0);
}

// ---- task tables ----

template <class T> T* map_zeroed() noexcept
{
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<T*>(p);
}

template <class T> void unmap(T* p) noexcept
{
    if (p != nullptr)
        ::munmap(p, sizeof(T));
}

stat_chunk* chunk_of(const stat_table& t, unsigned n) noexcept
{
    return __atomic_load_n(&t.chunk[n], __ATOMIC_ACQUIRE);
}

void free_table(stat_table* t) noexcept
{
    if (t == nullptr)
        return;
    for (stat_chunk* c : t->chunk)
        unmap(c);
    unmap(t);
}

// Zero a table for a new epoch. Only its owner (or, for the exited total, the registry lock's
// holder) does this, and readers skip a table whose epoch is not current, so nobody reads it now.
void zero_table(stat_table& t, std::uint32_t epoch) noexcept
{
    for (stat_chunk* c : t.chunk)
        if (c != nullptr)
            std::memset(static_cast<void*>(c), 0, sizeof *c);
    __atomic_store_n(&t.epoch, epoch, __ATOMIC_RELEASE);
}

// The counters of the tasks that have ended (registry lock).
stat_table* g_exited = nullptr;

void time_add(lock_time_stat& dst, const lock_time_stat& src) noexcept
{
    const std::uint64_t n = stat_load(src.nr);
    if (n == 0)
        return;
    const std::uint64_t mx = stat_load(src.max), mn = stat_load(src.min);
    if (mx > dst.max)
        dst.max = mx;
    if (dst.nr == 0 || mn < dst.min)
        dst.min = mn;
    dst.total += stat_load(src.total);
    dst.nr += n;
}

// dst (private) += src (a task's, being updated meanwhile: each field is read once, atomically).
void stats_add(class_stats& dst, const class_stats& src) noexcept
{
    time_add(dst.read_waittime, src.read_waittime);
    time_add(dst.write_waittime, src.write_waittime);
    time_add(dst.read_holdtime, src.read_holdtime);
    time_add(dst.write_holdtime, src.write_holdtime);
    for (unsigned i = 0; i < nr_bounce_types; ++i)
        dst.bounces[i] += stat_load(src.bounces[i]);
    for (unsigned i = 0; i < LOCKSTAT_POINTS; ++i) {
        dst.contention_point[i] += stat_load(src.contention_point[i]);
        dst.contending_point[i] += stat_load(src.contending_point[i]);
    }
}

// Add table t's first n classes to sum (registry lock held).
void table_add(std::vector<class_stats>& sum, const stat_table& t, unsigned n, std::uint32_t epoch) noexcept
{
    if (__atomic_load_n(&t.epoch, __ATOMIC_ACQUIRE) != epoch)
        return;
    for (unsigned k = 0; k * STAT_CHUNK_CLASSES < n; ++k) {
        const stat_chunk* c = chunk_of(t, k);
        if (c == nullptr)
            continue;
        for (unsigned j = 0; j < STAT_CHUNK_CLASSES && k * STAT_CHUNK_CLASSES + j < n; ++j)
            stats_add(sum[k * STAT_CHUNK_CLASSES + j], c->cls[j]);
    }
}

// The kernel's lock_point(): the slot of ip in a class's points, taking a free one if needed;
// LOCKSTAT_POINTS when all four hold other ips.
unsigned lock_point(std::atomic<std::uintptr_t> (&points)[LOCKSTAT_POINTS], std::uintptr_t ip) noexcept
{
    for (unsigned i = 0; i < LOCKSTAT_POINTS; ++i) {
        std::uintptr_t v = points[i].load(std::memory_order_relaxed);
        if (v == 0 && points[i].compare_exchange_strong(v, ip, std::memory_order_relaxed))
            return i;
        if (v == ip)
            return i;
    }
    return LOCKSTAT_POINTS;
}

// Classes from `used` on have not been written since the last clear (a class index is handed out
// before anything is counted for it, and every clear covers all the indices handed out).
void clear_locked(unsigned used) noexcept
{
    std::uint32_t e = g_stat_epoch.load(std::memory_order_relaxed) + 1;
    if (e == 0)
        e = 1;
    g_stat_epoch.store(e, std::memory_order_release);
    if (g_exited != nullptr)
        zero_table(*g_exited, e);
    for (unsigned i = 0; i < used && i < std::size(g_stat_points); ++i) {
        stat_points& p = g_stat_points[i];
        for (auto& ip : p.contention)
            ip.store(0, std::memory_order_relaxed);
        for (auto& ip : p.contending)
            ip.store(0, std::memory_order_relaxed);
    }
}

void bump_generation_locked(graph_state& g) noexcept
{
    if (++g.generation >= (1u << (32 - STATE_GEN_SHIFT)))
        g.generation = 1;
}

} // namespace

std::uint64_t stat_clock_slow() noexcept
{
    const std::uint32_t mode = g_stat_clock_mode.load(std::memory_order_relaxed);
    if (mode == STAT_CLOCK_TEST) {
        if (auto* f = g_test_clock.load(std::memory_order_relaxed))
            return f();
    }
#if defined(__x86_64__)
    if (mode == STAT_CLOCK_TSC)
        return __builtin_ia32_rdtsc();
#endif
    return mono_ns();
}

int stat_cpu() noexcept
{
    const int c = ::sched_getcpu();
    return c < 0 ? 0 : c;
}

class_stats* task_class_stats_slow(task_state& ts, unsigned idx) noexcept
{
    if (!ts.registered || idx >= MAX_LOCKDEP_KEYS)
        return nullptr; // a task nobody would fold or read: count nothing rather than leak
    const std::uint32_t epoch = g_stat_epoch.load(std::memory_order_acquire);
    stat_table* t = ts.stat;
    if (t == nullptr) {
        t = map_zeroed<stat_table>();
        if (t == nullptr)
            return nullptr;
        t->epoch = epoch;
        __atomic_store_n(&ts.stat, t, __ATOMIC_RELEASE);
    } else if (t->epoch != epoch) {
        zero_table(*t, epoch);
    }
    stat_chunk* c = t->chunk[idx / STAT_CHUNK_CLASSES];
    if (c == nullptr) {
        c = map_zeroed<stat_chunk>();
        if (c == nullptr)
            return nullptr;
        __atomic_store_n(&t->chunk[idx / STAT_CHUNK_CLASSES], c, __ATOMIC_RELEASE);
    }
    return &c->cls[idx % STAT_CHUNK_CLASSES];
}

void stat_contended(task_state& ts, held_lock& h, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    h.waittime_stamp = stat_clock();
    class_stats* cs = task_class_stats(ts, h.class_idx);
    stat_points& p = g_stat_points[h.class_idx];
    const unsigned i = lock_point(p.contention, ip != 0 ? ip : h.acquire_ip);
    if (cs != nullptr && i < LOCKSTAT_POINTS)
        stat_inc(cs->contention_point[i]);
    // The holder is whoever published before this task's lock_acquire did.
    const std::uint64_t holder = h.stat_prev;
    if (const std::uintptr_t holder_ip = stat_word_ip(holder)) {
        const unsigned j = lock_point(p.contending, holder_ip);
        if (cs != nullptr && j < LOCKSTAT_POINTS)
            stat_inc(cs->contending_point[j]);
    }
    const unsigned cpu1 = static_cast<unsigned>(stat_cpu()) + 1;
    const unsigned last = stat_word_cpu(holder);
    if (cs != nullptr && last != 0 && last != cpu1)
        stat_inc(cs->bounces[h.read != 0 ? bounce_contended_read : bounce_contended_write]);
    // Give the word back to the holder, unless a later acquirer has published since (then the
    // next waiter would take a waiter for the holder: rare, and it only costs a point's accuracy).
    const std::uint64_t w = lock.stat_word.load(std::memory_order_relaxed);
    if (stat_word_ip(w) == stat_word_ip(h.acquire_ip) && w != holder)
        lock.stat_word.store(holder, std::memory_order_relaxed);
    h.stat_flags = static_cast<std::uint8_t>(h.stat_flags & ~HSTAT_BOUNCE); // decided at lock_acquired
}

void stat_acquired(task_state& ts, held_lock& h, lockdep_map& lock, std::uintptr_t ip) noexcept
{
    if (h.waittime_stamp == 0)
        return; // no wait: lock_acquire accounted this acquisition
    const std::uint64_t now = stat_clock();
    if (class_stats* cs = task_class_stats(ts, h.class_idx))
        stat_time_inc(h.read != 0 ? cs->read_waittime : cs->write_waittime, stat_delta(h.waittime_stamp, now));
    h.holdtime_stamp = now;
    // The acquisition happens now: a bounce if the lock last ran elsewhere; publish it.
    const unsigned cpu1 = static_cast<unsigned>(stat_cpu()) + 1;
    const unsigned last = stat_word_cpu(lock.stat_word.load(std::memory_order_relaxed));
    h.stat_flags = last != 0 && last != cpu1 ? HSTAT_BOUNCE : 0;
    lock.stat_word.store(stat_word_make(cpu1, ip != 0 ? ip : h.acquire_ip), std::memory_order_relaxed);
}

void stat_task_exit_locked(task_state& ts) noexcept
{
    stat_table* t = ts.stat;
    if (t == nullptr)
        return;
    const std::uint32_t epoch = g_stat_epoch.load(std::memory_order_relaxed);
    if (t->epoch == epoch) {
        if (g_exited == nullptr) {
            g_exited = map_zeroed<stat_table>();
            if (g_exited != nullptr)
                g_exited->epoch = epoch;
        } else if (g_exited->epoch != epoch) {
            zero_table(*g_exited, epoch);
        }
        if (g_exited != nullptr) {
            for (unsigned k = 0; k < STAT_CHUNKS; ++k) {
                const stat_chunk* c = t->chunk[k];
                if (c == nullptr)
                    continue;
                stat_chunk* d = g_exited->chunk[k];
                if (d == nullptr) {
                    d = map_zeroed<stat_chunk>();
                    if (d == nullptr)
                        continue;
                    __atomic_store_n(&g_exited->chunk[k], d, __ATOMIC_RELEASE);
                }
                for (unsigned j = 0; j < STAT_CHUNK_CLASSES; ++j) {
                    class_stats sum = {};
                    stats_add(sum, d->cls[j]);
                    stats_add(sum, c->cls[j]);
                    d->cls[j] = sum; // only registry-lock holders read g_exited
                }
            }
        }
    }
    __atomic_store_n(&ts.stat, static_cast<stat_table*>(nullptr), __ATOMIC_RELEASE);
    free_table(t);
}

void stat_reset(unsigned classes_used) noexcept
{
    std::lock_guard<std::mutex> g(registry_mutex());
    clear_locked(classes_used);
}

namespace {

// ---- /proc/lock_stat ----

struct class_row {
    unsigned idx;
    std::string name; // with #version and /subclass, truncated as the kernel does
    std::uint64_t contentions;
};

// seq_stats()' name: at most 37 characters of the class name (2 fewer for each suffix), then
// "#N" and "/N" cut to two characters.
std::string row_name(const lock_class* c)
{
    int namelen = 38;
    if (c->name_version > 1)
        namelen -= 2;
    if (c->subclass != 0)
        namelen -= 2;
    std::string base = c->name != nullptr ? std::string(c->name) : class_name(c);
    if (base.size() > static_cast<std::size_t>(namelen - 1))
        base.resize(static_cast<std::size_t>(namelen - 1));
    char suffix[16];
    if (c->name_version > 1) {
        std::snprintf(suffix, sizeof suffix, "#%d", c->name_version);
        base.append(suffix, std::min<std::size_t>(2, std::strlen(suffix)));
    }
    if (c->subclass != 0) {
        std::snprintf(suffix, sizeof suffix, "/%u", c->subclass);
        base.append(suffix, std::min<std::size_t>(2, std::strlen(suffix)));
    }
    return base;
}

void rule(std::string& out, char ch, int offset, int length)
{
    out.append(static_cast<std::size_t>(offset), ' ');
    out.append(static_cast<std::size_t>(length), ch);
    out += '\n';
}

constexpr int LINE_WIDTH = 40 + 1 + 12 * (14 + 1); // 221

// snprint_time(): ns as microseconds with two decimals, rounded to the nearest 10 ns.
void append_time(std::string& out, std::uint64_t ns)
{
    const std::uint64_t r = ns + 5;
    char num[32];
    std::snprintf(num, sizeof num, "%" PRIu64 ".%02u", r / 1000, static_cast<unsigned>(r % 1000) / 10);
    appendf(out, " %14s", num);
}

void append_lock_time(std::string& out, const lock_time_stat& t, double scale)
{
    auto ns
        = [scale](std::uint64_t ticks) { return static_cast<std::uint64_t>(static_cast<double>(ticks) * scale + 0.5); };
    const std::uint64_t total = ns(t.total);
    appendf(out, "%14" PRIu64, t.nr);
    append_time(out, ns(t.min));
    append_time(out, ns(t.max));
    append_time(out, total);
    append_time(out, t.nr != 0 ? total / t.nr : 0);
}

void append_header(std::string& out, bool debug_locks)
{
    out += "lock_stat version 0.4\n";
    if (!debug_locks)
        out += "*WARNING* lock debugging disabled!! - possibly due to a lockdep warning\n";
    rule(out, '-', 0, LINE_WIDTH);
    appendf(out, "%40s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s %14s\n", "class name", "con-bounces",
        "contentions", "waittime-min", "waittime-max", "waittime-total", "waittime-avg", "acq-bounces", "acquisitions",
        "holdtime-min", "holdtime-max", "holdtime-total", "holdtime-avg");
    rule(out, '-', 0, LINE_WIDTH);
    out += '\n';
}

void append_points(std::string& out, const std::string& name, int namelen, const std::uintptr_t (&ips)[LOCKSTAT_POINTS],
    const std::uint64_t (&counts)[LOCKSTAT_POINTS], unsigned& printed)
{
    printed = 0;
    for (unsigned i = 0; i < LOCKSTAT_POINTS && ips[i] != 0; ++i, ++printed) {
        if (i == 0)
            rule(out, '-', 40 - namelen, namelen);
        char ip[40];
        std::snprintf(ip, sizeof ip, "[<%016" PRIxPTR ">]", ips[i]);
        appendf(out, "%40s %14" PRIu64 " %29s ", name.c_str(), counts[i], ip);
        out += symbolize(ips[i], true) + "\n";
    }
}

// seq_stats(): the -W / -R rows, then the points of a contended class.
void append_class(std::string& out, const class_row& row, const class_stats& st, const stat_points& pts, double scale)
{
    const char* name = row.name.c_str();
    if (st.write_holdtime.nr != 0) {
        if (st.read_holdtime.nr != 0)
            appendf(out, "%38s-W:", name);
        else
            appendf(out, "%40s:", name);
        appendf(out, "%14" PRIu64 " ", st.bounces[bounce_contended_write]);
        append_lock_time(out, st.write_waittime, scale);
        appendf(out, " %14" PRIu64 " ", st.bounces[bounce_acquired_write]);
        append_lock_time(out, st.write_holdtime, scale);
        out += '\n';
    }
    if (st.read_holdtime.nr != 0) {
        appendf(out, "%38s-R:", name);
        appendf(out, "%14" PRIu64 " ", st.bounces[bounce_contended_read]);
        append_lock_time(out, st.read_waittime, scale);
        appendf(out, " %14" PRIu64 " ", st.bounces[bounce_acquired_read]);
        append_lock_time(out, st.read_holdtime, scale);
        out += '\n';
    }
    if (st.read_waittime.nr + st.write_waittime.nr == 0)
        return;
    int namelen = static_cast<int>(row.name.size());
    if (st.read_holdtime.nr != 0)
        namelen += 2;
    std::uintptr_t contention[LOCKSTAT_POINTS], contending[LOCKSTAT_POINTS];
    for (unsigned i = 0; i < LOCKSTAT_POINTS; ++i) {
        contention[i] = pts.contention[i].load(std::memory_order_relaxed);
        contending[i] = pts.contending[i].load(std::memory_order_relaxed);
    }
    unsigned n = 0;
    append_points(out, row.name, namelen, contention, st.contention_point, n);
    append_points(out, row.name, namelen, contending, st.contending_point, n);
    if (n != 0) { // as the kernel: the dotted separator follows a class that had contending points
        out += '\n';
        rule(out, '.', 0, LINE_WIDTH);
        out += '\n';
    }
}

void write_file(std::FILE* out, const std::string& s)
{
    if (out != nullptr)
        std::fwrite(s.data(), 1, s.size(), out);
}

} // namespace

void stat_dump_at_exit() noexcept
{
    const char* path = std::getenv("KLOCK_LOCK_STAT_DUMP");
    if (path == nullptr || *path == '\0')
        return;
    std::FILE* f = std::fopen(path, "w");
    if (f == nullptr)
        return;
    try {
        lock_stat::proc(f);
    } catch (...) { }
    std::fclose(f);
}

namespace {
// KLOCK_LOCK_STAT=1: on before the program's own static constructors run (priority 101 comes
// before every default-priority initialiser), so locks taken there are counted too.
[[gnu::constructor(101)]] void lock_stat_from_environment()
{
    const char* on = std::getenv("KLOCK_LOCK_STAT");
    const char* dump = std::getenv("KLOCK_LOCK_STAT_DUMP");
    if (on != nullptr && *on != '\0' && std::strcmp(on, "0") != 0)
        lock_stat::set_enabled(true);
    if (dump != nullptr && *dump != '\0')
        register_dump_at_exit();
}
} // namespace

} // namespace detail

} // namespace klock::lockdep

namespace klock::lock_stat {

using namespace klock::lockdep;
using namespace klock::lockdep::detail;

void set_enabled(bool on) noexcept
{
    graph_state& g = graph();
    {
        std::lock_guard<std::mutex> guard(g.lock);
        if (on) {
            choose_clock_locked();
            // Nothing tracked held locks until now: start a new generation so that every task drops
            // its (stale) stack and tolerates releases of locks it took before.
            if (!g.stat_on && !(g.user_on && g.debug_locks))
                bump_generation_locked(g);
        }
        g.stat_on = on;
        publish_state_locked();
    }
    if (on)
        register_dump_at_exit();
}

bool enabled() noexcept { return (g_state.load(std::memory_order_relaxed) & STATE_STAT) != 0; }

void clear() noexcept
{
    graph_state& gs = graph();
    unsigned used = 0;
    {
        std::lock_guard<std::mutex> guard(gs.lock);
        used = gs.nr_classes;
    }
    stat_reset(used);
}

std::string proc()
{
    // Class names and the warning flag under the graph lock; the counters under the registry lock
    // (never both at once).
    std::vector<class_row> rows;
    bool debug = true;
    {
        graph_state& g = graph();
        std::lock_guard<std::mutex> guard(g.lock);
        debug = g.debug_locks;
        rows.reserve(g.nr_classes);
        for (unsigned i = 0; i < g.nr_classes; ++i)
            rows.push_back(class_row{i, row_name(class_at(i)), 0});
    }
    const auto n = static_cast<unsigned>(rows.size());
    std::vector<class_stats> sum(n, class_stats{});
    {
        std::lock_guard<std::mutex> guard(registry_mutex());
        const std::uint32_t epoch = g_stat_epoch.load(std::memory_order_relaxed);
        if (g_exited != nullptr)
            table_add(sum, *g_exited, n, epoch);
        for (task_state* t = registry_first(); t != nullptr; t = t->reg_next)
            if (const stat_table* tab = __atomic_load_n(&t->stat, __ATOMIC_ACQUIRE))
                table_add(sum, *tab, n, epoch);
    }
    for (class_row& r : rows)
        r.contentions = sum[r.idx].read_waittime.nr + sum[r.idx].write_waittime.nr;
    // Most contended first; classes that tie keep the order they were registered in.
    std::stable_sort(
        rows.begin(), rows.end(), [](const class_row& a, const class_row& b) { return a.contentions > b.contentions; });

    const double scale = ns_per_tick();
    std::string out;
    append_header(out, debug);
    for (const class_row& r : rows)
        append_class(out, r, sum[r.idx], g_stat_points[r.idx], scale);
    return out;
}

void proc(std::FILE* out) { write_file(out, proc()); }

namespace test {
void set_clock(std::uint64_t (*now_ns)() noexcept) noexcept
{
    std::lock_guard<std::mutex> guard(graph().lock);
    g_test_clock.store(now_ns, std::memory_order_relaxed);
    if (now_ns != nullptr)
        g_stat_clock_mode.store(STAT_CLOCK_TEST, std::memory_order_relaxed);
    else
        g_stat_clock_mode.store(g_clock.chosen ? g_clock.mode : STAT_CLOCK_MONO, std::memory_order_relaxed);
}
} // namespace test

} // namespace klock::lock_stat
