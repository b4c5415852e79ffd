// `klock bench` statistics: the figures a lock is judged by.
//
//   throughput      operations per second of wall time, all threads together
//   min/max         the fewest / the most operations of any one thread (1 = even, 0 = a thread
//                   starved for the whole window)
//   Jain's index    (sum x)^2 / (n * sum x^2) over the per-thread counts: 1 when every thread
//                   got the same share, 1/n when one thread got everything
//   percentiles     nearest rank: the p-th percentile of n samples is the smallest sample with
//                   at least ceil(p/100 * n) samples at or below it (p = 100 is the maximum)
//
// Wait times are collected in a log-linear histogram rather than kept one by one, so that a
// thread records a sample with one increment and a long run needs no more memory than a short
// one: values below 128 ns have a bucket each; above, every power of two is split into 64
// buckets, so a bucket is at most 1/64 of its value wide and the value reported for a bucket
// (its midpoint) is within 0.8 % of any sample in it. The maximum is kept exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace klock::tool::bench {

// Nearest-rank percentile of `v` (sorted in place). 0 for an empty vector.
std::uint64_t percentile(std::vector<std::uint64_t>& v, double p);

// Jain's fairness index of the per-thread counts; 1 for no threads or no operations at all.
double jain_index(const std::vector<std::uint64_t>& per_thread);

// Fewest / most operations of any thread; 1 for no threads or no operations at all.
double min_max_ratio(const std::vector<std::uint64_t>& per_thread);

// Median of `v` (sorted in place; the mean of the middle two for an even count). 0 if empty.
double median(std::vector<double> v);

class histogram {
public:
    static constexpr unsigned sub_bits = 6;                       // 64 buckets per power of two
    static constexpr std::uint64_t linear_limit = 2u << sub_bits; // 128: exact below this
    static constexpr std::size_t buckets = linear_limit + (64 - (sub_bits + 1)) * (1u << sub_bits);

    histogram() : counts_(buckets, 0) { }

    static std::size_t bucket_of(std::uint64_t v) noexcept
    {
        if (v < linear_limit)
            return static_cast<std::size_t>(v);
        const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));
        const unsigned shift = msb - sub_bits;
        const std::uint64_t sub = (v >> shift) & ((1u << sub_bits) - 1);
        return static_cast<std::size_t>(linear_limit + (msb - (sub_bits + 1)) * (1u << sub_bits) + sub);
    }
    // The smallest value that falls into bucket `b`, and the bucket's width.
    static std::uint64_t bucket_low(std::size_t b) noexcept;
    static std::uint64_t bucket_width(std::size_t b) noexcept;

    // One sample standing for `weight` calls (the inverse of the probability it was drawn with).
    void add(std::uint64_t v, std::uint64_t weight = 1) noexcept
    {
        counts_[bucket_of(v)] += weight;
        n_ += weight;
        ++samples_;
        if (v > max_)
            max_ = v;
    }
    void merge(const histogram& o) noexcept;
    void clear() noexcept;

    // The calls the samples stand for (the sum of the weights), and the samples themselves.
    std::uint64_t count() const noexcept { return n_; }
    std::uint64_t samples() const noexcept { return samples_; }
    std::uint64_t max() const noexcept { return max_; }
    // Nearest-rank percentile over the weighted calls, reported as the midpoint of the bucket
    // that holds it (clamped to the largest sample); 0 when empty.
    std::uint64_t percentile(double p) const noexcept;

private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t n_ = 0;
    std::uint64_t samples_ = 0;
    std::uint64_t max_ = 0;
};

} // namespace klock::tool::bench
