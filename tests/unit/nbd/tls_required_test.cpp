// TLS required: before STARTTLS every option but STARTTLS and ABORT answers
// ERR_TLS_REQD (LIST leaks no names), EXPORT_NAME ends the connection, STARTTLS is
// acknowledged. The TLS session itself is tested end to end with GnuTLS clients
// (tests/integration/test_tls.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "nbd_test_server.h"
#include "server/net/tls_context.h"

namespace nbd_test {
namespace {

class TlsRequired : public NbdServerFixture {
 protected:
  void SetUp() override {
    NbdServerFixture::SetUp();
    char path[] = "/tmp/tls_required_testXXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    psk_path_ = path;
    std::ofstream(psk_path_) << "client1:00112233445566778899aabbccddeeff\n";
    config::TlsConfig cfg;
    cfg.psk_file = psk_path_;
    cfg.required = true;
    auto tls = server::net::TlsContext::create(cfg);
    ASSERT_TRUE(tls.is_ok()) << tls.status().to_string();
    server::nbd::NbdServerOptions opts;
    opts.tls = *tls;
    start_server(opts);
  }
  void TearDown() override {
    NbdServerFixture::TearDown();
    ::unlink(psk_path_.c_str());
  }
  std::string psk_path_;
};

TEST_F(TlsRequired, OptionsBeforeStartTlsAnswerTlsRequired) {
  auto c = connect();
  c->start();
  c->send_option(kOptList);
  auto replies = c->read_option_replies();
  ASSERT_EQ(replies.size(), 1u);  // no export names before TLS
  EXPECT_EQ(replies[0].type, kRepErrTlsReqd);
  EXPECT_NE(to_string(replies[0].data).find("STARTTLS"), std::string::npos);
  for (uint32_t opt : {kOptStructuredReply, kOptInfo, kOptGo, kOptListMetaContext, uint32_t{99}}) {
    c->send_option(opt, TestClient::info_data("disk", {}));
    OptionReply r = c->read_option_reply();
    EXPECT_EQ(r.option, opt);
    EXPECT_EQ(r.type, kRepErrTlsReqd) << opt;
  }
  c->send_option(kOptStartTls, as_bytes("x"));  // STARTTLS takes no data
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
  c->send_option(kOptAbort);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);
  EXPECT_TRUE(c->wait_closed());
}

TEST_F(TlsRequired, ExportNameBeforeStartTlsCloses) {
  auto c = connect();
  c->start();
  c->send_option(kOptExportName, as_bytes("disk"));
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("TLS is required"), std::string::npos);
}

TEST_F(TlsRequired, StartTlsIsAcknowledged) {
  auto c = connect();
  c->start();
  c->send_option(kOptStartTls);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);
  // Not a TLS hello: the handshake fails and only this connection ends.
  c->send(as_bytes("this is not TLS at all, just some bytes\r\n"));
  EXPECT_TRUE(c->wait_closed());
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("TLS handshake failed"), std::string::npos);
}

}  // namespace
}  // namespace nbd_test
