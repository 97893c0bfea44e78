#include "server/fleecectl/backup_client/restore.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "server/fleecectl/backup_client/extent_plan.h"
#include "server/fleecectl/backup_client/image_file.h"

namespace fleecectl::backup {

namespace {

constexpr uint64_t kChunk = 4u << 20;
constexpr uint32_t kCluster = 64 * 1024;

// Where restored data goes: a raw file (pwrite into a sparse file) or a new qcow2 image.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual bool write(uint64_t off, std::span<const std::byte> data, std::string* error) = 0;
  virtual bool close(std::string* error) = 0;
};

class RawSink final : public Sink {
 public:
  explicit RawSink(int fd) : fd_(fd) {}
  ~RawSink() override {
    if (fd_ >= 0) ::close(fd_);
  }
  bool write(uint64_t off, std::span<const std::byte> data, std::string* error) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                           static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *error = std::string("writing the restored disk: ") + std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool close(std::string* error) override {
    const bool ok = ::fsync(fd_) == 0;
    if (!ok) *error = std::string("fsync of the restored disk: ") + std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    return ok;
  }

 private:
  int fd_;
};

class Qcow2Sink final : public Sink {
 public:
  explicit Qcow2Sink(std::unique_ptr<ImageFile> image) : image_(std::move(image)) {}
  bool write(uint64_t off, std::span<const std::byte> data, std::string* error) override {
    blockcore::Status s = image_->write(off, data);
    if (!s.is_ok()) *error = "writing the restored image: " + s.to_string();
    return s.is_ok();
  }
  bool close(std::string* error) override {
    blockcore::Status s = image_->close();
    if (!s.is_ok()) *error = "closing the restored image: " + s.to_string();
    return s.is_ok();
  }

 private:
  std::unique_ptr<ImageFile> image_;
};

std::unique_ptr<Sink> open_sink(const std::string& to, const std::string& format, uint64_t size,
                                std::string* error) {
  if (format == "qcow2") {
    auto image = ImageFile::create_qcow2(to, size, kCluster, "");
    if (!image.is_ok()) {
      *error = "cannot create " + to + ": " + image.status().to_string();
      return nullptr;
    }
    return std::make_unique<Qcow2Sink>(std::move(image.value()));
  }
  int fd = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = "cannot create " + to + ": " + std::strerror(errno);
    return nullptr;
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    *error = "cannot size " + to + ": " + std::strerror(errno);
    ::close(fd);
    std::error_code ec;
    std::filesystem::remove(to, ec);
    return nullptr;
  }
  return std::make_unique<RawSink>(fd);
}

// The ranges of the chain that do not read as zeroes.
bool data_ranges(ImageFile& chain, std::vector<ByteRange>* out, std::string* error) {
  const uint64_t size = chain.size();
  for (uint64_t off = 0; off < size;) {
    auto extents = chain.block_status(off, size - off);
    if (!extents.is_ok() || extents.value().empty()) {
      *error = "mapping the backup chain: " +
               (extents.is_ok() ? std::string("no extents") : extents.status().to_string());
      return false;
    }
    for (const blockcore::Extent& e : extents.value()) {
      if ((e.flags & blockcore::kExtentZero) == 0) {
        if (!out->empty() && out->back().end() == off) {
          out->back().length += e.length;
        } else {
          out->push_back({off, e.length});
        }
      }
      off += e.length;
    }
  }
  return true;
}

bool copy(ImageFile& chain, Sink& sink, const std::vector<ByteRange>& plan, Progress& progress,
          RestoreResult* result, std::string* error) {
  std::vector<std::byte> buf;
  uint64_t done = 0;
  for (const ByteRange& r : plan) {
    buf.resize(static_cast<size_t>(r.length));
    blockcore::Status s = chain.read(r.offset, buf);
    if (!s.is_ok()) {
      *error = "reading the backup chain: " + s.to_string();
      return false;
    }
    for (const BufferRun& run : split_zero_clusters(r.offset, buf, kCluster)) {
      if (run.zero) continue;
      auto part = std::span<const std::byte>(buf).subspan(static_cast<size_t>(run.offset - r.offset),
                                                          static_cast<size_t>(run.length));
      if (!sink.write(run.offset, part, error)) return false;
      result->bytes_written += run.length;
    }
    done += r.length;
    progress.update(done);
  }
  return sink.close(error);
}

}  // namespace

bool restore_point(const std::string& chain_file, const std::string& to, const std::string& format,
                   Progress& progress, const nlohmann::json& start_info, RestoreResult* result,
                   std::string* error) {
  auto chain = ImageFile::open_chain(chain_file);
  if (!chain.is_ok()) {
    *error = "cannot open the backup chain: " + chain.status().to_string();
    return false;
  }
  const uint64_t size = chain.value()->size();
  result->virtual_size = size;
  std::vector<ByteRange> wanted;
  if (!data_ranges(*chain.value(), &wanted, error)) return false;
  const std::vector<ByteRange> plan = plan_requests(wanted, kCluster, size, kChunk);
  std::unique_ptr<Sink> sink = open_sink(to, format, size, error);
  if (!sink) return false;
  progress.start(total_bytes(plan), start_info);
  if (!copy(*chain.value(), *sink, plan, progress, result, error)) {
    sink.reset();
    std::error_code ec;
    std::filesystem::remove(to, ec);
    return false;
  }
  return true;
}

}  // namespace fleecectl::backup
