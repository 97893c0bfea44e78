// TempDir: a fresh directory (under /tmp, /dev/shm or any base) removed with its
// contents when the object dies; plus small file helpers for tests.
// Threading: one owner; not shared between threads.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace fleece_test {

class TempDir {
 public:
  explicit TempDir(const std::string& base = "/tmp") {
    std::string templ = base + "/fleece-test-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp in " + base);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Creates (or truncates) a file of `size` bytes; sparse unless `fill` is set, in which
// case every byte i holds pattern_byte(i).
inline std::byte pattern_byte(uint64_t i) {
  return static_cast<std::byte>((i * 131 + (i >> 12) * 7 + 1) & 0xff);
}

inline void make_file(const std::string& path, uint64_t size, bool fill = false) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("create " + path);
  if (fill) {
    std::vector<std::byte> buf(1 << 20);
    for (uint64_t off = 0; off < size; off += buf.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
      for (size_t i = 0; i < n; ++i) buf[i] = pattern_byte(off + i);
      if (::pwrite(fd, buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
        ::close(fd);
        throw std::runtime_error("fill " + path);
      }
    }
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    throw std::runtime_error("truncate " + path);
  }
  ::close(fd);
}

// Reads `len` bytes at `off` of a file with plain pread (what another process sees).
inline std::vector<std::byte> read_file(const std::string& path, uint64_t off, size_t len) {
  std::vector<std::byte> out(len);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path);
  const ssize_t n = ::pread(fd, out.data(), len, static_cast<off_t>(off));
  ::close(fd);
  if (n < 0) throw std::runtime_error("pread " + path);
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace fleece_test
