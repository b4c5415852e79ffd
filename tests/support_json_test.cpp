// The strict JSON parser of tests/support/json.hpp, which the output tests (lockdep's reports,
// the simulator's trace) rely on to fail on malformed JSON: it must accept every valid text
// they may see, decode strings exactly, and reject each way a writer could go wrong.
#include <gtest/gtest.h>

#include "support/json.hpp"

#include <cmath>
#include <string>

namespace {

using klock::test::json_kind;
using klock::test::json_parser;
using klock::test::json_value;
using klock::test::parse_json;

json_value parsed(const std::string& text)
{
    json_value v;
    json_parser p(text);
    EXPECT_TRUE(p.parse(v)) << "rejected at offset " << p.where() << ": " << text;
    return v;
}

TEST(SupportJson, AcceptsValidJson)
{
    json_value v;
    EXPECT_TRUE(parse_json(R"({"a":[1,2,{"b":"c\n"}],"d":true})", v));
    EXPECT_TRUE(parse_json(R"({"a":[1,-2.5e3,"x\"\\\n\u00e9",true,false,null,{}]})", v));
    for (const char* good : {"0", "-0", "1.5", "-0.25e-2", "1E+9", "12e0", "\"\"", "[]", "{}", "null", " \t\r\n[ ] \n",
             "[[[]]]", R"({"":0})", "\"\\/\"", "1e999"}) {
        EXPECT_TRUE(parse_json(good, v)) << good;
    }
}

TEST(SupportJson, RejectsBrokenJson)
{
    for (const char* bad : {
             "{\"a\":1,}", // trailing commas
             "[1,]",
             "[,1]",
             "{,}",
             "{'a':1}",   // single quotes
             "{a:1}",     // bare keys
             "{\"a\" 1}", // no colon
             "{\"a\":}",
             "{\"a\":1 \"b\":2}", // no comma
             "[1 2]",
             "[01]", // numbers outside JSON's grammar
             "[-]",
             "[1.]",
             "[.5]",
             "[+1]",
             "[1e]",
             "[1e+]",
             "[0x10]",
             "[NaN]",
             "[Infinity]",
             "{\"a\":tru}", // misspelt literals
             "[nul]",
             "[True]",
             "[\"\t\"]", // raw control characters in strings
             "{\"a\":\"line\nbreak\"}",
             "[\"\x01\"]",
             "[\"\\x\"]", // bad escapes
             "[\"\\'\"]",
             "[\"\\u12\"]",
             "[\"\\u12g4\"]",
             "[\"\\ud800\"]", // unpaired surrogates
             "[\"\\udc00\"]",
             "[\"\\ud800\\u0041\"]",
             "[\"abc]", // unterminated
             "[1",
             "{\"a\":1",
             "[1] x", // something after the value
             "{\"a\":1} x",
             "{} {}",
             "// c\n1", // comments
             "[1 /* c */]",
             "\xEF\xBB\xBF{}", // a byte order mark
             "",               // no value at all
             "   ",
         }) {
        json_value v;
        EXPECT_FALSE(parse_json(bad, v)) << "accepted: " << bad;
    }
}

TEST(SupportJson, RejectsMalformedUtf8)
{
    for (const char* bad : {
             "[\"\x80\"]", // a lone continuation byte
             "[\"\xC3\"]", // a truncated sequence
             "[\"\xE2\x82\"]",
             "[\"\xC0\xAF\"]", // overlong forms
             "[\"\xE0\x80\xAF\"]",
             "[\"\xF0\x80\x80\xAF\"]",
             "[\"\xED\xA0\x80\"]",     // an encoded surrogate
             "[\"\xF4\x90\x80\x80\"]", // above U+10FFFF
             "[\"\xFF\"]",
         }) {
        json_value v;
        EXPECT_FALSE(parse_json(bad, v)) << "accepted malformed UTF-8";
    }
    EXPECT_EQ(parsed("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"]").a.at(0).s, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST(SupportJson, DecodesValuesAndEscapes)
{
    const json_value v = parsed(
        R"({"s":"q\" b\\ s\/ \b\f\n\r\t","u":"\u0041\u00e9\u20AC\ud83d\ude00\u0001","n":-2.5e3,"z":0,"t":true,"f":false,"x":null,"a":[1,"two",[]],"o":{"k":"v"}})");
    ASSERT_EQ(v.kind, json_kind::object);
    ASSERT_EQ(v.keys.size(), 9u);
    EXPECT_EQ(v.keys[0], "s");
    EXPECT_EQ(v.keys[8], "o");
    EXPECT_EQ(v.str("s"), "q\" b\\ s/ \b\f\n\r\t");
    EXPECT_EQ(v.str("u"), "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x01"); // decoded to UTF-8
    EXPECT_EQ(v.get("n")->kind, json_kind::number);
    EXPECT_EQ(v.get("n")->n, -2500);
    EXPECT_EQ(v.get("z")->n, 0);
    EXPECT_EQ(v.get("t")->kind, json_kind::boolean);
    EXPECT_TRUE(v.get("t")->b);
    EXPECT_FALSE(v.get("f")->b);
    EXPECT_EQ(v.get("x")->kind, json_kind::null);
    const json_value* a = v.get("a");
    ASSERT_EQ(a->kind, json_kind::array);
    ASSERT_EQ(a->a.size(), 3u);
    EXPECT_EQ(a->a[0].n, 1);
    EXPECT_EQ(a->a[1].s, "two");
    EXPECT_EQ(a->a[2].kind, json_kind::array);
    EXPECT_TRUE(a->a[2].a.empty());
    EXPECT_EQ(v.get("o")->str("k"), "v");
    EXPECT_EQ(v.get("o")->str("nope"), "<missing>");
    EXPECT_EQ(v.str("n"), "<missing>") << "not a string";
    EXPECT_EQ(v.get("nope"), nullptr);
    EXPECT_TRUE(std::isinf(parsed("1e999").n));
}

TEST(SupportJson, WhereIsTheOffsetOfTheError)
{
    json_value v;
    json_parser comma(R"({"a":1,})");
    EXPECT_FALSE(comma.parse(v));
    EXPECT_EQ(comma.where(), 7u); // the '}' where a key should be
    json_parser after("[1] x");
    EXPECT_FALSE(after.parse(v));
    EXPECT_EQ(after.where(), 4u);
    json_parser escape(R"(["ab\q"])");
    EXPECT_FALSE(escape.parse(v));
    EXPECT_EQ(escape.where(), 5u);
}

TEST(SupportJson, DeepNestingIsRejectedNotOverflowed)
{
    const int limit = json_parser::max_depth;
    json_value v;
    EXPECT_TRUE(parse_json(std::string(limit, '[') + std::string(limit, ']'), v));
    EXPECT_FALSE(parse_json(std::string(limit + 1, '[') + std::string(limit + 1, ']'), v));
    EXPECT_FALSE(parse_json(std::string(100000, '['), v));
}

} // namespace
