// PLACEHOLDER (being written): `klock selftest`.
#include <cstdio>

#include "commands.hpp"

int klock::tool::run_selftest(int, char**)
{
    std::fputs("klock selftest: not built yet\n", stderr);
    return 2;
}
