// PLACEHOLDER (being written): `klock sim`.
#include <cstdio>

#include "commands.hpp"

int klock::tool::run_sim(int, char**)
{
    std::fputs("klock sim: not built yet\n", stderr);
    return 2;
}
