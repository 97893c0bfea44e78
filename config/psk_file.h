// PSK key files as QEMU (tls-creds-psk) and nbdkit (--tls-psk) read them: one
// `identity:hexkey` per line, the key in hexadecimal (an even number of digits). Blank
// lines are skipped. Parsing is pure (text in, entries or the first bad line out) so the
// config check, the TLS context and the unit tests share it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace config {

struct PskEntry {
  std::string identity;
  std::vector<uint8_t> key;
};

struct PskFile {
  std::vector<PskEntry> entries;
  std::string error;  // "LINE: what is wrong" (or why the file cannot be read); empty = ok
  bool ok() const { return error.empty(); }
  // The key of `identity`, or nullptr.
  const PskEntry* find(std::string_view identity) const;
};

// Parses the text of a PSK file.
PskFile parse_psk_text(std::string_view text);
// Reads and parses `path` (the error names the file).
PskFile load_psk_file(const std::string& path);

}  // namespace config
