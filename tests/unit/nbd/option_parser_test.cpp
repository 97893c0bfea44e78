// Option payload parsing: INFO/GO and LIST/SET_META_CONTEXT, including malformed data.
#include "server/nbd/option_parser.h"

#include <gtest/gtest.h>

#include "server/nbd/protocol.h"
#include "server/nbd/wire.h"

namespace server::nbd {
namespace {

TEST(OptionParser, InfoRequest) {
  WireWriter w;
  w.u32(4).str("disk").u16(2).u16(kInfoName).u16(kInfoBlockSize);
  InfoRequest r;
  ASSERT_TRUE(parse_info_request(w.view(), r).ok());
  EXPECT_EQ(r.export_name, "disk");
  EXPECT_TRUE(r.wants(kInfoName));
  EXPECT_TRUE(r.wants(kInfoBlockSize));
  EXPECT_FALSE(r.wants(kInfoDescription));
}

TEST(OptionParser, InfoRequestEmptyNameNoInfos) {
  WireWriter w;
  w.u32(0).u16(0);
  InfoRequest r;
  ASSERT_TRUE(parse_info_request(w.view(), r).ok());
  EXPECT_EQ(r.export_name, "");
  EXPECT_TRUE(r.infos.empty());
}

TEST(OptionParser, InfoRequestMalformed) {
  InfoRequest r;
  {
    WireWriter w;  // name length beyond the data
    w.u32(10).str("abc");
    EXPECT_EQ(parse_info_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // missing count
    w.u32(1).str("a");
    EXPECT_EQ(parse_info_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // count says 2, one given
    w.u32(1).str("a").u16(2).u16(1);
    EXPECT_EQ(parse_info_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // trailing garbage
    w.u32(1).str("a").u16(0).u8(0);
    EXPECT_EQ(parse_info_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // name too long
    w.u32(kMaxStringLength + 1).zeroes(kMaxStringLength + 1).u16(0);
    EXPECT_EQ(parse_info_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  EXPECT_EQ(parse_info_request({}, r).reply_type, kRepErrInvalid);
}

TEST(OptionParser, MetaContextRequest) {
  WireWriter w;
  w.u32(4).str("disk").u32(2).u32(5).str("base:").u32(15).str("base:allocation");
  MetaContextRequest r;
  ASSERT_TRUE(parse_meta_context_request(w.view(), r).ok());
  EXPECT_EQ(r.export_name, "disk");
  EXPECT_EQ(r.queries, (std::vector<std::string>{"base:", "base:allocation"}));
}

TEST(OptionParser, MetaContextRequestMalformed) {
  MetaContextRequest r;
  {
    WireWriter w;  // huge query count must not allocate
    w.u32(0).u32(0xffffffffu);
    EXPECT_EQ(parse_meta_context_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // query length past the end
    w.u32(0).u32(1).u32(100).str("base:");
    EXPECT_EQ(parse_meta_context_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // trailing bytes
    w.u32(0).u32(0).u8(1);
    EXPECT_EQ(parse_meta_context_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // query over 4096 bytes
    w.u32(0).u32(1).u32(kMaxStringLength + 1).zeroes(kMaxStringLength + 1);
    EXPECT_EQ(parse_meta_context_request(w.view(), r).reply_type, kRepErrInvalid);
  }
  {
    WireWriter w;  // truncated in the count
    w.u32(0).u16(0);
    EXPECT_EQ(parse_meta_context_request(w.view(), r).reply_type, kRepErrInvalid);
  }
}

}  // namespace
}  // namespace server::nbd
