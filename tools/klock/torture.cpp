// PLACEHOLDER (being written): `klock torture`.
#include <cstdio>

#include "commands.hpp"

int klock::tool::run_torture(int, char**)
{
    std::fputs("klock torture: not built yet\n", stderr);
    return 2;
}
