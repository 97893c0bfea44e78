// Handshake over a socket pair: every option, malformed input, and what the client sees.
#include <gtest/gtest.h>

#include <thread>
#include <unistd.h>

#include "nbd_test_server.h"

namespace nbd_test {
namespace {

using Handshake = NbdServerFixture;

TEST_F(Handshake, GreetingAdvertisesFixedNewstyleAndNoZeroes) {
  auto c = connect();
  EXPECT_EQ(c->read_greeting(), kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST_F(Handshake, UnknownClientFlagsCloseTheConnection) {
  auto c = connect();
  c->read_greeting();
  c->send_client_flags(kClientFlagFixedNewstyle | 0x100);
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("unknown handshake flags"), std::string::npos);
}

TEST_F(Handshake, BadOptionMagicClosesTheConnection) {
  auto c = connect();
  c->start();
  WireWriter w;
  w.u64(0x1122334455667788ull).u32(kOptList).u32(0);
  c->send(w);
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(Handshake, UnknownOptionsAreUnsupportedAndNegotiationContinues) {
  auto c = connect();
  c->start();
  std::vector<std::byte> junk(100, std::byte{0x5a});
  for (uint32_t opt : {uint32_t{99}, kOptExtendedHeaders, kOptPeekExport}) {
    c->send_option(opt, junk);
    OptionReply r = c->read_option_reply();
    EXPECT_EQ(r.option, opt);
    EXPECT_EQ(r.type, kRepErrUnsup);
  }
  c->send_option(kOptList);
  auto replies = c->read_option_replies();
  EXPECT_EQ(replies.back().type, kRepAck);
}

TEST_F(Handshake, ListShowsNamesAndDescriptions) {
  add_export("other", fleece_test::MemoryNode::create(4096), false);
  auto c = connect();
  c->start();
  c->send_option(kOptList);
  auto replies = c->read_option_replies();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].type, kRepServer);
  EXPECT_EQ(load_be32(replies[0].data.data()), 4u);
  EXPECT_EQ(to_string(replies[0].data, 4), "disktest disk");
  EXPECT_EQ(to_string(replies[1].data, 4), "other");
  EXPECT_EQ(replies[2].type, kRepAck);
  // LIST takes no data.
  c->send_option(kOptList, as_bytes("x"));
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
}

TEST_F(Handshake, StartTlsWithoutTlsConfiguredIsRefusedByPolicy) {
  auto c = connect();
  c->start();
  c->send_option(kOptStartTls);
  OptionReply r = c->read_option_reply();
  EXPECT_EQ(r.type, kRepErrPolicy);
  EXPECT_NE(to_string(r.data).find("TLS is not configured"), std::string::npos);
  c->send_option(kOptList);
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);  // still negotiating
}

// The fixture's clients come over a socketpair, so their peer uid is ours.
TEST_F(Handshake, AllowListsAdmitMatchingPeersAndHideExportsFromOthers) {
  for (auto [name, rule] : {std::pair{"mine", "uid:" + std::to_string(::getuid())},
                            std::pair{"secret", "uid:" + std::to_string(::getuid() + 1)},
                            std::pair{"tcp-only", std::string("address:0.0.0.0/0")}}) {
    auto e = std::make_shared<server::Export>();
    e->name = name;
    e->root = fleece_test::MemoryNode::create(4096);
    e->allow = {rule};
    ASSERT_TRUE(exports_.add(e).is_ok());
  }
  auto c = connect();
  c->start();
  c->send_option(kOptList);
  auto replies = c->read_option_replies();
  ASSERT_EQ(replies.size(), 3u);  // "disk", "mine", then ACK
  EXPECT_EQ(to_string(replies[0].data, 4), "disktest disk");
  EXPECT_EQ(to_string(replies[1].data, 4), "mine");

  c->send_option(kOptInfo, TestClient::info_data("mine", {}));
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);
  // A refused export answers exactly as a missing one.
  c->send_option(kOptGo, TestClient::info_data("secret", {}));
  OptionReply refused = c->read_option_reply();
  c->send_option(kOptGo, TestClient::info_data("nosuch", {}));
  OptionReply missing = c->read_option_reply();
  EXPECT_EQ(refused.type, kRepErrUnknown);
  EXPECT_EQ(missing.type, kRepErrUnknown);
  EXPECT_EQ(to_string(refused.data), "export 'secret' not available");
  EXPECT_EQ(to_string(missing.data), "export 'nosuch' not available");
  c->send_option(kOptInfo, TestClient::info_data("tcp-only", {}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrUnknown);
  c->send_option(kOptStructuredReply);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptListMetaContext, TestClient::meta_data("secret", {}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrUnknown);
  c->send_option(kOptExportName, as_bytes("secret"));
  EXPECT_TRUE(c->wait_closed());

  auto ok = connect(/*timeout_ms=*/300);
  ok->start();
  ok->send_option(kOptExportName, as_bytes("mine"));
  EXPECT_FALSE(ok->wait_closed());  // in transmission: the server keeps it open
}

TEST_F(Handshake, InfoReportsTheExportAndStaysInNegotiation) {
  auto c = connect();
  c->start();
  c->send_option(kOptInfo, TestClient::info_data("nosuch", {}));
  OptionReply r = c->read_option_reply();
  EXPECT_EQ(r.type, kRepErrUnknown);
  EXPECT_NE(to_string(r.data).find("nosuch"), std::string::npos);

  c->send_option(kOptInfo,
                 TestClient::info_data("disk", {kInfoName, kInfoDescription, kInfoBlockSize}));
  bool name = false, desc = false, bs = false, exp = false;
  for (auto& rep : c->read_option_replies()) {
    if (rep.type == kRepAck) break;
    ASSERT_EQ(rep.type, kRepInfo);
    switch (load_be16(rep.data.data())) {
      case kInfoName:
        EXPECT_EQ(to_string(rep.data, 2), "disk");
        name = true;
        break;
      case kInfoDescription:
        EXPECT_EQ(to_string(rep.data, 2), "test disk");
        desc = true;
        break;
      case kInfoBlockSize:
        ASSERT_EQ(rep.data.size(), 14u);
        EXPECT_EQ(load_be32(rep.data.data() + 2), 1u);
        EXPECT_EQ(load_be32(rep.data.data() + 6), 4096u);
        EXPECT_EQ(load_be32(rep.data.data() + 10), 32u << 20);
        bs = true;
        break;
      case kInfoExport:
        ASSERT_EQ(rep.data.size(), 12u);
        EXPECT_EQ(load_be64(rep.data.data() + 2), kSize);
        EXPECT_TRUE(load_be16(rep.data.data() + 10) & kFlagHasFlags);
        exp = true;
        break;
    }
  }
  EXPECT_TRUE(name && desc && bs && exp);
  // Still negotiating: GO works afterwards.
  c->send_option(kOptGo, TestClient::info_data("disk", {}));
  auto replies = c->read_option_replies();
  EXPECT_EQ(replies.back().type, kRepAck);
  c->send_request(kCmdFlush, 0, 7, 0, 0);
  Reply rep = c->read_reply();
  EXPECT_EQ(rep.cookie, 7u);
  EXPECT_EQ(rep.error, 0u);
}

TEST_F(Handshake, GoTransmissionFlags) {
  add_export("ro", fleece_test::MemoryNode::create(8192), false);
  auto c = connect();
  GoResult g = c->negotiate("ro", true);
  EXPECT_EQ(g.size, 8192u);
  EXPECT_EQ(g.eflags, kFlagHasFlags | kFlagReadOnly | kFlagSendFlush | kFlagSendFua | kFlagSendDf |
                          kFlagCanMultiConn | kFlagSendCache);
  auto c2 = connect();
  g = c2->negotiate("disk", false);
  EXPECT_EQ(g.eflags, kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim |
                          kFlagSendWriteZeroes | kFlagSendFastZero | kFlagCanMultiConn |
                          kFlagSendCache);
}

TEST_F(Handshake, GoNeedsBlockSizeWhenMinimumIsLarger) {
  auto info = fleece_test::MemoryNode::default_info(1 << 20);
  info.request_alignment = 512;
  add_export("aligned", std::make_shared<fleece_test::MemoryNode>("a", info), true);
  auto c = connect();
  c->start();
  c->send_option(kOptGo, TestClient::info_data("aligned", {}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrBlockSizeReqd);
  c->send_option(kOptGo, TestClient::info_data("aligned", {kInfoBlockSize}));
  uint32_t min = 0;
  for (auto& r : c->read_option_replies()) {
    if (r.type == kRepInfo && load_be16(r.data.data()) == kInfoBlockSize) {
      min = load_be32(r.data.data() + 2);
    }
  }
  EXPECT_EQ(min, 512u);
  // The advertised minimum is enforced.
  c->send_request(kCmdRead, 0, 1, 100, 512);
  EXPECT_EQ(c->read_reply().error, kNbdEinval);
  c->send_request(kCmdRead, 0, 2, 512, 512);
  Reply r = c->read_reply(512);
  EXPECT_EQ(r.error, 0u);
}

TEST_F(Handshake, ExportNameWithAndWithoutZeroes) {
  {
    auto c = connect();
    c->start(kClientFlagFixedNewstyle);  // no NO_ZEROES
    c->send_option(kOptExportName, as_bytes("disk"));
    auto r = c->recv(8 + 2 + 124);
    EXPECT_EQ(load_be64(r.data()), kSize);
    EXPECT_TRUE(load_be16(r.data() + 8) & kFlagHasFlags);
    EXPECT_EQ(std::count(r.begin() + 10, r.end(), std::byte{0}), 124);
    c->send_request(kCmdFlush, 0, 9, 0, 0);
    EXPECT_EQ(c->read_reply().cookie, 9u);
  }
  {
    auto c = connect();
    c->start();
    c->send_option(kOptExportName, as_bytes("disk"));
    auto r = c->recv(10);
    EXPECT_EQ(load_be64(r.data()), kSize);
    c->send_request(kCmdFlush, 0, 10, 0, 0);  // no padding in between
    EXPECT_EQ(c->read_reply().cookie, 10u);
  }
}

TEST_F(Handshake, ExportNameOfUnknownExportCloses) {
  auto c = connect();
  c->start();
  c->send_option(kOptExportName, as_bytes("nosuch"));
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(Handshake, AbortIsAcknowledged) {
  auto c = connect();
  c->start();
  c->send_option(kOptAbort);
  OptionReply r = c->read_option_reply();
  EXPECT_EQ(r.type, kRepAck);
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("NBD_OPT_ABORT"), std::string::npos);
}

TEST_F(Handshake, AbortWithoutReadingTheReply) {
  auto c = connect();
  c->start();
  c->send_option(kOptAbort);
  c->close();
  ASSERT_TRUE(wait_no_connections());
}

TEST_F(Handshake, StructuredReplyOnlyOnce) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply, as_bytes("x"));
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
  c->send_option(kOptStructuredReply);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptStructuredReply);
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
}

TEST_F(Handshake, MetaContextsNeedStructuredReplies) {
  auto c = connect();
  c->start();
  c->send_option(kOptListMetaContext, TestClient::meta_data("disk", {}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
  c->send_option(kOptSetMetaContext, TestClient::meta_data("disk", {"base:allocation"}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
}

TEST_F(Handshake, ListAndSetMetaContext) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);

  auto names = [&](uint32_t opt, std::vector<std::string> q, std::string exp = "disk") {
    c->send_option(opt, TestClient::meta_data(exp, q));
    std::vector<std::string> out;
    for (auto& r : c->read_option_replies()) {
      if (r.type == kRepMetaContext) {
        out.push_back(to_string(r.data, 4));
        if (opt == kOptListMetaContext) {
          EXPECT_EQ(load_be32(r.data.data()), 0u);
        } else {
          EXPECT_NE(load_be32(r.data.data()), 0u);
        }
      } else if (r.type != kRepAck) {
        out.push_back("error:" + std::to_string(r.type & ~kRepFlagError));
      }
    }
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names(kOptListMetaContext, {}), Names{"base:allocation"});
  EXPECT_EQ(names(kOptListMetaContext, {"base:"}), Names{"base:allocation"});
  EXPECT_EQ(names(kOptListMetaContext, {"nosuch:x"}), Names{});
  EXPECT_EQ(names(kOptListMetaContext, {"qemu:dirty-bitmap:"}), Names{});
  EXPECT_EQ(names(kOptListMetaContext, {}, "nosuch"), Names{"error:6"});
  EXPECT_EQ(names(kOptSetMetaContext, {"base:"}), Names{});
  EXPECT_EQ(names(kOptSetMetaContext, {"base:allocation", "nosuch:x"}), Names{"base:allocation"});
  EXPECT_EQ(names(kOptSetMetaContext, {}, "nosuch"), Names{"error:6"});
}

TEST_F(Handshake, FailedSetClearsTheSelection) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptSetMetaContext, TestClient::meta_data("disk", {"base:allocation"}));
  ASSERT_EQ(c->read_option_replies().size(), 2u);
  // Malformed SET: the earlier selection is gone.
  WireWriter bad;
  bad.u32(4).str("disk").u32(3);
  c->send_option(kOptSetMetaContext, bad.view());
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
  c->send_option(kOptGo, TestClient::info_data("disk", {}));
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);
  c->send_request(kCmdBlockStatus, 0, 1, 0, 4096);
  auto chunks = c->read_chunks();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].type, kReplyTypeError);
  EXPECT_EQ(chunks[0].chunk_error(), kNbdEinval);
}

TEST_F(Handshake, SelectionForAnotherExportDoesNotCount) {
  add_export("other", fleece_test::MemoryNode::create(8192), true);
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptSetMetaContext, TestClient::meta_data("other", {"base:allocation"}));
  ASSERT_EQ(c->read_option_replies().size(), 2u);
  c->send_option(kOptGo, TestClient::info_data("disk", {}));
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);
  c->send_request(kCmdBlockStatus, 0, 1, 0, 4096);
  auto chunks = c->read_chunks();
  EXPECT_EQ(chunks.back().chunk_error(), kNbdEinval);
}

TEST_F(Handshake, TruncatedOptionThenClose) {
  auto c = connect();
  c->start();
  WireWriter w;
  w.u64(kIHaveOpt).u32(kOptGo).u32(100).zeroes(10);
  c->send(w);
  c->close();
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("during the handshake"), std::string::npos);
}

TEST_F(Handshake, HugeOptionLengthDropsTheConnectionWithoutAllocating) {
  auto c = connect();
  c->start();
  WireWriter w;
  w.u64(kIHaveOpt).u32(kOptInfo).u32(0xffffffffu);
  c->send(w);
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("too large"), std::string::npos);
}

TEST_F(Handshake, LargeOptionIsSkippedWithTooBig) {
  auto c = connect();
  c->start();
  std::vector<std::byte> big(kMaxOptionLength + 1, std::byte{1});
  c->send_option(kOptSetMetaContext, big);
  EXPECT_EQ(c->read_option_reply().type, kRepErrTooBig);
  c->send_option(kOptList);
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);
}

TEST_F(Handshake, IdleClientIsDroppedAfterTheTimeout) {
  server::nbd::NbdServerOptions opts;
  opts.handshake_timeout = std::chrono::milliseconds(200);
  start_server(opts);
  auto c = connect();
  c->read_greeting();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c->wait_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("handshake timeout"), std::string::npos);
}

TEST_F(Handshake, TimeoutDoesNotHitTransmission) {
  server::nbd::NbdServerOptions opts;
  opts.handshake_timeout = std::chrono::milliseconds(100);
  start_server(opts);
  auto c = connect();
  c->negotiate("disk", false);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  c->send_request(kCmdFlush, 0, 1, 0, 0);
  EXPECT_EQ(c->read_reply().cookie, 1u);
}

}  // namespace
}  // namespace nbd_test
