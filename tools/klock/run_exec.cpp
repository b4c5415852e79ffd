// `klock run`: finding the preload library, and starting and waiting for the program.
//
// The program runs in a child process so that its end can be turned into an exit status that a
// shell-less caller (ctest, make) can read: its own status, or 128 + the signal that killed it.
// While it runs, klock ignores SIGINT and SIGQUIT (a terminal sends them to the whole process
// group, the program decides) and passes SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 and the lock_stat
// signal on to it.
#include "run_options.hpp"

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KLOCK_PRELOAD_INSTALL_DIR
#define KLOCK_PRELOAD_INSTALL_DIR "../lib"
#endif

namespace klock::tool::run {

namespace {

constexpr const char* LIB_NAME = "libklock-preload.so";

bool is_file(const std::string& path)
{
    struct stat st { };
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

volatile sig_atomic_t g_child = 0;

void forward(int sig)
{
    if (g_child > 0)
        ::kill(static_cast<pid_t>(g_child), sig);
}

} // namespace

std::string find_preload(std::string& error)
{
    if (const char* env = std::getenv("KLOCK_PRELOAD_LIB"); env != nullptr && *env != '\0') {
        if (is_file(env))
            return env;
        error = std::string("KLOCK_PRELOAD_LIB names '") + env + "', which is not a file";
        return {};
    }
    char exe[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        std::string dir(exe);
        dir.erase(dir.rfind('/'));
        const std::string installed = dir + "/" + KLOCK_PRELOAD_INSTALL_DIR + "/" + LIB_NAME;
        if (is_file(installed))
            return installed;
    }
#ifdef KLOCK_PRELOAD_BUILD_PATH
    if (is_file(KLOCK_PRELOAD_BUILD_PATH))
        return KLOCK_PRELOAD_BUILD_PATH;
#endif
    error = std::string("cannot find ") + LIB_NAME + " (looked next to klock in " + KLOCK_PRELOAD_INSTALL_DIR
        + " and in the build tree; set KLOCK_PRELOAD_LIB)";
    return {};
}

int spawn_and_wait(const std::vector<std::string>& command, const std::vector<std::string>& env, int forward_signal)
{
    std::vector<char*> argv;
    for (const std::string& a : command)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    struct sigaction ign {
    }, fwd{}, old_int{}, old_quit{};
    ign.sa_handler = SIG_IGN;
    fwd.sa_handler = forward;
    sigemptyset(&fwd.sa_mask);
    fwd.sa_flags = SA_RESTART;

    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::fprintf(stderr, "klock run: fork: %s\n", std::strerror(errno));
        return 2;
    }
    if (pid == 0) {
        for (const std::string& e : env) {
            const std::size_t eq = e.find('=');
            ::setenv(e.substr(0, eq).c_str(), e.c_str() + eq + 1, 1);
        }
        ::execvp(argv[0], argv.data());
        const int err = errno;
        std::fprintf(stderr, "klock run: cannot run '%s': %s\n", argv[0], std::strerror(err));
        ::_exit(err == ENOENT ? 127 : 126);
    }
    g_child = pid;
    ::sigaction(SIGINT, &ign, &old_int);
    ::sigaction(SIGQUIT, &ign, &old_quit);
    int forwarded[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, forward_signal};
    struct sigaction saved[5]{};
    for (int k = 0; k < 5; ++k)
        if (forwarded[k] > 0 && forwarded[k] != SIGINT && forwarded[k] != SIGQUIT)
            ::sigaction(forwarded[k], &fwd, &saved[k]);

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::fprintf(stderr, "klock run: waitpid: %s\n", std::strerror(errno));
            return 2;
        }
    }
    g_child = 0;
    for (int k = 0; k < 5; ++k)
        if (forwarded[k] > 0 && forwarded[k] != SIGINT && forwarded[k] != SIGQUIT)
            ::sigaction(forwarded[k], &saved[k], nullptr);
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGQUIT, &old_quit, nullptr);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

} // namespace klock::tool::run
