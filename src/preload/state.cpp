// Start-up, configuration, per-thread state and the calls into lockdep.
//
// The constructor resolves the real functions, reads the environment that `klock run` set up and
// prepares the record table and the report sink. Tracking is switched on later, in the
// __libc_start_main wrapper: by then every shared library has been initialised, including the
// static initialisers of the lockdep engine linked into this library (its task records, its
// pthread keys), which must not be used before they ran. The program's own static constructors
// run after the wrapper, so locks taken "before main" by the program are tracked.
#include "preload.hpp"

#include <klock/env/os.hpp>

#include <cstdlib>
#include <cstring>
#include <strings.h>

namespace klock::preload {

config g_config;
std::atomic<bool> g_active{false};
std::atomic<bool> g_ready{false};
thread_local constinit thread_state tls __attribute__((tls_model("initial-exec")))
= {false, false, false, 0, 0, 0, 0, ~std::uintptr_t(0), 0, {}};

namespace {

// "1", "on", "yes", "true" / "0", "off", "no", "false"; anything else keeps the default.
bool env_flag(const char* name, bool dflt)
{
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0')
        return dflt;
    for (const char* t : {"1", "on", "yes", "true"})
        if (::strcasecmp(v, t) == 0)
            return true;
    for (const char* f : {"0", "off", "no", "false"})
        if (::strcasecmp(v, f) == 0)
            return false;
    return dflt;
}

const char* env_str(const char* name)
{
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
}

void read_config()
{
    config& c = g_config;
    c.lockdep = env_flag("KLOCK_LOCKDEP", true);
    c.report_file = env_str("KLOCK_REPORT_FILE");
    c.json_file = env_str("KLOCK_LOCKDEP_JSON");
    c.lock_stat_file = env_str("KLOCK_LOCK_STAT_DUMP");
    c.lock_stat = env_flag("KLOCK_LOCK_STAT", c.lock_stat_file != nullptr);
    c.suppress_file = env_str("KLOCK_SUPPRESS");
    c.abort_on_report = env_flag("KLOCK_ABORT_ON_REPORT", false);
    if (const char* d = env_str("KLOCK_CLASS_DEPTH")) {
        const long n = std::strtol(d, nullptr, 10);
        if (n >= 1 && n <= 16)
            c.class_depth = static_cast<unsigned>(n);
    }
    if (const char* s = env_str("KLOCK_LOCK_STAT_SIGNAL")) {
        const long n = std::strtol(s, nullptr, 10);
        if (n > 0 && n < NSIG)
            c.lock_stat_signal = static_cast<int>(n);
    }
}

// Thread ids of the forking threads this process descends from (see is_me()).
constexpr unsigned MAX_ANCESTORS = 8;
int g_ancestors[MAX_ANCESTORS];
unsigned g_nancestors = 0;
int g_fork_tid = 0;

void atfork_prepare()
{
    g_fork_tid = current_tid();
    tls.in_tool = true;
    table_atfork_prepare();
    sink_atfork_prepare();
}

void atfork_parent()
{
    sink_atfork_release();
    table_atfork_release();
    tls.in_tool = false;
}

void atfork_child()
{
    if (g_nancestors < MAX_ANCESTORS)
        g_ancestors[g_nancestors++] = g_fork_tid;
    atfork_parent();
}

[[gnu::constructor]] void preload_init()
{
    tool_scope scope;
    resolve_all();
    read_config();
    table_init();
    sink_init();
    if (!g_config.lockdep)
        lockdep::set_enabled(false);
    lock_stat_init();
    ::pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    g_ready.store(true, std::memory_order_release);
}

} // namespace

bool is_me(int tid, int me) noexcept
{
    if (tid == me)
        return true;
    for (unsigned i = 0; i < g_nancestors; ++i)
        if (g_ancestors[i] == tid)
            return true;
    return false;
}

} // namespace klock::preload

using namespace klock::preload;

// glibc's program entry: everything shared is initialised now; the program's constructors and
// main() come next. Switch tracking on.
extern "C" int __libc_start_main(int (*main_fn)(int, char**, char**), int argc, char** argv, void (*init)(),
    void (*fini)(), void (*rtld_fini)(), void* stack_end)
{
    const real_functions& r = R();
    if (g_ready.load(std::memory_order_acquire) && table_ready() && (g_config.lockdep || g_config.lock_stat))
        g_active.store(true, std::memory_order_release);
    return r.libc_start_main(main_fn, argc, argv, init, fini, rtld_fini, stack_end);
}
