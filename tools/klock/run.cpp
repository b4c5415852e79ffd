// PLACEHOLDER (being written): `klock run`.
#include <cstdio>

#include "commands.hpp"

int klock::tool::run_run(int, char**)
{
    std::fputs("klock run: not built yet\n", stderr);
    return 2;
}
