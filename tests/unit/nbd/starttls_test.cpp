// STARTTLS with an OpenSSL PSK client on a socketpair (TLS optional): what was
// negotiated in the clear is forgotten after the upgrade, options then run over TLS,
// a second STARTTLS is invalid, PSK identities decide `allow:`, and a client with an
// unknown identity fails its handshake without hurting the server.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "nbd_test_server.h"
#include "server/net/tls_context.h"

namespace nbd_test {
namespace {

constexpr const char* kKeyHex = "00112233445566778899aabbccddeeff";

// A blocking OpenSSL PSK session over the test client's socket, used as its transport
// once the handshake is done.
class PskClient : public Transport {
 public:
  PskClient(int fd, std::string identity, std::vector<uint8_t> key, bool tls12 = false)
      : identity_(std::move(identity)), key_(std::move(key)) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (tls12) {  // TLS 1.2 PSK cipher suites (what older GnuTLS clients negotiate)
      SSL_CTX_set_max_proto_version(ctx_, TLS1_2_VERSION);
      SSL_CTX_set_cipher_list(ctx_, "ECDHE-PSK:DHE-PSK:PSK");
    }
    SSL_CTX_set_psk_client_callback(ctx_, &PskClient::callback);
    ssl_ = SSL_new(ctx_);
    SSL_set_app_data(ssl_, this);
    SSL_set_fd(ssl_, fd);
  }
  ~PskClient() override {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  bool handshake() { return SSL_connect(ssl_) == 1; }
  std::string version() const { return SSL_get_version(ssl_); }

  ssize_t send_some(const std::byte* p, size_t n) override {
    const int r = SSL_write(ssl_, p, static_cast<int>(n));
    return r > 0 ? r : -1;
  }
  ssize_t recv_some(std::byte* p, size_t n) override {
    const int r = SSL_read(ssl_, p, static_cast<int>(n));
    if (r > 0) return r;
    return SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
  }

 private:
  static unsigned callback(SSL* ssl, const char*, char* identity, unsigned max_identity,
                           unsigned char* psk, unsigned max_psk) {
    auto* self = static_cast<PskClient*>(SSL_get_app_data(ssl));
    if (self->identity_.size() + 1 > max_identity || self->key_.size() > max_psk) return 0;
    std::memcpy(identity, self->identity_.c_str(), self->identity_.size() + 1);
    std::memcpy(psk, self->key_.data(), self->key_.size());
    return static_cast<unsigned>(self->key_.size());
  }

  std::string identity_;
  std::vector<uint8_t> key_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

std::vector<uint8_t> key_bytes() {
  std::vector<uint8_t> k;
  for (size_t i = 0; i < std::strlen(kKeyHex); i += 2) {
    k.push_back(static_cast<uint8_t>(std::stoi(std::string(kKeyHex + i, 2), nullptr, 16)));
  }
  return k;
}

class StartTls : public NbdServerFixture {
 protected:
  void SetUp() override {
    NbdServerFixture::SetUp();
    char path[] = "/tmp/starttls_testXXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    psk_path_ = path;
    std::ofstream(psk_path_) << "alice:" << kKeyHex << "\nbob:" << kKeyHex << "\n";
    auto e = std::make_shared<server::Export>();
    e->name = "alice-disk";
    e->root = fleece_test::MemoryNode::create(4096);
    e->allow = {"psk-identity:alice"};
    ASSERT_TRUE(exports_.add(e).is_ok());
    config::TlsConfig cfg;
    cfg.psk_file = psk_path_;
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

  std::vector<std::string> list(TestClient& t) {
    t.send_option(kOptList);
    std::vector<std::string> names;
    for (auto& r : t.read_option_replies()) {
      if (r.type != kRepServer) continue;
      names.push_back(to_string(r.data, 4).substr(0, load_be32(r.data.data())));
    }
    return names;
  }

  std::string psk_path_;
};

TEST_F(StartTls, UpgradeForgetsPlaintextNegotiationAndAppliesPskIdentity) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);  // negotiated in the clear...
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptList);  // TLS optional: plaintext clients are served
  auto plain = c->read_option_replies();
  ASSERT_EQ(plain.size(), 2u);  // "disk" only: alice-disk needs the PSK identity
  c->send_option(kOptStartTls);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);

  PskClient t(c->fd(), "alice", key_bytes());
  ASSERT_TRUE(t.handshake());
  EXPECT_EQ(t.version(), "TLSv1.3");
  c->set_transport(&t);
  // ...and forgotten after it: meta contexts need structured replies again.
  c->send_option(kOptListMetaContext, TestClient::meta_data("disk", {}));
  OptionReply r = c->read_option_reply();
  EXPECT_EQ(r.type, kRepErrInvalid);
  EXPECT_NE(to_string(r.data).find("structured replies must be negotiated"), std::string::npos);
  c->send_option(kOptStructuredReply);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);  // not "already negotiated"
  c->send_option(kOptStartTls);
  EXPECT_EQ(c->read_option_reply().type, kRepErrInvalid);
  EXPECT_EQ(list(*c), (std::vector<std::string>{"alice-disk", "disk"}));
  c->send_option(kOptInfo, TestClient::info_data("alice-disk", {}));
  EXPECT_EQ(c->read_option_replies().back().type, kRepAck);
}

TEST_F(StartTls, OtherIdentitiesDoNotSeeTheExport) {
  auto c = connect();
  c->start();
  c->send_option(kOptStartTls);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  PskClient t(c->fd(), "bob", key_bytes());
  ASSERT_TRUE(t.handshake());
  c->set_transport(&t);
  EXPECT_EQ(list(*c), (std::vector<std::string>{"disk"}));
  c->send_option(kOptGo, TestClient::info_data("alice-disk", {}));
  EXPECT_EQ(c->read_option_reply().type, kRepErrUnknown);
}

TEST_F(StartTls, Tls12PskSuitesWork) {
  auto c = connect();
  c->start();
  c->send_option(kOptStartTls);
  ASSERT_EQ(c->read_option_reply().type, kRepAck);
  PskClient t(c->fd(), "alice", key_bytes(), /*tls12=*/true);
  ASSERT_TRUE(t.handshake());
  EXPECT_EQ(t.version(), "TLSv1.2");
  c->set_transport(&t);
  EXPECT_EQ(list(*c), (std::vector<std::string>{"alice-disk", "disk"}));
}

TEST_F(StartTls, UnknownIdentityOrWrongKeyFailsTheHandshakeOnly) {
  for (auto [identity, key] : {std::pair{"mallory", key_bytes()},
                               std::pair{"alice", std::vector<uint8_t>(16, 0x7f)}}) {
    auto c = connect();
    c->start();
    c->send_option(kOptStartTls);
    ASSERT_EQ(c->read_option_reply().type, kRepAck);
    PskClient t(c->fd(), identity, key);
    EXPECT_FALSE(t.handshake()) << identity;
  }
  ASSERT_TRUE(wait_no_connections());
  EXPECT_NE(closed_line("peer1").find("TLS handshake failed"), std::string::npos);
  auto ok = connect();
  ok->start();
  ok->send_option(kOptList);
  EXPECT_EQ(ok->read_option_replies().back().type, kRepAck);  // the server still serves
}

}  // namespace
}  // namespace nbd_test
