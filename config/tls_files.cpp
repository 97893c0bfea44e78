#include "config/tls_files.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "config/psk_file.h"

namespace config {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::string openssl_reason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "not a PEM file";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

File open_file(const std::string& path, std::string& error) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) error = path + ": " + std::strerror(errno);
  return f;
}

std::unique_ptr<X509, X509Free> read_cert(const std::string& path, std::string& error) {
  File f = open_file(path, error);
  if (!f) return nullptr;
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) error = path + ": not a PEM certificate (" + openssl_reason() + ")";
  return cert;
}

}  // namespace

X509Paths x509_paths(const std::string& dir) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  return X509Paths{base + "ca-cert.pem", base + "server-cert.pem", base + "server-key.pem"};
}

std::vector<ConfigError> check_tls_files(const TlsConfig& tls) {
  std::vector<ConfigError> errors;
  if (!tls.x509_dir.empty()) {
    auto add = [&](std::string message) {
      errors.push_back(ConfigError{tls.x509_where, "tls.x509-dir", std::move(message)});
    };
    const X509Paths p = x509_paths(tls.x509_dir);
    std::string error;
    auto cert = read_cert(p.server_cert, error);
    if (!cert) add(error);
    error.clear();
    if (File f = open_file(p.server_key, error)) {
      std::unique_ptr<EVP_PKEY, PkeyFree> key(
          PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
      if (!key) {
        add(p.server_key + ": not an unencrypted PEM private key (" + openssl_reason() + ")");
      } else if (cert && X509_check_private_key(cert.get(), key.get()) != 1) {
        ERR_clear_error();
        add(p.server_key + ": does not match the certificate " + p.server_cert);
      }
    } else {
      add(error);
    }
    error.clear();
    if (tls.verify_peer) {
      if (!read_cert(p.ca_cert, error)) add(error + " (verify-peer needs the CA certificate)");
    }
  }
  if (!tls.psk_file.empty()) {
    const PskFile psk = load_psk_file(tls.psk_file);
    if (!psk.ok()) errors.push_back(ConfigError{tls.psk_where, "tls.psk-file", psk.error});
  }
  return errors;
}

}  // namespace config
