// The klock command's subcommands. Each takes the arguments after the program name (argv[0] is
// the subcommand itself) and returns the process exit status: 0 success, 1 the check or run
// failed, 2 bad usage (a message naming the problem has been printed).
#pragma once

namespace klock::tool {

int run_demo(int argc, char** argv);     // demo.cpp
int run_selftest(int argc, char** argv); // selftest.cpp
int run_torture(int argc, char** argv);  // torture.cpp
int run_bench(int argc, char** argv);    // bench.cpp
int run_run(int argc, char** argv);      // run.cpp
int run_sim(int argc, char** argv);      // sim.cpp

} // namespace klock::tool
