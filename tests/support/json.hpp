// A strict JSON (RFC 8259) parser for tests that check what the JSON writers produce: a test
// that parses a writer's output with it fails on anything a conforming consumer could choke on,
// not only on what the test happens to look at. Strict means: exactly one value and nothing
// after it but white space; no trailing commas, comments, single quotes, NaN/Infinity or
// leading zeros; numbers in JSON's grammar only; strings with no raw control characters, only
// the eight short escapes and \uXXXX (surrogates must pair up), and well-formed UTF-8 (no
// overlong forms, no encoded surrogates, nothing above U+10FFFF). Escapes are decoded, \uXXXX
// to UTF-8, so a test can compare a string with what was written. Duplicate keys are kept
// (get() returns the first); nesting deeper than json_parser::max_depth is rejected rather
// than recursing without bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace klock::test {

enum class json_kind { null, boolean, number, string, array, object };

struct json_value {
    json_kind kind = json_kind::null;
    bool b = false;                // boolean
    double n = 0;                  // number
    std::string s;                 // string, escapes decoded
    std::vector<json_value> a;     // array
    std::vector<std::string> keys; // object, in the text's order: keys[i] -> values[i]
    std::vector<json_value> values;

    // The member named `key` of an object, or null when there is none.
    const json_value* get(const std::string& key) const
    {
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (keys[i] == key)
                return &values[i];
        return nullptr;
    }
    // The string member named `key`, or "<missing>" when there is no such string (so that an
    // EXPECT_EQ on it reports what is wrong instead of dereferencing null).
    std::string str(const std::string& key) const
    {
        const json_value* v = get(key);
        return v != nullptr && v->kind == json_kind::string ? v->s : std::string("<missing>");
    }
};

class json_parser {
public:
    static constexpr int max_depth = 512;

    // The text must outlive the parser.
    explicit json_parser(std::string_view text) : t_(text) { }

    // Parses the whole text as one value. On failure `out` holds whatever was read so far and
    // where() is the offset at which the text stopped being JSON.
    bool parse(json_value& out)
    {
        i_ = 0;
        ws();
        if (!value(out, 0))
            return false;
        ws();
        return i_ == t_.size();
    }
    std::size_t where() const { return i_; }

private:
    bool more() const { return i_ < t_.size(); }
    char peek() const { return t_[i_]; }
    bool eat(char c)
    {
        if (!more() || peek() != c)
            return false;
        ++i_;
        return true;
    }
    void ws()
    {
        while (more() && (peek() == ' ' || peek() == '\n' || peek() == '\r' || peek() == '\t'))
            ++i_;
    }
    bool lit(std::string_view w)
    {
        if (t_.substr(i_, w.size()) != w)
            return false;
        i_ += w.size();
        return true;
    }
    static bool digit(char c) { return c >= '0' && c <= '9'; }
    bool digits()
    {
        const std::size_t start = i_;
        while (more() && digit(peek()))
            ++i_;
        return i_ > start;
    }

    bool value(json_value& v, int depth)
    {
        if (!more())
            return false;
        switch (peek()) {
        case '{':
            return depth < max_depth && object(v, depth + 1);
        case '[':
            return depth < max_depth && array(v, depth + 1);
        case '"':
            v.kind = json_kind::string;
            return string(v.s);
        case 't':
            v.kind = json_kind::boolean;
            v.b = true;
            return lit("true");
        case 'f':
            v.kind = json_kind::boolean;
            v.b = false;
            return lit("false");
        case 'n':
            v.kind = json_kind::null;
            return lit("null");
        default:
            return number(v);
        }
    }

    // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    bool number(json_value& v)
    {
        const std::size_t start = i_;
        eat('-');
        if (!eat('0') && !digits())
            return false;
        if (eat('.') && !digits())
            return false;
        if (more() && (peek() == 'e' || peek() == 'E')) {
            ++i_;
            if (!eat('+'))
                eat('-');
            if (!digits())
                return false;
        }
        v.kind = json_kind::number;
        // strtod, not stod: a number too large for a double is valid JSON and becomes +-inf
        // instead of throwing. The grammar is checked above, so strtod reads all of it.
        const std::string text(t_.substr(start, i_ - start));
        v.n = std::strtod(text.c_str(), nullptr);
        return true;
    }

    bool hex4(std::uint32_t& cp)
    {
        if (t_.size() - i_ < 4)
            return false;
        cp = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = t_[i_++];
            cp <<= 4;
            if (digit(c))
                cp |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
                cp |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                cp |= static_cast<std::uint32_t>(c - 'A' + 10);
            else
                return false;
        }
        return true;
    }
    static void put_utf8(std::string& out, std::uint32_t cp)
    {
        auto byte = [&out](std::uint32_t b) { out += static_cast<char>(b); };
        if (cp < 0x80) {
            byte(cp);
        } else if (cp < 0x800) {
            byte(0xC0 | (cp >> 6));
            byte(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            byte(0xE0 | (cp >> 12));
            byte(0x80 | ((cp >> 6) & 0x3F));
            byte(0x80 | (cp & 0x3F));
        } else {
            byte(0xF0 | (cp >> 18));
            byte(0x80 | ((cp >> 12) & 0x3F));
            byte(0x80 | ((cp >> 6) & 0x3F));
            byte(0x80 | (cp & 0x3F));
        }
    }
    // After the 'u' of a \u escape: one code point, a surrogate pair counting as one.
    bool unicode_escape(std::string& out)
    {
        std::uint32_t cp = 0;
        if (!hex4(cp))
            return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return false; // a low surrogate with no high one before it
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t low = 0;
            if (!lit("\\u") || !hex4(low) || low < 0xDC00 || low > 0xDFFF)
                return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        put_utf8(out, cp);
        return true;
    }
    // One raw UTF-8 sequence whose lead byte (>= 0x80) is at i_, copied to out if well formed.
    bool utf8_sequence(std::string& out)
    {
        const auto lead = static_cast<unsigned char>(peek());
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (lead >= 0xC2 && lead <= 0xDF) {
            len = 2;
            cp = lead & 0x1Fu;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            len = 3;
            cp = lead & 0x0Fu;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            len = 4;
            cp = lead & 0x07u;
        } else {
            return false; // a continuation byte, an overlong lead (C0, C1) or F5..FF
        }
        if (t_.size() - i_ < len)
            return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto c = static_cast<unsigned char>(t_[i_ + k]);
            if ((c & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (c & 0x3Fu);
        }
        static constexpr std::uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false; // overlong, an encoded surrogate, or beyond Unicode
        out.append(t_.substr(i_, len));
        i_ += len;
        return true;
    }

    bool string(std::string& out)
    {
        ++i_; // the opening quote
        while (more()) {
            const auto c = static_cast<unsigned char>(peek());
            if (c == '"') {
                ++i_;
                return true;
            }
            if (c < 0x20)
                return false; // control characters must be escaped
            if (c >= 0x80) {
                if (!utf8_sequence(out))
                    return false;
                continue;
            }
            ++i_;
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            if (!more())
                return false;
            switch (t_[i_++]) {
            case '"':
                out += '"';
                break;
            case '\\':
                out += '\\';
                break;
            case '/':
                out += '/';
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u':
                if (!unicode_escape(out))
                    return false;
                break;
            default:
                --i_; // point at the bad escape
                return false;
            }
        }
        return false; // no closing quote
    }

    // The elements of an array or the members of an object, after its opening bracket: each
    // read by `element`, separated by commas, with no comma before `close`.
    template <class Element> bool sequence(char close, Element element)
    {
        ++i_;
        ws();
        if (eat(close))
            return true;
        for (;;) {
            ws();
            if (!element())
                return false;
            ws();
            if (eat(close))
                return true;
            if (!eat(','))
                return false;
        }
    }

    bool array(json_value& v, int depth)
    {
        v.kind = json_kind::array;
        return sequence(']', [&] {
            json_value e;
            if (!value(e, depth))
                return false;
            v.a.push_back(std::move(e));
            return true;
        });
    }

    bool object(json_value& v, int depth)
    {
        v.kind = json_kind::object;
        return sequence('}', [&] {
            std::string key;
            if (!more() || peek() != '"' || !string(key))
                return false;
            ws();
            if (!eat(':'))
                return false;
            ws();
            json_value e;
            if (!value(e, depth))
                return false;
            v.keys.push_back(std::move(key));
            v.values.push_back(std::move(e));
            return true;
        });
    }

    std::string_view t_;
    std::size_t i_ = 0;
};

// The whole text as one JSON value; false if it is not exactly that.
inline bool parse_json(std::string_view text, json_value& out) { return json_parser(text).parse(out); }

} // namespace klock::test
