// TlsContext: the server side of NBD over TLS (STARTTLS), built once from the `tls:`
// config — an OpenSSL context (TLS 1.2 and later) with the x509 server certificate and
// key of QEMU's folder layout, the CA that verifies client certificates (verify-peer),
// and the PSK identities of an identity:hexkey file (served to TLS 1.2 PSK suites and
// TLS 1.3 external PSKs, as GnuTLS clients such as qemu-img and libnbd offer them).
// TlsIdentity reads what a finished handshake proved about the client.
// Threading: immutable after create(); shared by every connection (OpenSSL's SSL_CTX
// is thread-safe for creating sessions).
#pragma once

#include <asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "blockcore/base/result.h"
#include "config/config.h"
#include "config/psk_file.h"

typedef struct ssl_st SSL;

namespace server::net {

class TlsContext {
 public:
  // Loads and checks every credential file; errors name the file.
  static blockcore::Result<std::shared_ptr<TlsContext>> create(const config::TlsConfig& cfg);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  asio::ssl::context& ssl() { return ctx_; }
  bool required() const { return required_; }
  bool verify_peer() const { return verify_peer_; }
  // Human-readable summary for the start-up log ("x509 (verify-peer), PSK (2 identities)").
  std::string describe() const;

  // Before the handshake of `ssl`: where the PSK callback records the client's identity.
  static void set_psk_identity_slot(SSL* ssl, std::string* slot);

 private:
  TlsContext();
  static unsigned psk_server_callback(SSL* ssl, const char* identity, unsigned char* psk,
                                      unsigned max_psk_len);

  asio::ssl::context ctx_;
  config::PskFile psk_;
  bool x509_ = false;
  bool required_ = false;
  bool verify_peer_ = false;
};

// What a completed server handshake proved about the client.
struct TlsIdentity {
  std::string dn;            // subject (RFC 2253) of a verified client certificate
  std::string psk_identity;  // identity of the PSK the session uses
  std::string protocol;      // "TLSv1.3"
  std::string cipher;
};
TlsIdentity tls_identity(SSL* ssl, bool verify_peer, const std::string& psk_slot);

}  // namespace server::net
