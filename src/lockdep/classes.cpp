// Lock classes: from a lock's key and subclass to a class, its name and its index.
//
// A class is identified by the address &key->subkeys[subclass] (one byte per subclass, so the
// eight subclasses of one key are eight distinct addresses, as in the kernel). Keys must have
// static storage: either a lock_class_key object the program declares, one interned per source
// location by site_key(), or - for a lock that is itself a static object and has no key - the
// lock's own address (the kernel's assign_lock_key()). Whether an address is static is decided the
// user-space way: it lies inside a loaded object (dladdr finds it), not on a heap or a stack.
//
// Lookup order on acquire: the lock's class_cache (subclasses 0 and 1; one atomic load, checked
// against the generation), then the lock-free class hash, then registration under the graph lock.
#include "internal.hpp"

#include <klock/detail/lock_dep.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>

namespace klock::lockdep {

namespace detail {

namespace {

constexpr unsigned CLASSHASH_SIZE = 16384;               // power of two, about twice MAX_LOCKDEP_KEYS
std::atomic<std::uint32_t> g_class_hash[CLASSHASH_SIZE]; // class index + 1; 0 = empty

unsigned key_hash(const void* key)
{
    auto v = reinterpret_cast<std::uintptr_t>(key);
    v ^= v >> 17;
    v *= 0x9e3779b97f4a7c15ull;
    return static_cast<unsigned>(v >> 40) & (CLASSHASH_SIZE - 1);
}

const void* effective_key(const lockdep_map& lock, unsigned subclass)
{
    if (lock.key != nullptr)
        return &lock.key->subkeys[subclass];
    return reinterpret_cast<const char*>(&lock) + subclass;
}

bool static_obj(const void* p) { return klock::detail::is_static_object(p); }

lock_class* hash_find(const void* key)
{
    for (unsigned i = key_hash(key);; i = (i + 1) & (CLASSHASH_SIZE - 1)) {
        const std::uint32_t v = g_class_hash[i].load(std::memory_order_acquire);
        if (v == 0)
            return nullptr;
        lock_class* c = class_at(v - 1);
        if (c->key == key)
            return c;
    }
}

void hash_insert(const void* key, unsigned idx)
{
    unsigned i = key_hash(key);
    while (g_class_hash[i].load(std::memory_order_relaxed) != 0)
        i = (i + 1) & (CLASSHASH_SIZE - 1);
    g_class_hash[i].store(idx + 1, std::memory_order_release);
}

// The kernel's count_matching_names(): classes with the same name get #2, #3, ...; subclasses of
// one key share their key's number.
int count_matching_names(const lock_class* nc)
{
    if (nc->name == nullptr)
        return 0;
    const char* base = static_cast<const char*>(nc->key) - nc->subclass;
    int count = 0;
    const unsigned n = graph().nr_classes;
    for (unsigned i = 0; i < n; ++i) {
        const lock_class* c = class_at(i);
        if (c == nc)
            continue;
        if (static_cast<const char*>(c->key) - c->subclass == base)
            return c->name_version;
        if (c->name != nullptr && std::strcmp(c->name, nc->name) == 0 && c->name_version > count)
            count = c->name_version;
    }
    return count + 1;
}

void set_cache(lockdep_map& lock, unsigned subclass, unsigned idx, std::uint32_t gen)
{
    if (subclass < NR_LOCKDEP_CACHING_CLASSES)
        lock.class_cache[subclass].store((std::uint64_t(gen) << 32) | (idx + 1), std::memory_order_release);
}

std::string key_symbol(const void* key)
{
    Dl_info info{};
    if (::dladdr(key, &info) != 0 && info.dli_sname != nullptr)
        return info.dli_sname;
    char buf[40];
    std::snprintf(buf, sizeof buf, "key@%p", key);
    return buf;
}

} // namespace

bool lock_without_class(const lockdep_map& lock) noexcept { return lock.key == nullptr && !static_obj(&lock); }

lock_class* lookup_class(const lockdep_map& lock, unsigned subclass) noexcept
{
    if (subclass >= MAX_LOCKDEP_SUBCLASSES)
        return nullptr;
    return hash_find(effective_key(lock, subclass));
}

lock_class* register_lock_class(task_state& ts, const thread_info& ti, lockdep_map& lock, unsigned subclass) noexcept
{
    const std::uint32_t gen = state_gen(g_state.load(std::memory_order_relaxed));
    if (subclass >= MAX_LOCKDEP_SUBCLASSES) {
        graph_guard g;
        if (g.locked())
            report_bad_subclass_locked(ts, ti, subclass);
        return nullptr;
    }
    const void* key = effective_key(lock, subclass);
    if (lock_class* c = hash_find(key)) {
        set_cache(lock, subclass, class_index(c), gen);
        return c;
    }
    if (lock.key == nullptr && !static_obj(&lock)) {
        graph_guard g;
        if (g.locked())
            report_non_static_key_locked(ts, ti, lock);
        return nullptr;
    }
    graph_guard g;
    if (!g.locked())
        return nullptr;
    graph_state& gs = graph();
    lock_class* c = hash_find(key); // another task may have won the race
    if (c == nullptr) {
        if (gs.nr_classes >= gs.lim.keys) {
            limit_exhausted_locked(ts, ti, "BUG: MAX_LOCKDEP_KEYS too low!");
            return nullptr;
        }
        const unsigned idx = gs.nr_classes;
        c = class_at(idx);
        c->key = key;
        c->name = lock.name;
        c->subclass = subclass;
        c->usage_mask.store(0, std::memory_order_relaxed);
        for (auto& t : c->usage_traces)
            t = 0;
        c->after_head = c->after_tail = c->before_head = c->before_tail = nullptr;
        c->dep_gen_id = 0;
        g_class_ops[idx].store(0, std::memory_order_relaxed);
        gs.nr_classes = idx + 1; // count_matching_names() looks at the classes before this one
        c->name_version = count_matching_names(c);
        hash_insert(key, idx);
    }
    set_cache(lock, subclass, class_index(c), gen);
    return c;
}

void reset_classes_locked() noexcept
{
    graph_state& gs = graph();
    // Few classes (a simulator resets per run): clear each one's slot, found by its key; many:
    // sweep the table.
    if (gs.nr_classes < CLASSHASH_SIZE / 64) {
        for (unsigned c = 0; c < gs.nr_classes; ++c) {
            unsigned i = key_hash(class_at(c)->key);
            for (unsigned n = 0; n < CLASSHASH_SIZE; ++n, i = (i + 1) & (CLASSHASH_SIZE - 1)) {
                if (g_class_hash[i].load(std::memory_order_relaxed) == c + 1) {
                    g_class_hash[i].store(0, std::memory_order_relaxed);
                    break;
                }
            }
        }
    } else {
        for (auto& slot : g_class_hash)
            slot.store(0, std::memory_order_relaxed);
    }
    for (unsigned i = 0; i < gs.nr_classes; ++i) {
        lock_class* c = class_at(i);
        c->key = nullptr;
        c->name = nullptr;
        c->subclass = 0;
        c->name_version = 0;
        c->usage_mask.store(0, std::memory_order_relaxed);
        for (auto& t : c->usage_traces)
            t = 0;
        c->after_head = c->after_tail = c->before_head = c->before_tail = nullptr;
        c->dep_gen_id = 0;
        g_class_ops[i].store(0, std::memory_order_relaxed);
    }
    gs.nr_classes = 0;
}

std::string class_name(const lock_class* c)
{
    std::string s = c->name != nullptr ? std::string(c->name) : key_symbol(c->key);
    if (c->name != nullptr) {
        if (c->name_version > 1)
            s += "#" + std::to_string(c->name_version);
        if (c->subclass != 0)
            s += "/" + std::to_string(c->subclass);
    }
    return s;
}

std::string map_name(const lockdep_map& m)
{
    if (m.name != nullptr)
        return m.name;
    return key_symbol(m.key != nullptr ? static_cast<const void*>(m.key) : static_cast<const void*>(&m));
}

} // namespace detail

// ---- site keys ----

namespace {

struct site_entry {
    site_class sc;
    const char* type;
    const char* file; // the caller's literal; content compared too
    unsigned line;
    std::uint64_t hash;
};

constexpr unsigned SITE_TABLE_SIZE = 16384;
std::atomic<site_entry*> g_sites[SITE_TABLE_SIZE];
std::mutex g_sites_lock;

std::uint64_t str_hash(std::uint64_t h, const char* s)
{
    for (; s != nullptr && *s != '\0'; ++s)
        h = (h ^ static_cast<unsigned char>(*s)) * 0x100000001b3ull;
    return h;
}

bool same_site(const site_entry* e, std::uint64_t h, const char* type, const char* file, unsigned line)
{
    if (e->hash != h || e->line != line)
        return false;
    auto eq = [](const char* a, const char* b) {
        return a == b || (a != nullptr && b != nullptr && std::strcmp(a, b) == 0);
    };
    return eq(e->file, file) && eq(e->type, type);
}

const char* basename_of(const char* file)
{
    if (file == nullptr)
        return "?";
    const char* slash = std::strrchr(file, '/');
    return slash != nullptr ? slash + 1 : file;
}

} // namespace

const site_class& site_key(const char* type, const char* file, unsigned line) noexcept
{
    const std::uint64_t h = str_hash(str_hash(0xcbf29ce484222325ull ^ line, file), type);
    const unsigned start = static_cast<unsigned>(h >> 20) & (SITE_TABLE_SIZE - 1);
    for (unsigned i = start, n = 0; n < SITE_TABLE_SIZE; i = (i + 1) & (SITE_TABLE_SIZE - 1), ++n) {
        site_entry* e = g_sites[i].load(std::memory_order_acquire);
        if (e == nullptr)
            break;
        if (same_site(e, h, type, file, line))
            return e->sc;
    }
    std::lock_guard<std::mutex> g(g_sites_lock);
    unsigned i = start;
    for (unsigned n = 0; n < SITE_TABLE_SIZE; i = (i + 1) & (SITE_TABLE_SIZE - 1), ++n) {
        site_entry* e = g_sites[i].load(std::memory_order_relaxed);
        if (e == nullptr)
            break;
        if (same_site(e, h, type, file, line))
            return e->sc;
    }
    static site_entry overflow{{{}, "lock@<too many sites>"}, nullptr, nullptr, 0, 0};
    if (g_sites[i].load(std::memory_order_relaxed) != nullptr)
        return overflow.sc;
    const char* tname = type != nullptr ? type : "lock";
    const std::size_t len
        = static_cast<std::size_t>(std::snprintf(nullptr, 0, "%s@%s:%u", tname, basename_of(file), line));
    auto* e = new (std::nothrow) site_entry{};
    char* name = new (std::nothrow) char[len + 1];
    if (e == nullptr || name == nullptr) {
        delete e;
        delete[] name;
        return overflow.sc;
    }
    std::snprintf(name, len + 1, "%s@%s:%u", tname, basename_of(file), line);
    e->sc.name = name;
    e->type = type;
    e->file = file;
    e->line = line;
    e->hash = h;
    g_sites[i].store(e, std::memory_order_release);
    return e->sc;
}

} // namespace klock::lockdep
