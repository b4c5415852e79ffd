// `klock bench` statistics (see bench_stats.hpp for the definitions).
#include "bench_stats.hpp"

#include <algorithm>
#include <cmath>

namespace klock::tool::bench {

namespace {

// The 1-based nearest rank of the p-th percentile among n samples.
std::uint64_t nearest_rank(std::uint64_t n, double p)
{
    if (p <= 0)
        return 1;
    if (p >= 100)
        return n;
    const auto r = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    return std::clamp<std::uint64_t>(r, 1, n);
}

} // namespace

std::uint64_t percentile(std::vector<std::uint64_t>& v, double p)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[nearest_rank(v.size(), p) - 1];
}

double jain_index(const std::vector<std::uint64_t>& per_thread)
{
    double sum = 0, squares = 0;
    for (std::uint64_t x : per_thread) {
        const auto d = static_cast<double>(x);
        sum += d;
        squares += d * d;
    }
    if (per_thread.empty() || squares == 0)
        return 1.0;
    return sum * sum / (static_cast<double>(per_thread.size()) * squares);
}

double min_max_ratio(const std::vector<std::uint64_t>& per_thread)
{
    if (per_thread.empty())
        return 1.0;
    const auto [mn, mx] = std::minmax_element(per_thread.begin(), per_thread.end());
    if (*mx == 0)
        return 1.0;
    return static_cast<double>(*mn) / static_cast<double>(*mx);
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const std::size_t h = v.size() / 2;
    return v.size() % 2 != 0 ? v[h] : (v[h - 1] + v[h]) / 2;
}

std::uint64_t histogram::bucket_low(std::size_t b) noexcept
{
    if (b < linear_limit)
        return b;
    const std::size_t k = b - linear_limit;
    const unsigned shift = static_cast<unsigned>(k >> sub_bits) + 1;
    const std::uint64_t sub = k & ((1u << sub_bits) - 1);
    return ((std::uint64_t{1} << sub_bits) + sub) << shift;
}

std::uint64_t histogram::bucket_width(std::size_t b) noexcept
{
    if (b < linear_limit)
        return 1;
    return std::uint64_t{1} << (((b - linear_limit) >> sub_bits) + 1);
}

void histogram::merge(const histogram& o) noexcept
{
    for (std::size_t i = 0; i < buckets; ++i)
        counts_[i] += o.counts_[i];
    n_ += o.n_;
    samples_ += o.samples_;
    max_ = std::max(max_, o.max_);
}

void histogram::clear() noexcept
{
    std::fill(counts_.begin(), counts_.end(), 0);
    n_ = 0;
    samples_ = 0;
    max_ = 0;
}

std::uint64_t histogram::percentile(double p) const noexcept
{
    if (n_ == 0)
        return 0;
    const std::uint64_t rank = nearest_rank(n_, p);
    if (rank == n_)
        return max_;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < buckets; ++b) {
        seen += counts_[b];
        if (seen >= rank)
            return std::min(max_, bucket_low(b) + (bucket_width(b) - 1) / 2);
    }
    return max_;
}

} // namespace klock::tool::bench
