// Wire format: big-endian helpers, writer/reader bounds, fixed headers.
#include "server/nbd/wire.h"

#include <gtest/gtest.h>

#include <array>

namespace server::nbd {
namespace {

std::vector<uint8_t> u8s(std::span<const std::byte> b) {
  std::vector<uint8_t> out;
  for (auto x : b) out.push_back(std::to_integer<uint8_t>(x));
  return out;
}

TEST(Wire, StoresBigEndian) {
  std::array<std::byte, 8> b{};
  store_be16(b.data(), 0x1234);
  EXPECT_EQ(u8s(std::span(b).first(2)), (std::vector<uint8_t>{0x12, 0x34}));
  store_be32(b.data(), 0x89abcdef);
  EXPECT_EQ(u8s(std::span(b).first(4)), (std::vector<uint8_t>{0x89, 0xab, 0xcd, 0xef}));
  store_be64(b.data(), 0x0102030405060708ull);
  EXPECT_EQ(u8s(b), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(load_be64(b.data()), 0x0102030405060708ull);
  EXPECT_EQ(load_be32(b.data() + 4), 0x05060708u);
  EXPECT_EQ(load_be16(b.data() + 6), 0x0708u);
}

TEST(Wire, WriterAppendsFields) {
  WireWriter w;
  w.u8(0xff).u16(2).u32(3).u64(4).str("ab").zeroes(2);
  EXPECT_EQ(w.size(), 1u + 2 + 4 + 8 + 2 + 2);
  EXPECT_EQ(u8s(w.view()),
            (std::vector<uint8_t>{0xff, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 'a', 'b', 0, 0}));
  w.patch_u32(3, 0xdeadbeef);
  EXPECT_EQ(load_be32(w.view().data() + 3), 0xdeadbeefu);
}

TEST(Wire, WriterAppendsToBorrowedVector) {
  std::vector<std::byte> out{std::byte{7}};
  WireWriter w(out);
  w.u16(0x0102);
  EXPECT_EQ(u8s(out), (std::vector<uint8_t>{7, 1, 2}));
}

TEST(Wire, ReaderFailsPastEndAndStaysFailed) {
  std::array<std::byte, 5> b{std::byte{0}, std::byte{1}, std::byte{0}, std::byte{0}, std::byte{9}};
  WireReader r(b);
  EXPECT_EQ(r.u16(), 1);
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(r.u32(), 0u);  // only 3 bytes left
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.u16(), 0);
  EXPECT_FALSE(r.done());
}

TEST(Wire, ReaderDoneOnlyWhenAllConsumed) {
  std::array<std::byte, 4> b{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}, std::byte{'d'}};
  WireReader r(b);
  EXPECT_EQ(r.str(3), "abc");
  EXPECT_FALSE(r.done());
  EXPECT_EQ(r.bytes(1).size(), 1u);
  EXPECT_TRUE(r.done());
  EXPECT_TRUE(r.str(1).empty());
  EXPECT_TRUE(r.failed());
}

TEST(Wire, RequestHeaderRoundTrip) {
  std::array<std::byte, kRequestHeaderSize> b{};
  RequestHeader h{kRequestMagic,         kCmdFlagFua | kCmdFlagDf, kCmdWrite,
                  0x1122334455667788ull, 0xfffffffffffff000ull,    0x80000001u};
  encode_request_header(b.data(), h);
  EXPECT_EQ(u8s(std::span(b).first(8)),
            (std::vector<uint8_t>{0x25, 0x60, 0x95, 0x13, 0x00, 0x05, 0x00, 0x01}));
  RequestHeader d = decode_request_header(b.data());
  EXPECT_EQ(d.magic, h.magic);
  EXPECT_EQ(d.flags, h.flags);
  EXPECT_EQ(d.type, h.type);
  EXPECT_EQ(d.cookie, h.cookie);
  EXPECT_EQ(d.offset, h.offset);
  EXPECT_EQ(d.length, h.length);
}

TEST(Wire, SimpleReplyLayout) {
  std::array<std::byte, kSimpleReplySize> b{};
  encode_simple_reply(b.data(), kNbdEinval, 0x0102030405060708ull);
  EXPECT_EQ(u8s(b),
            (std::vector<uint8_t>{0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(Wire, ChunkHeaderLayout) {
  std::array<std::byte, kChunkHeaderSize> b{};
  encode_chunk_header(b.data(), kReplyFlagDone, kReplyTypeError, 42, 0x10);
  EXPECT_EQ(u8s(b), (std::vector<uint8_t>{0x66, 0x8e, 0x33, 0xef, 0, 1,  0x80, 1, 0, 0,
                                          0,    0,    0,    0,    0, 42, 0,    0, 0, 0x10}));
}

TEST(Wire, OptionReplyLayout) {
  WireWriter w;
  append_option_reply(w, kOptGo, kRepErrUnknown, std::string_view("no"));
  EXPECT_EQ(u8s(w.view()),
            (std::vector<uint8_t>{0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0, 0,   0,
                                  7,    0x80, 0,    0,    6,    0,    0,    0,    2, 'n', 'o'}));
}

TEST(Wire, Names) {
  EXPECT_STREQ(command_name(kCmdBlockStatus), "BLOCK_STATUS");
  EXPECT_STREQ(command_name(999), "unknown");
  EXPECT_STREQ(option_name(kOptSetMetaContext), "NBD_OPT_SET_META_CONTEXT");
}

}  // namespace
}  // namespace server::nbd
