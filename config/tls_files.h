// The credential files a `tls:` block names, and their check: QEMU's x509 layout
// (ca-cert.pem, server-cert.pem, server-key.pem in one folder) and a PSK key file. The
// check opens and parses every file with OpenSSL (a missing or unreadable file, a file
// that is not PEM, a key that does not belong to the certificate, a bad PSK line) so
// `fleeced --check-config` and start-up report them with the config's file:line.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace config {

struct X509Paths {
  std::string ca_cert;      // DIR/ca-cert.pem
  std::string server_cert;  // DIR/server-cert.pem
  std::string server_key;   // DIR/server-key.pem
};
X509Paths x509_paths(const std::string& dir);

// Problems with the files of `tls` (none when they can all be used).
std::vector<ConfigError> check_tls_files(const TlsConfig& tls);

}  // namespace config
