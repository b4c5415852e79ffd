// The chain key and the chain cache.
//
// A task's chain key is a 64-bit hash of the ids (class index | read << 13) of the locks it holds
// in the current irq context, extended by one jhash mix per acquisition. Because each held lock
// stores the key from before it, a release restores the key without rehashing.
//
// The cache is a set of chain keys that have been validated. It is an open-addressed table of
// atomic 64-bit keys, twice as large as the chain limit so probes stay short: lookups (every
// acquisition on the hit path) are plain acquire loads; inserts happen under the graph lock, after
// the chain record and its class list are written, with a release store of the key. Nothing is
// ever removed except by reset(). Key 0 marks an empty slot; a real key of 0 is stored as 1.
#include "internal.hpp"

namespace klock::lockdep::detail {

std::atomic<std::uint64_t> g_chain_hash[CHAINHASH_SIZE];

unsigned first_held_lock_of_context(const task_state& ts, const held_lock& h) noexcept
{
    unsigned i = ts.depth;
    while (i > 0 && ts.held_locks[i - 1].irq_context == h.irq_context)
        --i;
    return i;
}

bool add_chain_cache_locked(const task_state& ts, const thread_info& ti, const held_lock& h, std::uint64_t key) noexcept
{
    graph_state& g = graph();
    if (g.nr_chains >= g.lim.chains) {
        limit_exhausted_locked(ts, ti, "BUG: MAX_LOCKDEP_CHAINS too low!");
        return false;
    }
    const unsigned first = first_held_lock_of_context(ts, h);
    const unsigned depth = ts.depth + 1 - first;
    if (g.nr_chain_hlocks + depth > g.lim.chain_hlocks) {
        limit_exhausted_locked(ts, ti, "BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!");
        return false;
    }
    lock_chain& c = g_chains[g.nr_chains];
    c.chain_key = key;
    c.irq_context = h.irq_context;
    c.depth = static_cast<std::uint16_t>(depth);
    c.base = g.nr_chain_hlocks;
    for (unsigned j = 0; j + 1 < depth; ++j)
        g_chain_hlocks[c.base + j] = hlock_id(ts.held_locks[first + j]);
    g_chain_hlocks[c.base + depth - 1] = hlock_id(h);
    g.nr_chain_hlocks += depth;
    ++g.nr_chains;
    if (h.irq_context & CTX_HARDIRQ)
        ++g.counters.nr_hardirq_chains;
    else if (h.irq_context & CTX_SOFTIRQ)
        ++g.counters.nr_softirq_chains;
    else
        ++g.counters.nr_process_chains;

    const std::uint64_t k = chain_slot_key(key);
    unsigned i = chain_slot(k);
    while (g_chain_hash[i].load(std::memory_order_relaxed) != 0)
        i = (i + 1) & (CHAINHASH_SIZE - 1);
    g_chain_hash[i].store(k, std::memory_order_release);
    return true;
}

void reset_chains_locked() noexcept
{
    graph_state& g = graph();
    // Few chains (a simulator run resets per run, thousands of times): find and clear each one's
    // slot. Every recorded chain was inserted, so each search ends at its key; clearing in any
    // order is fine because nothing is looked up meanwhile. Many chains: sweep the whole 1 MiB.
    if (g.nr_chains < CHAINHASH_SIZE / 64) {
        for (unsigned c = 0; c < g.nr_chains; ++c) {
            const std::uint64_t k = chain_slot_key(g_chains[c].chain_key);
            for (unsigned i = chain_slot(k), n = 0; n < CHAINHASH_SIZE; i = (i + 1) & (CHAINHASH_SIZE - 1), ++n) {
                if (g_chain_hash[i].load(std::memory_order_relaxed) == k) {
                    g_chain_hash[i].store(0, std::memory_order_relaxed);
                    break;
                }
            }
        }
    } else {
        for (auto& slot : g_chain_hash)
            if (slot.load(std::memory_order_relaxed) != 0)
                slot.store(0, std::memory_order_relaxed);
    }
    g.nr_chains = 0;
    g.nr_chain_hlocks = 0;
}

} // namespace klock::lockdep::detail
