// The scenario text format (docs/sim.md, "Scenario format").
//
// A scenario file is a list of statements, one per line. Top-level statements are settings
// ("cpus 2"), lock declarations ("lock A mutex"), and the headers of irq and task blocks
// ("task high fifo 90 affinity 1 {"); inside a block each line is one step of its script
// ("lock A", "work 2ms", "loop 3 {"). A '}' alone closes the innermost open block. '#' starts a
// comment anywhere outside a quoted string.
//
// The parser is a single pass over the lines with a stack of open blocks. Names are resolved at
// the end, so a task may use a lock or an irq declared further down; every deferred check keeps
// the line and column of the word it is about, so each error points at the exact word, as a
// compiler would. The first error stops the parse: later errors are often consequences of the
// first one and would only add noise.
//
// write_scenario() prints a scenario back in the same format (canonical spelling, defaults
// left out), so that parse(write(s)) == s: the built-in scenarios can be dumped, edited and
// loaded again.
#include <klock/sim/scenario_parser.hpp>
#include <klock/sim/sim.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

namespace klock::sim {

std::string parse_error::what() const
{
    std::string s = file;
    if (line != 0) {
        s += ':' + std::to_string(line);
        if (column != 0)
            s += ':' + std::to_string(column);
    }
    s += ": error: ";
    s += message;
    return s;
}

namespace {

constexpr unsigned max_cpus = 64;
constexpr std::size_t task_comm_len = 15; // TASK_COMM_LEN - 1: what ftrace shows of a name

struct token {
    std::string text;
    unsigned column = 0;
    bool quoted = false;
    bool is(std::string_view s) const { return !quoted && text == s; }
};

// Thrown inside the parser only; parse_scenario turns it into a parse_error.
struct failure {
    unsigned line;
    unsigned column;
    std::string message;
};

std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// Edit distance with transpositions (optimal string alignment), for "did you mean" hints on
// misspelt keywords: "wrok" is one step from "work".
std::size_t distance(std::string_view a, std::string_view b)
{
    const std::size_t w = b.size() + 1;
    std::vector<std::size_t> d((a.size() + 1) * w);
    for (std::size_t i = 0; i <= a.size(); ++i)
        d[i * w] = i;
    for (std::size_t j = 0; j <= b.size(); ++j)
        d[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            std::size_t v = std::min({d[(i - 1) * w + j] + 1, d[i * w + j - 1] + 1, d[(i - 1) * w + j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                v = std::min(v, d[(i - 2) * w + j - 2] + 1);
            d[i * w + j] = v;
        }
    return d[a.size() * w + b.size()];
}

template <typename Range> std::string suggestion(std::string_view word, const Range& candidates)
{
    std::string best;
    std::size_t best_d = std::numeric_limits<std::size_t>::max();
    for (std::string_view c : candidates) {
        std::size_t d = distance(word, c);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    if (!best.empty() && best_d <= std::max<std::size_t>(1, word.size() / 3))
        return " (did you mean " + quote(best) + "?)";
    return {};
}

constexpr std::array<std::string_view, 16> setting_words
    = {"name", "description", "cpus", "tick", "time_limit", "soft_lockup", "seed", "rr_timeslice", "irq_stacks",
        "irq_stack_size", "expect", "trace_lock_words", "lock", "irq", "softirq", "task"};

constexpr std::array<std::string_view, 20> step_words
    = {"lock", "unlock", "trylock", "read_lock", "read_unlock", "lock_irqsave", "unlock_irqrestore", "work", "sleep",
        "preempt_disable", "preempt_enable", "local_irq_disable", "local_irq_enable", "local_bh_disable",
        "local_bh_enable", "raise", "recurse", "no_switch_begin", "no_switch_end", "loop"};

constexpr std::array<lock_type, 7> all_lock_types = {lock_type::spinlock, lock_type::ticket_spinlock,
    lock_type::qspinlock, lock_type::rwlock, lock_type::mutex, lock_type::rt_mutex, lock_type::rw_semaphore};

bool spinning(lock_type t)
{
    return t == lock_type::spinlock || t == lock_type::ticket_spinlock || t == lock_type::qspinlock
        || t == lock_type::rwlock;
}

bool has_readers(lock_type t) { return t == lock_type::rwlock || t == lock_type::rw_semaphore; }

bool valid_name(std::string_view s)
{
    if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/' || c == ':';
    });
}

// --- numbers -----------------------------------------------------------------------------

bool all_digits(std::string_view s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal digits to an integer; false on overflow.
bool to_u64(std::string_view digits, std::uint64_t& v)
{
    v = 0;
    for (char c : digits) {
        std::uint64_t d = static_cast<std::uint64_t>(c - '0');
        if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
            return false;
        v = v * 10 + d;
    }
    return true;
}

// The part of a word made of digits and at most one '.', and the unit after it.
void split_number(std::string_view w, std::string_view& number, std::string_view& unit)
{
    std::size_t i = 0;
    while (i < w.size() && ((w[i] >= '0' && w[i] <= '9') || w[i] == '.'))
        ++i;
    number = w.substr(0, i);
    unit = w.substr(i);
}

// "1.5ms" -> 1'500'000. Returns an error message, or empty on success.
std::string parse_duration_text(std::string_view w, std::uint64_t& ns)
{
    std::string_view number, unit;
    split_number(w, number, unit);
    std::string bad = "bad duration " + quote(w);
    if (number.empty() || number.front() == '.' || number.back() == '.'
        || std::count(number.begin(), number.end(), '.') > 1)
        return bad + " (expected a number and a unit, e.g. 250us)";
    std::uint64_t scale = 0;
    if (unit == "ns")
        scale = 1;
    else if (unit == "us")
        scale = 1'000;
    else if (unit == "ms")
        scale = 1'000'000;
    else if (unit == "s")
        scale = 1'000'000'000;
    else if (unit.empty()) {
        if (number == "0") {
            ns = 0;
            return {};
        }
        return bad + " (missing unit: ns, us, ms or s)";
    } else
        return bad + " (unknown unit " + quote(unit) + "; use ns, us, ms or s)";
    std::size_t dot = number.find('.');
    std::string_view whole = number.substr(0, dot);
    std::string_view frac = dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
    std::uint64_t w_val = 0;
    if (!to_u64(whole, w_val) || w_val > std::numeric_limits<std::uint64_t>::max() / scale)
        return bad + " (too large)";
    std::uint64_t total = w_val * scale;
    std::uint64_t place = scale;
    for (char c : frac) {
        if (place % 10 != 0)
            return bad + " (finer than 1ns)";
        place /= 10;
        std::uint64_t add = static_cast<std::uint64_t>(c - '0') * place;
        if (total > std::numeric_limits<std::uint64_t>::max() - add)
            return bad + " (too large)";
        total += add;
    }
    ns = total;
    return {};
}

std::string format_duration(std::uint64_t ns)
{
    if (ns == 0)
        return "0";
    if (ns % 1'000'000'000 == 0)
        return std::to_string(ns / 1'000'000'000) + "s";
    if (ns % 1'000'000 == 0)
        return std::to_string(ns / 1'000'000) + "ms";
    if (ns % 1'000 == 0)
        return std::to_string(ns / 1'000) + "us";
    return std::to_string(ns) + "ns";
}

std::string format_size(std::size_t bytes)
{
    if (bytes != 0 && bytes % (1024 * 1024) == 0)
        return std::to_string(bytes / (1024 * 1024)) + "M";
    if (bytes != 0 && bytes % 1024 == 0)
        return std::to_string(bytes / 1024) + "K";
    return std::to_string(bytes);
}

std::string format_cpu_list(std::uint64_t mask)
{
    std::string s;
    for (unsigned c = 0; c < 64;) {
        if (!(mask >> c & 1)) {
            ++c;
            continue;
        }
        unsigned e = c;
        while (e + 1 < 64 && (mask >> (e + 1) & 1))
            ++e;
        if (!s.empty())
            s += ',';
        s += std::to_string(c);
        if (e > c)
            s += '-' + std::to_string(e);
        c = e + 1;
    }
    return s;
}

// --- the parser --------------------------------------------------------------------------

class parser {
public:
    parser(std::string_view text, std::string_view file) : text_(text), file_(file) { }

    scenario run()
    {
        std::size_t pos = 0;
        while (pos <= text_.size()) {
            std::size_t end = text_.find('\n', pos);
            if (end == std::string_view::npos)
                end = text_.size();
            ++line_;
            std::string_view l = text_.substr(pos, end - pos);
            if (!l.empty() && l.back() == '\r')
                l.remove_suffix(1);
            tokenize(l);
            if (!toks_.empty())
                statement();
            pos = end + 1;
        }
        if (!blocks_.empty()) {
            const block& b = blocks_.back();
            fail(b.line, b.column, "unclosed '{' of " + b.what + " (missing '}' before the end of the file)");
        }
        finish();
        return std::move(s_);
    }

private:
    enum class block_kind { task, irq, loop };
    struct block {
        block_kind kind;
        std::vector<step>* steps;
        std::string what; // "task 'low'", "loop"
        unsigned line;
        unsigned column;
    };
    // A name used before the end of the file: resolved (and checked) in finish().
    struct pending_ref {
        bool in_irq;
        std::size_t owner;
        std::size_t index;
        std::string name;
        unsigned line;
        unsigned column;
    };
    // A CPU number or mask checked against `cpus` in finish().
    struct pending_cpu {
        std::uint64_t mask;
        unsigned line;
        unsigned column;
        std::string what;
    };

    [[noreturn]] void fail(unsigned line, unsigned column, std::string message)
    {
        throw failure{line, column, std::move(message)};
    }
    [[noreturn]] void fail(const token& t, std::string message) { fail(line_, t.column, std::move(message)); }

    void tokenize(std::string_view l)
    {
        toks_.clear();
        std::size_t i = 0;
        while (i < l.size()) {
            char c = l[i];
            if (c == ' ' || c == '\t') {
                ++i;
                continue;
            }
            if (c == '#')
                break;
            token t;
            t.column = static_cast<unsigned>(i + 1);
            if (c == '{' || c == '}') {
                t.text = std::string(1, c);
                ++i;
            } else if (c == '"') {
                t.quoted = true;
                ++i;
                bool closed = false;
                while (i < l.size()) {
                    if (l[i] == '\\' && i + 1 < l.size() && (l[i + 1] == '"' || l[i + 1] == '\\')) {
                        t.text += l[i + 1];
                        i += 2;
                    } else if (l[i] == '"') {
                        closed = true;
                        ++i;
                        break;
                    } else
                        t.text += l[i++];
                }
                if (!closed)
                    fail(line_, t.column, "unterminated string (missing '\"')");
            } else {
                while (i < l.size() && l[i] != ' ' && l[i] != '\t' && l[i] != '#' && l[i] != '{' && l[i] != '}'
                    && l[i] != '"')
                    t.text += l[i++];
            }
            toks_.push_back(std::move(t));
        }
        next_ = 0;
    }

    // --- token access --------------------------------------------------------------------
    bool at_end() const { return next_ >= toks_.size(); }
    const token& peek() const { return toks_[next_]; }
    // The column just after the last token: where a missing word would have been.
    unsigned end_column() const
    {
        if (toks_.empty())
            return 1;
        const token& t = toks_.back();
        return t.column + static_cast<unsigned>(t.text.size()) + (t.quoted ? 2 : 0);
    }
    const token& take(const std::string& what)
    {
        if (at_end())
            fail(line_, end_column(), "missing " + what);
        return toks_[next_++];
    }
    const token& take_word(const std::string& what)
    {
        const token& t = take(what);
        if (t.is("{") || t.is("}"))
            fail(t, "expected " + what + ", found " + quote(t.text));
        return t;
    }
    void expect_end(std::string_view after)
    {
        if (!at_end())
            fail(peek(), "unexpected " + quote(peek().text) + " after " + std::string(after));
    }
    // After a block header: "{" opens the block; "{ }" is an empty block.
    enum class brace { none, open, empty };
    brace take_brace(std::string_view after, bool required)
    {
        if (at_end()) {
            if (required)
                fail(line_, end_column(), "missing '{' after " + std::string(after));
            return brace::none;
        }
        const token& t = toks_[next_++];
        if (!t.is("{"))
            fail(t, "unexpected " + quote(t.text) + " after " + std::string(after));
        if (!at_end() && peek().is("}")) {
            ++next_;
            expect_end("'{ }'");
            return brace::empty;
        }
        if (!at_end())
            fail(peek(), "a block's steps go on the lines after its '{'; found " + quote(peek().text));
        return brace::open;
    }

    std::string name_of(const token& t, const std::string& what)
    {
        if (t.quoted || !valid_name(t.text))
            fail(t,
                "bad " + what + " name " + quote(t.text)
                    + " (use letters, digits and _ - . / :, starting with a letter or _)");
        return t.text;
    }

    std::uint64_t number(const token& t, const std::string& what, std::uint64_t min, std::uint64_t max)
    {
        std::uint64_t v = 0;
        if (t.quoted || !all_digits(t.text))
            fail(t, "bad number " + quote(t.text) + " for " + what);
        if (!to_u64(t.text, v) || v < min || v > max)
            fail(t, what + " " + t.text + " out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
        return v;
    }

    long long signed_number(const token& t, const std::string& what, long long min, long long max)
    {
        std::string_view s = t.text;
        bool neg = !s.empty() && (s[0] == '-' || s[0] == '+');
        bool minus = neg && s[0] == '-';
        if (neg)
            s.remove_prefix(1);
        std::uint64_t v = 0;
        if (t.quoted || !all_digits(s))
            fail(t, "bad number " + quote(t.text) + " for " + what);
        long long r = 0;
        if (to_u64(s, v) && v <= 1'000'000)
            r = minus ? -static_cast<long long>(v) : static_cast<long long>(v);
        else
            r = minus ? std::numeric_limits<long long>::min() : std::numeric_limits<long long>::max();
        if (r < min || r > max)
            fail(t, what + " " + t.text + " out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
        return r;
    }

    std::uint64_t duration(const token& t, const std::string& what, bool allow_zero)
    {
        std::uint64_t ns = 0;
        std::string err = t.quoted ? "bad duration " + quote(t.text) : parse_duration_text(t.text, ns);
        if (!err.empty())
            fail(t, err + " for " + what);
        if (ns == 0 && !allow_zero)
            fail(t, what + " must be greater than 0");
        return ns;
    }

    std::size_t size(const token& t, const std::string& what, bool allow_zero)
    {
        std::string_view n, unit;
        split_number(t.text, n, unit);
        std::uint64_t scale = 0;
        if (unit.empty())
            scale = 1;
        else if (unit == "K")
            scale = 1024;
        else if (unit == "M")
            scale = 1024 * 1024;
        std::uint64_t v = 0;
        if (t.quoted || !all_digits(n) || scale == 0)
            fail(t, "bad size " + quote(t.text) + " for " + what + " (bytes, or with a K or M suffix: 16K)");
        if (!to_u64(n, v) || v > (std::uint64_t(1) << 40) / scale)
            fail(t, "size " + quote(t.text) + " for " + what + " is too large");
        if (v == 0 && !allow_zero)
            fail(t, what + " must be greater than 0");
        return static_cast<std::size_t>(v * scale);
    }

    // "0-3,6" or "all" -> bit mask.
    std::uint64_t cpu_list(const token& t)
    {
        if (t.is("all"))
            return ~std::uint64_t(0);
        std::uint64_t mask = 0;
        std::string_view s = t.text;
        std::string bad = "bad CPU list " + quote(t.text) + " (e.g. 0-3,6 or all)";
        if (t.quoted || s.empty())
            fail(t, bad);
        while (!s.empty()) {
            std::size_t comma = s.find(',');
            std::string_view item = s.substr(0, comma);
            s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
            if (comma != std::string_view::npos && s.empty())
                fail(t, bad);
            std::size_t dash = item.find('-');
            std::string_view lo = item.substr(0, dash);
            std::string_view hi = dash == std::string_view::npos ? lo : item.substr(dash + 1);
            std::uint64_t a = 0, b = 0;
            if (!all_digits(lo) || !all_digits(hi) || !to_u64(lo, a) || !to_u64(hi, b) || a > b)
                fail(t, bad);
            if (b >= max_cpus)
                fail(t, "CPU " + std::to_string(b) + " out of range (0.." + std::to_string(max_cpus - 1) + ")");
            for (std::uint64_t c = a; c <= b; ++c)
                mask |= std::uint64_t(1) << c;
        }
        return mask;
    }

    void once(std::vector<std::string>& seen, const token& t)
    {
        if (std::find(seen.begin(), seen.end(), t.text) != seen.end())
            fail(t, quote(t.text) + " given twice");
        seen.push_back(t.text);
    }

    // --- statements ----------------------------------------------------------------------
    void statement()
    {
        const token& first = toks_[0];
        if (first.is("}")) {
            if (blocks_.empty())
                fail(first, "unexpected '}' (no block is open)");
            next_ = 1;
            expect_end("'}'");
            close_block(first);
            return;
        }
        if (first.is("{"))
            fail(first, "unexpected '{' (a block opens at the end of its task, irq or loop line)");
        if (first.quoted)
            fail(first, "unexpected string " + quote(first.text) + " (a line starts with a keyword)");
        next_ = 1;
        if (blocks_.empty())
            top_level(first);
        else
            step_statement(first);
    }

    void setting_once(const token& t)
    {
        auto it = std::find_if(settings_.begin(), settings_.end(), [&](const auto& p) { return p.first == t.text; });
        if (it != settings_.end())
            fail(t, "setting " + quote(t.text) + " given twice (first at line " + std::to_string(it->second) + ")");
        settings_.emplace_back(t.text, line_);
    }

    void top_level(const token& kw)
    {
        const std::string& k = kw.text;
        if (k == "lock") {
            lock_decl();
        } else if (k == "irq" || k == "softirq") {
            irq_decl(kw);
        } else if (k == "task") {
            task_decl();
        } else if (k == "name") {
            setting_once(kw);
            s_.name = name_of(take_word("a scenario name"), "scenario");
            expect_end("the name");
        } else if (k == "description") {
            setting_once(kw);
            const token& t = take_word("a description");
            if (t.quoted) {
                s_.description = t.text;
                expect_end("the description");
            } else {
                // unquoted: the rest of the line, words joined by single spaces
                s_.description = t.text;
                while (!at_end()) {
                    const token& w = take_word("a word");
                    s_.description += ' ' + w.text;
                }
            }
        } else if (k == "cpus") {
            setting_once(kw);
            s_.cpus = static_cast<unsigned>(number(take_word("a CPU count"), "cpus", 1, max_cpus));
            expect_end("cpus");
        } else if (k == "tick") {
            setting_once(kw);
            const token& t = take_word("a tick period (or off)");
            s_.tick_ns = t.is("off") ? 0 : duration(t, "tick", true);
            expect_end("tick");
        } else if (k == "time_limit") {
            setting_once(kw);
            s_.time_limit_ns = duration(take_word("a duration"), "time_limit", false);
            expect_end("time_limit");
        } else if (k == "soft_lockup") {
            setting_once(kw);
            s_.soft_lockup_ns = duration(take_word("a duration"), "soft_lockup", false);
            expect_end("soft_lockup");
        } else if (k == "rr_timeslice") {
            setting_once(kw);
            s_.rr_timeslice_ns = duration(take_word("a duration"), "rr_timeslice", false);
            expect_end("rr_timeslice");
        } else if (k == "seed") {
            setting_once(kw);
            s_.seed = number(take_word("a seed"), "seed", 0, std::numeric_limits<std::uint64_t>::max());
            expect_end("seed");
        } else if (k == "irq_stacks") {
            setting_once(kw);
            const token& t = take_word("arm, arm64, task or percpu");
            if (t.is("arm") || t.is("task"))
                s_.irq_stacks = irq_stack_mode::task_stack;
            else if (t.is("arm64") || t.is("percpu"))
                s_.irq_stacks = irq_stack_mode::per_cpu;
            else
                fail(t, "unknown irq_stacks mode " + quote(t.text) + " (use arm, arm64, task or percpu)");
            expect_end("irq_stacks");
        } else if (k == "expect") {
            setting_once(kw);
            expect_decl();
        } else if (k == "trace_lock_words") {
            setting_once(kw);
            s_.trace_lock_words = true;
            if (!at_end()) {
                const token& t = take_word("on or off");
                if (t.is("off"))
                    s_.trace_lock_words = false;
                else if (!t.is("on"))
                    fail(t, "expected on or off after 'trace_lock_words', found " + quote(t.text));
            }
            expect_end("trace_lock_words");
        } else if (k == "irq_stack_size") {
            setting_once(kw);
            s_.irq_stack_size = size(take_word("a size"), "irq_stack_size", false);
            expect_end("irq_stack_size");
        } else if (std::find(step_words.begin(), step_words.end(), k) != step_words.end()) {
            fail(kw, "step " + quote(k) + " outside a task or irq block");
        } else {
            fail(kw, "unknown keyword " + quote(k) + suggestion(k, setting_words));
        }
    }

    void lock_decl()
    {
        const token& n = take_word("a lock name");
        lock_spec l;
        l.name = name_of(n, "lock");
        l.line = line_;
        if (std::find_if(s_.locks.begin(), s_.locks.end(), [&](const lock_spec& o) { return o.name == l.name; })
            != s_.locks.end())
            fail(n,
                "duplicate lock " + quote(l.name) + " (first declared at line " + std::to_string(find_lock_line(l.name))
                    + ")");
        const token& t = take_word("a lock type after " + quote(l.name));
        bool found = false;
        for (lock_type lt : all_lock_types)
            if (t.is(to_string(lt))) {
                l.type = lt;
                found = true;
            }
        if (!found) {
            std::vector<std::string_view> names;
            for (lock_type lt : all_lock_types)
                names.emplace_back(to_string(lt));
            std::string list;
            for (std::string_view nm : names)
                list += (list.empty() ? "" : ", ") + std::string(nm);
            fail(t, "unknown lock type " + quote(t.text) + suggestion(t.text, names) + "; types: " + list);
        }
        expect_end("the lock type");
        s_.locks.push_back(std::move(l));
    }

    unsigned find_lock_line(const std::string& name) const
    {
        for (const lock_spec& l : s_.locks)
            if (l.name == name)
                return l.line;
        return 0;
    }

    void expect_decl()
    {
        if (at_end())
            fail(line_, end_column(), "missing the name of a check after 'expect'");
        while (!at_end()) {
            const token& t = take_word("a check name");
            std::string name = t.text;
            if (!t.quoted)
                std::replace(name.begin(), name.end(), '_', ' ');
            if (std::find(std::begin(check_names), std::end(check_names), name) == std::end(check_names)) {
                std::string list;
                std::vector<std::string> words;
                for (const char* c : check_names) {
                    std::string w = c;
                    std::replace(w.begin(), w.end(), ' ', '_');
                    list += (list.empty() ? "" : ", ") + w;
                    words.push_back(w);
                }
                fail(t, "unknown check " + quote(t.text) + suggestion(t.text, words) + "; checks: " + list);
            }
            if (std::find(s_.expect.begin(), s_.expect.end(), name) != s_.expect.end())
                fail(t, "check " + quote(t.text) + " expected twice");
            s_.expect.push_back(name);
        }
    }

    void irq_decl(const token& kw)
    {
        const bool soft = kw.is("softirq");
        const std::string kind = soft ? "softirq" : "irq";
        const token& n = take_word("an " + kind + " name");
        irq_spec q;
        q.name = name_of(n, kind);
        q.softirq = soft;
        q.line = line_;
        for (const irq_spec& o : s_.irqs)
            if (o.name == q.name)
                fail(n,
                    "duplicate " + kind + " " + quote(q.name) + " (first declared at line " + std::to_string(o.line)
                        + (o.softirq != soft ? ", as " + std::string(o.softirq ? "a softirq" : "an irq")
                                             : std::string())
                        + ")");
        std::vector<std::string> seen;
        bool have_cpu = false;
        while (!at_end() && !peek().is("{")) {
            const token& a = take_word("an " + kind + " attribute");
            once(seen, a);
            if (a.is("cpu")) {
                const token& v = take_word("a CPU number after 'cpu'");
                q.cpu = static_cast<int>(number(v, "cpu", 0, max_cpus - 1));
                cpus_.push_back({std::uint64_t(1) << q.cpu, line_, v.column, "cpu " + v.text});
                have_cpu = true;
            } else if (a.is("at")) {
                q.at_ns = duration(take_word("a time after 'at'"), "at", true);
            } else if (a.is("period")) {
                q.period_ns = duration(take_word("a duration after 'period'"), "period", false);
            } else {
                static constexpr std::array<std::string_view, 3> attrs = {"cpu", "at", "period"};
                fail(a,
                    "unknown " + kind + " attribute " + quote(a.text) + suggestion(a.text, attrs)
                        + "; use cpu, at, period");
            }
        }
        if (!have_cpu)
            fail(kw,
                kind + " " + quote(q.name) + " needs 'cpu N' (the CPU it " + (soft ? "runs on" : "is delivered to")
                    + ")");
        s_.irqs.push_back(std::move(q));
        brace b = take_brace("the " + kind + " header", false);
        if (b == brace::open)
            blocks_.push_back({block_kind::irq, &s_.irqs.back().handler, kind + " " + quote(s_.irqs.back().name), line_,
                toks_[next_ - 1].column});
    }

    void task_decl()
    {
        const token& n = take_word("a task name");
        task_spec t;
        t.name = name_of(n, "task");
        t.line = line_;
        if (t.name.size() > task_comm_len)
            fail(n,
                "task name " + quote(t.name) + " is longer than " + std::to_string(task_comm_len)
                    + " characters (the kernel's TASK_COMM_LEN)");
        for (const task_spec& o : s_.tasks)
            if (o.name == t.name)
                fail(n, "duplicate task " + quote(t.name) + " (first declared at line " + std::to_string(o.line) + ")");
        std::vector<std::string> seen;
        bool have_policy = false, have_nice = false;
        const token* nice_tok = nullptr;
        const token* cpu_tok = nullptr;
        while (!at_end() && !peek().is("{")) {
            const token& a = take_word("a task attribute");
            if (a.is("fifo") || a.is("rr") || a.is("other")) {
                if (have_policy)
                    fail(a, "task " + quote(t.name) + " has two policies");
                have_policy = true;
                if (a.is("other")) {
                    t.sched = policy::other;
                } else {
                    t.sched = a.is("fifo") ? policy::fifo : policy::rr;
                    if (at_end() || !all_digits(peek().text))
                        fail(line_, at_end() ? end_column() : peek().column,
                            "policy " + a.text + " needs a priority 1..99 (e.g. '" + a.text + " 50')");
                    t.prio = static_cast<int>(number(take("a priority"), a.text + " priority", 1, 99));
                }
                continue;
            }
            once(seen, a);
            if (a.is("nice")) {
                nice_tok = &a;
                t.nice = static_cast<int>(signed_number(take_word("a nice value"), "nice", -20, 19));
                have_nice = true;
            } else if (a.is("cpu")) {
                cpu_tok = &take_word("a CPU number after 'cpu'");
                t.start_cpu = static_cast<int>(number(*cpu_tok, "cpu", 0, max_cpus - 1));
            } else if (a.is("affinity")) {
                const token& v = take_word("a CPU list after 'affinity'");
                t.affinity = cpu_list(v);
                if (t.affinity != ~std::uint64_t(0))
                    cpus_.push_back({t.affinity, line_, v.column, "affinity " + v.text});
            } else if (a.is("stack")) {
                t.stack_size = size(take_word("a size after 'stack'"), "stack", false);
            } else if (a.is("start")) {
                t.start_ns = duration(take_word("a time after 'start'"), "start", true);
            } else if (a.is("prio") || a.is("priority")) {
                fail(a, "write the priority after the policy: 'fifo 50' or 'rr 50' (or 'nice N' for other)");
            } else {
                static constexpr std::array<std::string_view, 8> attrs
                    = {"fifo", "rr", "other", "nice", "cpu", "affinity", "stack", "start"};
                fail(a,
                    "unknown task attribute " + quote(a.text) + suggestion(a.text, attrs)
                        + "; use fifo N, rr N, other, nice N, cpu N, affinity LIST, stack SIZE, start TIME");
            }
        }
        if (have_nice && t.sched != policy::other)
            fail(line_, nice_tok->column,
                "nice applies to policy other; task " + quote(t.name) + " is " + to_string(t.sched));
        if (cpu_tok) {
            cpus_.push_back({std::uint64_t(1) << t.start_cpu, line_, cpu_tok->column, "cpu " + cpu_tok->text});
            if (!(t.affinity >> t.start_cpu & 1))
                fail(line_, cpu_tok->column,
                    "start cpu " + std::to_string(t.start_cpu) + " is not in the task's affinity ("
                        + format_cpu_list(t.affinity) + ")");
        }
        s_.tasks.push_back(std::move(t));
        brace b = take_brace("the task header", true);
        if (b == brace::open)
            blocks_.push_back({block_kind::task, &s_.tasks.back().steps, "task " + quote(s_.tasks.back().name), line_,
                toks_[next_ - 1].column});
    }

    void close_block(const token& t)
    {
        block b = blocks_.back();
        blocks_.pop_back();
        if (b.kind == block_kind::loop) {
            step s;
            s.kind = op::end_loop;
            s.line = line_;
            s.column = t.column;
            current_steps().push_back(s);
        }
    }

    std::vector<step>& current_steps() { return *blocks_.back().steps; }

    // Where the current block's steps live, for pending references.
    std::pair<bool, std::size_t> owner() const
    {
        for (const block& b : blocks_) {
            if (b.kind == block_kind::irq)
                return {true, s_.irqs.size() - 1};
            if (b.kind == block_kind::task)
                return {false, s_.tasks.size() - 1};
        }
        return {false, 0};
    }

    void step_statement(const token& kw)
    {
        step s;
        s.line = line_;
        s.column = kw.column;
        const std::string& k = kw.text;
        auto lock_step = [&](op o) {
            s.kind = o;
            const token& n = take_word("a lock name after " + quote(k));
            auto [in_irq, idx] = owner();
            refs_.push_back({in_irq, idx, current_steps().size(), n.text, line_, n.column});
            expect_end(quote(k + " " + n.text));
        };
        auto plain = [&](op o) {
            s.kind = o;
            expect_end(quote(k));
        };
        if (k == "lock")
            lock_step(op::lock);
        else if (k == "unlock")
            lock_step(op::unlock);
        else if (k == "trylock")
            lock_step(op::trylock);
        else if (k == "read_lock")
            lock_step(op::lock_read);
        else if (k == "read_unlock")
            lock_step(op::unlock_read);
        else if (k == "lock_irqsave")
            lock_step(op::lock_irqsave);
        else if (k == "unlock_irqrestore")
            lock_step(op::unlock_irqrestore);
        else if (k == "work" || k == "sleep") {
            s.kind = k == "work" ? op::work : op::sleep;
            const token& d = take_word("a duration after " + quote(k));
            s.ns = duration(d, k, false);
            expect_end(quote(k + " " + d.text));
        } else if (k == "preempt_disable")
            plain(op::preempt_disable);
        else if (k == "preempt_enable")
            plain(op::preempt_enable);
        else if (k == "local_irq_disable")
            plain(op::local_irq_disable);
        else if (k == "local_irq_enable")
            plain(op::local_irq_enable);
        else if (k == "local_bh_disable")
            plain(op::local_bh_disable);
        else if (k == "local_bh_enable")
            plain(op::local_bh_enable);
        else if (k == "no_switch_begin")
            plain(op::no_switch_begin);
        else if (k == "no_switch_end")
            plain(op::no_switch_end);
        else if (k == "raise") {
            s.kind = op::raise_irq;
            const token& n = take_word("an irq name after 'raise'");
            auto [in_irq, idx] = owner();
            irq_refs_.push_back({in_irq, idx, current_steps().size(), n.text, line_, n.column});
            if (!at_end()) {
                const token& on = take_word("'on'");
                if (!on.is("on"))
                    fail(on, "unexpected " + quote(on.text) + " after 'raise " + n.text + "' (expected 'on cpuN')");
                const token& c = take_word("a CPU after 'on' (e.g. cpu1)");
                std::string_view num;
                unsigned col = c.column;
                if (c.is("cpu")) {
                    const token& numtok = take_word("a CPU number after 'cpu'");
                    num = numtok.text;
                    col = numtok.column;
                } else if (!c.quoted && c.text.rfind("cpu", 0) == 0) {
                    num = std::string_view(c.text).substr(3);
                    col = c.column + 3;
                } else
                    fail(c, "expected cpuN after 'on', found " + quote(c.text));
                token nt{std::string(num), col, false};
                s.cpu = static_cast<int>(number(nt, "cpu", 0, max_cpus - 1));
                cpus_.push_back({std::uint64_t(1) << s.cpu, line_, col, "cpu" + std::string(num)});
                expect_end("the raise target");
            }
        } else if (k == "recurse") {
            s.kind = op::recurse;
            s.count = static_cast<unsigned>(
                number(take_word("a frame count after 'recurse'"), "recurse frames", 1, 1'000'000));
            if (!at_end())
                s.bytes = size(take_word("a frame size"), "recurse frame size", false);
            expect_end("'recurse'");
        } else if (k == "loop") {
            s.kind = op::loop;
            const token& n = take_word("an iteration count (or forever) after 'loop'");
            s.count = n.is("forever") ? 0 : static_cast<unsigned>(number(n, "loop count", 1, 1'000'000'000));
            current_steps().push_back(s);
            brace b = take_brace("'loop " + n.text + "'", true);
            if (b == brace::open)
                blocks_.push_back({block_kind::loop, blocks_.back().steps, "loop", line_, toks_[next_ - 1].column});
            else {
                step e;
                e.kind = op::end_loop;
                e.line = line_;
                e.column = toks_[next_ - 1].column;
                current_steps().push_back(e);
            }
            return;
        } else if (std::find(setting_words.begin(), setting_words.end(), k) != setting_words.end() && k != "lock") {
            fail(kw, quote(k) + " cannot appear inside " + blocks_.back().what + " (missing '}' before it?)");
        } else {
            fail(kw, "unknown step " + quote(k) + suggestion(k, step_words));
        }
        current_steps().push_back(s);
    }

    // --- cross references, checked once everything is declared ----------------------------
    std::vector<step>& steps_of(const pending_ref& r)
    {
        return r.in_irq ? s_.irqs[r.owner].handler : s_.tasks[r.owner].steps;
    }

    void finish()
    {
        for (const pending_cpu& c : cpus_) {
            std::uint64_t allowed = s_.cpus >= 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << s_.cpus) - 1;
            if (c.mask & ~allowed) {
                unsigned bad = 0;
                while (!((c.mask & ~allowed) >> bad & 1))
                    ++bad;
                fail(c.line, c.column,
                    "CPU " + std::to_string(bad) + " in " + quote(c.what) + " is out of range (the scenario has "
                        + std::to_string(s_.cpus) + (s_.cpus == 1 ? " CPU" : " CPUs") + "; set 'cpus')");
            }
        }
        for (const pending_ref& r : refs_) {
            auto it
                = std::find_if(s_.locks.begin(), s_.locks.end(), [&](const lock_spec& l) { return l.name == r.name; });
            if (it == s_.locks.end()) {
                std::string declared;
                for (const lock_spec& l : s_.locks)
                    declared += (declared.empty() ? "" : ", ") + l.name;
                fail(r.line, r.column,
                    "unknown lock " + quote(r.name)
                        + (declared.empty() ? " (no locks declared)" : " (declared locks: " + declared + ")"));
            }
            step& st = steps_of(r)[r.index];
            st.lock = static_cast<int>(it - s_.locks.begin());
            if ((st.kind == op::lock_read || st.kind == op::unlock_read) && !has_readers(it->type))
                fail(r.line, r.column,
                    std::string(to_string(st.kind)) + " needs an rwlock or rw_semaphore; " + quote(r.name) + " is a "
                        + to_string(it->type));
            if ((st.kind == op::lock_irqsave || st.kind == op::unlock_irqrestore) && !spinning(it->type))
                fail(r.line, r.column,
                    std::string(to_string(st.kind)) + " needs a spinning lock (spinlock, ticket_spinlock, qspinlock, "
                        + "rwlock); " + quote(r.name) + " is a " + to_string(it->type));
        }
        for (const pending_ref& r : irq_refs_) {
            auto it = std::find_if(s_.irqs.begin(), s_.irqs.end(), [&](const irq_spec& q) { return q.name == r.name; });
            if (it == s_.irqs.end()) {
                std::string declared;
                for (const irq_spec& q : s_.irqs)
                    declared += (declared.empty() ? "" : ", ") + q.name;
                fail(r.line, r.column,
                    "unknown irq " + quote(r.name)
                        + (declared.empty() ? " (no irqs declared)" : " (declared irqs: " + declared + ")"));
            }
            steps_of(r)[r.index].irq = static_cast<int>(it - s_.irqs.begin());
        }
        if (s_.tasks.empty())
            fail(line_, 1, "the scenario declares no task (add 'task NAME ... {' with its steps)");
    }

    std::string_view text_;
    std::string_view file_;
    unsigned line_ = 0;
    std::vector<token> toks_;
    std::size_t next_ = 0;
    scenario s_;
    std::vector<block> blocks_;
    std::vector<pending_ref> refs_;
    std::vector<pending_ref> irq_refs_;
    std::vector<pending_cpu> cpus_;
    std::vector<std::pair<std::string, unsigned>> settings_;
};

// The file name without directories and extension: the default scenario name.
std::string stem(std::string_view path)
{
    std::size_t slash = path.find_last_of('/');
    if (slash != std::string_view::npos)
        path.remove_prefix(slash + 1);
    std::size_t dot = path.find_last_of('.');
    if (dot != std::string_view::npos && dot != 0)
        path = path.substr(0, dot);
    return std::string(path);
}

std::string quoted_string(std::string_view s)
{
    std::string r = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            r += '\\';
        r += c == '\n' ? ' ' : c;
    }
    return r + '"';
}

void write_steps(const scenario& s, const std::vector<step>& steps, std::ostream& out, int depth)
{
    auto indent = [&] { out << std::string(static_cast<std::size_t>(depth) * 4, ' '); };
    for (const step& st : steps) {
        if (st.kind == op::end_loop) {
            --depth;
            indent();
            out << "}\n";
            continue;
        }
        indent();
        out << to_string(st.kind);
        switch (st.kind) {
        case op::lock:
        case op::unlock:
        case op::trylock:
        case op::lock_read:
        case op::unlock_read:
        case op::lock_irqsave:
        case op::unlock_irqrestore:
            out << ' '
                << (st.lock >= 0 && static_cast<std::size_t>(st.lock) < s.locks.size() ? s.locks[st.lock].name : "?");
            break;
        case op::work:
        case op::sleep:
            out << ' ' << format_duration(st.ns);
            break;
        case op::raise_irq:
            out << ' ' << (st.irq >= 0 && static_cast<std::size_t>(st.irq) < s.irqs.size() ? s.irqs[st.irq].name : "?");
            if (st.cpu >= 0)
                out << " on cpu" << st.cpu;
            break;
        case op::recurse:
            out << ' ' << st.count;
            if (st.bytes != 0)
                out << ' ' << format_size(st.bytes);
            break;
        case op::loop:
            if (st.count == 0)
                out << " forever";
            else
                out << ' ' << st.count;
            out << " {";
            ++depth;
            break;
        default:
            break;
        }
        out << '\n';
    }
}

} // namespace

std::optional<scenario> parse_scenario(std::string_view text, std::string_view file_name, parse_error& err)
{
    try {
        parser p(text, file_name);
        scenario s = p.run();
        if (s.name.empty())
            s.name = stem(file_name);
        s.file = std::string(file_name);
        return s;
    } catch (const failure& f) {
        err = parse_error{std::string(file_name), f.line, f.column, f.message};
        return std::nullopt;
    }
}

std::optional<scenario> load_scenario_file(const std::string& path, parse_error& err)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int e = errno;
        err = parse_error{path, 0, 0, std::string("cannot open the file: ") + std::strerror(e)};
        return std::nullopt;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_scenario(ss.str(), path, err);
}

void write_scenario(const scenario& s, std::ostream& out)
{
    const scenario d;
    if (!s.name.empty())
        out << "name " << s.name << '\n';
    if (!s.description.empty())
        out << "description " << quoted_string(s.description) << '\n';
    out << "cpus " << s.cpus << '\n';
    if (s.tick_ns != d.tick_ns)
        out << "tick " << (s.tick_ns == 0 ? std::string("off") : format_duration(s.tick_ns)) << '\n';
    if (s.time_limit_ns != d.time_limit_ns)
        out << "time_limit " << format_duration(s.time_limit_ns) << '\n';
    if (s.soft_lockup_ns != d.soft_lockup_ns)
        out << "soft_lockup " << format_duration(s.soft_lockup_ns) << '\n';
    if (s.rr_timeslice_ns != d.rr_timeslice_ns)
        out << "rr_timeslice " << format_duration(s.rr_timeslice_ns) << '\n';
    if (s.seed != d.seed)
        out << "seed " << s.seed << '\n';
    if (s.irq_stacks != d.irq_stacks)
        out << "irq_stacks " << (s.irq_stacks == irq_stack_mode::task_stack ? "task" : "percpu") << '\n';
    if (s.irq_stack_size != d.irq_stack_size)
        out << "irq_stack_size " << format_size(s.irq_stack_size) << '\n';
    if (!s.expect.empty()) {
        out << "expect";
        for (std::string e : s.expect) {
            std::replace(e.begin(), e.end(), ' ', '_');
            out << ' ' << e;
        }
        out << '\n';
    }
    if (s.trace_lock_words)
        out << "trace_lock_words\n";
    if (!s.locks.empty())
        out << '\n';
    for (const lock_spec& l : s.locks)
        out << "lock " << l.name << ' ' << to_string(l.type) << '\n';
    for (const irq_spec& q : s.irqs) {
        out << '\n' << (q.softirq ? "softirq " : "irq ") << q.name << " cpu " << q.cpu;
        if (q.at_ns != 0)
            out << " at " << format_duration(q.at_ns);
        if (q.period_ns != 0)
            out << " period " << format_duration(q.period_ns);
        if (q.handler.empty()) {
            out << '\n';
            continue;
        }
        out << " {\n";
        write_steps(s, q.handler, out, 1);
        out << "}\n";
    }
    const task_spec dt;
    for (const task_spec& t : s.tasks) {
        out << "\ntask " << t.name << ' ' << to_string(t.sched);
        if (t.sched != policy::other)
            out << ' ' << t.prio;
        else if (t.nice != 0)
            out << " nice " << t.nice;
        if (t.affinity != dt.affinity)
            out << " affinity " << format_cpu_list(t.affinity);
        if (t.start_cpu >= 0)
            out << " cpu " << t.start_cpu;
        if (t.stack_size != dt.stack_size)
            out << " stack " << format_size(t.stack_size);
        if (t.start_ns != 0)
            out << " start " << format_duration(t.start_ns);
        if (t.steps.empty()) {
            out << " { }\n";
            continue;
        }
        out << " {\n";
        write_steps(s, t.steps, out, 1);
        out << "}\n";
    }
}

} // namespace klock::sim
