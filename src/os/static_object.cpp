// Is an address inside a loaded object's image (data, bss, read-only data), i.e. a static
// object? The dynamic linker knows every loaded object's segments: dladdr() finds the one that
// contains the address, and finds none for the heap, stacks and anonymous mappings.
#include <dlfcn.h>

#include <klock/detail/lock_dep.hpp>

namespace klock::detail {

bool is_static_object(const void* p) noexcept
{
    Dl_info info{};
    return ::dladdr(p, &info) != 0;
}

} // namespace klock::detail
