// PSK key files (identity:hexkey, as QEMU and nbdkit read them): good files, and each
// bad line reported with its number.
#include "config/psk_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace config {
namespace {

TEST(PskFile, ParsesIdentitiesAndKeys) {
  PskFile f = parse_psk_text("backup1:0123456789ABCDEFabcdef\n\nbackup2:00ff\r\n");
  ASSERT_TRUE(f.ok()) << f.error;
  ASSERT_EQ(f.entries.size(), 2u);
  EXPECT_EQ(f.entries[0].identity, "backup1");
  EXPECT_EQ(f.entries[0].key, (std::vector<uint8_t>{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
                                                    0xef, 0xab, 0xcd, 0xef}));
  ASSERT_NE(f.find("backup2"), nullptr);
  EXPECT_EQ(f.find("backup2")->key, (std::vector<uint8_t>{0x00, 0xff}));
  EXPECT_EQ(f.find("backup3"), nullptr);
  // No trailing newline; an identity may itself contain a colon (the key follows the last).
  PskFile g = parse_psk_text("a:b:0a0b");
  ASSERT_TRUE(g.ok()) << g.error;
  EXPECT_EQ(g.entries[0].identity, "a:b");
}

struct BadPsk {
  const char* text;
  const char* error;
};

TEST(PskFile, BadLinesAreReportedWithTheirNumber) {
  const BadPsk cases[] = {
      {"ok:00\nnocolon\n", "line 2: expected identity:hexkey"},
      {":00ff\n", "line 1: empty identity"},
      {"id:\n", "line 1: empty key for identity 'id'"},
      {"id:abc\n", "line 1: key has an odd number of hex digits"},
      {"\n\nid:zz\n", "line 3: key is not hexadecimal"},
      {"id:00\nid:11\n", "line 2: identity 'id' appears twice"},
      {"", "no identity:hexkey line"},
      {"\n  \n", "no identity:hexkey line"},
  };
  for (const BadPsk& c : cases) {
    PskFile f = parse_psk_text(c.text);
    EXPECT_FALSE(f.ok()) << c.text;
    EXPECT_EQ(f.error, c.error) << c.text;
    EXPECT_TRUE(f.entries.empty());
  }
  EXPECT_NE(parse_psk_text("id:" + std::string(130, 'a')).error.find("longer than 64"),
            std::string::npos);
}

TEST(PskFile, LoadNamesTheFile) {
  PskFile missing = load_psk_file("/nonexistent/keys.psk");
  EXPECT_EQ(missing.error, "/nonexistent/keys.psk: No such file or directory");
  char path[] = "/tmp/psk_file_testXXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream(path) << "good:0011\nbad line\n";
  }
  PskFile bad = load_psk_file(path);
  EXPECT_EQ(bad.error, std::string(path) + ": line 2: expected identity:hexkey");
  {
    std::ofstream(path) << "good:0011\n";
  }
  EXPECT_TRUE(load_psk_file(path).ok());
  ::unlink(path);
}

}  // namespace
}  // namespace config
