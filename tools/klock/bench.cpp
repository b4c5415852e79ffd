// PLACEHOLDER (being written): `klock bench`.
#include <cstdio>

#include "commands.hpp"

int klock::tool::run_bench(int, char**)
{
    std::fputs("klock bench: not built yet\n", stderr);
    return 2;
}
