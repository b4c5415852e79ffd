// `klock sim`: the deterministic multi-CPU kernel simulator (docs/sim.md, "Command").
//
//   klock sim                    the main job: seeds/003's priority inversion with a mutex and
//                                with an rt_mutex, the two summaries side by side, an SVG
//   klock sim NAME | FILE        a built-in scenario or a scenario file: its summary
//   klock sim X --explore S      search schedules for one that fails a check
//   klock sim X --replay TOKEN   run exactly the schedule of a replay token
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include <klock/sim/builtins.hpp>
#include <klock/sim/explore.hpp>
#include <klock/sim/output.hpp>
#include <klock/sim/scenario_parser.hpp>
#include <klock/sim/sim.hpp>

#include "commands.hpp"

namespace {

using namespace klock::sim;

constexpr const char* default_svg = "sim-priority-inversion.svg";

void usage(std::FILE* out)
{
    std::fputs("usage: klock sim [NAME | FILE] [options]\n"
               "\n"
               "  (nothing)                 the main job: seeds/003's priority inversion with a mutex and with\n"
               "                            an rt_mutex, the two summaries side by side, and an SVG timeline\n"
               "                            ("
               "sim-priority-inversion.svg unless --svg says otherwise)\n"
               "  NAME                      a built-in scenario (--list shows them)\n"
               "  FILE                      a scenario file (docs/sim.md, \"Scenario format\")\n"
               "\n"
               "options:\n"
               "  --list                    list the built-in scenarios\n"
               "  --cpus N                  number of simulated CPUs (1..64), overriding the scenario's\n"
               "  --seed S                  seed: ties between CPUs at equal clocks, and exploration\n"
               "  --trace FILE              write the ftrace-style text trace\n"
               "  --json FILE               write the Chrome / Perfetto trace JSON\n"
               "  --svg FILE                write the SVG timeline\n"
               "  --explore random|pct|dfs  search schedules for one that fails a check\n"
               "  --runs N                  schedules to run (default 1000; dfs: 0 = until exhausted)\n"
               "  --depth D                 pct: the bug depth (default 3)\n"
               "  --preemption-bound B      dfs: preemptions per schedule (default 2)\n"
               "  --replay TOKEN            run the schedule a replay token names (from --explore)\n"
               "  --planted BUG             plant a bug: mutex-lost-wakeup, mutex-no-handoff,\n"
               "                            rt_mutex-no-boost, ticket-skip, ticket-no-next\n"
               "  --dump                    print the scenario in the scenario format and exit\n"
               "  --help                    this text\n"
               "\n"
               "With the main job, --trace and --json write FILE-mutex and FILE-rt_mutex (before the extension).\n"
               "Exit status: 0 the runs went as the scenario expects (a built-in that demonstrates a bug\n"
               "expects its check to fail: finding it is success); 1 a check failed otherwise, or exploration\n"
               "found a failing schedule; 2 bad usage.\n",
        out);
}

struct args {
    std::string target;
    bool list = false;
    bool dump = false;
    unsigned cpus = 0;
    std::uint64_t seed = 0;
    std::string trace, json, svg;
    std::optional<strategy> how;
    unsigned runs = 1000;
    bool runs_given = false;
    unsigned depth = 3;
    unsigned bound = 2;
    std::string replay;
    fault planted = fault::none;
};

bool parse_uint(const char* s, std::uint64_t& v)
{
    if (s == nullptr || *s == '\0' || *s == '-')
        return false;
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        return false;
    v = x;
    return true;
}

int bad(const std::string& msg)
{
    std::fprintf(stderr, "klock sim: %s\n", msg.c_str());
    std::fputs("(klock sim --help for the options)\n", stderr);
    return 2;
}

// Returns -1 when parsed, else the exit status.
int parse(int argc, char** argv, args& a)
{
    for (int i = 1; i < argc; ++i) {
        const std::string opt = argv[i];
        auto value = [&](const char* what) -> const char* {
            if (i + 1 >= argc) {
                bad(opt + " needs " + what);
                return nullptr;
            }
            return argv[++i];
        };
        auto number = [&](const char* what, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) -> bool {
            const char* v = value(what);
            if (v == nullptr)
                return false;
            if (!parse_uint(v, out) || out < lo || out > hi) {
                bad(opt + ": '" + v + "' is not " + what);
                return false;
            }
            return true;
        };
        std::uint64_t n = 0;
        if (opt == "--help" || opt == "-h") {
            usage(stdout);
            return 0;
        } else if (opt == "--list") {
            a.list = true;
        } else if (opt == "--dump") {
            a.dump = true;
        } else if (opt == "--cpus") {
            if (!number("a number of CPUs (1..64)", 1, 64, n))
                return 2;
            a.cpus = static_cast<unsigned>(n);
        } else if (opt == "--seed") {
            if (!number("a seed (a non-negative integer)", 0, ~std::uint64_t(0), n))
                return 2;
            a.seed = n;
        } else if (opt == "--trace" || opt == "--json" || opt == "--svg") {
            const char* v = value("a file name");
            if (v == nullptr)
                return 2;
            (opt == "--trace" ? a.trace : opt == "--json" ? a.json : a.svg) = v;
        } else if (opt == "--explore") {
            const char* v = value("a strategy (random, pct or dfs)");
            if (v == nullptr)
                return 2;
            const std::string s = v;
            if (s == "random")
                a.how = strategy::random;
            else if (s == "pct")
                a.how = strategy::pct;
            else if (s == "dfs")
                a.how = strategy::dfs;
            else
                return bad("--explore: unknown strategy '" + s + "' (random, pct or dfs)");
        } else if (opt == "--runs") {
            if (!number("a number of runs", 0, 100000000, n))
                return 2;
            a.runs = static_cast<unsigned>(n);
            a.runs_given = true;
        } else if (opt == "--depth") {
            if (!number("a depth (1..100)", 1, 100, n))
                return 2;
            a.depth = static_cast<unsigned>(n);
        } else if (opt == "--preemption-bound") {
            if (!number("a bound (0..100)", 0, 100, n))
                return 2;
            a.bound = static_cast<unsigned>(n);
        } else if (opt == "--replay") {
            const char* v = value("a replay token");
            if (v == nullptr)
                return 2;
            a.replay = v;
        } else if (opt == "--planted") {
            const char* v = value("a bug name");
            if (v == nullptr)
                return 2;
            const std::string s = v;
            bool ok = false;
            for (fault f : {fault::mutex_lost_wakeup, fault::mutex_no_handoff, fault::rt_mutex_no_boost,
                     fault::ticket_skip, fault::ticket_no_next})
                if (s == to_string(f)) {
                    a.planted = f;
                    ok = true;
                }
            if (!ok)
                return bad("--planted: unknown bug '" + s + "'");
        } else if (!opt.empty() && opt[0] == '-') {
            return bad("unknown option '" + opt + "'");
        } else if (a.target.empty()) {
            a.target = opt;
        } else {
            return bad("one scenario at a time ('" + a.target + "' and '" + opt + "')");
        }
    }
    if (a.how && !a.replay.empty())
        return bad("--explore and --replay do not go together");
    if ((a.how || !a.replay.empty() || a.dump) && a.target.empty())
        return bad("--explore, --replay and --dump need a scenario (NAME or FILE)");
    return -1;
}

// "out.json" -> "out-mutex.json"
std::string with_suffix(const std::string& path, const std::string& suffix)
{
    const std::size_t slash = path.find_last_of('/');
    const std::size_t dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == 0)
        return path + suffix;
    return path.substr(0, dot) + suffix + path.substr(dot);
}

bool write_file(const std::string& path, const std::function<void(std::ostream&)>& w)
{
    std::ofstream f(path);
    if (!f) {
        std::fprintf(stderr, "klock sim: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    w(f);
    f.flush();
    if (!f) {
        std::fprintf(stderr, "klock sim: error writing %s\n", path.c_str());
        return false;
    }
    return true;
}

bool write_outputs(const args& a, const run_result& r)
{
    bool ok = true;
    if (!a.trace.empty()) {
        ok = write_file(a.trace, [&](std::ostream& o) { write_ftrace(r, o); }) && ok;
        std::printf("wrote %s\n", a.trace.c_str());
    }
    if (!a.json.empty()) {
        ok = write_file(a.json, [&](std::ostream& o) { write_trace_json(r, o); }) && ok;
        std::printf("wrote %s\n", a.json.c_str());
    }
    if (!a.svg.empty()) {
        const run_result* one[] = {&r};
        ok = write_file(a.svg, [&](std::ostream& o) { write_svg_timeline(one, o); }) && ok;
        std::printf("wrote %s\n", a.svg.c_str());
    }
    return ok;
}

// One line per check the verdict depends on.
void verdict(const run_result& r)
{
    bool any = false;
    for (const check_result& c : r.checks) {
        const bool expected = std::find(r.scn.expect.begin(), r.scn.expect.end(), c.name) != r.scn.expect.end();
        if (expected && !c.passed)
            std::printf("found the expected failure: %s\n", c.name.c_str());
        else if (expected)
            std::printf("MISSING: the scenario expects \"%s\" to fail, and it did not\n", c.name.c_str());
        else if (!c.passed)
            std::printf("FAILED: %s\n", c.name.c_str());
        any = any || expected || !c.passed;
    }
    if (!any)
        std::printf("all checks passed\n");
}

options run_options(const args& a)
{
    options o;
    o.seed = a.seed;
    o.cpus = a.cpus;
    o.planted = a.planted;
    return o;
}

int main_job(const args& a)
{
    const options o = run_options(a);
    const run_result mutex_run = run(find_builtin(main_job_mutex)->make(), o);
    const run_result rt_run = run(find_builtin(main_job_rt_mutex)->make(), o);
    write_summaries_side_by_side(mutex_run, rt_run, std::cout);
    std::cout.flush();
    bool ok = true;
    const std::string svg = a.svg.empty() ? default_svg : a.svg;
    const run_result* both[] = {&mutex_run, &rt_run};
    if (write_file(svg, [&](std::ostream& out) { write_svg_timeline(both, out); }))
        std::printf("wrote %s\n", svg.c_str());
    else
        ok = false;
    for (const auto& run_and_suffix : {std::pair{&mutex_run, "-mutex"}, std::pair{&rt_run, "-rt_mutex"}}) {
        const run_result* r = run_and_suffix.first;
        const char* suffix = run_and_suffix.second;
        if (!a.trace.empty()) {
            const std::string p = with_suffix(a.trace, suffix);
            ok = write_file(p, [&](std::ostream& out) { write_ftrace(*r, out); }) && ok;
            std::printf("wrote %s\n", p.c_str());
        }
        if (!a.json.empty()) {
            const std::string p = with_suffix(a.json, suffix);
            ok = write_file(p, [&](std::ostream& out) { write_trace_json(*r, out); }) && ok;
            std::printf("wrote %s\n", p.c_str());
        }
    }
    const bool expected = mutex_run.as_expected() && rt_run.as_expected();
    if (!expected) {
        std::printf("mutex run:\n");
        verdict(mutex_run);
        std::printf("rt_mutex run:\n");
        verdict(rt_run);
    }
    if (!ok)
        return 2;
    return expected ? 0 : 1;
}

int explore_job(const args& a, const scenario& s)
{
    explore_options eo;
    eo.how = *a.how;
    eo.seed = a.seed == 0 ? 1 : a.seed;
    eo.runs = a.runs_given ? a.runs : (eo.how == strategy::dfs ? 0 : 1000);
    eo.depth = a.depth;
    eo.preemption_bound = a.bound;
    eo.base = run_options(a);
    eo.base.seed = 0;
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    if (tty)
        eo.progress = [](unsigned done, unsigned total) {
            if (done % 16 != 0 && done != total)
                return;
            if (total == 0) {
                std::fprintf(stderr, "\rexplore: %u schedules", done);
            } else {
                const unsigned width = 30, filled = static_cast<unsigned>(std::uint64_t(done) * width / total);
                std::fprintf(stderr, "\rexplore: [%.*s%*s] %u/%u", static_cast<int>(filled),
                    "##############################", static_cast<int>(width - filled), "", done, total);
            }
            std::fflush(stderr);
        };
    const explore_result r = explore(s, eo);
    if (tty)
        std::fputs("\r\033[K", stderr);
    std::printf("explore %s: %u schedule%s", to_string(eo.how), r.runs, r.runs == 1 ? "" : "s");
    if (eo.how == strategy::dfs)
        std::printf(", preemption bound %u", eo.preemption_bound);
    if (eo.how == strategy::pct)
        std::printf(", depth %u", eo.depth);
    std::printf(", %llu steps\n", static_cast<unsigned long long>(r.steps));
    if (!r.found) {
        std::printf(r.exhausted ? "no failing schedule: every schedule within the bound was run\n"
                                : "no failing schedule found\n");
        return 0;
    }
    std::printf("FAILED: %s\n", r.check.c_str());
    std::printf("replay token: %s\n", r.token.c_str());
    std::printf("minimized schedule: %zu deviation%s from the default (continue the CPU that ran last) "
                "(from %zu)\n",
        r.failing.size(), r.failing.size() == 1 ? "" : "s", r.unminimized);
    for (const auto& [point, cpu] : r.failing)
        std::printf("  at choice point %llu run CPU %d\n", static_cast<unsigned long long>(point), cpu);
    std::string again = "klock sim " + a.target;
    if (a.cpus > 0)
        again += " --cpus " + std::to_string(a.cpus);
    if (a.planted != fault::none)
        again += std::string(" --planted ") + to_string(a.planted);
    std::printf("(%s --replay %s reproduces it)\n\n", again.c_str(), r.token.c_str());
    write_summary(r.run, std::cout);
    std::cout.flush();
    write_outputs(a, r.run);
    return 1;
}

} // namespace

int klock::tool::run_sim(int argc, char** argv)
{
    args a;
    if (const int rc = parse(argc, argv, a); rc >= 0)
        return rc;
    if (a.list) {
        for (const builtin& b : builtins())
            std::printf("  %-28s %s\n", b.name, b.summary);
        return 0;
    }
    if (a.target.empty())
        return main_job(a);

    scenario s;
    if (const builtin* b = find_builtin(a.target)) {
        s = b->make();
    } else {
        struct stat st;
        if (::stat(a.target.c_str(), &st) != 0)
            return bad("no built-in scenario or file named '" + a.target + "' (klock sim --list)");
        parse_error err;
        std::optional<scenario> parsed = load_scenario_file(a.target, err);
        if (!parsed) {
            std::fprintf(stderr, "%s\n", err.what().c_str());
            return 2;
        }
        s = std::move(*parsed);
    }
    if (a.cpus > 0)
        s.cpus = a.cpus;
    if (const std::string err = validate(s); !err.empty())
        return bad(a.target + ": " + err);
    if (a.dump) {
        write_scenario(s, std::cout);
        return 0;
    }
    if (a.how)
        return explore_job(a, s);

    run_result r;
    if (!a.replay.empty()) {
        schedule sch;
        std::string err;
        if (!from_token(a.replay, sch, err))
            return bad("--replay: " + err);
        r = replay(s, sch, run_options(a));
    } else {
        r = run(s, run_options(a));
    }
    write_summary(r, std::cout);
    std::cout.flush();
    const bool wrote = write_outputs(a, r);
    verdict(r);
    if (!wrote)
        return 2;
    return r.as_expected() ? 0 : 1;
}
