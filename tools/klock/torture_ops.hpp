// The lock types `klock torture` can torture: the kernel's lock_torture_ops vector
// (kernel/locking/locktorture.c), one implementation per klock lock.
//
// Each type supplies the writer's lock / delay / unlock, for reader-writer locks the reader's
// too, optionally the nested locks taken around the main one (--nested-locks) and the
// priority boost (rt_boost). The delays follow the kernel's per-type recipes: mostly short
// (a few microseconds, busy, as udelay), now and then a long hold of --long-hold ms (busy, as
// mdelay; sleeping-lock writers hold 5x or 10x longer, rw_semaphore readers hold long_hold/2
// every time), and rarely a yield of the CPU inside the critical section.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torture_options.hpp"

namespace klock::tool::torture {

// torture_random(): a small per-thread generator (xorshift64*), never shared.
class random_state {
public:
    explicit random_state(std::uint64_t seed) noexcept;
    std::uint32_t next() noexcept;
    // next() % n, for n >= 1, in 64-bit arithmetic (the kernel's products can exceed 32 bits).
    std::uint64_t below(std::uint64_t n) noexcept;

private:
    std::uint64_t s_;
};

// Busy waits, as the kernel's udelay/mdelay: the holder keeps its CPU.
void udelay(std::uint64_t us) noexcept;
void mdelay(std::uint64_t ms) noexcept;

// One torture type. write_lock/write_unlock and read_lock/read_unlock pair up on the calling
// thread; `tid` is the thread's index within its role.
class lock_ops {
public:
    explicit lock_ops(const config& cfg) : cfg_(cfg) { }
    virtual ~lock_ops();
    lock_ops(const lock_ops&) = delete;
    lock_ops& operator=(const lock_ops&) = delete;

    // 0 once the lock is held; anything else is a protocol failure (counted in n_lock_fail),
    // and the lock is not held.
    virtual int write_lock(int tid) = 0;
    virtual void write_delay(random_state& r) = 0;
    virtual void write_unlock(int tid) = 0;
    virtual void read_lock(int /*tid*/) { }
    virtual void read_delay(random_state& /*r*/) { }
    virtual void read_unlock(int /*tid*/) { }
    // Take / release nested lock i for each set bit i < nested_locks of `lockset`, in index
    // order, released in reverse (torture_mutex_nested_lock).
    virtual void nested_lock(int /*tid*/, std::uint32_t /*lockset*/) { }
    virtual void nested_unlock(int /*tid*/, std::uint32_t /*lockset*/) { }
    // rt_boost: called before each writer iteration; with null at the writer's exit (restore).
    virtual void task_boost(random_state* /*r*/) { }

    // The lock's state in words, for a stall report ("" when there is nothing to show).
    virtual std::string describe() const { return {}; }
    // Lines for the end of the test (ww_mutex back-offs, rt_boost), each without a newline.
    virtual std::vector<std::string> summary() const { return {}; }

protected:
    config cfg_;
};

struct type_info {
    std::string_view name;
    std::string_view kernel_name; // the kernel's torture_type for this lock, accepted too
    bool readers;                 // has readlock / readunlock
    bool nested;                  // supports --nested-locks
    bool debug;                   // always-on lock debugging: " [debug]" in the parms line
    std::string_view what;
    std::unique_ptr<lock_ops> (*make)(const config& cfg);
};

std::span<const type_info> types();
// By our name or the kernel's; null when unknown.
const type_info* find_type(std::string_view name);

} // namespace klock::tool::torture
