// `klock torture`'s flags: parsing, the kernel's defaults for the thread counts, the help text
// and the parameter line.
#include "torture_options.hpp"

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <sched.h>

#include "torture_ops.hpp"

namespace klock::tool::torture {

namespace {

enum class key {
    type,
    nwriters,
    nreaders,
    duration,
    stat_interval,
    stutter,
    shuffle_interval,
    long_hold,
    nested_locks,
    rt_boost,
    rt_boost_factor,
};

struct flag {
    std::string_view name;  // as --name
    std::string_view alias; // the kernel's module parameter, when it differs
    key k;
};

constexpr flag flags[] = {
    {"type", "torture-type", key::type},
    {"nwriters", "nwriters-stress", key::nwriters},
    {"nreaders", "nreaders-stress", key::nreaders},
    {"duration", "", key::duration},
    {"stat-interval", "", key::stat_interval},
    {"stutter", "", key::stutter},
    {"shuffle-interval", "", key::shuffle_interval},
    {"long-hold", "", key::long_hold},
    {"nested-locks", "", key::nested_locks},
    {"rt-boost", "", key::rt_boost},
    {"rt-boost-factor", "", key::rt_boost_factor},
};

std::string normalise(std::string_view name)
{
    std::string s(name);
    std::replace(s.begin(), s.end(), '_', '-');
    return s;
}

const flag* find_flag(std::string_view name)
{
    const std::string n = normalise(name);
    for (const flag& f : flags)
        if (n == f.name || (!f.alias.empty() && n == f.alias))
            return &f;
    return nullptr;
}

bool parse_int(const std::string& text, long lo, long hi, int& out)
{
    if (text.empty())
        return false;
    errno = 0;
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    out = static_cast<int>(v);
    return true;
}

bool parse_seconds(const std::string& text, double lo, double hi, double& out)
{
    if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.'))
        return false; // no sign, no "inf"/"nan"
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (errno != 0 || *end != '\0' || !std::isfinite(v) || v < lo || v > hi)
        return false;
    out = v;
    return true;
}

std::string type_list()
{
    std::string s;
    for (const type_info& t : types()) {
        if (!s.empty())
            s += ", ";
        s += t.name;
    }
    return s;
}

// Applies one flag; false with `error` set when the value is bad.
bool apply(const flag& f, std::string_view spelled, const std::string& value, config& cfg, std::string& error)
{
    bool ok = true;
    const char* want = "";
    switch (f.k) {
    case key::type:
        if (const type_info* t = find_type(value)) {
            cfg.type = std::string(t->name);
            return true;
        }
        error = std::string(spelled) + ": unknown lock type '" + value + "' (types: " + type_list() + ")";
        return false;
    case key::nwriters:
        ok = parse_int(value, 0, max_threads_per_role, cfg.nwriters);
        want = "a number of threads, 0 to 1024";
        break;
    case key::nreaders:
        ok = parse_int(value, 0, max_threads_per_role, cfg.nreaders);
        want = "a number of threads, 0 to 1024";
        break;
    case key::duration:
        ok = parse_seconds(value, 0, 1e6, cfg.duration) && cfg.duration > 0;
        want = "seconds > 0";
        break;
    case key::stat_interval:
        ok = parse_seconds(value, 0, 1e6, cfg.stat_interval);
        want = "seconds >= 0";
        break;
    case key::stutter:
        ok = parse_seconds(value, 0, 1e6, cfg.stutter);
        want = "seconds >= 0";
        break;
    case key::shuffle_interval:
        ok = parse_seconds(value, 0, 1e6, cfg.shuffle_interval);
        want = "seconds >= 0";
        break;
    case key::long_hold:
        ok = parse_int(value, 0, 60000, cfg.long_hold);
        want = "milliseconds, 0 to 60000";
        break;
    case key::nested_locks:
        ok = parse_int(value, 0, max_nested_locks, cfg.nested_locks);
        want = "0 to 8 (the kernel's MAX_NESTED_LOCKS)";
        break;
    case key::rt_boost:
        ok = parse_int(value, 0, 2, cfg.rt_boost);
        want = "0, 1 or 2";
        break;
    case key::rt_boost_factor:
        ok = parse_int(value, 1, 1000000, cfg.rt_boost_factor);
        want = "a whole number >= 1";
        break;
    }
    if (!ok)
        error = std::string(spelled) + ": bad value '" + value + "' (want " + want + ")";
    return ok;
}

} // namespace

double config::stall_bound() const noexcept
{
    if (stall_timeout > 0)
        return stall_timeout;
    // rw_semaphore writers hold up to long_hold * 10 ms; a stall must outlast several of those.
    return std::max({5.0, duration / 2, 3 * long_hold * 10 / 1000.0});
}

double config::join_bound() const noexcept
{
    if (join_timeout > 0)
        return join_timeout;
    return std::max(2.0, 3 * long_hold * 10 / 1000.0);
}

int online_cpus() noexcept
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return std::max(1, CPU_COUNT(&set));
}

bool resolve(config& cfg, int ncpus, std::string& error)
{
    const type_info* t = find_type(cfg.type);
    if (t == nullptr) {
        error = "unknown lock type '" + cfg.type + "'";
        return false;
    }
    if (!t->readers && cfg.nreaders > 0) {
        error = "--nreaders: " + cfg.type + " has no readers (reader types: rw_lock, rw_lock_irq, rw_semaphore)";
        return false;
    }
    if (!t->nested && cfg.nested_locks > 0) {
        error = "--nested-locks: not supported by " + cfg.type;
        return false;
    }
    if (cfg.nwriters == 0 && (!t->readers || cfg.nreaders == 0)) {
        error = "must run at least one locking thread (--nwriters 0 and no readers)";
        return false;
    }
    // lock_torture_init(): 2 writers per CPU; a reader type with neither count given runs one
    // writer and one reader per CPU; readers given without writers keep 2 writers per CPU.
    cfg.real_writers = cfg.nwriters >= 0 ? cfg.nwriters : 2 * ncpus;
    cfg.real_readers = 0;
    if (t->readers) {
        if (cfg.nreaders >= 0) {
            cfg.real_readers = cfg.nreaders;
        } else {
            if (cfg.nwriters < 0)
                cfg.real_writers = ncpus;
            cfg.real_readers = cfg.real_writers;
        }
    }
    return true;
}

parse_status parse(int argc, char** argv, config& cfg, std::string& error)
{
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h" || arg == "help")
            return parse_status::help;
        std::string_view name;
        std::string value;
        bool have_value = false;
        if (arg.starts_with("--")) {
            name = arg.substr(2);
        } else if (arg.find('=') != std::string_view::npos && !arg.starts_with("-")) {
            name = arg; // modprobe style: torture_type=mutex_lock
        } else {
            error = "unexpected argument '" + std::string(arg) + "' (flags start with --; see --help)";
            return parse_status::bad;
        }
        if (const auto eq = name.find('='); eq != std::string_view::npos) {
            value = std::string(name.substr(eq + 1));
            name = name.substr(0, eq);
            have_value = true;
        }
        const flag* f = find_flag(name);
        const std::string spelled = arg.starts_with("--") ? "--" + std::string(name) : std::string(name);
        if (f == nullptr) {
            error = "unknown flag '" + spelled + "' (see --help)";
            return parse_status::bad;
        }
        if (!have_value) {
            if (i + 1 >= argc) {
                error = spelled + ": missing value";
                return parse_status::bad;
            }
            value = argv[++i];
        }
        if (!apply(*f, spelled, value, cfg, error))
            return parse_status::bad;
    }
    return resolve(cfg, online_cpus(), error) ? parse_status::ok : parse_status::bad;
}

void print_help(std::FILE* out)
{
    std::fputs("usage: klock torture [--type TYPE] [options]\n"
               "\n"
               "The kernel's locktorture (kernel/locking/locktorture.c) over klock's locks, on real threads:\n"
               "writers (and, for reader-writer locks, readers) take the lock over and over and check that\n"
               "nobody else holds it in a conflicting mode; periodic statistics lines, then\n"
               "\"End of test: SUCCESS\" (exit 0) or \"End of test: FAILURE\" (exit 1). Bad usage: exit 2.\n"
               "\n"
               "options (the kernel's module parameter names work too: nwriters_stress=4, torture_type=...):\n"
               "  --type TYPE             lock to torture (default spin_lock); see below\n"
               "  --nwriters N            writer threads (default: 2 per CPU; 1 per CPU for reader types)\n"
               "  --nreaders N            reader threads, reader types only (default: as many as writers)\n"
               "  --duration S            seconds to run (default 10)\n"
               "  --stat-interval S       seconds between statistics lines, 0 = only at the end (default 5)\n"
               "  --stutter S             run S seconds, pause S seconds, and so on; 0 = never pause (default 2)\n"
               "  --shuffle-interval S    every S seconds move the threads off one CPU in turn\n"
               "                          (sched_setaffinity), 0 = never (default 3)\n"
               "  --long-hold MS          occasional long hold of the lock, 0 = never (default 10)\n"
               "  --nested-locks N        writers also take a random subset of N (<= 8) nested locks\n"
               "                          around the main lock (default 0)\n"
               "  --rt-boost N            writers switch themselves to SCHED_FIFO now and then: 0 never,\n"
               "                          1 rt_mutex only (default), 2 every sleeping lock\n"
               "  --rt-boost-factor N     boost about once every nwriters*N acquisitions (default 50)\n"
               "  -h, --help              this text\n"
               "\n"
               "types:\n",
        out);
    for (const type_info& t : types()) {
        std::string name(t.name);
        if (!t.kernel_name.empty() && t.kernel_name != t.name)
            name += " (" + std::string(t.kernel_name) + ")";
        std::fprintf(out, "  %-30s %.*s\n", name.c_str(), static_cast<int>(t.what.size()), t.what.data());
    }
    std::fputs("\nexamples:\n"
               "  klock torture --type mutex --duration 5\n"
               "  klock torture --type rw_semaphore --nwriters 2 --nreaders 4 --stat-interval 1\n"
               "  klock torture torture_type=rtmutex_lock nested_locks=3\n"
               "  klock torture --type lock_busted --duration 1     # must end in FAILURE\n",
        out);
}

std::string parms_line(const config& cfg, std::string_view tag)
{
    const type_info* t = find_type(cfg.type);
    char buf[512];
    std::snprintf(buf, sizeof buf,
        "%s-torture:--- %.*s%s: duration=%g long_hold=%d nested_locks=%d nreaders_stress=%d nwriters_stress=%d "
        "rt_boost=%d rt_boost_factor=%d shuffle_interval=%g stat_interval=%g stutter=%g torture_type=%s",
        cfg.type.c_str(), static_cast<int>(tag.size()), tag.data(), t != nullptr && t->debug ? " [debug]" : "",
        cfg.duration, cfg.long_hold, cfg.nested_locks, cfg.real_readers, cfg.real_writers, cfg.rt_boost,
        cfg.rt_boost_factor, cfg.shuffle_interval, cfg.stat_interval, cfg.stutter, cfg.type.c_str());
    return buf;
}

} // namespace klock::tool::torture
