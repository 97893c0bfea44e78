// ArgReader: QEMU's argument error messages, nested names, first error wins, unknown
// members rejected.
#include "server/control/arg_reader.h"

#include <gtest/gtest.h>

namespace server::control {
namespace {

using nlohmann::json;

std::string error_of(ArgReader& r) {
  blockcore::Status s = r.finish();
  return s.is_ok() ? std::string("OK") : s.message();
}

TEST(ArgReaderTest, ReadsTypedMembers) {
  json args = {{"node-name", "disk0"}, {"writable", true},      {"offset", 4096},
               {"mode", "hard"},       {"bitmaps", {"a", "b"}}, {"cache", {{"direct", true}}}};
  ArgReader r(args);
  EXPECT_EQ(r.required_string("node-name"), "disk0");
  EXPECT_TRUE(r.optional_bool("writable", false));
  EXPECT_FALSE(r.optional_bool("absent", false));
  EXPECT_EQ(r.optional_uint64("offset"), 4096u);
  EXPECT_EQ(r.optional_enum("mode", {"safe", "hard"}), "hard");
  EXPECT_EQ(r.optional_string_list("bitmaps"), (std::vector<std::string>{"a", "b"}));
  auto cache = r.optional_object("cache");
  ASSERT_TRUE(cache.has_value());
  EXPECT_EQ(cache->optional_bool("direct"), true);
  EXPECT_EQ(error_of(r), "OK");
}

TEST(ArgReaderTest, NullArgumentsAreAnEmptyObject) {
  json args;  // null
  ArgReader r(args);
  EXPECT_FALSE(r.optional_string("x").has_value());
  EXPECT_EQ(error_of(r), "OK");
  ArgReader r2(args);
  r2.required_string("node-name");
  EXPECT_EQ(error_of(r2), "Parameter 'node-name' is missing");
}

TEST(ArgReaderTest, MissingRequiredMember) {
  json args = json::object();
  ArgReader r(args);
  r.required_string("node-name");
  EXPECT_EQ(error_of(r), "Parameter 'node-name' is missing");
}

TEST(ArgReaderTest, WrongTypes) {
  struct Case {
    json args;
    std::string expected;
  };
  const Case cases[] = {
      {{{"writable", "yes"}}, "Invalid parameter type for 'writable', expected: boolean"},
      {{{"writable", nullptr}}, "Invalid parameter type for 'writable', expected: boolean"},
      {{{"node-name", 5}}, "Invalid parameter type for 'node-name', expected: string"},
      {{{"offset", 1.5}}, "Invalid parameter type for 'offset', expected: integer"},
      {{{"offset", "1"}}, "Invalid parameter type for 'offset', expected: integer"},
      {{{"offset", -1}}, "Parameter 'offset' expects uint64"},
      {{{"bitmaps", "a"}}, "Invalid parameter type for 'bitmaps', expected: array"},
      {{{"bitmaps", {"a", 1}}}, "Invalid parameter type for 'bitmaps[1]', expected: string"},
      {{{"cache", true}}, "Invalid parameter type for 'cache', expected: object"},
      {{{"mode", "soft"}}, "Parameter 'mode' does not accept value 'soft'"},
  };
  for (const auto& c : cases) {
    ArgReader r(c.args);
    if (c.args.contains("writable")) (void)r.optional_bool("writable");
    if (c.args.contains("node-name")) (void)r.required_string("node-name");
    if (c.args.contains("offset")) (void)r.optional_uint64("offset");
    if (c.args.contains("bitmaps")) (void)r.optional_string_list("bitmaps");
    if (c.args.contains("cache")) (void)r.optional_object("cache");
    if (c.args.contains("mode")) (void)r.optional_enum("mode", {"safe", "hard"});
    EXPECT_EQ(error_of(r), c.expected) << c.args.dump();
  }
}

TEST(ArgReaderTest, LargestUint64IsAccepted) {
  json args = {{"size", UINT64_MAX}};
  ArgReader r(args);
  EXPECT_EQ(r.optional_uint64("size"), UINT64_MAX);
  EXPECT_EQ(error_of(r), "OK");
}

TEST(ArgReaderTest, UnexpectedMembersAreRejectedAtTopAndNestedLevels) {
  json args = {{"node-name", "x"}, {"bogus", 1}};
  ArgReader r(args);
  r.required_string("node-name");
  EXPECT_EQ(error_of(r), "Parameter 'bogus' is unexpected");

  json nested = {{"cache", {{"direct", true}, {"colour", "red"}}}};
  ArgReader r2(nested);
  auto cache = r2.optional_object("cache");
  ASSERT_TRUE(cache);
  (void)cache->optional_bool("direct");
  EXPECT_EQ(error_of(r2), "Parameter 'cache.colour' is unexpected");
}

TEST(ArgReaderTest, NestedNamesAppearInTypeErrors) {
  json args = {{"file", {{"cache", {{"direct", 1}}}}}};
  ArgReader r(args);
  auto file = r.optional_object("file");
  ASSERT_TRUE(file);
  auto cache = file->optional_object("cache");
  ASSERT_TRUE(cache);
  (void)cache->optional_bool("direct");
  EXPECT_EQ(error_of(r), "Invalid parameter type for 'file.cache.direct', expected: boolean");
}

TEST(ArgReaderTest, FirstErrorWins) {
  json args = {{"a", 1}, {"b", 2}};
  ArgReader r(args);
  (void)r.optional_bool("a");
  (void)r.optional_string("b");
  r.required_string("c");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(error_of(r), "Invalid parameter type for 'a', expected: boolean");
}

TEST(ArgReaderTest, ExplicitFailureKeepsTheFirst) {
  json args = json::object();
  ArgReader r(args);
  r.fail(blockcore::Status::invalid("first"));
  r.fail(blockcore::Status::invalid("second"));
  EXPECT_EQ(error_of(r), "first");
}

}  // namespace
}  // namespace server::control
