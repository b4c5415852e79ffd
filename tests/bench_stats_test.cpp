// `klock bench` statistics: percentiles, the wait-time histogram, Jain's index, min/max, medians.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "bench_stats.hpp"

namespace {

using klock::tool::bench::histogram;

TEST(BenchPercentile, NearestRank)
{
    std::vector<std::uint64_t> v{15, 20, 35, 40, 50};
    // The textbook example: ranks ceil(p/100 * 5).
    EXPECT_EQ(klock::tool::bench::percentile(v, 5), 15u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 30), 20u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 40), 20u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 50), 35u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 100), 50u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 0), 15u);
}

TEST(BenchPercentile, UnsortedInputAndEdgeCases)
{
    std::vector<std::uint64_t> v{9, 1, 5, 3, 7, 2, 8, 4, 6, 10};
    EXPECT_EQ(klock::tool::bench::percentile(v, 50), 5u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 99), 10u);
    EXPECT_EQ(klock::tool::bench::percentile(v, 90), 9u);
    std::vector<std::uint64_t> empty;
    EXPECT_EQ(klock::tool::bench::percentile(empty, 50), 0u);
    std::vector<std::uint64_t> one{42};
    EXPECT_EQ(klock::tool::bench::percentile(one, 1), 42u);
    EXPECT_EQ(klock::tool::bench::percentile(one, 99), 42u);
}

TEST(BenchJain, KnownValues)
{
    using klock::tool::bench::jain_index;
    EXPECT_DOUBLE_EQ(jain_index({10, 10, 10, 10}), 1.0);
    // One thread got everything: 1/n.
    EXPECT_DOUBLE_EQ(jain_index({100, 0, 0, 0}), 0.25);
    // (1+2+3)^2 / (3 * (1+4+9)) = 36/42.
    EXPECT_DOUBLE_EQ(jain_index({1, 2, 3}), 36.0 / 42.0);
    EXPECT_DOUBLE_EQ(jain_index({}), 1.0);
    EXPECT_DOUBLE_EQ(jain_index({0, 0}), 1.0);
    // Scale-free.
    EXPECT_DOUBLE_EQ(jain_index({1000, 2000, 3000}), 36.0 / 42.0);
}

TEST(BenchMinMax, KnownValues)
{
    using klock::tool::bench::min_max_ratio;
    EXPECT_DOUBLE_EQ(min_max_ratio({5, 10, 20}), 0.25);
    EXPECT_DOUBLE_EQ(min_max_ratio({7, 7}), 1.0);
    EXPECT_DOUBLE_EQ(min_max_ratio({0, 9}), 0.0);
    EXPECT_DOUBLE_EQ(min_max_ratio({}), 1.0);
    EXPECT_DOUBLE_EQ(min_max_ratio({0, 0}), 1.0);
}

TEST(BenchMedian, OddEvenEmpty)
{
    using klock::tool::bench::median;
    EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2.0);
    EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
    EXPECT_DOUBLE_EQ(median({}), 0.0);
}

TEST(BenchHistogram, BucketsCoverEveryValueInOrder)
{
    // Every bucket's range starts where the previous one ended, and bucket_of maps both ends
    // of a range to it: no gaps, no overlaps, up to the largest 64-bit value.
    std::uint64_t next = 0;
    for (std::size_t b = 0; b < histogram::buckets; ++b) {
        ASSERT_EQ(histogram::bucket_low(b), next) << "bucket " << b;
        const std::uint64_t w = histogram::bucket_width(b);
        ASSERT_EQ(histogram::bucket_of(next), b);
        ASSERT_EQ(histogram::bucket_of(next + (w - 1)), b);
        next += w;
    }
    EXPECT_EQ(next, 0u); // wrapped around exactly once: the last bucket ends at 2^64
    EXPECT_EQ(histogram::bucket_of(~std::uint64_t{0}), histogram::buckets - 1);
}

TEST(BenchHistogram, ExactBelow128AndMax)
{
    histogram h;
    EXPECT_EQ(h.percentile(50), 0u);
    for (std::uint64_t v = 1; v <= 100; ++v)
        h.add(v);
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.percentile(50), 50u);
    EXPECT_EQ(h.percentile(99), 99u);
    EXPECT_EQ(h.percentile(100), 100u);
    h.add(123456789);
    EXPECT_EQ(h.max(), 123456789u);
    EXPECT_EQ(h.percentile(100), 123456789u);
}

TEST(BenchHistogram, PercentilesWithinBucketPrecision)
{
    // Log-normal-ish latencies from 100 ns to 10 ms: each histogram percentile is within 1/64 of
    // the exact nearest-rank percentile.
    std::mt19937_64 gen(7);
    std::lognormal_distribution<double> dist(8.0, 1.5);
    histogram h;
    std::vector<std::uint64_t> exact;
    for (int i = 0; i < 20000; ++i) {
        const auto v = static_cast<std::uint64_t>(std::min(dist(gen), 1e10));
        h.add(v);
        exact.push_back(v);
    }
    for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9}) {
        const double want = static_cast<double>(klock::tool::bench::percentile(exact, p));
        const double got = static_cast<double>(h.percentile(p));
        EXPECT_NEAR(got, want, want / 64 + 1) << "p" << p;
    }
    EXPECT_EQ(h.percentile(100), *std::max_element(exact.begin(), exact.end()));
}

TEST(BenchHistogram, WeightedSamplesStandForSeveralCalls)
{
    // 10 fast samples each standing for 32 calls, 8 slow ones standing for themselves: 328
    // calls, of which the slow ones are the top 2.4 %.
    histogram h;
    for (int i = 0; i < 10; ++i)
        h.add(20, 32);
    for (int i = 0; i < 8; ++i)
        h.add(5000000 + static_cast<std::uint64_t>(i));
    EXPECT_EQ(h.count(), 328u);
    EXPECT_EQ(h.samples(), 18u);
    EXPECT_EQ(h.percentile(50), 20u);
    EXPECT_EQ(h.percentile(97), 20u);
    EXPECT_NEAR(static_cast<double>(h.percentile(99)), 5e6, 5e6 / 64);
    EXPECT_EQ(h.max(), 5000007u);
    h.clear();
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.samples(), 0u);
    EXPECT_EQ(h.max(), 0u);
}

TEST(BenchHistogram, MergeAddsCountsAndKeepsMax)
{
    histogram a, b;
    for (int i = 0; i < 10; ++i)
        a.add(10);
    for (int i = 0; i < 10; ++i)
        b.add(1000);
    b.add(5000);
    a.merge(b);
    EXPECT_EQ(a.count(), 21u);
    EXPECT_EQ(a.max(), 5000u);
    EXPECT_EQ(a.percentile(40), 10u);
    EXPECT_NEAR(static_cast<double>(a.percentile(60)), 1000.0, 1000.0 / 64);
}

} // namespace
