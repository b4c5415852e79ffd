// `klock run` options: parsing, file checks, and the environment handed to the preload library.
#include "run_options.hpp"

#include "../../src/preload/suppress.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <sstream>
#include <strings.h>
#include <unistd.h>

namespace klock::tool::run {

const char* const help_text
    = "usage: klock run [options] -- PROGRAM [ARGS...]\n"
      "\n"
      "Run PROGRAM (unmodified, dynamically linked) with lockdep and lock_stat on its locks:\n"
      "pthread mutexes (all types), rwlocks, spinlocks, condition variables, C11 mtx_t, and so\n"
      "std::mutex, std::shared_mutex, std::condition_variable. klock's preload library is added to\n"
      "LD_PRELOAD; the program's output and exit status are its own (a signal death is 128+SIG).\n"
      "\n"
      "options (each has an environment variable the library reads; klock run sets it):\n"
      "  --lockdep on|off         lock dependency validation (default on)         KLOCK_LOCKDEP=1|0\n"
      "  --lock-stat on|off       contention and hold-time statistics (default off) KLOCK_LOCK_STAT=1|0\n"
      "  --report FILE            write reports to FILE, not stderr                 KLOCK_REPORT_FILE\n"
      "  --json FILE              also write each report as one JSON object per line KLOCK_LOCKDEP_JSON\n"
      "  --lock-stat-out FILE     the lock_stat table (version 0.4) at exit; implies  KLOCK_LOCK_STAT_DUMP\n"
      "                           --lock-stat on (without it the table goes to the report stream)\n"
      "  --lock-stat-signal SIG   also write the table whenever SIG arrives (USR1, SIGUSR2, 12, ...)\n"
      "                                                                            KLOCK_LOCK_STAT_SIGNAL\n"
      "  --suppress FILE          drop reports matching a rule of FILE              KLOCK_SUPPRESS\n"
      "                           (one rule per line: 'class <glob>' or 'function <glob>'; # comments)\n"
      "  --abort-on-report        abort() the program at its first report           KLOCK_ABORT_ON_REPORT=1\n"
      "  --class-depth N          frames of the init / first-use stack that name a   KLOCK_CLASS_DEPTH\n"
      "                           lock class (1-16, default 4)\n"
      "  -h, --help               this text\n"
      "\n"
      "Report, JSON and lock_stat files are truncated when klock run starts; the program and any\n"
      "processes it starts append to them. KLOCK_PRELOAD_LIB=path overrides the preload library.\n"
      "exit status: the program's; 2 for a usage error (nothing is run).\n";

namespace {

bool on_off(std::string_view v, bool& out)
{
    if (v == "on" || v == "1" || v == "yes") {
        out = true;
        return true;
    }
    if (v == "off" || v == "0" || v == "no") {
        out = false;
        return true;
    }
    return false;
}

std::string absolute(const std::string& path)
{
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::absolute(path, ec);
    return ec ? path : p.string();
}

bool create_truncated(const std::string& path, const char* what, std::string& error)
{
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = std::string("cannot write ") + what + " file '" + path + "': " + std::strerror(errno);
        return false;
    }
    ::close(fd);
    return true;
}

} // namespace

int signal_number(std::string_view name)
{
    if (name.empty())
        return 0;
    if (name.find_first_not_of("0123456789") == std::string_view::npos) {
        const long n = std::strtol(std::string(name).c_str(), nullptr, 10);
        return n > 0 && n < NSIG ? static_cast<int>(n) : 0;
    }
    std::string s(name);
    if (s.size() > 3 && ::strncasecmp(s.c_str(), "SIG", 3) == 0)
        s.erase(0, 3);
    for (char& c : s)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    static const struct {
        const char* name;
        int sig;
    } table[] = {{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
        {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
        {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
        {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}};
    for (const auto& e : table)
        if (s == e.name)
            return e.sig;
    for (const char* base : {"RTMIN", "RTMAX"}) {
        const std::size_t n = std::strlen(base);
        if (s.compare(0, n, base) != 0)
            continue;
        const int b = base[2] == 'M' && base[3] == 'I' ? SIGRTMIN : SIGRTMAX;
        if (s.size() == n)
            return b;
        if ((s[n] == '+' || s[n] == '-') && s.size() > n + 1
            && s.find_first_not_of("0123456789", n + 1) == std::string::npos) {
            const int off = std::atoi(s.c_str() + n + 1);
            const int sig = s[n] == '+' ? b + off : b - off;
            return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : 0;
        }
    }
    return 0;
}

bool parse(int argc, char** argv, options& o, std::string& error)
{
    int i = 1;
    for (; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg.size() < 2 || arg[0] != '-')
            break; // the program
        std::string_view value;
        bool has_value = false;
        if (const std::size_t eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        auto need = [&](std::string_view& v) {
            if (has_value) {
                v = value;
                return true;
            }
            if (i + 1 >= argc) {
                error = "option " + std::string(arg) + " needs a value";
                return false;
            }
            v = argv[++i];
            return true;
        };
        auto no_value = [&] {
            if (has_value) {
                error = "option " + std::string(arg) + " takes no value";
                return false;
            }
            return true;
        };
        std::string_view v;
        if (arg == "-h" || arg == "--help") {
            if (!no_value())
                return false;
            o.help = true;
        } else if (arg == "--lockdep" || arg == "--lock-stat") {
            if (!need(v))
                return false;
            bool& target = arg == "--lockdep" ? o.lockdep : o.lock_stat;
            if (!on_off(v, target)) {
                error = std::string(arg) + " takes on or off, not '" + std::string(v) + "'";
                return false;
            }
        } else if (arg == "--report" || arg == "--json" || arg == "--lock-stat-out" || arg == "--suppress") {
            if (!need(v))
                return false;
            if (v.empty()) {
                error = "option " + std::string(arg) + " needs a file name";
                return false;
            }
            std::string& target = arg == "--report" ? o.report
                : arg == "--json"                   ? o.json
                : arg == "--lock-stat-out"          ? o.lock_stat_out
                                                    : o.suppress;
            target = v;
        } else if (arg == "--lock-stat-signal") {
            if (!need(v))
                return false;
            o.lock_stat_signal = signal_number(v);
            if (o.lock_stat_signal == 0 || o.lock_stat_signal == SIGKILL || o.lock_stat_signal == SIGSTOP) {
                error = "--lock-stat-signal: '" + std::string(v) + "' is not a signal that can be caught";
                return false;
            }
        } else if (arg == "--abort-on-report") {
            if (!no_value())
                return false;
            o.abort_on_report = true;
        } else if (arg == "--class-depth") {
            if (!need(v))
                return false;
            const std::string s(v);
            char* end = nullptr;
            const long n = std::strtol(s.c_str(), &end, 10);
            if (s.empty() || *end != '\0' || n < 1 || n > 16) {
                error = "--class-depth takes a number from 1 to 16, not '" + s + "'";
                return false;
            }
            o.class_depth = static_cast<unsigned>(n);
        } else {
            error = "unknown option '" + std::string(argv[i]) + "'";
            return false;
        }
    }
    for (; i < argc; ++i)
        o.command.emplace_back(argv[i]);
    if (!o.lock_stat_out.empty())
        o.lock_stat = true;
    if (o.lock_stat_signal != 0 && !o.lock_stat) {
        error = "--lock-stat-signal needs --lock-stat on or --lock-stat-out";
        return false;
    }
    if (!o.help && o.command.empty()) {
        error = "no program to run (klock run [options] -- PROGRAM [ARGS...])";
        return false;
    }
    return true;
}

bool prepare_files(options& o, std::string& error)
{
    if (!o.suppress.empty()) {
        std::ifstream in(o.suppress);
        if (!in) {
            error = "cannot read suppression file '" + o.suppress + "': " + std::strerror(errno);
            return false;
        }
        std::stringstream text;
        text << in.rdbuf();
        std::vector<klock::preload::suppress::rule> rules;
        klock::preload::suppress::error err;
        if (!klock::preload::suppress::parse(text.str(), rules, err)) {
            error = o.suppress + ":" + std::to_string(err.line) + ": " + err.message;
            return false;
        }
        o.suppress = absolute(o.suppress);
    }
    const struct {
        std::string* path;
        const char* what;
    } outputs[] = {{&o.report, "report"}, {&o.json, "JSON"}, {&o.lock_stat_out, "lock_stat"}};
    for (const auto& out : outputs) {
        if (out.path->empty())
            continue;
        *out.path = absolute(*out.path);
        if (!create_truncated(*out.path, out.what, error))
            return false;
    }
    return true;
}

std::vector<std::string> environment(const options& o, const std::string& preload, const char* ld_preload)
{
    std::vector<std::string> env;
    std::string lp = "LD_PRELOAD=";
    if (ld_preload != nullptr && *ld_preload != '\0')
        lp += std::string(ld_preload) + ":";
    env.push_back(lp + preload);
    env.push_back(std::string("KLOCK_LOCKDEP=") + (o.lockdep ? "1" : "0"));
    env.push_back(std::string("KLOCK_LOCK_STAT=") + (o.lock_stat ? "1" : "0"));
    if (!o.report.empty())
        env.push_back("KLOCK_REPORT_FILE=" + o.report);
    if (!o.json.empty())
        env.push_back("KLOCK_LOCKDEP_JSON=" + o.json);
    if (!o.lock_stat_out.empty())
        env.push_back("KLOCK_LOCK_STAT_DUMP=" + o.lock_stat_out);
    if (o.lock_stat_signal != 0)
        env.push_back("KLOCK_LOCK_STAT_SIGNAL=" + std::to_string(o.lock_stat_signal));
    if (!o.suppress.empty())
        env.push_back("KLOCK_SUPPRESS=" + o.suppress);
    if (o.abort_on_report)
        env.push_back("KLOCK_ABORT_ON_REPORT=1");
    if (o.class_depth != 0)
        env.push_back("KLOCK_CLASS_DEPTH=" + std::to_string(o.class_depth));
    return env;
}

} // namespace klock::tool::run
