// Address -> function, module, file:line (include/klock/detail/symbolize.hpp).
#include <klock/detail/symbolize.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <dlfcn.h>
#include <link.h>
#include <mutex>
#include <string_view>
#include <unistd.h>
#include <unordered_map>

#if KLOCK_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

namespace klock::detail {

namespace {

std::string demangle(const char* name)
{
    // ELF symbol versions ("__libc_start_main@@GLIBC_2.34") are not part of the name.
    std::string plain = name;
    if (const auto at = plain.find('@'); at != std::string::npos && at > 0)
        plain.resize(at);
    name = plain.c_str();
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string out = status == 0 && d != nullptr ? d : name;
    std::free(d);
    return out;
}

std::string base_name(const char* path)
{
    const char* slash = __builtin_strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

// "dir/file.cpp" from "/abs/path/dir/file.cpp": enough to find it, short enough for a report.
std::string short_source(const char* path)
{
    const char* last = __builtin_strrchr(path, '/');
    if (last == nullptr)
        return path;
    const char* p = last;
    while (p > path && p[-1] != '/')
        --p;
    return p > path ? p : path;
}

// dladdr: what the dynamic linker knows (exported symbols only).
void from_dladdr(std::uintptr_t look, symbol_info& s)
{
    Dl_info info{};
    void* extra = nullptr;
    if (::dladdr1(reinterpret_cast<void*>(look), &info, &extra, RTLD_DL_SYMENT) == 0)
        return;
    if (info.dli_fname != nullptr) {
        s.module = base_name(info.dli_fname);
        s.module_offset = look - reinterpret_cast<std::uintptr_t>(info.dli_fbase);
    }
    if (info.dli_sname != nullptr && info.dli_saddr != nullptr) {
        s.function = demangle(info.dli_sname);
        s.offset = look - reinterpret_cast<std::uintptr_t>(info.dli_saddr);
        if (const auto* sym = static_cast<const ElfW(Sym)*>(extra))
            s.size = sym->st_size;
    }
}

#if KLOCK_HAVE_LIBDW
// One libdwfl session over the process's mappings, rebuilt when an address falls outside every
// module it knows (a library dlopen'ed since).
class dwarf_lookup {
public:
    ~dwarf_lookup()
    {
        if (dwfl_ != nullptr)
            dwfl_end(dwfl_);
    }

    bool lookup(std::uintptr_t look, symbol_info& s)
    {
        Dwfl_Module* mod = find_module(look);
        if (mod == nullptr)
            return false;
        Dwarf_Addr base = 0;
        const char* mod_name = dwfl_module_info(mod, nullptr, &base, nullptr, nullptr, nullptr, nullptr, nullptr);
        if (mod_name != nullptr) {
            s.module = base_name(mod_name);
            s.module_offset = look - base;
        }
        GElf_Off off = 0;
        GElf_Sym sym{};
        if (const char* name = dwfl_module_addrinfo(mod, look, &off, &sym, nullptr, nullptr, nullptr)) {
            s.function = demangle(name);
            s.offset = off;
            s.size = sym.st_size;
        }
        if (Dwfl_Line* line = dwfl_module_getsrc(mod, look)) {
            int lineno = 0;
            if (const char* src = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
                s.file = short_source(src);
                s.line = static_cast<unsigned>(lineno);
                if (is_klock_header(src))
                    caller_outside_klock(mod, look, s);
            }
        }
        return true;
    }

private:
    // A header of klock's own (include/klock/..., installed or in the source tree).
    static bool is_klock_header(const char* path)
    {
        const std::string_view p = path;
        return p.find("/klock/") != std::string_view::npos && p.size() > 4 && p.substr(p.size() - 4) == ".hpp";
    }

    // The line for an address inside klock's inlined lock code is a line of a klock header, which
    // tells the reader nothing: walk the inlining chain outwards (each inlined subroutine records
    // where it was inlined) to the first line outside klock's headers - the caller's lock() call.
    static void caller_outside_klock(Dwfl_Module* mod, std::uintptr_t look, symbol_info& s)
    {
        Dwarf_Addr bias = 0;
        Dwarf_Die* cu = dwfl_module_addrdie(mod, look, &bias);
        if (cu == nullptr)
            return;
        Dwarf_Files* files = nullptr;
        std::size_t nfiles = 0;
        if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0)
            return;
        // dwarf_getscopes() follows an inlined instance to its abstract definition; the DIE
        // tree's own nesting (dwarf_getscopes_die of the innermost instance) is the physical
        // inlining chain, as elfutils' addr2line -i walks it.
        Dwarf_Die* found = nullptr;
        const int nfound = dwarf_getscopes(cu, look - bias, &found);
        if (nfound <= 0)
            return;
        Dwarf_Die innermost = found[0];
        std::free(found);
        Dwarf_Die* scopes = nullptr;
        const int n = dwarf_getscopes_die(&innermost, &scopes);
        for (int i = 0; i < n; ++i) {
            if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine)
                continue;
            Dwarf_Attribute attr;
            Dwarf_Word file_idx = 0, line = 0;
            if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &file_idx) != 0
                || dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &line) != 0)
                break;
            const char* src = dwarf_filesrc(files, file_idx, nullptr, nullptr);
            if (src == nullptr)
                break;
            if (!is_klock_header(src)) {
                s.file = short_source(src);
                s.line = static_cast<unsigned>(line);
                break;
            }
        }
        std::free(scopes);
    }

    Dwfl_Module* find_module(std::uintptr_t look)
    {
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (dwfl_ == nullptr || attempt == 1)
                rebuild();
            if (dwfl_ == nullptr)
                return nullptr;
            if (Dwfl_Module* m = dwfl_addrmodule(dwfl_, look))
                return m;
        }
        return nullptr;
    }

    void rebuild()
    {
        // Debug information in the module itself or in the standard separate-debuginfo places.
        static const Dwfl_Callbacks callbacks = {
            .find_elf = dwfl_linux_proc_find_elf,
            .find_debuginfo = dwfl_standard_find_debuginfo,
            .section_address = nullptr,
            .debuginfo_path = nullptr,
        };
        if (dwfl_ != nullptr)
            dwfl_end(dwfl_);
        dwfl_ = dwfl_begin(&callbacks);
        if (dwfl_ == nullptr)
            return;
        if (dwfl_linux_proc_report(dwfl_, ::getpid()) != 0 || dwfl_report_end(dwfl_, nullptr, nullptr) != 0) {
            dwfl_end(dwfl_);
            dwfl_ = nullptr;
        }
    }

    Dwfl* dwfl_ = nullptr;
};
#endif

struct symbol_cache {
    std::mutex lock;
    std::unordered_map<std::uintptr_t, symbol_info> entries;
#if KLOCK_HAVE_LIBDW
    dwarf_lookup dwarf;
#endif
};

symbol_cache& cache()
{
    static symbol_cache* c = new symbol_cache; // never destroyed: reports may come from atexit handlers
    return *c;
}

} // namespace

symbol_info symbolize(std::uintptr_t ip, bool return_address)
{
    const std::uintptr_t look = return_address && ip != 0 ? ip - 1 : ip;
    symbol_cache& c = cache();
    std::lock_guard<std::mutex> g(c.lock);
    if (auto it = c.entries.find(look); it != c.entries.end())
        return it->second;
    symbol_info s;
    if (ip != 0) {
#if KLOCK_HAVE_LIBDW
        if (!c.dwarf.lookup(look, s) || s.function.empty())
#endif
            from_dladdr(look, s);
        // Offsets are reported for the address itself, as the kernel does.
        if (look != ip) {
            if (!s.function.empty())
                ++s.offset;
            if (!s.module.empty())
                ++s.module_offset;
        }
    }
    return c.entries.emplace(look, std::move(s)).first->second;
}

std::string format_symbol(std::uintptr_t ip, bool return_address)
{
    const symbol_info s = symbolize(ip, return_address);
    char buf[768];
    if (!s.function.empty() && s.size != 0)
        std::snprintf(buf, sizeof buf, "%s+0x%" PRIxPTR "/0x%" PRIxPTR, s.function.c_str(), s.offset, s.size);
    else if (!s.function.empty())
        std::snprintf(buf, sizeof buf, "%s+0x%" PRIxPTR, s.function.c_str(), s.offset);
    else if (!s.module.empty())
        std::snprintf(buf, sizeof buf, "%s+0x%" PRIxPTR, s.module.c_str(), s.module_offset);
    else
        std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, ip);
    std::string out = buf;
    if (!s.file.empty())
        out += " (" + s.file + ":" + std::to_string(s.line) + ")";
    return out;
}

} // namespace klock::detail
