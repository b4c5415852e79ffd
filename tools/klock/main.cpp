#include <cstdio>
#include <cstring>

int main(int argc, char** argv)
{
    if (argc >= 2 && std::strcmp(argv[1], "demo") == 0) {
        std::puts("klock demo: (coming)");
        return 0;
    }
    std::fprintf(stderr, "usage: klock demo\n");
    return 2;
}
