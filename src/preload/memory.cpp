// Memory that goes away with locks in it: free(), realloc() and dlclose().
//
// Most programs never destroy their mutexes (std::mutex has no destructor call at all): they free
// the memory. A record left behind would give the next lock at that address the old lock's class,
// so free() forgets the records inside the block (malloc_usable_size() bytes from the pointer; a
// lookup in the page index, nothing more, when the block holds no lock) and reports a lock that
// is still held there ("freed while locked"; lockdep also drops it if the caller held it).
// realloc() forgets the records of the old block before it may move. dlclose() forgets the
// records inside a library that was actually unloaded, and starts a new generation of static-lock
// classes, so that a library loaded later at the same address does not inherit them.
//
// Memory released by other means (munmap, a custom allocator's pools, a thread's stack other than
// through the stack sweep) is not seen.
#include "preload.hpp"

#include <cstring>
#include <dlfcn.h>
#include <link.h>
#include <string>

namespace klock::preload {

std::atomic<std::uint32_t> g_dlclose_gen{0};

namespace {

struct object_range {
    std::uintptr_t base = 0;
    const char* name = nullptr;
    std::uintptr_t lo = 0, hi = 0;
    bool found = false;
};

int find_object(dl_phdr_info* info, std::size_t, void* data)
{
    auto* o = static_cast<object_range*>(data);
    if (info->dlpi_addr != o->base || info->dlpi_name == nullptr || o->name == nullptr
        || std::strcmp(info->dlpi_name, o->name) != 0)
        return 0;
    o->found = true;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD)
            continue;
        const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
        if (o->lo == 0 || lo < o->lo)
            o->lo = lo;
        if (hi > o->hi)
            o->hi = hi;
    }
    return 1;
}

} // namespace

} // namespace klock::preload

using namespace klock::preload;

extern "C" void free(void* p) noexcept
{
    void (*f)(void*) = __atomic_load_n(&real.free, __ATOMIC_RELAXED);
    if (__builtin_expect(f == nullptr, 0)) {
        if (tls.in_tool)
            return; // freed while the real functions are being looked up: leak it
        resolve_all();
        f = real.free;
        if (f == nullptr)
            return;
    }
    if (p != nullptr && tracked(KLOCK_RA) && record_count() != 0 && real.malloc_usable_size != nullptr) {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        forget_range(a, a + real.malloc_usable_size(p), true);
    }
    f(p);
}

extern "C" void* realloc(void* p, std::size_t n) noexcept
{
    const real_functions& r = R();
    if (p != nullptr && tracked(KLOCK_RA) && record_count() != 0 && r.malloc_usable_size != nullptr) {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        forget_range(a, a + r.malloc_usable_size(p), false);
    }
    return r.realloc(p, n);
}

extern "C" int dlclose(void* handle) noexcept
{
    const real_functions& r = R();
    if (!tracked(KLOCK_RA))
        return r.dlclose(handle);
    object_range o;
    std::string name;
    {
        tool_scope scope;
        link_map* lm = nullptr;
        if (::dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr && lm->l_name != nullptr) {
            name = lm->l_name;
            o.base = lm->l_addr;
            o.name = name.c_str();
            ::dl_iterate_phdr(find_object, &o);
        }
    }
    const int ret = r.dlclose(handle);
    if (ret == 0 && o.found) {
        tool_scope scope;
        object_range again;
        again.base = o.base;
        again.name = o.name;
        ::dl_iterate_phdr(find_object, &again);
        if (!again.found) {
            forget_range(o.lo, o.hi, false);
            g_dlclose_gen.fetch_add(1, std::memory_order_relaxed);
        }
    }
    return ret;
}
