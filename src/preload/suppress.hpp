// Suppression rules for `klock run` reports (shared by the preload library, which applies them,
// and by the klock command, which checks the file before starting the program).
//
// FILE FORMAT: one rule per line.
//   class <glob>       drop a report that names a lock class matching <glob>
//   function <glob>    drop a report with a stack frame (or an "at:" site) in a function matching
//   # ...              a comment; blank lines are ignored
// <glob> is an fnmatch(3) pattern, the rest of the line after the keyword (it may contain spaces:
// demangled C++ names do). Any other line is an error, reported as "file:line: message".
//
// WHAT A REPORT NAMES: the names are read from the report text, so that every report - lockdep's
// and the interposers' misuse reports - is handled alike:
//   classes    "(name){usage}", "lock (name) at:" and " class: name" lines
//   functions  stack lines (" function+0xoff/0xsize", " function+0xoff [module]"), "at: function+0x..."
//              and "[<address>] function+0x..."; the name is the text before "+0x".
#pragma once

#include <cstddef>
#include <fnmatch.h>
#include <string>
#include <string_view>
#include <vector>

namespace klock::preload::suppress {

struct rule {
    bool is_class = false; // else: function
    std::string glob;
};

struct error {
    int line = 0;
    std::string message;
};

inline std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

// Parse the whole file; false (with `err`) at the first malformed line.
inline bool parse(std::string_view text, std::vector<rule>& out, error& err)
{
    int lineno = 0;
    while (!text.empty()) {
        ++lineno;
        const std::size_t nl = text.find('\n');
        std::string_view line = trim(text.substr(0, nl));
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (line.empty() || line.front() == '#')
            continue;
        std::size_t sp = 0;
        while (sp < line.size() && line[sp] != ' ' && line[sp] != '\t')
            ++sp;
        const std::string_view word = line.substr(0, sp);
        const std::string_view glob = trim(line.substr(sp));
        if (word != "class" && word != "function") {
            err = {lineno, "unknown rule '" + std::string(word) + "' (expected 'class <glob>' or 'function <glob>')"};
            return false;
        }
        if (glob.empty()) {
            err = {lineno, "'" + std::string(word) + "' needs a pattern"};
            return false;
        }
        out.push_back({word == "class", std::string(glob)});
    }
    return true;
}

// Class and function names a report mentions.
inline void names(std::string_view text, std::vector<std::string>& classes, std::vector<std::string>& functions)
{
    // "(name){" and "(name) at:": scan back from ')' to its matching '(' (names may hold parentheses).
    for (std::size_t i = 0; i + 1 < text.size(); ++i) {
        if (text[i] != ')')
            continue;
        const bool brace = text[i + 1] == '{';
        const bool at = text.substr(i + 1, 4) == " at:";
        if (!brace && !at)
            continue;
        int depth = 0;
        for (std::size_t j = i; j-- > 0;) {
            if (text[j] == '\n')
                break;
            if (text[j] == ')')
                ++depth;
            else if (text[j] == '(') {
                if (depth == 0) {
                    classes.emplace_back(text.substr(j + 1, i - j - 1));
                    break;
                }
                --depth;
            }
        }
    }
    auto function_at = [&](std::string_view s) {
        const std::size_t plus = s.find("+0x");
        if (plus != std::string_view::npos && plus != 0)
            functions.emplace_back(trim(s.substr(0, plus)));
    };
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (line.rfind(" class: ", 0) == 0) {
            classes.emplace_back(trim(line.substr(8)));
            continue;
        }
        if (const std::size_t at = line.find("at: "); at != std::string_view::npos)
            function_at(line.substr(at + 4));
        else if (const std::size_t br = line.find("] "); br != std::string_view::npos && line.find("[<") < br)
            function_at(line.substr(br + 2));
        else if (!line.empty() && line.front() == ' ' && line.find("lock(") == std::string_view::npos
            && line.find("-->") == std::string_view::npos && line.find("){") == std::string_view::npos)
            function_at(trim(line)); // a stack frame (not a scenario line or a chain of classes)
    }
}

inline bool glob_match(const std::string& glob, const std::string& name)
{
    return ::fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

// Does some rule match a name the report mentions?
inline bool matches(const std::vector<rule>& rules, std::string_view report)
{
    if (rules.empty())
        return false;
    std::vector<std::string> classes, functions;
    names(report, classes, functions);
    for (const rule& r : rules)
        for (const std::string& n : r.is_class ? classes : functions)
            if (glob_match(r.glob, n))
                return true;
    return false;
}

} // namespace klock::preload::suppress
