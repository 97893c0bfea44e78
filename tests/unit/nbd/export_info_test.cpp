// Transmission flags and block size constraints derived from an export.
#include "server/nbd/export_info.h"

#include <gtest/gtest.h>

#include "server/nbd/protocol.h"
#include "testing/memory_node.h"

namespace server::nbd {
namespace {

Export make_export(blockcore::NodeInfo info, bool writable) {
  Export e;
  e.name = "x";
  e.root = std::make_shared<fleece_test::MemoryNode>("n", info);
  e.writable = writable;
  return e;
}

TEST(ExportInfo, WritableExport) {
  Export e = make_export(fleece_test::MemoryNode::default_info(4096), true);
  const uint16_t f = transmission_flags(e, true);
  EXPECT_EQ(f, kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim |
                   kFlagSendWriteZeroes | kFlagSendFastZero | kFlagSendDf | kFlagCanMultiConn |
                   kFlagSendCache);
  // Without structured replies there is no DF.
  EXPECT_EQ(transmission_flags(e, false), f & ~kFlagSendDf);
}

TEST(ExportInfo, ReadOnlyExport) {
  Export e = make_export(fleece_test::MemoryNode::default_info(4096), false);
  const uint16_t f = transmission_flags(e, true);
  EXPECT_TRUE(f & kFlagReadOnly);
  EXPECT_FALSE(f & (kFlagSendTrim | kFlagSendWriteZeroes | kFlagSendFastZero));
  EXPECT_TRUE(export_read_only(e));
  // A writable export over a read-only node is read-only too.
  auto info = fleece_test::MemoryNode::default_info(4096);
  info.read_only = true;
  Export e2 = make_export(info, true);
  EXPECT_TRUE(transmission_flags(e2, false) & kFlagReadOnly);
}

TEST(ExportInfo, NodeCapabilities) {
  auto info = fleece_test::MemoryNode::default_info(4096);
  info.can_trim = false;
  info.can_multi_conn = false;
  info.rotational = true;
  Export e = make_export(info, true);
  const uint16_t f = transmission_flags(e, false);
  EXPECT_FALSE(f & kFlagSendTrim);
  EXPECT_FALSE(f & kFlagCanMultiConn);
  EXPECT_TRUE(f & kFlagRotational);
  EXPECT_TRUE(f & kFlagSendWriteZeroes);
}

TEST(ExportInfo, BlockSizes) {
  auto info = fleece_test::MemoryNode::default_info(4096);
  Export e = make_export(info, true);
  BlockSizeLimits l = block_size_limits(e);
  EXPECT_EQ(l.min, 1u);
  EXPECT_EQ(l.preferred, 4096u);
  EXPECT_EQ(l.max_payload, 32u << 20);

  info.request_alignment = 512;
  info.preferred_alignment = 0;
  l = block_size_limits(make_export(info, true));
  EXPECT_EQ(l.min, 512u);
  EXPECT_EQ(l.preferred, 512u);

  info.request_alignment = 1u << 20;  // larger than the protocol allows: clamped
  l = block_size_limits(make_export(info, true));
  EXPECT_EQ(l.min, 64u << 10);
  EXPECT_GE(l.preferred, l.min);
  EXPECT_EQ(l.max_payload % l.min, 0u);
}

}  // namespace
}  // namespace server::nbd
