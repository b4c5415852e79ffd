// `klock bench --svg`: a self-contained SVG plot, readable in any browser.
//
// One row of three panels per workload - throughput, fairness (the fewest / the most operations
// of any thread) and p99 wait (for handoff: p99 handoff latency, log scale) - against the thread
// count, with one line per lock (klock's solid, peers' dashed) and a legend on the right. A
// workload measured at a single thread count (uncontended, oversubscribed) gets one bar per lock
// instead. Every point carries a <title>, so hovering shows the lock and the value.
#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>

#include "bench_output.hpp"

namespace klock::tool::bench {

namespace {

constexpr const char* palette[]
    = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
        "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"};
constexpr std::size_t palette_size = sizeof palette / sizeof palette[0];

constexpr double panel_w = 300, panel_h = 236, row_title_h = 26, top_h = 46, legend_w = 230;
constexpr double margin_l = 64, margin_r = 14, margin_t = 24, margin_b = 40;

std::string esc(std::string_view s)
{
    std::string o;
    for (char c : s) {
        switch (c) {
        case '&':
            o += "&amp;";
            break;
        case '<':
            o += "&lt;";
            break;
        case '>':
            o += "&gt;";
            break;
        case '"':
            o += "&quot;";
            break;
        default:
            o += c;
        }
    }
    return o;
}

std::string n1(double v)
{
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    return b;
}

struct lock_style {
    std::string color;
    bool dashed;
};

enum class metric { throughput, fairness, p99 };

double value_of(const point_row& r, metric m)
{
    const run_figures& s = r.summary;
    switch (m) {
    case metric::throughput:
        return s.ops_per_s;
    case metric::fairness:
        return s.min_max;
    case metric::p99:
        return r.w == workload::handoff ? s.handoff_p99 : s.wait_p99;
    }
    return 0;
}

// 1, 2 or 5 times a power of ten, at least v / 5: a tick step giving about five ticks up to v.
double nice_step(double v)
{
    if (v <= 0)
        return 1;
    const double raw = v / 5;
    const double p = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p >= raw)
            return m * p;
    return 10 * p;
}

class y_axis {
public:
    y_axis(metric m, const std::vector<double>& values) : m_(m)
    {
        double hi = 0, lo = 0;
        for (double v : values)
            hi = std::max(hi, v);
        if (m == metric::fairness) {
            hi = 1;
            step_ = 0.25;
        } else if (m == metric::throughput) {
            step_ = nice_step(hi > 0 ? hi : 1);
            hi = std::max(step_, std::ceil(hi / step_) * step_);
        } else {
            double mn = hi;
            for (double v : values)
                mn = std::min(mn, std::max(v, 1.0));
            lo = std::pow(10.0, std::floor(std::log10(std::max(mn, 1.0))));
            hi = std::pow(10.0, std::ceil(std::log10(std::max(hi, 1.0))));
            if (hi <= lo)
                hi = lo * 10;
        }
        lo_ = lo;
        hi_ = hi;
    }
    // 0 at the bottom of the plot, 1 at the top.
    double frac(double v) const
    {
        if (m_ == metric::p99) {
            v = std::clamp(v, lo_, hi_);
            return (std::log10(v) - std::log10(lo_)) / (std::log10(hi_) - std::log10(lo_));
        }
        return std::clamp((v - lo_) / (hi_ - lo_), 0.0, 1.0);
    }
    std::vector<double> ticks() const
    {
        std::vector<double> t;
        if (m_ == metric::p99) {
            for (double v = lo_; v <= hi_ * 1.001; v *= 10)
                t.push_back(v);
        } else {
            for (double v = lo_; v <= hi_ + step_ / 1000; v += step_)
                t.push_back(v);
        }
        return t;
    }
    std::string label(double v) const
    {
        if (m_ == metric::p99)
            return human_ns(v);
        if (m_ == metric::fairness) {
            char b[16];
            std::snprintf(b, sizeof b, "%.2f", v);
            return b;
        }
        // Ticks are round numbers: "2.5 M", "20 M", "500 k".
        char b[32];
        if (v >= 1e6)
            std::snprintf(b, sizeof b, "%g M", v / 1e6);
        else if (v >= 1e3)
            std::snprintf(b, sizeof b, "%g k", v / 1e3);
        else
            std::snprintf(b, sizeof b, "%g", v);
        return b;
    }
    double bottom() const { return lo_; }

private:
    metric m_;
    double lo_ = 0, hi_ = 1, step_ = 1;
};

class x_axis {
public:
    explicit x_axis(std::vector<unsigned> xs) : xs_(std::move(xs))
    {
        log_ = xs_.size() > 1 && xs_.back() >= 8 * xs_.front();
    }
    double frac(unsigned x) const
    {
        if (xs_.size() <= 1)
            return 0.5;
        if (log_)
            return (std::log2(x) - std::log2(xs_.front())) / (std::log2(xs_.back()) - std::log2(xs_.front()));
        return static_cast<double>(x - xs_.front()) / static_cast<double>(xs_.back() - xs_.front());
    }
    std::vector<unsigned> ticks() const
    {
        if (xs_.size() <= 12)
            return xs_;
        std::vector<unsigned> t;
        if (log_) {
            for (unsigned v = 1; v <= xs_.back(); v *= 2)
                if (v >= xs_.front())
                    t.push_back(v);
        } else {
            const auto step = static_cast<unsigned>(std::max(1.0, nice_step(xs_.back() - xs_.front())));
            for (unsigned v = (xs_.front() + step - 1) / step * step; v <= xs_.back(); v += step)
                t.push_back(v);
        }
        return t;
    }
    bool log() const { return log_; }

private:
    std::vector<unsigned> xs_;
    bool log_ = false;
};

class svg_writer {
public:
    void text(double x, double y, std::string_view s, const char* anchor = "start", const char* extra = "")
    {
        o_ += "<text x=\"" + n1(x) + "\" y=\"" + n1(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" + esc(s)
            + "</text>\n";
    }
    void line(double x1, double y1, double x2, double y2, const char* style)
    {
        o_ += "<line x1=\"" + n1(x1) + "\" y1=\"" + n1(y1) + "\" x2=\"" + n1(x2) + "\" y2=\"" + n1(y2) + "\" " + style
            + "/>\n";
    }
    void raw(const std::string& s) { o_ += s; }
    std::string& str() { return o_; }

private:
    std::string o_;
};

const char* panel_title(metric m, workload w)
{
    switch (m) {
    case metric::throughput:
        return w == workload::handoff ? "handoffs per second" : "throughput (operations per second)";
    case metric::fairness:
        return "fairness: fewest / most ops of a thread";
    case metric::p99:
        return w == workload::handoff ? "p99 handoff latency (log)" : "p99 wait in lock() (log)";
    }
    return "";
}

void draw_panel(svg_writer& out, double x0, double y0, metric m, const std::vector<const point_row*>& rows,
    const std::vector<std::string>& locks, const std::map<std::string, lock_style>& styles)
{
    const double px = x0 + margin_l, py = y0 + margin_t;
    const double pw = panel_w - margin_l - margin_r, ph = panel_h - margin_t - margin_b;
    const workload w = rows.front()->w;
    std::vector<double> values;
    std::vector<unsigned> xs;
    for (const point_row* r : rows) {
        if (!r->summary.error.empty())
            continue;
        values.push_back(value_of(*r, m));
        xs.push_back(r->threads);
    }
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    const y_axis ya(m, values);
    const x_axis xa(xs);
    auto sy = [&](double v) { return py + ph - ya.frac(v) * ph; };
    auto sx = [&](unsigned t) { return px + xa.frac(t) * pw; };

    out.text(x0 + panel_w / 2, y0 + 14, panel_title(m, w), "middle", " font-weight=\"bold\"");
    out.raw("<rect x=\"" + n1(px) + "\" y=\"" + n1(py) + "\" width=\"" + n1(pw) + "\" height=\"" + n1(ph)
        + "\" fill=\"#fafafa\" stroke=\"#888\"/>\n");
    for (double t : ya.ticks()) {
        const double y = sy(t);
        out.line(px, y, px + pw, y, "stroke=\"#ddd\"");
        out.line(px - 4, y, px, y, "stroke=\"#444\"");
        out.text(px - 6, y + 4, ya.label(t), "end");
    }
    const bool bars = xs.size() <= 1;
    if (bars) {
        out.text(px + pw / 2, py + ph + 16,
            xs.empty() ? "no data" : std::to_string(xs.front()) + (xs.front() == 1 ? " thread" : " threads"), "middle");
    } else {
        for (unsigned t : xa.ticks()) {
            const double x = sx(t);
            out.line(x, py + ph, x, py + ph + 4, "stroke=\"#444\"");
            out.text(x, py + ph + 16, std::to_string(t), "middle");
        }
        out.text(px + pw / 2, py + ph + 32, xa.log() ? "threads (log scale)" : "threads", "middle");
    }

    std::size_t shown = 0;
    for (const std::string& lock : locks) {
        std::vector<std::pair<unsigned, double>> pts;
        for (const point_row* r : rows)
            if (r->lock == lock && r->summary.error.empty())
                pts.emplace_back(r->threads, value_of(*r, m));
        if (pts.empty())
            continue;
        const lock_style& st = styles.at(lock);
        if (bars) {
            std::size_t n = 0;
            for (const std::string& l : locks)
                n += std::any_of(rows.begin(), rows.end(),
                    [&](const point_row* r) { return r->lock == l && r->summary.error.empty(); });
            const double slot = pw / static_cast<double>(std::max<std::size_t>(n, 1));
            const double bx = px + slot * static_cast<double>(shown) + slot * 0.15;
            const double top = sy(pts.front().second), base = sy(ya.bottom());
            out.raw("<rect x=\"" + n1(bx) + "\" y=\"" + n1(top) + "\" width=\"" + n1(slot * 0.7) + "\" height=\""
                + n1(std::max(base - top, 0.5)) + "\" fill=\"" + st.color + "\""
                + (st.dashed ? " fill-opacity=\"0.6\"" : "") + "><title>"
                + esc(lock + ": " + ya.label(pts.front().second)) + "</title></rect>\n");
            ++shown;
            continue;
        }
        std::sort(pts.begin(), pts.end());
        std::string poly;
        for (const auto& [t, v] : pts)
            poly += n1(sx(t)) + "," + n1(sy(v)) + " ";
        out.raw("<polyline fill=\"none\" stroke=\"" + st.color + "\" stroke-width=\"" + (st.dashed ? "1.5" : "2.2")
            + "\"" + (st.dashed ? " stroke-dasharray=\"6 3\"" : "") + " points=\"" + poly + "\"/>\n");
        for (const auto& [t, v] : pts)
            out.raw("<circle cx=\"" + n1(sx(t)) + "\" cy=\"" + n1(sy(v)) + "\" r=\"3\" fill=\"" + st.color
                + "\"><title>" + esc(lock + ", " + std::to_string(t) + " threads: " + ya.label(v))
                + "</title></circle>\n");
        ++shown;
    }
}

std::string row_title(const point_row& r)
{
    const std::string cs = human_ns(static_cast<double>(r.cs_ns)), delay = human_ns(static_cast<double>(r.delay_ns));
    switch (r.w) {
    case workload::uncontended:
        return "uncontended: one thread, lock + unlock";
    case workload::contended:
        return "contended: one lock, critical section " + cs + ", delay " + delay;
    case workload::oversubscribed:
        return "oversubscribed: more threads than CPUs, critical section " + cs + ", delay " + delay;
    case workload::handoff:
        return "handoff: unlock() call to the waiter's return from lock(), owner holds " + cs;
    case workload::rw:
        return "rw: " + std::to_string(r.read_percent) + "% reads, critical section " + cs + ", delay " + delay;
    }
    return "";
}

} // namespace

std::string svg_of(const std::vector<point_row>& rows, const report_meta& meta)
{
    // Workloads in order of appearance, and every lock with its style.
    std::vector<workload> ws;
    std::vector<std::string> locks;
    std::map<std::string, lock_style> styles;
    for (const point_row& r : rows) {
        if (std::find(ws.begin(), ws.end(), r.w) == ws.end())
            ws.push_back(r.w);
        if (styles.find(r.lock) == styles.end()) {
            styles[r.lock] = {palette[locks.size() % palette_size], !r.klock};
            locks.push_back(r.lock);
        }
    }
    const double width = 3 * panel_w + legend_w + 10;
    const double rows_h = static_cast<double>(ws.size()) * (row_title_h + panel_h);
    const double legend_h = 40 + 18 * static_cast<double>(locks.size());
    const double height = top_h + std::max(rows_h, legend_h) + 10;

    svg_writer out;
    out.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + n1(width)
        + "\" height=\"" + n1(height) + "\" viewBox=\"0 0 " + n1(width) + " " + n1(height)
        + "\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n");
    out.raw("<title>klock bench</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    out.text(10, 20,
        "klock bench: " + meta.cpu_model + ", " + std::to_string(meta.cpus) + " CPUs, Linux " + meta.kernel, "start",
        " font-size=\"14\" font-weight=\"bold\"");
    char sub[256];
    std::snprintf(sub, sizeof sub,
        "%s; %s per point after %s warm-up, %s; wait timed on 1 lock() call in %u and every call after a slow one",
        meta.date.c_str(), human_ns(meta.duration_s * 1e9).c_str(), human_ns(meta.warmup_s * 1e9).c_str(),
        meta.repeat == 1 ? "1 run" : ("median of " + std::to_string(meta.repeat) + " runs").c_str(), meta.sample_every);
    out.text(10, 37, sub, "start", " fill=\"#555\"");

    double y = top_h;
    for (workload w : ws) {
        std::vector<const point_row*> mine;
        for (const point_row& r : rows)
            if (r.w == w)
                mine.push_back(&r);
        out.text(10, y + 16, row_title(*mine.front()), "start", " font-size=\"13\" font-weight=\"bold\"");
        y += row_title_h;
        int k = 0;
        for (metric m : {metric::throughput, metric::fairness, metric::p99})
            draw_panel(out, 10 + panel_w * k++, y, m, mine, locks, styles);
        y += panel_h;
    }

    // Legend.
    const double lx = 10 + 3 * panel_w + 16;
    double ly = top_h + 10;
    out.text(lx, ly, "locks (klock solid, peers dashed)", "start", " font-weight=\"bold\"");
    ly += 18;
    for (const std::string& l : locks) {
        const lock_style& st = styles.at(l);
        out.raw("<line x1=\"" + n1(lx) + "\" y1=\"" + n1(ly - 4) + "\" x2=\"" + n1(lx + 28) + "\" y2=\"" + n1(ly - 4)
            + "\" stroke=\"" + st.color + "\" stroke-width=\"" + (st.dashed ? "1.5" : "2.5") + "\""
            + (st.dashed ? " stroke-dasharray=\"6 3\"" : "") + "/>\n");
        out.text(lx + 34, ly, l);
        ly += 18;
    }
    out.raw("</svg>\n");
    return std::move(out.str());
}

} // namespace klock::tool::bench
