// JsonStreamSplitter: message boundaries without newlines, strings and escapes, split
// input, QEMU's lexical-error reset, and the size and depth bounds.
#include "server/control/json_stream_splitter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace server::control {
namespace {

using Items = std::vector<JsonStreamSplitter::Item>;

Items feed(JsonStreamSplitter& s, std::string_view data) {
  Items out;
  s.feed(data, out);
  return out;
}

std::vector<std::string> texts(const Items& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back((i.is_error ? "ERR:" : "") + i.text);
  return out;
}

TEST(JsonStreamSplitterTest, ObjectsNeedNoNewline) {
  JsonStreamSplitter s;
  EXPECT_EQ(
      texts(feed(s, R"({"execute":"a"}{"execute":"b"}  {"x":[1,{}]})")),
      (std::vector<std::string>{R"({"execute":"a"})", R"({"execute":"b"})", R"({"x":[1,{}]})"}));
  EXPECT_EQ(s.buffered(), 0u);
}

TEST(JsonStreamSplitterTest, MessagesMaySpanLinesAndFeeds) {
  const std::string msg = "{\"execute\":\n \"query-version\",\r\n \"id\": {\"a\": [1, 2]}}";
  for (size_t cut = 0; cut <= msg.size(); ++cut) {
    JsonStreamSplitter s;
    Items first = feed(s, std::string_view(msg).substr(0, cut));
    Items second = feed(s, std::string_view(msg).substr(cut));
    first.insert(first.end(), second.begin(), second.end());
    ASSERT_EQ(texts(first), std::vector<std::string>{msg}) << "cut at " << cut;
  }
}

TEST(JsonStreamSplitterTest, BracesAndQuotesInsideStringsDoNotCount) {
  JsonStreamSplitter s;
  const std::string msg = R"({"a":"}{][ \" \\","b":"\\"})";
  EXPECT_EQ(texts(feed(s, msg + "\n")), std::vector<std::string>{msg});
}

TEST(JsonStreamSplitterTest, TopLevelScalarsAndStringsAreMessagesToo) {
  JsonStreamSplitter s;
  EXPECT_EQ(texts(feed(s, "42\n\"str\" true{}")),
            (std::vector<std::string>{"42", "\"str\"", "true", "{}"}));
  // A scalar is complete only once something ends it.
  EXPECT_TRUE(feed(s, "123").empty());
  EXPECT_EQ(texts(feed(s, " ")), std::vector<std::string>{"123"});
}

TEST(JsonStreamSplitterTest, UnbalancedButClosedTextIsPassedOnForTheParserToReject) {
  JsonStreamSplitter s;
  EXPECT_EQ(texts(feed(s, "{\"execute\": }\n{]")),
            (std::vector<std::string>{"{\"execute\": }", "{]"}));
}

TEST(JsonStreamSplitterTest, ControlCharacterDropsThePartialMessage) {
  JsonStreamSplitter s;
  Items items = feed(s, "{\"execute\": \"x\", \x01{\"execute\":\"ok\"}");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0].is_error);
  EXPECT_EQ(items[0].text, "JSON parse error, stray '\\x01'");
  EXPECT_EQ(items[1].text, "{\"execute\":\"ok\"}");
}

TEST(JsonStreamSplitterTest, ByteFFAndRawNewlineInStringAreLexicalErrors) {
  JsonStreamSplitter s;
  Items items = feed(s, "{\"a\": \"unterminated\n{\"b\":1}\xff{\"c\":2}");
  ASSERT_EQ(texts(items),
            (std::vector<std::string>{"ERR:JSON parse error, stray '\\x0a'", "{\"b\":1}",
                                      "ERR:JSON parse error, stray '\\xff'", "{\"c\":2}"}));
}

TEST(JsonStreamSplitterTest, OversizedMessageIsReportedOnceAndSkipped) {
  JsonStreamSplitter s(64, 8);
  std::string big = "{\"a\":\"" + std::string(200, 'x') + "\"}";
  Items items = feed(s, big + "{\"ok\":1}");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0].is_error);
  EXPECT_EQ(items[0].text, "JSON parse error, message longer than 64 bytes");
  EXPECT_EQ(items[1].text, "{\"ok\":1}");
  EXPECT_LE(s.buffered(), 64u);
}

TEST(JsonStreamSplitterTest, BufferNeverGrowsPastTheBound) {
  JsonStreamSplitter s(64, 8);
  Items items;
  for (int i = 0; i < 1000; ++i) {
    s.feed("{\"a\":[1,2,3,4,5,6,7,8,9]", items);  // never closed
    ASSERT_LE(s.buffered(), 64u);
  }
  EXPECT_EQ(items.size(), 1u);  // one report for the whole oversized message
}

TEST(JsonStreamSplitterTest, DeepNestingIsReportedAndSkipped) {
  JsonStreamSplitter s(1 << 20, 8);
  std::string deep = std::string(20, '[') + std::string(20, ']');
  Items items = feed(s, deep + "{\"ok\":1}");
  ASSERT_EQ(texts(items), (std::vector<std::string>{
                              "ERR:JSON parse error, nesting deeper than 8 levels", "{\"ok\":1}"}));
  // Exactly at the limit is fine.
  std::string ok = std::string(8, '[') + std::string(8, ']');
  EXPECT_EQ(texts(feed(s, ok)), std::vector<std::string>{ok});
}

}  // namespace
}  // namespace server::control
