// `klock bench` locks: the table of every lock and its workloads' instantiations.
//
// The peers come from bench/peers.hpp, the adapters the Google Benchmark suite uses too, so that
// both benchmarks measure the peers the same way; a peer library not found at build time
// (cmake/KlockPeers.cmake) is listed as missing.
#include "bench_locks.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <shared_mutex>

#include <klock/mutex.hpp>
#include <klock/rt_mutex.hpp>
#include <klock/rw_semaphore.hpp>
#include <klock/rwlock.hpp>
#include <klock/spinlock.hpp>
#include <klock/ww_mutex.hpp>

#include "../../bench/peers.hpp"

namespace klock::tool::bench {

namespace {

// A ww_mutex used as a plain mutex, the way a ww user takes a single lock: every acquisition
// is a whole transaction (ww_acquire_init, lock with the context, ww_acquire_done; unlock,
// ww_acquire_fini), so it pays for the context's stamp as well as for the lock.
struct ww_adapter {
    using node = klock::ww_acquire_ctx;
    void lock(node& ctx) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        ctx.init(klock::ww_class_wound_wait{});
        // A context that holds nothing is never told to back off: the result is always 0.
        static_cast<void>(m.lock(&ctx));
        ctx.acquire_done();
    }
    void unlock(node& ctx) KLOCK_NO_THREAD_SAFETY_ANALYSIS
    {
        m.unlock();
        ctx.acquire_fini();
    }
    klock::ww_mutex<klock::ww_class_wound_wait> m;
};

// bench/peers.hpp's adapters (klock::bench::...) have this tool's adapter shape already; their
// `exclusive` flag is not needed here. absl::Mutex needs both sides on one object.
#if KLOCK_HAVE_ABSL
struct absl_rw_adapter {
    using node = no_node;
    void lock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.Lock(); }
    void unlock(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.Unlock(); }
    void lock_shared(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.ReaderLock(); }
    void unlock_shared(node&) KLOCK_NO_THREAD_SAFETY_ANALYSIS { m.ReaderUnlock(); }
    absl::Mutex m;
};
#endif

template <adapter A> constexpr auto run_of() { return &run_exclusive_point<A>; }
template <rw_adapter A> constexpr auto rw_of() { return &run_rw_point<A>; }

std::vector<lock_desc> make_table()
{
    std::vector<lock_desc> v;
    // klock's locks. spinlock is the queued spinlock (klock::qspinlock is the same type).
    v.push_back({"ticket_spinlock", "", true, "spin: FIFO tickets", nullptr, true,
        run_of<exclusive_adapter<klock::ticket_spinlock>>(), nullptr});
    v.push_back({"spinlock", "qspinlock", true, "spin: MCS queue, long waits sleep", nullptr, true,
        run_of<exclusive_adapter<klock::spinlock>>(), nullptr});
    v.push_back({"rwlock", "qrwlock", true, "spin: queued rwlock", nullptr, true,
        run_of<exclusive_adapter<klock::rwlock>>(), rw_of<shared_adapter<klock::rwlock>>()});
    v.push_back({"mutex", "", true, "sleep: spins while the owner runs", nullptr, true,
        run_of<exclusive_adapter<klock::mutex>>(), nullptr});
    v.push_back({"rt_mutex", "", true, "PI futex, adaptive spin", nullptr, true,
        run_of<exclusive_adapter<klock::rt_mutex>>(), nullptr});
    v.push_back({"rw_semaphore", "rwsem", true, "sleep: spins while the owner runs", nullptr, true,
        run_of<exclusive_adapter<klock::rw_semaphore>>(), rw_of<shared_adapter<klock::rw_semaphore>>()});
    v.push_back(
        {"ww_mutex", "", true, "sleep: wound/wait, a context per lock", nullptr, true, run_of<ww_adapter>(), nullptr});

    // The C++ library's, always there.
    v.push_back({"std::mutex", "std_mutex", false, "sleep: futex", nullptr, true,
        run_of<exclusive_adapter<std::mutex>>(), nullptr});
    v.push_back({"std::shared_mutex", "std_shared_mutex", false, "sleep: pthread rwlock", nullptr, true,
        run_of<exclusive_adapter<std::shared_mutex>>(), rw_of<shared_adapter<std::shared_mutex>>()});

    v.push_back({"pthread_spinlock", "pthread_spinlock_t", false, "spin: test-and-set", nullptr, true,
        run_of<exclusive_adapter<klock::bench::pthread_spinlock>>(), nullptr});
    v.push_back({"glibc_pi_mutex", "pi_mutex", false, "PI futex: every wait in the kernel", nullptr, true,
        run_of<exclusive_adapter<klock::bench::glibc_pi_mutex>>(), nullptr});

#if KLOCK_HAVE_ABSL
    v.push_back({"absl::Mutex", "absl_mutex", false, "spin, then sleep", "libabsl-dev", true, run_of<absl_rw_adapter>(),
        rw_of<absl_rw_adapter>()});
#else
    v.push_back({"absl::Mutex", "absl_mutex", false, "spin, then sleep", "libabsl-dev", false, nullptr, nullptr});
#endif

#if KLOCK_HAVE_TBB
    v.push_back({"tbb::spin_mutex", "tbb_spin_mutex", false, "spin: test-and-set, backoff", "libtbb-dev", true,
        run_of<exclusive_adapter<tbb::spin_mutex>>(), nullptr});
    v.push_back({"tbb::queuing_mutex", "tbb_queuing_mutex", false, "spin: MCS queue", "libtbb-dev", true,
        run_of<klock::bench::tbb_queuing>(), nullptr});
#else
    const char* tbb = "libtbb-dev";
    v.push_back(
        {"tbb::spin_mutex", "tbb_spin_mutex", false, "spin: test-and-set, backoff", tbb, false, nullptr, nullptr});
    v.push_back({"tbb::queuing_mutex", "tbb_queuing_mutex", false, "spin: MCS queue", tbb, false, nullptr, nullptr});
#endif

#if KLOCK_HAVE_CK
    v.push_back({"ck_ticket", "ck_spinlock_ticket", false, "spin: FIFO tickets", "libck-dev", true,
        run_of<klock::bench::ck_ticket>(), nullptr});
    v.push_back({"ck_mcs", "ck_spinlock_mcs", false, "spin: MCS queue", "libck-dev", true,
        run_of<klock::bench::ck_mcs>(), nullptr});
#else
    const char* ck = "libck-dev";
    v.push_back({"ck_ticket", "ck_spinlock_ticket", false, "spin: FIFO tickets", ck, false, nullptr, nullptr});
    v.push_back({"ck_mcs", "ck_spinlock_mcs", false, "spin: MCS queue", ck, false, nullptr, nullptr});
#endif
    return v;
}

bool same_name(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

} // namespace

const std::vector<lock_desc>& all_locks()
{
    static const std::vector<lock_desc> table = make_table();
    return table;
}

const lock_desc* find_lock(std::string_view name)
{
    for (const lock_desc& l : all_locks()) {
        if (same_name(name, l.name))
            return &l;
        std::string_view aliases = l.aliases;
        while (!aliases.empty()) {
            const std::size_t sp = aliases.find(' ');
            if (same_name(name, aliases.substr(0, sp)))
                return &l;
            if (sp == std::string_view::npos)
                break;
            aliases.remove_prefix(sp + 1);
        }
    }
    return nullptr;
}

void prepare_locks()
{
    // A ticket lock with more threads than CPUs legitimately spins for long stretches (a waiter
    // whose turn comes while it is preempted holds up everyone behind it): not a lockup here.
    klock::set_spin_lockup_threshold_ns(0);
#if KLOCK_HAVE_ABSL
    // Debian builds abseil without NDEBUG, which leaves absl::Mutex's deadlock detector on (a
    // graph update per Lock); measure it as an optimized abseil build ships it, as klock_bench does.
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

bool resolve_locks(const std::vector<std::string>& names, std::vector<const lock_desc*>& out, std::string& error)
{
    out.clear();
    auto add = [&out](const lock_desc* l) {
        if (std::find(out.begin(), out.end(), l) == out.end())
            out.push_back(l);
    };
    if (names.empty()) {
        for (const lock_desc& l : all_locks())
            if (l.available)
                add(&l);
        return true;
    }
    for (const std::string& n : names) {
        if (same_name(n, "all") || same_name(n, "klock") || same_name(n, "peers")) {
            const bool any = same_name(n, "all");
            for (const lock_desc& l : all_locks())
                if (l.available && (any || l.klock == same_name(n, "klock")))
                    add(&l);
            continue;
        }
        const lock_desc* l = find_lock(n);
        if (l == nullptr) {
            error = "unknown lock '" + n + "' (klock bench --list shows the locks)";
            return false;
        }
        if (!l->available) {
            error = "lock '" + std::string(l->name)
                + "' was not found when this klock was built: install the Debian package " + l->package
                + " and rebuild klock";
            return false;
        }
        add(l);
    }
    return true;
}

} // namespace klock::tool::bench
