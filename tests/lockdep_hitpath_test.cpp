// lockdep's hit path: an acquire+release on a chain that is already cached must stay on the
// lock-free path - no chain-cache miss, no new stack trace, no report. (What it costs is
// measured in bench/lockdep_bench.cpp, not here.)
#include <gtest/gtest.h>

#include <klock/lockdep.hpp>
#include <klock/report.hpp>

namespace {

namespace ld = klock::lockdep;
using klock::lock_class_key;
using klock::lockdep_map;

lock_class_key key_p, key_q;
lockdep_map lock_p{"P", &key_p};
lockdep_map lock_q{"Q", &key_q};

class LockdepHitPath : public ::testing::Test {
protected:
    void SetUp() override { ld::reset(); }
    void TearDown() override
    {
        ld::set_enabled(true);
        ld::reset();
    }
    klock::report_capture cap;
};

TEST_F(LockdepHitPath, CachedChainIsOneLookupAndNoMiss)
{
    ld::lock_acquire(lock_p, 0, 0, 0, 1, nullptr);
    ld::lock_release(lock_p);
    const auto before = ld::get_stats();
    constexpr int iters = 1000;
    for (int i = 0; i < iters; ++i) {
        ld::lock_acquire(lock_p, 0, 0, 0, 1, nullptr);
        ld::lock_release(lock_p);
    }
    const auto after = ld::get_stats();
    EXPECT_EQ(after.chain_lookup_misses, before.chain_lookup_misses);
    EXPECT_EQ(after.chain_lookup_hits - before.chain_lookup_hits, std::uint64_t(iters));
    EXPECT_EQ(after.stack_trace_entries, before.stack_trace_entries);
    EXPECT_EQ(cap.count(), 0u);
}

TEST_F(LockdepHitPath, NestedChainMissesOnlyOncePerNewChain)
{
    for (int i = 0; i < 1000; ++i) {
        ld::lock_acquire(lock_p, 0, 0, 0, 1, nullptr);
        ld::lock_acquire(lock_q, 0, 0, 0, 1, nullptr);
        ld::lock_release(lock_q);
        ld::lock_release(lock_p);
    }
    EXPECT_EQ(ld::get_stats().chain_lookup_misses, 2u); // {P} and {P, Q}
    EXPECT_EQ(cap.count(), 0u);
}

} // namespace
