// Transmission over a socket pair: every command, errors as the client sees them,
// structured replies, pipelining and out-of-order replies, back-pressure, violations.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include "nbd_test_server.h"

namespace nbd_test {
namespace {

using Op = fleece_test::MemoryNode::Op;
using Transmission = NbdServerFixture;

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 7));
  return v;
}

// Reassembles a structured READ reply; checks chunks stay inside the request and do not
// overlap. Returns the data (holes as zeroes) or the error.
struct ReadResult {
  uint32_t error = 0;
  std::vector<std::byte> data;
  int data_chunks = 0;
  int hole_chunks = 0;
};
ReadResult collect_read(const std::vector<Reply>& chunks, uint64_t off, uint32_t len) {
  ReadResult r;
  r.data.assign(len, std::byte{0x7f});
  std::vector<bool> seen(len, false);
  auto cover = [&](uint64_t at, uint64_t n) {
    EXPECT_GE(at, off);
    EXPECT_LE(at + n, off + len);
    for (uint64_t i = at - off; i < at - off + n; ++i) {
      EXPECT_FALSE(seen[i]) << "overlapping chunks at " << i;
      seen[i] = true;
    }
  };
  for (const Reply& c : chunks) {
    EXPECT_TRUE(c.structured);
    if (c.type == kReplyTypeOffsetData) {
      const uint64_t at = load_be64(c.payload.data());
      cover(at, c.payload.size() - 8);
      std::copy(c.payload.begin() + 8, c.payload.end(), r.data.begin() + (at - off));
      ++r.data_chunks;
    } else if (c.type == kReplyTypeOffsetHole) {
      EXPECT_EQ(c.payload.size(), 12u);
      const uint64_t at = load_be64(c.payload.data());
      const uint32_t n = load_be32(c.payload.data() + 8);
      EXPECT_GT(n, 0u);
      cover(at, n);
      std::fill_n(r.data.begin() + (at - off), n, std::byte{0});
      ++r.hole_chunks;
    } else if (c.type == kReplyTypeError) {
      r.error = c.chunk_error();
    } else if (c.type != kReplyTypeNone) {
      ADD_FAILURE() << "unexpected chunk type " << c.type;
    }
  }
  if (!r.error) {
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }));
  }
  return r;
}

TEST_F(Transmission, SimpleWriteThenRead) {
  auto c = connect();
  c->negotiate("disk", false);
  auto data = pattern(8192, 3);
  ASSERT_TRUE(c->send_request(kCmdWrite, 0, 1, 4096, 8192, data));
  Reply w = c->read_reply();
  EXPECT_FALSE(w.structured);
  EXPECT_EQ(w.cookie, 1u);
  EXPECT_EQ(w.error, 0u);
  EXPECT_EQ(node_->contents(4096, 8192), data);
  c->send_request(kCmdRead, 0, 2, 4096, 8192);
  Reply r = c->read_reply(8192);
  EXPECT_EQ(r.cookie, 2u);
  EXPECT_EQ(r.payload, data);
}

TEST_F(Transmission, StructuredSmallReadIsOneDataChunk) {
  node_->fill(0, 4096, std::byte{9});
  auto c = connect();
  c->negotiate("disk", true);
  c->send_request(kCmdRead, 0, 5, 0, 4096);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeOffsetData);
  EXPECT_TRUE(chunks[0].flags & kReplyFlagDone);
  EXPECT_EQ(chunks[0].cookie, 5u);
  auto rr = collect_read(chunks, 0, 4096);
  EXPECT_EQ(rr.data, std::vector<std::byte>(4096, std::byte{9}));
}

TEST_F(Transmission, StructuredLargeReadSendsHoles) {
  node_->fill(0, 4096, std::byte{1});
  node_->fill(65536, 8192, std::byte{2});
  auto c = connect();
  c->negotiate("disk", true);
  c->send_request(kCmdRead, 0, 6, 0, 128 * 1024);
  auto chunks = c->read_chunks();
  auto rr = collect_read(chunks, 0, 128 * 1024);
  EXPECT_EQ(rr.error, 0u);
  EXPECT_EQ(rr.data, node_->contents(0, 128 * 1024));
  EXPECT_GE(rr.hole_chunks, 2);
  EXPECT_EQ(rr.data_chunks, 2);
  // DF: exactly one content chunk, holes written out as zeroes.
  c->send_request(kCmdRead, kCmdFlagDf, 7, 0, 128 * 1024);
  chunks = c->read_chunks();
  rr = collect_read(chunks, 0, 128 * 1024);
  EXPECT_EQ(rr.data_chunks, 1);
  EXPECT_EQ(rr.hole_chunks, 0);
  EXPECT_EQ(rr.data, node_->contents(0, 128 * 1024));
}

TEST_F(Transmission, ZeroLengthRead) {
  auto c = connect();
  c->negotiate("disk", true);
  c->send_request(kCmdRead, 0, 1, 0, 0);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeNone);
  EXPECT_TRUE(chunks[0].done());
}

TEST_F(Transmission, OutOfRangeRequests) {
  auto c = connect();
  c->negotiate("disk", false);
  struct Case {
    uint16_t type;
    uint64_t off;
    uint32_t len;
    uint32_t err;
  } cases[] = {{kCmdRead, kSize, 1, kNbdEinval},           {kCmdRead, kSize - 1, 2, kNbdEinval},
               {kCmdWrite, kSize - 512, 1024, kNbdEnospc}, {kCmdTrim, kSize, 4096, kNbdEinval},
               {kCmdWriteZeroes, kSize, 1, kNbdEnospc},    {kCmdCache, kSize + 4096, 1, kNbdEinval},
               {kCmdRead, UINT64_MAX, 1, kNbdEinval}};
  uint64_t cookie = 100;
  for (const Case& k : cases) {
    std::vector<std::byte> payload(k.type == kCmdWrite ? k.len : 0);
    c->send_request(k.type, 0, ++cookie, k.off, k.len, payload);
    Reply r = c->read_reply();
    EXPECT_EQ(r.cookie, cookie);
    EXPECT_EQ(r.error, k.err) << command_name(k.type) << " at " << k.off;
  }
  // The connection is still fine.
  c->send_request(kCmdRead, 0, 1, 0, 512);
  EXPECT_EQ(c->read_reply(512).error, 0u);
  EXPECT_EQ(node_->count(Op::kWrite), 0u);
}

TEST_F(Transmission, StructuredErrorsAreErrorChunks) {
  auto c = connect();
  c->negotiate("disk", true);
  c->send_request(kCmdRead, 0, 1, kSize, 4096);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeError);
  EXPECT_TRUE(chunks[0].done());
  EXPECT_EQ(chunks[0].chunk_error(), kNbdEinval);
  EXPECT_FALSE(chunks[0].chunk_message().empty());
  c->send_request(kCmdWrite, 0, 2, kSize, 4, pattern(4, 0));
  chunks = c->read_chunks();
  EXPECT_EQ(chunks[0].chunk_error(), kNbdEnospc);
}

TEST_F(Transmission, UnknownCommandsAndFlags) {
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(42, 0, 1, 0, 0);
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdResize, 0, 2, 0, 0);
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdRead, 0x40, 3, 0, 512);
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdRead, kCmdFlagDf, 4, 0, 512);  // DF needs structured replies
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdWrite, kCmdFlagNoHole, 5, 0, 512, pattern(512, 1));
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdBlockStatus, 0, 6, 0, 512);  // no structured replies, no contexts
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  EXPECT_EQ(node_->count(Op::kWrite), 0u);
  c->send_request(kCmdFlush, 0, 7, 0, 0);
  EXPECT_EQ(c->read_reply().error, 0u);
}

TEST_F(Transmission, ReadOnlyExportRefusesWritesAndSkipsTheirPayload) {
  auto ro = fleece_test::MemoryNode::create(65536);
  add_export("ro", ro, false);
  auto c = connect();
  c->negotiate("ro", false);
  c->send_request(kCmdWrite, 0, 1, 0, 4096, pattern(4096, 1));
  EXPECT_EQ(c->read_reply().error, kNbdEperm);
  c->send_request(kCmdTrim, 0, 2, 0, 4096);
  EXPECT_EQ(c->read_reply().error, kNbdEperm);
  c->send_request(kCmdWriteZeroes, 0, 3, 0, 4096);
  EXPECT_EQ(c->read_reply().error, kNbdEperm);
  c->send_request(kCmdRead, 0, 4, 0, 16);
  EXPECT_EQ(c->read_reply(16).error, 0u);
  EXPECT_EQ(ro->count(Op::kWrite) + ro->count(Op::kDiscard) + ro->count(Op::kWriteZeroes), 0u);
}

TEST_F(Transmission, FuaIsNativeOrEmulated) {
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdWrite, kCmdFlagFua, 1, 0, 512, pattern(512, 1));
  EXPECT_EQ(c->read_reply().error, 0u);
  auto calls = node_->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(blockcore::has_flag(calls[0].flags, blockcore::IoFlags::kFua));

  auto info = fleece_test::MemoryNode::default_info(65536);
  info.can_fua = false;
  auto slow = std::make_shared<fleece_test::MemoryNode>("slow", info);
  add_export("nofua", slow, true);
  auto c2 = connect();
  c2->negotiate("nofua", false);
  c2->send_request(kCmdWrite, kCmdFlagFua, 1, 0, 512, pattern(512, 1));
  EXPECT_EQ(c2->read_reply().error, 0u);
  calls = slow->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].op, Op::kWrite);
  EXPECT_FALSE(blockcore::has_flag(calls[0].flags, blockcore::IoFlags::kFua));
  EXPECT_EQ(calls[1].op, Op::kFlush);
}

TEST_F(Transmission, WriteZeroesFlags) {
  auto c = connect();
  c->negotiate("disk", false);
  node_->fill(0, 65536, std::byte{1});
  c->send_request(kCmdWriteZeroes, 0, 1, 0, 8192);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdWriteZeroes, kCmdFlagNoHole, 2, 8192, 8192);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdWriteZeroes, kCmdFlagFastZero, 3, 16384, 8192);
  EXPECT_EQ(c->read_reply().error, 0u);
  auto calls = node_->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_TRUE(blockcore::has_flag(calls[0].flags, blockcore::IoFlags::kMayTrim));
  EXPECT_FALSE(blockcore::has_flag(calls[1].flags, blockcore::IoFlags::kMayTrim));
  EXPECT_TRUE(blockcore::has_flag(calls[2].flags, blockcore::IoFlags::kFastZero));
  EXPECT_FALSE(node_->allocated(0));
  EXPECT_TRUE(node_->allocated(8192));
  EXPECT_EQ(node_->contents(0, 24576), std::vector<std::byte>(24576, std::byte{0}));

  // FAST_ZERO on a node that cannot zero quickly: ENOTSUP, and nothing written.
  auto info = fleece_test::MemoryNode::default_info(65536);
  info.can_fast_zero = false;
  auto slow = std::make_shared<fleece_test::MemoryNode>("slow", info);
  add_export("slowzero", slow, true);
  auto c2 = connect();
  c2->negotiate("slowzero", true);
  c2->send_request(kCmdWriteZeroes, kCmdFlagFastZero, 4, 0, 4096);
  auto chunks = c2->read_chunks();
  EXPECT_EQ(chunks[0].chunk_error(), kNbdEnotsup);
  EXPECT_EQ(slow->count(Op::kWriteZeroes), 0u);
}

TEST_F(Transmission, TrimFlushCache) {
  node_->fill(0, 65536, std::byte{1});
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdTrim, 0, 1, 0, 8192);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdFlush, 0, 2, 0, 0);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdCache, 0, 3, 0, 65536);
  EXPECT_EQ(c->read_reply().error, 0u);
  EXPECT_FALSE(node_->allocated(0));
  EXPECT_EQ(node_->count(Op::kDiscard), 1u);
  EXPECT_EQ(node_->count(Op::kFlush), 1u);
  EXPECT_EQ(node_->count(Op::kCache), 1u);
}

TEST_F(Transmission, NodeErrorsAreMapped) {
  node_->set_fail_hook([](Op op, uint64_t off, uint64_t) {
    if (op == Op::kRead && off == 0) return EIO;
    if (op == Op::kWrite) return ENOSPC;
    if (op == Op::kFlush) return EACCES;
    return 0;
  });
  auto c = connect();
  c->negotiate("disk", true);
  c->send_request(kCmdRead, 0, 1, 0, 4096);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeError);
  EXPECT_EQ(chunks[0].chunk_error(), kNbdEio);
  c->send_request(kCmdWrite, 0, 2, 0, 16, pattern(16, 0));
  EXPECT_EQ(c->read_chunks()[0].chunk_error(), kNbdEnospc);
  c->send_request(kCmdFlush, 0, 3, 0, 0);
  EXPECT_EQ(c->read_chunks()[0].chunk_error(), kNbdEinval);
}

TEST_F(Transmission, BlockStatus) {
  node_->fill(4096, 4096, std::byte{1});
  auto c = connect();
  GoResult g = c->negotiate("disk", true, {"base:allocation"});
  ASSERT_EQ(g.contexts.size(), 1u);
  const uint32_t id = g.contexts[0].first;

  c->send_request(kCmdBlockStatus, 0, 1, 0, 65536);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeBlockStatus);
  EXPECT_TRUE(chunks[0].done());
  const auto& p = chunks[0].payload;
  ASSERT_EQ(p.size(), 4u + 3 * 8);
  EXPECT_EQ(load_be32(p.data()), id);
  EXPECT_EQ(load_be32(p.data() + 4), 4096u);
  EXPECT_EQ(load_be32(p.data() + 8), kStateHole | kStateZero);
  EXPECT_EQ(load_be32(p.data() + 12), 4096u);
  EXPECT_EQ(load_be32(p.data() + 16), 0u);
  EXPECT_EQ(load_be32(p.data() + 20), 65536u - 8192);

  // REQ_ONE: exactly one extent, never longer than the request.
  c->send_request(kCmdBlockStatus, kCmdFlagReqOne, 2, 0, 1000);
  chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_EQ(chunks[0].payload.size(), 12u);
  EXPECT_EQ(load_be32(chunks[0].payload.data() + 4), 1000u);
  EXPECT_EQ(load_be32(chunks[0].payload.data() + 8), kStateHole | kStateZero);

  // Past the end.
  c->send_request(kCmdBlockStatus, 0, 3, kSize, 1);
  EXPECT_EQ(c->read_chunks()[0].chunk_error(), kNbdEinval);
}

TEST_F(Transmission, PipelinedRequestsAreAnsweredOutOfOrder) {
  node_->set_delay_hook([](Op op, uint64_t off, uint64_t) {
    return op == Op::kRead && off == 0 ? std::chrono::milliseconds(300)
                                       : std::chrono::milliseconds(0);
  });
  node_->fill(0, 8192, std::byte{5});
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdRead, 0, 1, 0, 4096);     // slow
  c->send_request(kCmdRead, 0, 2, 4096, 4096);  // fast
  c->send_request(kCmdFlush, 0, 3, 0, 0);       // fast
  std::map<uint64_t, uint32_t> lens{{1, 4096}, {2, 4096}, {3, 0}};
  std::vector<uint64_t> order;
  for (int i = 0; i < 3; ++i) {
    // Simple replies carry no length: peek the cookie first.
    auto h = c->recv(16);
    const uint64_t cookie = load_be64(h.data() + 8);
    EXPECT_EQ(load_be32(h.data() + 4), 0u);
    auto data = c->recv(lens.at(cookie));
    if (cookie != 3) {
      EXPECT_EQ(data, std::vector<std::byte>(4096, std::byte{5}));
    }
    order.push_back(cookie);
  }
  EXPECT_EQ(order.back(), 1u);
}

TEST_F(Transmission, BackPressureBoundsRequestsInFlight) {
  server::nbd::NbdServerOptions opts;
  opts.max_in_flight = 2;
  start_server(opts);
  std::atomic<uint64_t> max_seen{0};
  node_->set_delay_hook([&](Op, uint64_t, uint64_t) {
    uint64_t n = node_->in_flight();
    uint64_t m = max_seen.load();
    while (n > m && !max_seen.compare_exchange_weak(m, n)) {
    }
    return std::chrono::milliseconds(20);
  });
  auto c = connect();
  c->negotiate("disk", true);
  constexpr int kRequests = 12;
  for (int i = 0; i < kRequests; ++i) c->send_request(kCmdRead, 0, i, i * 4096, 4096);
  std::vector<bool> got(kRequests, false);
  for (int i = 0; i < kRequests; ++i) {
    auto chunks = c->read_chunks();
    ASSERT_EQ(chunks.back().type, kReplyTypeOffsetData);
    got[chunks.back().cookie] = true;
  }
  EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](bool b) { return b; }));
  EXPECT_LE(max_seen.load(), 2u);
  EXPECT_GE(max_seen.load(), 1u);
}

TEST_F(Transmission, ManyPipelinedWritesAndReads) {
  auto c = connect();
  c->negotiate("disk", true);
  constexpr int kN = 64;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(c->send_request(kCmdWrite, 0, i, i * 8192, 8192, pattern(8192, i)));
  }
  for (int i = 0; i < kN; ++i) EXPECT_EQ(c->read_reply().error, 0u);
  for (int i = 0; i < kN; ++i) c->send_request(kCmdRead, 0, 1000 + i, i * 8192, 8192);
  for (int i = 0; i < kN; ++i) {
    auto chunks = c->read_chunks();
    const int k = static_cast<int>(chunks.back().cookie - 1000);
    auto rr = collect_read(chunks, k * 8192, 8192);
    EXPECT_EQ(rr.data, pattern(8192, k));
  }
}

TEST_F(Transmission, BadMagicEndsOnlyThisConnection) {
  auto c = connect();
  c->negotiate("disk", false);
  auto other = connect();
  other->negotiate("disk", false);
  c->send_request(kCmdRead, 0, 1, 0, 512, {}, 0xdeadbeef);
  EXPECT_TRUE(c->wait_closed());
  other->send_request(kCmdRead, 0, 2, 0, 512);
  EXPECT_EQ(other->read_reply(512).error, 0u);
  EXPECT_NE(closed_line("peer1").find("protocol violation: bad request magic"), std::string::npos);
}

TEST_F(Transmission, OversizedWriteDisconnects) {
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdWrite, 0, 1, 0, kMaxPayload + 1);
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("write payload larger"), std::string::npos);
}

TEST_F(Transmission, OversizedReadIsRefused) {
  node_ = fleece_test::MemoryNode::create(64u << 20, "big");
  add_export("big", node_, false);
  auto c = connect();
  c->negotiate("big", false);
  c->send_request(kCmdRead, 0, 1, 0, kMaxPayload + 1);
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
}

TEST_F(Transmission, DisconnectInTheMiddleOfAWrite) {
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdWrite, 0, 1, 0, 65536, pattern(1000, 1));  // 64 KiB announced, 1000 sent
  c->close();
  ASSERT_TRUE(wait_no_connections());
  EXPECT_EQ(node_->count(Op::kWrite), 0u);
  EXPECT_NE(closed_line("peer1").find("in the middle of a request"), std::string::npos);
  auto c2 = connect();
  c2->negotiate("disk", false);
  c2->send_request(kCmdFlush, 0, 1, 0, 0);
  EXPECT_EQ(c2->read_reply().error, 0u);
}

TEST_F(Transmission, DisconnectWhileRequestsAreInFlight) {
  node_->set_delay_hook([](Op, uint64_t, uint64_t) { return std::chrono::milliseconds(100); });
  auto c = connect();
  c->negotiate("disk", true);
  for (int i = 0; i < 8; ++i) c->send_request(kCmdRead, 0, i, 0, 65536);
  c->close();
  ASSERT_TRUE(wait_no_connections());
}

TEST_F(Transmission, DiscFinishesInFlightRequestsThenCloses) {
  node_->set_delay_hook([](Op op, uint64_t, uint64_t) {
    return op == Op::kRead ? std::chrono::milliseconds(150) : std::chrono::milliseconds(0);
  });
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdRead, 0, 1, 0, 4096);
  c->send_request(kCmdDisc, 0, 2, 0, 0);
  Reply r = c->read_reply(4096);
  EXPECT_EQ(r.cookie, 1u);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  const std::string line = closed_line("peer1");
  EXPECT_NE(line.find("export 'disk'"), std::string::npos) << line;
  EXPECT_NE(line.find("2 requests"), std::string::npos) << line;
  EXPECT_NE(line.find("4096 bytes read"), std::string::npos) << line;
  EXPECT_NE(line.find("NBD_CMD_DISC"), std::string::npos) << line;
}

TEST_F(Transmission, ConnectionLimit) {
  server::nbd::NbdServerOptions opts;
  opts.max_connections = 1;
  start_server(opts);
  auto c1 = connect();
  c1->negotiate("disk", false);
  auto c2 = connect();
  EXPECT_TRUE(c2->wait_closed());
  c1->send_request(kCmdFlush, 0, 1, 0, 0);
  EXPECT_EQ(c1->read_reply().error, 0u);
  bool refused = false;
  for (auto& l : log_lines()) refused |= l.find("connection limit reached") != std::string::npos;
  EXPECT_TRUE(refused);
}

TEST_F(Transmission, RemovingAnExportClosesOnlyItsConnections) {
  add_export("other", fleece_test::MemoryNode::create(65536), true);
  auto c1 = connect();
  c1->negotiate("disk", false);
  auto c2 = connect();
  c2->negotiate("other", false);
  ASSERT_TRUE(exports_.remove("disk").is_ok());
  EXPECT_TRUE(c1->wait_closed());
  c2->send_request(kCmdFlush, 0, 1, 0, 0);
  EXPECT_EQ(c2->read_reply().error, 0u);
  EXPECT_NE(closed_line("peer1").find("export 'disk' removed"), std::string::npos);
  // New clients cannot open it any more.
  auto c3 = connect();
  c3->start();
  c3->send_option(kOptGo, TestClient::info_data("disk", {}));
  EXPECT_EQ(c3->read_option_reply().type, kRepErrUnknown);
}

TEST_F(Transmission, ShutdownLetsInFlightRequestsFinish) {
  node_->set_delay_hook([](Op op, uint64_t, uint64_t) {
    return op == Op::kRead ? std::chrono::milliseconds(200) : std::chrono::milliseconds(0);
  });
  auto c = connect();
  c->negotiate("disk", false);
  auto idle = connect();
  idle->read_greeting();  // still in the handshake
  c->send_request(kCmdRead, 0, 1, 0, 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread stopper([this] { stop_server(); });
  Reply r = c->read_reply(4096);
  EXPECT_EQ(r.cookie, 1u);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(c->wait_closed());
  EXPECT_TRUE(idle->wait_closed());
  stopper.join();
}

TEST_F(Transmission, SeveralIoThreads) {
  server::nbd::NbdServerOptions opts;
  start_server(opts, 2);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto c = connect();
      c->negotiate("disk", true);
      for (int i = 0; i < 32; ++i) {
        c->send_request(kCmdWrite, 0, i, (t * 32 + i) * 4096, 4096, pattern(4096, t + i));
      }
      int good = 0;
      for (int i = 0; i < 32; ++i) good += c->read_reply().error == 0;
      if (good == 32) ++ok;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 4);
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 32; ++i) {
      EXPECT_EQ(node_->contents((t * 32 + i) * 4096, 4096), pattern(4096, t + i));
    }
  }
}

}  // namespace
}  // namespace nbd_test

namespace nbd_test {
namespace {

TEST_F(NbdServerFixture, ShutdownGivesUpAfterTheGracePeriod) {
  // A node call that outlives every deadline: shutdown must still complete.
  node_->set_delay_hook([](Op op, uint64_t, uint64_t) {
    return op == Op::kRead ? std::chrono::milliseconds(60000) : std::chrono::milliseconds(0);
  });
  auto c = connect();
  c->negotiate("disk", false);
  c->send_request(kCmdRead, 0, 1, 0, 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::promise<void> done;
  const auto t0 = std::chrono::steady_clock::now();
  asio::co_spawn(io_, server_->shutdown(std::chrono::milliseconds(100)),
                 [&](std::exception_ptr) { done.set_value(); });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(c->wait_closed());
  EXPECT_EQ(server_->connection_count(), 1u);  // still waiting for its node call
  io_.stop();                                  // abandon the stuck call
  for (auto& t : threads_) t.join();
  threads_.clear();
  server_.reset();
}

}  // namespace
}  // namespace nbd_test
