// write_svg_timeline: runs drawn as one self-contained SVG picture (no scripts, no external
// files or fonts), stacked vertically on one time scale so that two runs of a scenario - the
// mutex and the rt_mutex version of a priority inversion - compare at a glance.
//
// Each run is a block:
//   title        the scenario, its locks and their types, and the verdict of the checks
//   CPU rows     a bar per stretch a task ran there, in the task's colour and named; a dark
//                strip at the bottom while the running task holds a lock (named); hatching
//                where it spins waiting for one; black for an irq handler; a purple outline
//                while the task runs boosted by priority inheritance
//   task rows    per task, highest priority first: a purple "prio 89->9" bar while boosted,
//                the locks it holds (light bars) and waits for (red hatching, "wait A"), and
//                a thin bar while it runs
//   time axis    ticks in ns/us/ms/s, with faint grid lines through the rows
// A failed check is a red dashed line at the moment it fired. One legend at the bottom
// explains the colours; a task keeps its colour in every run (colours go by name).
// Every mark carries a <title> tooltip with its exact times.
#include <klock/sim/output.hpp>

#include "output_timeline.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <sstream>

namespace klock::sim {

namespace {

constexpr double width = 1200;
constexpr double left = 180; // label column
constexpr double right = 30;
constexpr double plot_w = width - left - right;
constexpr double cpu_row_h = 30;
constexpr double task_row_h = 34;
constexpr double row_gap = 5;

constexpr std::array<const char*, 10> palette
    = {"#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#e15759", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr const char* boost_colour = "#7b2cbf";
constexpr const char* wait_colour = "#c0392b";
constexpr const char* irq_colour = "#222222";
constexpr const char* fail_colour = "#d00000";

std::string esc(std::string_view s)
{
    std::string r;
    for (char c : s) {
        switch (c) {
        case '&':
            r += "&amp;";
            break;
        case '<':
            r += "&lt;";
            break;
        case '>':
            r += "&gt;";
            break;
        case '"':
            r += "&quot;";
            break;
        case '\'':
            r += "&apos;";
            break;
        default:
            // XML 1.0 forbids most control characters even as references
            if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t')
                r += c;
        }
    }
    return r;
}

std::string num(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

double text_w(std::string_view s, double font) { return static_cast<double>(s.size()) * font * 0.6; }

// "12.5 ms": a duration for tooltips
std::string dur(std::uint64_t ns)
{
    if (ns >= 1'000'000)
        return detail::ms3(ns) + " ms";
    return detail::us3(ns) + " us";
}

struct tick_scale {
    std::uint64_t step;
    std::uint64_t unit;
    const char* unit_name;
};

tick_scale ticks_for(std::uint64_t span_ns)
{
    std::uint64_t raw = std::max<std::uint64_t>(1, span_ns / 8);
    std::uint64_t p = 1;
    while (p <= raw / 10)
        p *= 10;
    std::uint64_t step = p;
    for (std::uint64_t m : {1, 2, 5, 10})
        if (p * m >= raw) {
            step = p * m;
            break;
        }
    if (step >= 1'000'000'000)
        return {step, 1'000'000'000, "s"};
    if (step >= 1'000'000)
        return {step, 1'000'000, "ms"};
    if (step >= 1'000)
        return {step, 1'000, "us"};
    return {step, 1, "ns"};
}

class svg_writer {
public:
    explicit svg_writer(std::span<const run_result* const> runs) : runs_(runs)
    {
        for (const run_result* r : runs_) {
            if (!r)
                continue;
            end_ = std::max(end_, detail::run_end(*r));
            for (const task_record& t : r->tasks)
                if (!t.idle && !colours_.count(t.comm)) {
                    colours_[t.comm] = palette[colours_.size() % palette.size()];
                    colour_order_.push_back(t.comm);
                }
        }
        end_ = std::max<std::uint64_t>(end_, 1);
    }

    void write(std::ostream& out)
    {
        double y = 10;
        for (const run_result* r : runs_)
            if (r)
                y = block(*r, y) + 18;
        y = legend(y);
        out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(y)
            << "\" viewBox=\"0 0 " << num(width) << ' ' << num(y)
            << "\" font-family=\"DejaVu Sans, Verdana, sans-serif\">\n"
            << "<title>klock sim timeline</title>\n"
            << "<defs>\n"
            << "<pattern id=\"wait\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" "
               "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fbe4e1\"/>"
               "<rect width=\"3\" height=\"6\" fill=\""
            << wait_colour << "\"/></pattern>\n"
            << "</defs>\n"
            << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
            << body_.str() << "</svg>\n";
    }

private:
    double x(std::uint64_t t) const { return left + static_cast<double>(t) * plot_w / static_cast<double>(end_); }

    // x and width of [t0, t1], at least `min` pixels wide so that short spans stay visible
    std::pair<double, double> xw(std::uint64_t t0, std::uint64_t t1, double min = 1.0) const
    {
        double a = x(t0), b = x(t1);
        return {a, std::max(b - a, min)};
    }

    void rect(double rx, double ry, double w, double h, const std::string& attrs, const std::string& tip)
    {
        body_ << "<rect x=\"" << num(rx) << "\" y=\"" << num(ry) << "\" width=\"" << num(w) << "\" height=\"" << num(h)
              << "\" " << attrs;
        if (tip.empty())
            body_ << "/>\n";
        else
            body_ << "><title>" << esc(tip) << "</title></rect>\n";
    }

    void text(double tx, double ty, const std::string& s, double size, const std::string& attrs = "")
    {
        body_ << "<text x=\"" << num(tx) << "\" y=\"" << num(ty) << "\" font-size=\"" << num(size) << "\""
              << (attrs.empty() ? "" : " " + attrs) << ">" << esc(s) << "</text>\n";
    }

    // A label centred in [rx, rx + w] if it fits there.
    void label_in(double rx, double w, double ty, const std::string& s, double size, const std::string& fill)
    {
        if (text_w(s, size) + 4 > w)
            return;
        text(rx + w / 2, ty, s, size, "text-anchor=\"middle\" fill=\"" + fill + "\"");
    }

    static std::string task_name(const run_result& run, int t) { return detail::task_label(run, t); }

    static std::string interval(const detail::span& s) { return detail::ms3(s.t0) + " - " + detail::ms3(s.t1) + " ms"; }

    double block(const run_result& run, double y0)
    {
        detail::timeline tl = detail::build_timeline(run);
        double y = y0;

        // title: name, locks, verdict
        std::string locks;
        for (const lock_spec& l : run.scn.locks)
            locks += (locks.empty() ? "" : ", ") + l.name + ": " + to_string(l.type);
        text(12, y + 16, run.scn.name + (locks.empty() ? "" : "  (" + locks + ")"), 15, "font-weight=\"bold\"");
        std::string verdict;
        for (const check_result& c : run.checks)
            if (!c.passed)
                verdict += (verdict.empty() ? "FAILED: " : ", ") + c.name;
        bool ok = verdict.empty();
        if (ok)
            verdict = run.checks.empty() ? "no checks" : "all " + std::to_string(run.checks.size()) + " checks passed";
        if (!run.scn.expect.empty())
            verdict += run.as_expected() ? " (as the scenario expects)" : " (NOT as the scenario expects)";
        body_ << "<text x=\"12\" y=\"" << num(y + 33) << "\" font-size=\"11\" fill=\"#444\">"
              << esc(run.scn.description.empty() ? "" : run.scn.description + "  -  ")
              << "<tspan font-weight=\"bold\" fill=\"" << (ok ? "#1b7f3b" : fail_colour) << "\">" << esc(verdict)
              << "</tspan></text>\n";
        y += 44;
        // a lane for the labels of failed checks, above the rows their lines cross
        double fail_label_y = y + 10;
        y += 14;
        double rows_top = y;

        // CPU rows
        for (unsigned c = 0; c < run.scn.cpus; ++c) {
            double ry = y;
            text(12, ry + 19, "CPU " + std::to_string(c), 12, "font-weight=\"bold\"");
            rect(left, ry, plot_w, cpu_row_h, "fill=\"#f3f3f3\"", "");
            for (const detail::span& s : tl.runs) {
                if (s.cpu != static_cast<int>(c))
                    continue;
                const task_record& t = run.tasks[s.task];
                auto [rx, w] = xw(s.t0, s.t1);
                rect(rx, ry, w, cpu_row_h, "fill=\"" + colour(t.comm) + "\"",
                    t.comm + " (pid " + std::to_string(t.pid) + ") on CPU " + std::to_string(c) + ": " + interval(s));
                label_in(rx, w, ry + 14, t.comm, 11, "#ffffff");
                // locks held while it runs here: a dark strip at the bottom
                for (const detail::span& h : tl.holds) {
                    if (h.task != s.task || h.t1 <= s.t0 || h.t0 >= s.t1)
                        continue;
                    auto [hx, hw] = xw(std::max(h.t0, s.t0), std::min(h.t1, s.t1));
                    rect(hx, ry + cpu_row_h - 10, hw, 10, "fill=\"#000000\" fill-opacity=\"0.45\"",
                        t.comm + " holds " + detail::lock_label(run, h.lock) + ": " + interval(h));
                    label_in(hx, hw, ry + cpu_row_h - 2, detail::lock_label(run, h.lock), 8, "#ffffff");
                }
                // waits while it runs here: spinning
                for (const detail::span& wt : tl.waits) {
                    if (wt.task != s.task || wt.t1 <= s.t0 || wt.t0 >= s.t1)
                        continue;
                    auto [wx, ww] = xw(std::max(wt.t0, s.t0), std::min(wt.t1, s.t1));
                    rect(wx, ry, ww, cpu_row_h - 10, "fill=\"url(#wait)\"",
                        t.comm + " spins on " + detail::lock_label(run, wt.lock) + ": " + interval(wt));
                }
                // boosted while it runs here: outline
                for (const detail::prio_segment& p : tl.prios) {
                    if (p.task != s.task || p.t1 <= s.t0 || p.t0 >= s.t1)
                        continue;
                    auto [px, pw] = xw(std::max(p.t0, s.t0), std::min(p.t1, s.t1));
                    rect(px + 1, ry + 1, std::max(pw - 2, 1.0), cpu_row_h - 2,
                        std::string("fill=\"none\" stroke=\"") + boost_colour + "\" stroke-width=\"2.5\"",
                        t.comm + " boosted to prio " + std::to_string(p.prio));
                }
            }
            for (const detail::span& s : tl.irqs) {
                if (s.cpu != static_cast<int>(c))
                    continue;
                std::string name = detail::irq_span_label(run, s);
                auto [rx, w] = xw(s.t0, s.t1, 2.0);
                rect(rx, ry, w, cpu_row_h, std::string("fill=\"") + irq_colour + "\"",
                    name + " on CPU " + std::to_string(c) + ": " + detail::ms3(s.t0) + " ms, " + dur(s.t1 - s.t0));
                if (text_w(name, 9) + 4 <= w)
                    label_in(rx, w, ry + 14, name, 9, "#ffffff");
            }
            // a handler's own locking: holds as the strip, waits (spinning) hatched
            for (const detail::span& h : tl.holds) {
                if (h.task >= 0 || h.cpu != static_cast<int>(c))
                    continue;
                auto [hx, hw] = xw(h.t0, h.t1, 2.0);
                rect(hx, ry + cpu_row_h - 10, hw, 10, "fill=\"#777777\"",
                    detail::irq_span_label(run, h) + " holds " + detail::lock_label(run, h.lock) + ": " + interval(h));
                label_in(hx, hw, ry + cpu_row_h - 2, detail::lock_label(run, h.lock), 8, "#ffffff");
            }
            for (const detail::span& wt : tl.waits) {
                if (wt.task >= 0 || wt.cpu != static_cast<int>(c))
                    continue;
                auto [wx, ww] = xw(wt.t0, wt.t1, 2.0);
                rect(wx, ry, ww, cpu_row_h - 10, "fill=\"url(#wait)\"",
                    detail::irq_span_label(run, wt) + " spins on " + detail::lock_label(run, wt.lock) + ": "
                        + interval(wt));
                std::string l = detail::irq_span_label(run, wt) + " waits for " + detail::lock_label(run, wt.lock);
                if (text_w(l, 9) + 8 <= ww) {
                    double lw = text_w(l, 9) + 6;
                    rect(wx + ww / 2 - lw / 2, ry + 4, lw, 12, "fill=\"#ffffff\" fill-opacity=\"0.85\"", "");
                    label_in(wx, ww, ry + 13, l, 9, wait_colour);
                }
            }
            for (const detail::prio_segment& p : tl.prios) {
                // a marker where the boost begins, on the CPU the boosted task runs on
                for (const detail::span& s : tl.runs)
                    if (s.task == p.task && s.cpu == static_cast<int>(c) && p.t0 >= s.t0 && p.t0 < s.t1) {
                        double mx = x(p.t0);
                        body_ << "<path d=\"M" << num(mx - 6) << ' ' << num(ry - 6) << " L" << num(mx + 6) << ' '
                              << num(ry - 6) << " L" << num(mx) << ' ' << num(ry + 4) << " Z\" fill=\"" << boost_colour
                              << "\"><title>" << esc(task_name(run, p.task)) << " boosted: prio " << p.from << "->"
                              << p.prio << " at " << detail::ms3(p.t0) << " ms</title></path>\n";
                    }
            }
            y += cpu_row_h + row_gap;
        }

        // task rows, highest priority first
        std::vector<int> order;
        for (std::size_t t = 0; t < run.tasks.size(); ++t)
            if (!run.tasks[t].idle)
                order.push_back(static_cast<int>(t));
        std::stable_sort(
            order.begin(), order.end(), [&](int a, int b) { return run.tasks[a].prio < run.tasks[b].prio; });
        y += 6;
        for (int t : order) {
            const task_record& r = run.tasks[t];
            double ry = y;
            text(12, ry + 15, r.comm, 12, "font-weight=\"bold\" fill=\"" + colour(r.comm) + "\"");
            text(12, ry + 29, detail::policy_label(run, t) + "  prio " + std::to_string(r.prio), 10, "fill=\"#555\"");
            rect(left, ry, plot_w, task_row_h, "fill=\"#fafafa\"", "");
            for (const detail::prio_segment& p : tl.prios) {
                if (p.task != t)
                    continue;
                auto [px, pw] = xw(p.t0, p.t1, 2.0);
                std::string l = "prio " + std::to_string(p.from) + "->" + std::to_string(p.prio);
                rect(px, ry, pw, 11, std::string("fill=\"") + boost_colour + "\"",
                    r.comm + " " + l + " (priority inheritance): " + detail::ms3(p.t0) + " - " + detail::ms3(p.t1)
                        + " ms");
                if (text_w(l, 9) + 4 <= pw)
                    label_in(px, pw, ry + 9, l, 9, "#ffffff");
                else
                    text(px + pw + 3, ry + 9, l, 9, std::string("fill=\"") + boost_colour + "\"");
            }
            for (const detail::span& h : tl.holds) {
                if (h.task != t)
                    continue;
                auto [hx, hw] = xw(h.t0, h.t1, 2.0);
                std::string l = detail::lock_label(run, h.lock) + (h.read ? " (read)" : "");
                rect(hx, ry + 12, hw, 13,
                    "fill=\"" + colour(r.comm) + "\" fill-opacity=\"0.35\" stroke=\"" + colour(r.comm) + "\"",
                    r.comm + " holds " + l + ": " + interval(h) + " (" + dur(h.t1 - h.t0) + ")");
                label_in(hx, hw, ry + 22, l, 9, "#222222");
            }
            for (const detail::span& wt : tl.waits) {
                if (wt.task != t)
                    continue;
                auto [wx, ww] = xw(wt.t0, wt.t1, 2.0);
                std::string l = "wait " + detail::lock_label(run, wt.lock);
                rect(wx, ry + 12, ww, 13, std::string("fill=\"url(#wait)\" stroke=\"") + wait_colour + "\"",
                    r.comm + " waits for " + detail::lock_label(run, wt.lock) + ": " + interval(wt) + " ("
                        + dur(wt.t1 - wt.t0) + ")");
                if (text_w(l, 9) + 8 <= ww) {
                    double lw = text_w(l, 9) + 6;
                    rect(wx + ww / 2 - lw / 2, ry + 13, lw, 11, "fill=\"#ffffff\" fill-opacity=\"0.85\"", "");
                    label_in(wx, ww, ry + 22, l, 9, wait_colour);
                }
            }
            for (const detail::span& s : tl.runs) {
                if (s.task != t)
                    continue;
                auto [rx, w] = xw(s.t0, s.t1);
                rect(rx, ry + 27, w, 6, "fill=\"" + colour(r.comm) + "\"",
                    r.comm + " runs on CPU " + std::to_string(s.cpu) + ": " + interval(s));
            }
            y += task_row_h + row_gap;
        }

        // axis and grid
        double axis_y = y + 2;
        tick_scale ts = ticks_for(end_);
        for (std::uint64_t t = 0; t <= end_; t += ts.step) {
            double tx = x(t);
            body_ << "<line x1=\"" << num(tx) << "\" y1=\"" << num(rows_top) << "\" x2=\"" << num(tx) << "\" y2=\""
                  << num(axis_y) << "\" stroke=\"#000000\" stroke-opacity=\"0.12\"/>\n";
            body_ << "<line x1=\"" << num(tx) << "\" y1=\"" << num(axis_y) << "\" x2=\"" << num(tx) << "\" y2=\""
                  << num(axis_y + 5) << "\" stroke=\"#333\"/>\n";
            std::string l = std::to_string(t / ts.unit) + (t == 0 ? "" : " " + std::string(ts.unit_name));
            text(tx, axis_y + 17, l, 10, "text-anchor=\"middle\" fill=\"#333\"");
            if (t > end_ - ts.step)
                break;
        }
        body_ << "<line x1=\"" << num(left) << "\" y1=\"" << num(axis_y) << "\" x2=\"" << num(left + plot_w)
              << "\" y2=\"" << num(axis_y) << "\" stroke=\"#333\"/>\n";
        text(12, axis_y + 17, "time (virtual)", 10, "fill=\"#333\"");

        // failed checks at the moment they fired; checks that fire close together share a label
        std::vector<const check_result*> failed;
        for (const check_result& c : run.checks)
            if (!c.passed)
                failed.push_back(&c);
        std::stable_sort(failed.begin(), failed.end(),
            [](const check_result* a, const check_result* b) { return a->t_ns < b->t_ns; });
        double label_end = -1e9; // where the previous label ends
        for (std::size_t i = 0; i < failed.size();) {
            double cx = x(std::min(failed[i]->t_ns, end_));
            std::string names;
            std::size_t k = i;
            for (; k < failed.size() && x(std::min(failed[k]->t_ns, end_)) - cx < 4; ++k) {
                const check_result& c = *failed[k];
                double kx = x(std::min(c.t_ns, end_));
                body_ << "<line x1=\"" << num(kx) << "\" y1=\"" << num(fail_label_y - 10) << "\" x2=\"" << num(kx)
                      << "\" y2=\"" << num(axis_y) << "\" stroke=\"" << fail_colour
                      << "\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"><title>" << esc(c.name) << " at "
                      << detail::ms3(c.t_ns) << " ms</title></line>\n";
                names += (names.empty() ? "" : ", ") + c.name;
            }
            i = k;
            std::string l = "FAIL: " + names;
            double lx = std::max(cx + 3, label_end + 8);
            std::string anchor;
            if (lx + text_w(l, 10) > width - 4) {
                lx = std::max(cx - 3, label_end + 8 + text_w(l, 10));
                anchor = " text-anchor=\"end\"";
                label_end = lx;
            } else
                label_end = lx + text_w(l, 10);
            text(lx, fail_label_y, l, 10, std::string("font-weight=\"bold\" fill=\"") + fail_colour + "\"" + anchor);
        }
        return axis_y + 24;
    }

    double legend(double y)
    {
        body_ << "<line x1=\"12\" y1=\"" << num(y) << "\" x2=\"" << num(width - 12) << "\" y2=\"" << num(y)
              << "\" stroke=\"#ccc\"/>\n";
        y += 8;
        double lx = 12;
        text(lx, y + 12, "tasks:", 11, "font-weight=\"bold\"");
        lx += 50;
        for (const std::string& name : colour_order_) {
            double w = 14 + 6 + text_w(name, 11) + 16;
            if (lx + w > width - 12) {
                lx = 62;
                y += 20;
            }
            rect(lx, y + 2, 14, 12, "fill=\"" + colour(name) + "\"", "");
            text(lx + 20, y + 12, name, 11);
            lx += w;
        }
        y += 22;
        lx = 12;
        auto key = [&](const std::string& attrs, const std::string& l) {
            double w = 22 + 6 + text_w(l, 11) + 18;
            if (lx + w > width - 12) {
                lx = 12;
                y += 20;
            }
            rect(lx, y + 2, 22, 12, attrs, "");
            text(lx + 28, y + 12, l, 11);
            lx += w;
        };
        key(std::string("fill=\"") + irq_colour + "\"", "irq handler");
        key("fill=\"#000000\" fill-opacity=\"0.45\"", "lock held (CPU row)");
        key("fill=\"#4e79a7\" fill-opacity=\"0.35\" stroke=\"#4e79a7\"", "lock held");
        key(std::string("fill=\"url(#wait)\" stroke=\"") + wait_colour + "\"", "waiting for a lock");
        key(std::string("fill=\"") + boost_colour + "\"", "priority boost (prio old->new)");
        key(std::string("fill=\"none\" stroke=\"") + boost_colour + "\" stroke-width=\"2.5\"", "runs boosted");
        key(std::string("fill=\"none\" stroke=\"") + fail_colour + "\" stroke-dasharray=\"5,3\"", "failed check");
        return y + 24;
    }

    const std::string& colour(const std::string& comm)
    {
        auto it = colours_.find(comm);
        if (it == colours_.end())
            it = colours_.emplace(comm, palette[colours_.size() % palette.size()]).first;
        return it->second;
    }

    std::span<const run_result* const> runs_;
    std::uint64_t end_ = 0;
    std::map<std::string, std::string> colours_;
    std::vector<std::string> colour_order_;
    std::ostringstream body_;
};

} // namespace

void write_svg_timeline(std::span<const run_result* const> runs, std::ostream& out)
{
    svg_writer w(runs);
    w.write(out);
}

} // namespace klock::sim
