// Exploration strategies, replay and minimization (explore.hpp).
#include <klock/sim/explore.hpp>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <span>

namespace klock::sim {

namespace {

std::uint64_t splitmix(std::uint64_t& s) noexcept
{
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int default_choice(std::span<const int> cand, int last) noexcept
{
    for (int c : cand)
        if (c == last)
            return c;
    return cand[0];
}

std::size_t index_of(std::span<const int> cand, int cpu) noexcept
{
    for (std::size_t i = 0; i < cand.size(); ++i)
        if (cand[i] == cpu)
            return i;
    return 0;
}

bool contains(std::span<const int> cand, int cpu) noexcept
{
    return std::find(cand.begin(), cand.end(), cpu) != cand.end();
}

// Every choice goes through here: counts points and records deviations from the default.
class base_chooser : public schedule_chooser {
public:
    bool every_step() const noexcept override { return true; }
    std::size_t choose(std::span<const int> cand, int last) override
    {
        const std::uint64_t point = points_++;
        const int def = default_choice(cand, last);
        int c = pick(point, cand, last, def);
        if (!contains(cand, c))
            c = def;
        if (c != def)
            deviations.push_back({point, c});
        return index_of(cand, c);
    }
    schedule deviations;
    std::uint64_t points() const noexcept { return points_; }

protected:
    virtual int pick(std::uint64_t point, std::span<const int> cand, int last, int def) = 0;

private:
    std::uint64_t points_ = 0;
};

class replay_chooser final : public base_chooser {
public:
    explicit replay_chooser(const schedule& s) : s_(s) { std::sort(s_.begin(), s_.end()); }

private:
    int pick(std::uint64_t point, std::span<const int>, int, int def) override
    {
        while (i_ < s_.size() && s_[i_].first < point)
            ++i_;
        if (i_ < s_.size() && s_[i_].first == point)
            return s_[i_].second;
        return def;
    }
    schedule s_;
    std::size_t i_ = 0;
};

class random_chooser final : public base_chooser {
public:
    explicit random_chooser(std::uint64_t seed) : rng_(seed) { }

private:
    int pick(std::uint64_t, std::span<const int> cand, int, int) override
    {
        return cand[static_cast<std::size_t>(splitmix(rng_) % cand.size())];
    }
    std::uint64_t rng_;
};

class pct_chooser final : public base_chooser {
public:
    pct_chooser(std::uint64_t seed, unsigned ncpu, unsigned depth, std::uint64_t k) : prio_(ncpu)
    {
        std::uint64_t rng = seed;
        const unsigned d = depth == 0 ? 1 : depth;
        std::iota(prio_.begin(), prio_.end(), static_cast<int>(d));
        for (std::size_t i = prio_.size(); i > 1; --i)
            std::swap(prio_[i - 1], prio_[static_cast<std::size_t>(splitmix(rng) % i)]);
        for (unsigned i = 1; i < d; ++i)
            change_.push_back(k == 0 ? 0 : splitmix(rng) % k);
    }

private:
    int pick(std::uint64_t point, std::span<const int> cand, int, int) override
    {
        for (std::size_t i = 0; i < change_.size(); ++i)
            if (change_[i] == point)
                prio_[static_cast<std::size_t>(best(cand))] = static_cast<int>(change_.size() - i) - 1;
        return best(cand);
    }
    int best(std::span<const int> cand) const
    {
        int b = cand[0];
        for (int c : cand)
            if (prio_[static_cast<std::size_t>(c)] > prio_[static_cast<std::size_t>(b)])
                b = c;
        return b;
    }
    std::vector<int> prio_;
    std::vector<std::uint64_t> change_;
};

// Systematic search: follows `prefix`, then the default, recording every choice point.
struct dfs_node {
    std::vector<int> cand;
    int last = -1;
    int chosen = -1;
    std::vector<int> tried;
    unsigned pre_before = 0; // preemptions at earlier points
};

class dfs_chooser final : public base_chooser {
public:
    explicit dfs_chooser(std::vector<dfs_node>& nodes) : nodes_(nodes) { }

private:
    int pick(std::uint64_t point, std::span<const int> cand, int last, int def) override
    {
        const std::size_t p = static_cast<std::size_t>(point);
        if (p < nodes_.size())
            return nodes_[p].chosen;
        dfs_node n;
        n.cand.assign(cand.begin(), cand.end());
        n.last = last;
        n.chosen = def;
        n.tried = {def};
        if (!nodes_.empty()) {
            const dfs_node& prev = nodes_.back();
            n.pre_before = prev.pre_before + (contains(prev.cand, prev.last) && prev.chosen != prev.last ? 1 : 0);
        }
        nodes_.push_back(std::move(n));
        return def;
    }
    std::vector<dfs_node>& nodes_;
};

// Moves the search to the next schedule within the bound; false when there is none.
bool dfs_advance(std::vector<dfs_node>& nodes, unsigned bound)
{
    while (!nodes.empty()) {
        dfs_node& n = nodes.back();
        const bool can_continue = contains(n.cand, n.last);
        for (int c : n.cand) {
            if (std::find(n.tried.begin(), n.tried.end(), c) != n.tried.end())
                continue;
            const unsigned pre = n.pre_before + (can_continue && c != n.last ? 1 : 0);
            if (pre > bound)
                continue;
            n.tried.push_back(c);
            n.chosen = c;
            return true;
        }
        nodes.pop_back();
    }
    return false;
}

options run_options(const options& base, schedule_chooser* ch)
{
    options o = base;
    o.chooser = ch;
    o.park_after = 1;
    return o;
}

} // namespace

const char* to_string(strategy s) noexcept
{
    switch (s) {
    case strategy::random:
        return "random";
    case strategy::pct:
        return "pct";
    case strategy::dfs:
        return "dfs";
    }
    return "?";
}

std::string unexpected_failure(const run_result& r)
{
    for (const check_result& c : r.checks) {
        if (c.passed)
            continue;
        if (std::find(r.scn.expect.begin(), r.scn.expect.end(), c.name) == r.scn.expect.end())
            return c.name;
    }
    return {};
}

std::string to_token(const schedule& sch)
{
    std::string t = "k1:";
    for (std::size_t i = 0; i < sch.size(); ++i) {
        if (i != 0)
            t += ',';
        t += std::to_string(sch[i].first) + "." + std::to_string(sch[i].second);
    }
    return t;
}

bool from_token(const std::string& token, schedule& sch, std::string& err)
{
    sch.clear();
    if (token.rfind("k1:", 0) != 0) {
        err = "a replay token starts with \"k1:\"";
        return false;
    }
    std::size_t i = 3;
    while (i < token.size()) {
        char* end = nullptr;
        const unsigned long long point = std::strtoull(token.c_str() + i, &end, 10);
        if (end == token.c_str() + i || *end != '.') {
            err = "malformed replay token at \"" + token.substr(i) + "\"";
            return false;
        }
        const char* q = end + 1;
        const long cpu = std::strtol(q, &end, 10);
        if (end == q || cpu < 0 || cpu >= 64 || (*end != ',' && *end != '\0')) {
            err = "malformed replay token at \"" + token.substr(i) + "\"";
            return false;
        }
        sch.push_back({point, static_cast<int>(cpu)});
        i = static_cast<std::size_t>(end - token.c_str()) + (*end == ',' ? 1 : 0);
        if (*end == ',' && i == token.size()) {
            err = "malformed replay token: it ends with ','";
            return false;
        }
    }
    return true;
}

run_result replay(const scenario& s, const schedule& sch, const options& base)
{
    replay_chooser ch(sch);
    return run(s, run_options(base, &ch));
}

explore_result explore(const scenario& s, const explore_options& o)
{
    explore_result res;
    unsigned ncpu = o.base.cpus > 0 ? o.base.cpus : s.cpus;
    std::uint64_t rng = o.seed == 0 ? 1 : o.seed;
    std::uint64_t k = 0; // pct: choice points of a default run
    if (o.how == strategy::pct) {
        replay_chooser def({});
        const run_result r = run(s, run_options(o.base, &def));
        k = def.points();
        res.steps += r.steps;
    }
    std::vector<dfs_node> nodes;
    const unsigned total = o.how == strategy::dfs ? o.runs : (o.runs == 0 ? 1 : o.runs);
    for (unsigned i = 0; total == 0 || i < total; ++i) {
        schedule dev;
        run_result r;
        if (o.how == strategy::random) {
            random_chooser ch(splitmix(rng));
            r = run(s, run_options(o.base, &ch));
            dev = std::move(ch.deviations);
        } else if (o.how == strategy::pct) {
            pct_chooser ch(splitmix(rng), ncpu, o.depth, k);
            r = run(s, run_options(o.base, &ch));
            dev = std::move(ch.deviations);
        } else {
            dfs_chooser ch(nodes);
            r = run(s, run_options(o.base, &ch));
            dev = std::move(ch.deviations);
        }
        ++res.runs;
        res.steps += r.steps;
        if (o.progress)
            o.progress(res.runs, total);
        const std::string failed = unexpected_failure(r);
        if (!failed.empty()) {
            res.found = true;
            res.check = failed;
            res.unminimized = dev.size();
            if (o.minimize) {
                // Drop deviations while the same check still fails.
                for (std::size_t j = dev.size(); j-- > 0 && res.runs < 100000;) {
                    schedule fewer = dev;
                    fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(j));
                    const run_result t = replay(s, fewer, o.base);
                    ++res.runs;
                    res.steps += t.steps;
                    if (unexpected_failure(t) == failed)
                        dev = std::move(fewer);
                }
            }
            res.failing = dev;
            res.token = to_token(dev);
            res.run = replay(s, dev, o.base);
            return res;
        }
        if (o.how == strategy::dfs && !dfs_advance(nodes, o.preemption_bound)) {
            res.exhausted = true;
            res.run = std::move(r);
            return res;
        }
        if (total != 0 && i + 1 == total)
            res.run = std::move(r);
    }
    return res;
}

} // namespace klock::sim
