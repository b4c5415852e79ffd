// `klock run`'s command side: option parsing, the environment handed to the preload library,
// the file checks made before anything runs, the suppression rules, and exit-status passing.
// (The preload library itself is tested by running programs under klock run: tests/preload/.)
#include <gtest/gtest.h>

#include "../src/preload/suppress.hpp"
#include "run_options.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace klock::tool::run;

struct argv_builder {
    std::vector<std::string> args;
    std::vector<char*> ptrs;
    argv_builder(std::initializer_list<const char*> a)
    {
        for (const char* s : a)
            args.emplace_back(s);
        for (std::string& s : args)
            ptrs.push_back(s.data());
        ptrs.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(args.size()); }
    char** argv() { return ptrs.data(); }
};

bool parse_args(std::initializer_list<const char*> a, options& o, std::string& error)
{
    argv_builder b(a);
    return parse(b.argc(), b.argv(), o, error);
}

std::string temp_path(const char* name)
{
    return ::testing::TempDir() + "klock_run_test_" + std::to_string(::getpid()) + "_" + name;
}

bool has(const std::vector<std::string>& v, const std::string& s)
{
    for (const std::string& x : v)
        if (x == s)
            return true;
    return false;
}

TEST(RunOptions, DefaultsAndProgram)
{
    options o;
    std::string error;
    ASSERT_TRUE(parse_args({"run", "--", "prog", "-x", "--lockdep"}, o, error)) << error;
    EXPECT_TRUE(o.lockdep);
    EXPECT_FALSE(o.lock_stat);
    EXPECT_FALSE(o.abort_on_report);
    EXPECT_EQ(o.command, (std::vector<std::string>{"prog", "-x", "--lockdep"})); // after --: the program's
}

TEST(RunOptions, ProgramWithoutDoubleDash)
{
    options o;
    std::string error;
    ASSERT_TRUE(parse_args({"run", "--lock-stat", "on", "prog", "arg"}, o, error)) << error;
    EXPECT_TRUE(o.lock_stat);
    EXPECT_EQ(o.command, (std::vector<std::string>{"prog", "arg"}));
}

TEST(RunOptions, EveryOption)
{
    options o;
    std::string error;
    ASSERT_TRUE(parse_args({"run", "--lockdep", "off", "--lock-stat=on", "--report", "r.txt", "--json=j.json",
                               "--lock-stat-out", "s.txt", "--lock-stat-signal", "SIGUSR2", "--suppress", "x.supp",
                               "--abort-on-report", "--class-depth", "2", "--", "p"},
        o, error))
        << error;
    EXPECT_FALSE(o.lockdep);
    EXPECT_TRUE(o.lock_stat);
    EXPECT_EQ(o.report, "r.txt");
    EXPECT_EQ(o.json, "j.json");
    EXPECT_EQ(o.lock_stat_out, "s.txt");
    EXPECT_EQ(o.lock_stat_signal, SIGUSR2);
    EXPECT_EQ(o.suppress, "x.supp");
    EXPECT_TRUE(o.abort_on_report);
    EXPECT_EQ(o.class_depth, 2u);
}

TEST(RunOptions, LockStatOutImpliesLockStat)
{
    options o;
    std::string error;
    ASSERT_TRUE(parse_args({"run", "--lock-stat-out", "s.txt", "--", "p"}, o, error)) << error;
    EXPECT_TRUE(o.lock_stat);
}

TEST(RunOptions, ErrorsNameTheProblem)
{
    struct {
        std::initializer_list<const char*> args;
        const char* message;
    } cases[] = {
        {{"run", "--frobnicate", "--", "p"}, "unknown option '--frobnicate'"},
        {{"run", "--lockdep", "maybe", "--", "p"}, "--lockdep takes on or off, not 'maybe'"},
        {{"run", "--report"}, "option --report needs a value"},
        {{"run", "--report=", "--", "p"}, "option --report needs a file name"},
        {{"run", "--abort-on-report=yes", "--", "p"}, "option --abort-on-report takes no value"},
        {{"run", "--class-depth", "0", "--", "p"}, "--class-depth takes a number from 1 to 16, not '0'"},
        {{"run", "--class-depth", "4x", "--", "p"}, "--class-depth takes a number from 1 to 16, not '4x'"},
        {{"run", "--lock-stat", "on", "--lock-stat-signal", "KILL", "--", "p"}, "not a signal that can be caught"},
        {{"run", "--lock-stat-signal", "USR1", "--", "p"}, "--lock-stat-signal needs --lock-stat on"},
        {{"run", "--lockdep", "on"}, "no program to run"},
        {{"run", "--"}, "no program to run"},
    };
    for (const auto& c : cases) {
        options o;
        std::string error;
        EXPECT_FALSE(parse_args(c.args, o, error)) << c.message;
        EXPECT_NE(error.find(c.message), std::string::npos) << "got: " << error;
    }
}

TEST(RunOptions, HelpNeedsNoProgram)
{
    options o;
    std::string error;
    ASSERT_TRUE(parse_args({"run", "--help"}, o, error)) << error;
    EXPECT_TRUE(o.help);
    EXPECT_NE(std::string(help_text).find("--lock-stat-signal"), std::string::npos);
    for (const char* var :
        {"KLOCK_LOCKDEP", "KLOCK_LOCK_STAT", "KLOCK_REPORT_FILE", "KLOCK_LOCKDEP_JSON", "KLOCK_LOCK_STAT_DUMP",
            "KLOCK_LOCK_STAT_SIGNAL", "KLOCK_SUPPRESS", "KLOCK_ABORT_ON_REPORT", "KLOCK_CLASS_DEPTH"})
        EXPECT_NE(std::string(help_text).find(var), std::string::npos) << var << " is not documented in --help";
}

TEST(RunOptions, SignalNames)
{
    EXPECT_EQ(signal_number("USR1"), SIGUSR1);
    EXPECT_EQ(signal_number("SIGUSR2"), SIGUSR2);
    EXPECT_EQ(signal_number("sigterm"), SIGTERM);
    EXPECT_EQ(signal_number("10"), 10);
    EXPECT_EQ(signal_number("RTMIN"), SIGRTMIN);
    EXPECT_EQ(signal_number("SIGRTMIN+3"), SIGRTMIN + 3);
    EXPECT_EQ(signal_number("RTMAX-1"), SIGRTMAX - 1);
    EXPECT_EQ(signal_number("RTMIN+1000"), 0);
    EXPECT_EQ(signal_number("NOPE"), 0);
    EXPECT_EQ(signal_number("0"), 0);
    EXPECT_EQ(signal_number(""), 0);
}

TEST(RunOptions, EnvironmentForTheLibrary)
{
    options o;
    o.lockdep = false;
    o.lock_stat = true;
    o.report = "/tmp/r";
    o.json = "/tmp/j";
    o.lock_stat_out = "/tmp/s";
    o.lock_stat_signal = SIGUSR1;
    o.suppress = "/tmp/x.supp";
    o.abort_on_report = true;
    o.class_depth = 3;
    const std::vector<std::string> env = environment(o, "/lib/libklock-preload.so", nullptr);
    EXPECT_TRUE(has(env, "LD_PRELOAD=/lib/libklock-preload.so"));
    EXPECT_TRUE(has(env, "KLOCK_LOCKDEP=0"));
    EXPECT_TRUE(has(env, "KLOCK_LOCK_STAT=1"));
    EXPECT_TRUE(has(env, "KLOCK_REPORT_FILE=/tmp/r"));
    EXPECT_TRUE(has(env, "KLOCK_LOCKDEP_JSON=/tmp/j"));
    EXPECT_TRUE(has(env, "KLOCK_LOCK_STAT_DUMP=/tmp/s"));
    EXPECT_TRUE(has(env, "KLOCK_LOCK_STAT_SIGNAL=" + std::to_string(SIGUSR1)));
    EXPECT_TRUE(has(env, "KLOCK_SUPPRESS=/tmp/x.supp"));
    EXPECT_TRUE(has(env, "KLOCK_ABORT_ON_REPORT=1"));
    EXPECT_TRUE(has(env, "KLOCK_CLASS_DEPTH=3"));
}

TEST(RunOptions, PreloadIsAppended)
{
    const options o;
    const std::vector<std::string> env = environment(o, "/k.so", "/first.so");
    EXPECT_TRUE(has(env, "LD_PRELOAD=/first.so:/k.so"));
    EXPECT_TRUE(has(env, "KLOCK_LOCKDEP=1"));
    for (const std::string& e : env)
        EXPECT_EQ(e.rfind("KLOCK_REPORT_FILE=", 0), std::string::npos) << "no --report: stderr";
}

TEST(RunOptions, OutputFilesAreCreatedTruncatedAndAbsolute)
{
    const std::string path = temp_path("report.txt");
    {
        std::ofstream f(path);
        f << "old contents\n";
    }
    options o;
    o.report = path;
    std::string error;
    ASSERT_TRUE(prepare_files(o, error)) << error;
    EXPECT_EQ(o.report.front(), '/');
    std::ifstream in(path);
    std::string line;
    EXPECT_FALSE(std::getline(in, line)) << "the report file was not truncated";
    std::remove(path.c_str());

    options bad;
    bad.json = "/nonexistent-dir-klock/j.json";
    EXPECT_FALSE(prepare_files(bad, error));
    EXPECT_NE(error.find("cannot write JSON file '/nonexistent-dir-klock/j.json'"), std::string::npos) << error;
}

TEST(RunOptions, SuppressionFileIsCheckedFirst)
{
    const std::string path = temp_path("bad.supp");
    {
        std::ofstream f(path);
        f << "# comment\n\nclass lock_*\nfunctoin main\n";
    }
    options o;
    o.suppress = path;
    std::string error;
    EXPECT_FALSE(prepare_files(o, error));
    EXPECT_EQ(error, path + ":4: unknown rule 'functoin' (expected 'class <glob>' or 'function <glob>')");
    std::remove(path.c_str());

    options missing;
    missing.suppress = path;
    EXPECT_FALSE(prepare_files(missing, error));
    EXPECT_NE(error.find("cannot read suppression file"), std::string::npos) << error;
}

TEST(Suppress, ParsesRules)
{
    std::vector<klock::preload::suppress::rule> rules;
    klock::preload::suppress::error err;
    ASSERT_TRUE(klock::preload::suppress::parse(
        "# header\n  class   lock_*  \nfunction std::vector<int>::push_back(int const&)\n\n", rules, err));
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_TRUE(rules[0].is_class);
    EXPECT_EQ(rules[0].glob, "lock_*");
    EXPECT_FALSE(rules[1].is_class);
    EXPECT_EQ(rules[1].glob, "std::vector<int>::push_back(int const&)");

    rules.clear();
    EXPECT_FALSE(klock::preload::suppress::parse("class a\nclass\n", rules, err));
    EXPECT_EQ(err.line, 2);
    EXPECT_EQ(err.message, "'class' needs a pattern");
}

const char* const circular_report = "\n"
                                    "WARNING: possible circular locking dependency detected\n"
                                    "prog/42 is trying to acquire lock:\n"
                                    "00007f0000000018 (lock_a){+.+.}, at: take_ba+0x24/0x40 (abba.c:6)\n"
                                    "\n"
                                    "-> #1 (lock_b){+.+.}:\n"
                                    "       pthread_mutex_lock+0x100/0x250\n"
                                    "       ns::worker(int)+0x24/0x40 (abba.c:5)\n"
                                    " Possible unsafe locking scenario:\n"
                                    "  lock(main+0x10);\n"
                                    "stack backtrace:\n"
                                    " start_thread+0x305/0x48e\n";

TEST(Suppress, ReadsNamesFromReports)
{
    std::vector<std::string> classes, functions;
    klock::preload::suppress::names(circular_report, classes, functions);
    EXPECT_NE(std::find(classes.begin(), classes.end(), "lock_a"), classes.end());
    EXPECT_NE(std::find(classes.begin(), classes.end(), "lock_b"), classes.end());
    for (const char* f : {"take_ba", "pthread_mutex_lock", "ns::worker(int)", "start_thread"})
        EXPECT_NE(std::find(functions.begin(), functions.end(), f), functions.end()) << f;
    EXPECT_EQ(std::find(functions.begin(), functions.end(), "lock(main"), functions.end())
        << "a scenario line is not a stack frame";

    classes.clear();
    functions.clear();
    klock::preload::suppress::names("BUG: pthread_mutex wrong owner on CPU#0, p/1\n"
                                    " lock: 0x10, .owner: p/2, .owner_cpu: -1\n"
                                    " class: init_locks+0x1c\n"
                                    "Call Trace:\n"
                                    " pthread_mutex_unlock+0x1e9/0x21a (mutex.cpp:110)\n",
        classes, functions);
    EXPECT_EQ(classes, (std::vector<std::string>{"init_locks+0x1c"}));
    EXPECT_EQ(functions, (std::vector<std::string>{"pthread_mutex_unlock"}));
}

TEST(Suppress, Matches)
{
    using klock::preload::suppress::rule;
    EXPECT_TRUE(klock::preload::suppress::matches({rule{true, "lock_?"}}, circular_report));
    EXPECT_TRUE(klock::preload::suppress::matches({rule{false, "ns::*"}}, circular_report));
    EXPECT_FALSE(klock::preload::suppress::matches({rule{true, "lock_c"}}, circular_report));
    EXPECT_FALSE(klock::preload::suppress::matches({rule{false, "take_ab"}}, circular_report));
    EXPECT_FALSE(klock::preload::suppress::matches({}, circular_report));
}

TEST(RunSpawn, PassesExitStatusThrough)
{
    EXPECT_EQ(spawn_and_wait({"sh", "-c", "exit 7"}, {}, 0), 7);
    EXPECT_EQ(spawn_and_wait({"sh", "-c", "kill -TERM $$"}, {}, 0), 128 + SIGTERM);
    EXPECT_EQ(spawn_and_wait({"no-such-program-for-klock-run"}, {}, 0), 127);
    EXPECT_EQ(spawn_and_wait({"sh", "-c", "test \"$KLOCK_X\" = y"}, {"KLOCK_X=y"}, 0), 0)
        << "the environment is passed to the program";
}

TEST(RunSpawn, FindsTheLibraryFromTheEnvironment)
{
    std::string error;
    ASSERT_EQ(::setenv("KLOCK_PRELOAD_LIB", "/nonexistent/libklock-preload.so", 1), 0);
    EXPECT_EQ(find_preload(error), "");
    EXPECT_NE(error.find("KLOCK_PRELOAD_LIB names '/nonexistent/libklock-preload.so'"), std::string::npos) << error;
    ASSERT_EQ(::setenv("KLOCK_PRELOAD_LIB", "/bin/sh", 1), 0);
    EXPECT_EQ(find_preload(error), "/bin/sh");
    ::unsetenv("KLOCK_PRELOAD_LIB");
}

} // namespace
