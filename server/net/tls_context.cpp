#include "server/net/tls_context.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

#include "config/tls_files.h"

namespace server::net {

using blockcore::Result;
using blockcore::Status;

namespace {

// The TlsContext of an SSL_CTX (set once in create()).
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
// The per-connection std::string the PSK callback fills.
int psk_slot_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Status ssl_failure(const std::string& what) {
  return Status::error(EINVAL, what + ": " + ssl_errors());
}

}  // namespace

TlsContext::TlsContext() : ctx_(asio::ssl::context::tls_server) {}

Result<std::shared_ptr<TlsContext>> TlsContext::create(const config::TlsConfig& cfg) {
  std::vector<config::ConfigError> problems = config::check_tls_files(cfg);
  if (!problems.empty()) return Status::error(EINVAL, problems.front().to_string());
  if (cfg.x509_dir.empty() && cfg.psk_file.empty()) {
    return Status::error(EINVAL, "tls needs x509-dir or psk-file");
  }
  std::shared_ptr<TlsContext> t(new TlsContext());
  t->required_ = cfg.required;
  t->verify_peer_ = cfg.verify_peer;
  SSL_CTX* ctx = t->ctx_.native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  static const unsigned char kSessionContext[] = "fleeced-nbd";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  SSL_CTX_set_ex_data(ctx, context_index(), t.get());

  if (!cfg.x509_dir.empty()) {
    const config::X509Paths p = config::x509_paths(cfg.x509_dir);
    if (SSL_CTX_use_certificate_chain_file(ctx, p.server_cert.c_str()) != 1) {
      return ssl_failure(p.server_cert);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, p.server_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return ssl_failure(p.server_key);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) return ssl_failure(p.server_key);
    t->x509_ = true;
    if (cfg.verify_peer) {
      if (SSL_CTX_load_verify_locations(ctx, p.ca_cert.c_str(), nullptr) != 1) {
        return ssl_failure(p.ca_cert);
      }
      // Tell clients which CA their certificate must come from.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(p.ca_cert.c_str())) {
        SSL_CTX_set_client_CA_list(ctx, names);
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  }
  if (!cfg.psk_file.empty()) {
    t->psk_ = config::load_psk_file(cfg.psk_file);
    if (!t->psk_.ok()) return Status::error(EINVAL, t->psk_.error);
    // TLS 1.2: the PSK suites (ECDHE-PSK, DHE-PSK, PSK) next to the default ones.
    // TLS 1.3: OpenSSL serves the same callback's keys as external PSKs (SHA-256 suites).
    if (SSL_CTX_set_cipher_list(ctx, "DEFAULT:ECDHE-PSK:DHE-PSK:PSK:!eNULL") != 1) {
      return ssl_failure("PSK cipher list");
    }
    SSL_CTX_set_psk_server_callback(ctx, &TlsContext::psk_server_callback);
    // An external PSK is bound to SHA-256 (GnuTLS's and OpenSSL's default), so the
    // TLS 1.3 suite must hash with SHA-256 or the PSK is skipped — and with a
    // certificate loaded the server would fall back to a certificate handshake the
    // PSK client cannot finish. Prefer the SHA-256 suites.
    if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                      "TLS_AES_256_GCM_SHA384") != 1) {
      return ssl_failure("TLS 1.3 cipher suites");
    }
  }
  return t;
}

void TlsContext::set_psk_identity_slot(SSL* ssl, std::string* slot) {
  SSL_set_ex_data(ssl, psk_slot_index(), slot);
}

unsigned TlsContext::psk_server_callback(SSL* ssl, const char* identity, unsigned char* psk,
                                         unsigned max_psk_len) {
  auto* self = static_cast<TlsContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (!self || !identity) return 0;
  const config::PskEntry* e = self->psk_.find(identity);
  if (!e || e->key.size() > max_psk_len) return 0;  // unknown identity: handshake fails
  std::memcpy(psk, e->key.data(), e->key.size());
  if (auto* slot = static_cast<std::string*>(SSL_get_ex_data(ssl, psk_slot_index()))) {
    *slot = identity;
  }
  return static_cast<unsigned>(e->key.size());
}

std::string TlsContext::describe() const {
  std::string out;
  if (x509_) out = verify_peer_ ? "x509 (client certificates verified)" : "x509";
  if (!psk_.entries.empty()) {
    if (!out.empty()) out += ", ";
    out += "PSK (" + std::to_string(psk_.entries.size()) + " identities)";
  }
  out += required_ ? "; TLS required" : "; TLS optional";
  return out;
}

TlsIdentity tls_identity(SSL* ssl, bool verify_peer, const std::string& psk_slot) {
  TlsIdentity id;
  id.protocol = SSL_get_version(ssl);
  if (const char* c = SSL_get_cipher_name(ssl)) id.cipher = c;
  id.psk_identity = psk_slot;
  if (verify_peer && SSL_get_verify_result(ssl) == X509_V_OK) {
    if (X509* cert = SSL_get0_peer_certificate(ssl)) {
      BIO* bio = BIO_new(BIO_s_mem());
      if (bio) {
        X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
        char* data = nullptr;
        const long n = BIO_get_mem_data(bio, &data);
        if (n > 0) id.dn.assign(data, static_cast<size_t>(n));
        BIO_free(bio);
      }
    }
  }
  return id;
}

}  // namespace server::net
