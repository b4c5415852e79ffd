// Lock records and lock classes for the preload library.
//
// RECORDS: one per live lock, keyed by the lock's address, holding the lockdep_map that lockdep
//   sees as "the lock" (the program's pthread_mutex_t has no room for it). Two chained hash tables
//   index them: by address (every lock operation; lock-free lookup) and by page (so that free()
//   can find the records inside a block cheaply). Both tables and the records live in memory
//   mapped once and never unmapped, and records are recycled, never freed: a reader that races
//   with a removal may follow a recycled record into another chain, so a lookup that fails is
//   repeated under the table lock before a record is created, and a found record is always
//   checked against the address it was looked up by. Changes happen under one lock (a spinlock,
//   not a pthread mutex: it must not call the interposers).
//
// CLASSES (the lock_class_key of each record) follow the kernel's rule, adapted to programs that
//   cannot name their classes:
//   * a lock initialised by pthread_*_init / mtx_init: keyed by the call stack of the init (the
//     first `class_depth` frames outside this library), so every lock made at one place shares a
//     class: 10,000 mutexes initialised in one loop are one class;
//   * a lock never initialised (PTHREAD_MUTEX_INITIALIZER, std::mutex) that has static storage:
//     keyed by its own address, like the kernel's static locks, and named by its symbol (or
//     "&module+0xoffset" when the symbol table does not have it);
//   * any other never-initialised lock (heap, stack): keyed by the call stack of its first use.
//   A class is named after the innermost frame of its site, "function+0xoffset"; lockdep numbers
//   repeated names (name#2).
//
// FORGETTING: a record goes when its lock is destroyed, re-initialised (it gets a new one), freed
//   (free/realloc: forget_range), unloaded (dlclose) or, for a lock on its thread's own stack,
//   when the thread's stack pointer is later seen above it (the frame returned). Without that, a
//   new lock at a reused address would inherit the old lock's class and report dependencies the
//   program never had.
#include "preload.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <link.h>
#include <sched.h>
#include <sys/mman.h>

namespace klock::preload {

std::uintptr_t g_self_lo = 0, g_self_hi = 0;
std::atomic<record*>* g_addr = nullptr;

namespace {

constexpr unsigned PAGE_BITS = 18;
constexpr std::size_t ADDR_BUCKETS = std::size_t(1) << ADDR_BITS;
constexpr std::size_t PAGE_BUCKETS = std::size_t(1) << PAGE_BITS;
constexpr unsigned PAGE_SHIFT = 12;
constexpr std::size_t RECORDS_PER_CHUNK = 8192;
constexpr std::size_t MAX_CHUNKS = 1024; // 8M records
constexpr unsigned SITE_BUCKETS = 8192;
constexpr unsigned MAX_FRAMES = 48;
constexpr unsigned MAX_CHAIN_WALK = 256; // a lock-free walk longer than this retries under the lock

// The table lock. Waiters yield: the holder may be preempted on a loaded machine.
class spin_lock {
public:
    void lock() noexcept
    {
        while (flag_.exchange(true, std::memory_order_acquire))
            while (flag_.load(std::memory_order_relaxed))
                ::sched_yield();
    }
    void unlock() noexcept { flag_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> flag_{false};
};

class locked {
public:
    explicit locked(spin_lock& l) noexcept : l_(l) { l_.lock(); }
    ~locked() { l_.unlock(); }
    locked(const locked&) = delete;
    locked& operator=(const locked&) = delete;

private:
    spin_lock& l_;
};

struct site {
    lock_class_key key;
    std::uint64_t id = 0;
    bool is_static = false;
    site* next = nullptr;
    char name[104] = {};
};

spin_lock g_lock;
std::atomic<record*>* g_pages = nullptr;
record* g_chunks[MAX_CHUNKS];
std::size_t g_nchunks = 0;
std::size_t g_chunk_used = 0; // records handed out from the last chunk
record* g_free = nullptr;     // recycled records, linked through `next`
std::atomic<std::size_t> g_live{0};

site* g_sites[SITE_BUCKETS];
char* g_site_arena = nullptr;
std::size_t g_site_left = 0;

void* map_anon(std::size_t bytes)
{
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

[[gnu::always_inline]] inline std::size_t page_bucket(std::uintptr_t page)
{
    return static_cast<std::size_t>((page * 0x9e3779b97f4a7c15ull) >> (64 - PAGE_BITS));
}

record* find_locked(std::uintptr_t a)
{
    for (record* r = g_addr[addr_bucket(a)].load(std::memory_order_relaxed); r != nullptr;
         r = r->next.load(std::memory_order_relaxed))
        if (r->addr.load(std::memory_order_relaxed) == a)
            return r;
    return nullptr;
}

record* alloc_locked()
{
    if (g_free != nullptr) {
        record* r = g_free;
        g_free = r->next.load(std::memory_order_relaxed);
        return r;
    }
    if (g_nchunks == 0 || g_chunk_used == RECORDS_PER_CHUNK) {
        if (g_nchunks == MAX_CHUNKS)
            return nullptr;
        void* p = map_anon(RECORDS_PER_CHUNK * sizeof(record));
        if (p == nullptr)
            return nullptr;
        g_chunks[g_nchunks++] = static_cast<record*>(p);
        g_chunk_used = 0;
    }
    record* r = g_chunks[g_nchunks - 1] + g_chunk_used++;
    return new (r) record;
}

void unlink(std::atomic<record*>& head, record* r, std::atomic<record*> record::*link)
{
    std::atomic<record*>* p = &head;
    for (record* c = p->load(std::memory_order_relaxed); c != nullptr; c = p->load(std::memory_order_relaxed)) {
        if (c == r) {
            p->store((r->*link).load(std::memory_order_relaxed), std::memory_order_release);
            return;
        }
        p = &(c->*link);
    }
}

void remove_locked(record* r)
{
    const std::uintptr_t a = r->addr.load(std::memory_order_relaxed);
    unlink(g_addr[addr_bucket(a)], r, &record::next);
    unlink(g_pages[page_bucket(a >> PAGE_SHIFT)], r, &record::page_next);
    r->addr.store(0, std::memory_order_release);
    r->owner.store(0, std::memory_order_relaxed);
    r->next.store(g_free, std::memory_order_relaxed);
    g_free = r;
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

// ---- sites ----

site* site_find_locked(std::uint64_t id, bool is_static)
{
    for (site* s = g_sites[id % SITE_BUCKETS]; s != nullptr; s = s->next)
        if (s->id == id && s->is_static == is_static)
            return s;
    return nullptr;
}

site* site_insert_locked(std::uint64_t id, bool is_static, const char* name)
{
    if (g_site_left < sizeof(site)) {
        constexpr std::size_t chunk = 1 << 20;
        g_site_arena = static_cast<char*>(map_anon(chunk));
        if (g_site_arena == nullptr) {
            g_site_left = 0;
            return nullptr;
        }
        g_site_left = chunk;
    }
    site* s = new (g_site_arena) site;
    g_site_arena += sizeof(site);
    g_site_left -= sizeof(site);
    s->id = id;
    s->is_static = is_static;
    std::snprintf(s->name, sizeof s->name, "%s", name);
    s->next = g_sites[id % SITE_BUCKETS];
    g_sites[id % SITE_BUCKETS] = s;
    return s;
}

site* get_site(std::uint64_t id, bool is_static, const char* name)
{
    {
        locked g(g_lock);
        if (site* s = site_find_locked(id, is_static))
            return s;
    }
    locked g(g_lock);
    if (site* s = site_find_locked(id, is_static))
        return s;
    return site_insert_locked(id, is_static, name);
}

bool in_self(std::uintptr_t ip) { return in_self_ip(ip); }

// "function+0xoff" for the call at return address `ip` (or "module+0xoff").
void name_of_ip(std::uintptr_t ip, char* out, std::size_t size)
{
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(ip - 1), &info) == 0) {
        std::snprintf(out, size, "0x%" PRIxPTR, ip);
        return;
    }
    if (info.dli_sname != nullptr && info.dli_saddr != nullptr) {
        int status = 0;
        char* dem = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
        std::snprintf(out, size, "%s+0x%" PRIxPTR, status == 0 && dem != nullptr ? dem : info.dli_sname,
            ip - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
        std::free(dem);
        return;
    }
    const char* mod = info.dli_fname != nullptr ? info.dli_fname : "?";
    if (const char* slash = std::strrchr(mod, '/'))
        mod = slash + 1;
    std::snprintf(out, size, "%s+0x%" PRIxPTR, mod, ip - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
}

// The class of a lock made (or first used) here: the caller's stack outside this library.
site* stack_site()
{
    void* frames[MAX_FRAMES];
    const int n = ::backtrace(frames, MAX_FRAMES);
    int first = 0;
    // A sanitizer runtime interposes backtrace() too: its frames come before this library's.
    while (first < n && !in_self(reinterpret_cast<std::uintptr_t>(frames[first])))
        ++first;
    while (first < n && in_self(reinterpret_cast<std::uintptr_t>(frames[first])))
        ++first;
    if (first >= n)
        return nullptr;
    const int last
        = first + static_cast<int>(g_config.class_depth) < n ? first + static_cast<int>(g_config.class_depth) : n;
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (int i = first; i < last; ++i) {
        h ^= reinterpret_cast<std::uintptr_t>(frames[i]);
        h *= 0x100000001b3ull;
    }
    {
        locked g(g_lock);
        if (site* s = site_find_locked(h, false))
            return s;
    }
    char name[104];
    name_of_ip(reinterpret_cast<std::uintptr_t>(frames[first]), name, sizeof name);
    return get_site(h, false, name);
}

// A lock with static storage: its own address is its class, its symbol its name.
site* static_site(std::uintptr_t a, const Dl_info& info, const ElfW(Sym) * sym)
{
    // Addresses fit in 48 bits; the generation keeps a reloaded library from inheriting classes.
    const std::uint64_t id = a | (std::uint64_t(g_dlclose_gen.load(std::memory_order_relaxed)) << 48);
    {
        locked g(g_lock);
        if (site* s = site_find_locked(id, true))
            return s;
    }
    char name[104];
    const auto sa = reinterpret_cast<std::uintptr_t>(info.dli_saddr);
    const std::uintptr_t size = sym != nullptr && sym->st_size != 0 ? sym->st_size : 1;
    if (info.dli_sname != nullptr && sa != 0 && a >= sa && a < sa + size) {
        if (a == sa)
            std::snprintf(name, sizeof name, "%s", info.dli_sname);
        else
            std::snprintf(name, sizeof name, "%s+0x%" PRIxPTR, info.dli_sname, a - sa);
    } else {
        const char* mod = info.dli_fname != nullptr ? info.dli_fname : "?";
        if (const char* slash = std::strrchr(mod, '/'))
            mod = slash + 1;
        // No symbol (a file-local variable, or a stripped object): "&module+0xoffset".
        std::snprintf(name, sizeof name, "&%s+0x%" PRIxPTR, mod, a - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    }
    return get_site(id, true, name);
}

bool on_my_stack(std::uintptr_t a)
{
    if (!tls.stack_known) {
        pthread_attr_t attr;
        if (::pthread_getattr_np(::pthread_self(), &attr) == 0) {
            void* lo = nullptr;
            std::size_t size = 0;
            if (::pthread_attr_getstack(&attr, &lo, &size) == 0) {
                tls.stack_lo = reinterpret_cast<std::uintptr_t>(lo);
                tls.stack_hi = tls.stack_lo + size;
            }
            ::pthread_attr_destroy(&attr);
        }
        tls.stack_known = true;
    }
    return a >= tls.stack_lo && a < tls.stack_hi;
}

void track_stack_lock(std::uintptr_t a)
{
    thread_state& t = tls;
    if (t.n_stack_locks == sizeof t.stack_locks / sizeof t.stack_locks[0])
        return; // too many at once: these stay until destroyed
    t.stack_locks[t.n_stack_locks++] = a;
    if (a < t.min_stack_lock)
        t.min_stack_lock = a;
}

record* create(std::uintptr_t a, lock_kind kind, bool is_init)
{
    tool_scope scope;
    const bool on_stack = on_my_stack(a);
    site* s = nullptr;
    if (!is_init && !on_stack) {
        Dl_info info{};
        void* sym = nullptr;
        if (::dladdr1(reinterpret_cast<void*>(a), &info, &sym, RTLD_DL_SYMENT) != 0)
            s = static_site(a, info, static_cast<const ElfW(Sym)*>(sym));
    }
    if (s == nullptr)
        s = stack_site();
    if (s == nullptr)
        return nullptr;
    record* r = nullptr;
    {
        locked g(g_lock);
        if (record* old = find_locked(a)) {
            if (!is_init || old->map.key == &s->key)
                return old; // created meanwhile, or re-initialised at the same place
            remove_locked(old);
        }
        r = alloc_locked();
        if (r == nullptr)
            return nullptr;
        r->map.init(s->name, &s->key);
        r->kind = kind;
        r->on_stack = on_stack;
        r->first_use = !is_init;
        r->owner.store(0, std::memory_order_relaxed);
        r->addr.store(a, std::memory_order_relaxed);
        std::atomic<record*>& head = g_addr[addr_bucket(a)];
        std::atomic<record*>& phead = g_pages[page_bucket(a >> PAGE_SHIFT)];
        r->next.store(head.load(std::memory_order_relaxed), std::memory_order_relaxed);
        r->page_next.store(phead.load(std::memory_order_relaxed), std::memory_order_relaxed);
        head.store(r, std::memory_order_release);
        phead.store(r, std::memory_order_release);
        g_live.fetch_add(1, std::memory_order_relaxed);
    }
    if (on_stack)
        track_stack_lock(a);
    return r;
}

int find_self(dl_phdr_info* info, std::size_t, void* data)
{
    const auto base = *static_cast<std::uintptr_t*>(data);
    if (info->dlpi_addr != base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD)
            continue;
        const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        const std::uintptr_t hi = lo + ph.p_memsz;
        if (g_self_lo == 0 || lo < g_self_lo)
            g_self_lo = lo;
        if (hi > g_self_hi)
            g_self_hi = hi;
    }
    return 1;
}

bool in_range_of_pages(std::uintptr_t lo, std::uintptr_t hi)
{
    const std::uintptr_t p0 = lo >> PAGE_SHIFT, p1 = (hi - 1) >> PAGE_SHIFT;
    for (std::uintptr_t p = p0; p <= p1; ++p) {
        unsigned walk = 0;
        for (record* r = g_pages[page_bucket(p)].load(std::memory_order_acquire); r != nullptr;
             r = r->page_next.load(std::memory_order_acquire)) {
            const std::uintptr_t a = r->addr.load(std::memory_order_relaxed);
            if (a >= lo && a < hi)
                return true;
            if (++walk > MAX_CHAIN_WALK)
                return true; // unsure: let the locked pass decide
        }
    }
    return false;
}

} // namespace

record* find_record_slow(std::uintptr_t a) noexcept
{
    unsigned walk = 0;
    for (record* r = g_addr[addr_bucket(a)].load(std::memory_order_acquire); r != nullptr;
         r = r->next.load(std::memory_order_acquire)) {
        if (r->addr.load(std::memory_order_acquire) == a)
            return r;
        if (++walk > MAX_CHAIN_WALK)
            break;
    }
    tool_scope scope;
    locked g(g_lock);
    return find_locked(a);
}

record* create_record(const void* addr, lock_kind kind) noexcept
{
    return create(reinterpret_cast<std::uintptr_t>(addr), kind, false);
}

record* init_record(const void* addr, lock_kind kind) noexcept
{
    return create(reinterpret_cast<std::uintptr_t>(addr), kind, true);
}

void forget_record(const void* addr) noexcept
{
    if (find_record(addr) == nullptr)
        return;
    tool_scope scope;
    locked g(g_lock);
    if (record* r = find_locked(reinterpret_cast<std::uintptr_t>(addr)))
        remove_locked(r);
}

void forget_range(std::uintptr_t lo, std::uintptr_t hi, bool check) noexcept
{
    if (hi <= lo || g_live.load(std::memory_order_relaxed) == 0)
        return;
    const std::uintptr_t pages = ((hi - 1) >> PAGE_SHIFT) - (lo >> PAGE_SHIFT) + 1;
    const bool small = pages <= 64;
    if (small && !in_range_of_pages(lo, hi))
        return;
    tool_scope scope;
    // Locked: collect (at most a few per call are expected) and remove; report after unlocking.
    constexpr unsigned MAX_REPORT = 8;
    struct held {
        std::uintptr_t addr;
        record* rec;
        int owner;
    } reports[MAX_REPORT];
    unsigned nrep = 0;
    const int me = check ? current_tid() : 0;
    {
        locked g(g_lock);
        auto visit = [&](record* r) {
            const std::uintptr_t a = r->addr.load(std::memory_order_relaxed);
            if (a < lo || a >= hi)
                return;
            const int owner = r->owner.load(std::memory_order_relaxed);
            if (check && owner != 0 && nrep < MAX_REPORT) {
                bool locked_now = true;
                if (r->kind == lock_kind::mutex)
                    locked_now
                        = __atomic_load_n(&reinterpret_cast<pthread_mutex_t*>(a)->__data.__lock, __ATOMIC_RELAXED) != 0;
                else if (r->kind == lock_kind::spin)
                    locked_now = spin_state(reinterpret_cast<pthread_spinlock_t*>(a)) != 0;
                else
                    locked_now = __atomic_load_n(
                                     &reinterpret_cast<pthread_rwlock_t*>(a)->__data.__cur_writer, __ATOMIC_RELAXED)
                        == owner;
                if (locked_now)
                    reports[nrep++] = {a, r, owner};
            }
            if (nrep == 0 || reports[nrep - 1].rec != r)
                remove_locked(r);
        };
        if (small) {
            const std::uintptr_t p0 = lo >> PAGE_SHIFT, p1 = (hi - 1) >> PAGE_SHIFT;
            for (std::uintptr_t p = p0; p <= p1; ++p) {
                std::atomic<record*>* link = &g_pages[page_bucket(p)];
                for (record* r = link->load(std::memory_order_relaxed); r != nullptr;) {
                    record* next = r->page_next.load(std::memory_order_relaxed);
                    visit(r);
                    r = next;
                }
            }
        } else {
            for (std::size_t c = 0; c < g_nchunks; ++c) {
                const std::size_t n = c + 1 == g_nchunks ? g_chunk_used : RECORDS_PER_CHUNK;
                for (std::size_t i = 0; i < n; ++i)
                    if (g_chunks[c][i].addr.load(std::memory_order_relaxed) != 0)
                        visit(&g_chunks[c][i]);
            }
        }
    }
    // Held locks: report, let lockdep drop them if this thread holds them, then forget them.
    for (unsigned i = 0; i < nrep; ++i) {
        const held& h = reports[i];
        const char* what = h.rec->kind == lock_kind::mutex ? "pthread_mutex freed while locked"
            : h.rec->kind == lock_kind::spin               ? "pthread_spin freed while locked"
                                                           : "pthread_rwlock freed while locked";
        misuse(what, reinterpret_cast<const void*>(h.addr), h.owner, h.rec, 0);
        if (h.owner == me)
            ld_release(h.rec, 0);
        locked g(g_lock);
        if (h.rec->addr.load(std::memory_order_relaxed) == h.addr)
            remove_locked(h.rec);
    }
}

void recheck_stack_record(record* r) noexcept
{
    tool_scope scope;
    const std::uintptr_t a = r->addr.load(std::memory_order_relaxed);
    if (a == 0 || !on_my_stack(a))
        return;
    site* s = stack_site();
    if (s == nullptr || r->map.key == &s->key)
        return;
    // In place: a thread that holds the lock (it cannot be this one) matches its release by the
    // map's address, which does not change.
    locked g(g_lock);
    if (r->addr.load(std::memory_order_relaxed) == a)
        r->map.init(s->name, &s->key);
}

void sweep_stack_records(std::uintptr_t sp) noexcept
{
    thread_state& t = tls;
    if (t.in_tool || sp < t.stack_lo || sp >= t.stack_hi)
        return; // not on this thread's stack (a signal stack, say): nothing can be concluded
    tool_scope scope;
    std::uintptr_t dead[sizeof t.stack_locks / sizeof t.stack_locks[0]];
    unsigned ndead = 0, keep = 0;
    std::uintptr_t min = ~std::uintptr_t(0);
    for (unsigned i = 0; i < t.n_stack_locks; ++i) {
        const std::uintptr_t a = t.stack_locks[i];
        if (a < sp) {
            dead[ndead++] = a;
            continue;
        }
        t.stack_locks[keep++] = a;
        if (a < min)
            min = a;
    }
    t.n_stack_locks = keep;
    t.min_stack_lock = min;
    if (ndead == 0)
        return;
    locked g(g_lock);
    for (unsigned i = 0; i < ndead; ++i) {
        record* r = find_locked(dead[i]);
        if (r != nullptr && r->on_stack && r->owner.load(std::memory_order_relaxed) == 0)
            remove_locked(r);
    }
}

void table_init() noexcept
{
    g_addr = static_cast<std::atomic<record*>*>(map_anon(ADDR_BUCKETS * sizeof(std::atomic<record*>)));
    g_pages = static_cast<std::atomic<record*>*>(map_anon(PAGE_BUCKETS * sizeof(std::atomic<record*>)));
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&table_init), &info) != 0) {
        auto base = reinterpret_cast<std::uintptr_t>(info.dli_fbase);
        // dlpi_addr is the load bias; for a shared library it equals the base address.
        ::dl_iterate_phdr(find_self, &base);
    }
}

bool table_ready() noexcept { return g_addr != nullptr && g_pages != nullptr; }

void table_atfork_prepare() noexcept { g_lock.lock(); }
void table_atfork_release() noexcept { g_lock.unlock(); }

std::size_t record_count() noexcept { return g_live.load(std::memory_order_relaxed); }

} // namespace klock::preload
