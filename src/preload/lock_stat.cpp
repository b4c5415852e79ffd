// lock_stat for `klock run`: contention and hold times per lock class, printed as the kernel's
// /proc/lock_stat table (version 0.4).
//
// The engine (klock::lock_stat) does the counting; the interposers feed it: lockdep's acquire and
// release hooks time the holds, and while lock_stat is on a blocking lock first tries the lock, so
// that a failed try is a contention (lock_contended) and the eventual success ends the wait
// (lock_acquired) - the kernel's LOCK_CONTENDED().
//
// Where the table goes:
//   KLOCK_LOCK_STAT_DUMP=FILE (--lock-stat-out): the engine writes it to FILE at exit, replacing
//     the file; with KLOCK_LOCK_STAT_SIGNAL=SIG each SIG writes the table of the moment the same
//     way, so FILE always holds the latest table;
//   otherwise the table is written to the report stream (stderr or --report) at exit, and on SIG.
// The signal's handler only writes a byte to a pipe; a helper thread (started only when a signal
// is configured, and never tracked itself) reads it and writes the table, since building it
// allocates and takes locks, which a signal handler must not.
#include "preload.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

namespace klock::preload {

bool g_lock_stat_enabled = false;

namespace {

int g_pipe[2] = {-1, -1};

void write_table()
{
    tool_scope scope;
    try {
        if (g_config.lock_stat_file != nullptr) {
            std::FILE* f = std::fopen(g_config.lock_stat_file, "w");
            if (f == nullptr)
                return;
            lock_stat::proc(f);
            std::fclose(f);
        } else {
            const std::string table = lock_stat::proc();
            emit_raw(table);
        }
    } catch (...) { }
}

void at_exit()
{
    if (g_config.lock_stat_file == nullptr)
        write_table(); // with a file, the engine writes it (KLOCK_LOCK_STAT_DUMP)
}

void on_signal(int)
{
    const int saved = errno;
    const char byte = 1;
    (void)!::write(g_pipe[1], &byte, 1);
    errno = saved;
}

void* dumper(void*)
{
    tls.in_tool = true; // klock's own thread: never tracked
    for (;;) {
        char byte;
        const ssize_t n = ::read(g_pipe[0], &byte, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return nullptr;
        write_table();
    }
}

void start_signal_dumps(int sig)
{
    if (::pipe2(g_pipe, O_CLOEXEC) != 0)
        return;
    pthread_t t;
    pthread_attr_t attr;
    ::pthread_attr_init(&attr);
    ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // The helper must not take the signal itself: block it there (it inherits this mask).
    sigset_t all, old;
    sigfillset(&all);
    R().pthread_sigmask(SIG_SETMASK, &all, &old);
    const int rc = ::pthread_create(&t, &attr, dumper, nullptr);
    R().pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::pthread_attr_destroy(&attr);
    if (rc != 0)
        return;
    struct sigaction sa { };
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    R().sigaction(sig, &sa, nullptr);
}

} // namespace

void lock_stat_init() noexcept
{
    if (!g_config.lock_stat)
        return;
    lock_stat::set_enabled(true);
    g_lock_stat_enabled = true;
    std::atexit(at_exit);
    if (g_config.lock_stat_signal != 0)
        start_signal_dumps(g_config.lock_stat_signal);
}

} // namespace klock::preload
