// Locks used before main() (static constructors) and after exit() began (static destructors,
// atexit handlers, and a thread still running while the process exits).
//   order   a static constructor records A->B; main takes B->A: reported (the constructor's
//           locking was tracked)
//   exit    the constructors, an atexit handler and a destructor lock normally, and a detached
//           thread keeps locking while exit() runs: no report, no crash
#include "common.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

std::mutex lock_a, lock_b;
static std::atomic<bool> spinning{false};

struct registry {
    std::mutex m;
    int entries = 0;
    registry()
    {
        std::lock_guard<std::mutex> g1(lock_a);
        std::lock_guard<std::mutex> g2(lock_b);
        std::lock_guard<std::mutex> g(m);
        ++entries;
    }
    ~registry()
    {
        std::lock_guard<std::mutex> g(m);
        --entries;
    }
};
registry the_registry;

NOINLINE void at_exit_handler()
{
    std::lock_guard<std::mutex> g(the_registry.m);
    ++the_registry.entries;
}

NOINLINE void keep_locking()
{
    spinning = true;
    for (;;) {
        std::lock_guard<std::mutex> g(lock_a);
        std::this_thread::yield();
    }
}

int main(int argc, char** argv)
{
    const std::string mode = mode_arg(argc, argv);
    if (mode == "order") {
        std::lock_guard<std::mutex> g1(lock_b);
        std::lock_guard<std::mutex> g2(lock_a);
    } else if (mode == "exit") {
        std::atexit(at_exit_handler);
        std::thread(keep_locking).detach();
        while (!spinning)
            std::this_thread::yield();
    } else {
        std::fprintf(stderr, "usage: %s order|exit\n", argv[0]);
        return 2;
    }
    std::puts("done");
    return 0;
}
