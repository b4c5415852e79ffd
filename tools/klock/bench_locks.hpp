// `klock bench` locks: every klock lock and every peer, present in this build or not.
//
// A peer that was not found when klock was built stays in the table with available = false and
// the Debian package that provides it, so that asking for it says what to install instead of
// "unknown lock".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bench_workloads.hpp"

namespace klock::tool::bench {

struct lock_desc {
    const char* name;    // on the command line and in every output
    const char* aliases; // other accepted names, space-separated ("" if none)
    bool klock;          // klock's own lock, or a peer
    const char* kind;    // how its waiters wait, in a few words
    const char* package; // the Debian package a peer comes from; nullptr for klock and the C/C++ runtime's
    bool available;      // built into this binary
    point_result (*run)(const point_config&);    // exclusive workloads (uncontended, contended, ...)
    point_result (*run_rw)(const point_config&); // the rw workload; nullptr: no reader side
};

// Every lock, klock's first, in the order the output lists them.
const std::vector<lock_desc>& all_locks();

// By name or alias, case-insensitive; nullptr if unknown.
const lock_desc* find_lock(std::string_view name);

// Sets the locks up for measuring (once, before the first point).
void prepare_locks();

// Resolves --locks (names, aliases, 'klock', 'peers', 'all') into locks; an empty list means
// every available lock. false: `error` names the unknown or missing lock (with its package).
bool resolve_locks(const std::vector<std::string>& names, std::vector<const lock_desc*>& out, std::string& error);

} // namespace klock::tool::bench
