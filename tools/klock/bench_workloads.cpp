// `klock bench` workloads: the calibrations (bench_workloads.hpp).
#include "bench_workloads.hpp"

#include <limits>

namespace klock::tool::bench {

double calibrate_burn()
{
    constexpr std::uint64_t iters = 1u << 21;
    std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
    for (int i = 0; i < 7; ++i) {
        const std::uint64_t t0 = now_ns();
        burn(iters);
        best = std::min(best, now_ns() - t0);
    }
    return static_cast<double>(iters) / static_cast<double>(std::max<std::uint64_t>(best, 1));
}

std::uint64_t calibrate_clock()
{
    std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
    for (int i = 0; i < 10000; ++i) {
        const std::uint64_t t0 = now_ns();
        best = std::min(best, now_ns() - t0);
    }
    return best;
}

} // namespace klock::tool::bench
