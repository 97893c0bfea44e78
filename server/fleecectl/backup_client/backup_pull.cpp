#include "server/fleecectl/backup_client/backup_pull.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "server/fleecectl/backup_client/extent_plan.h"
#include "server/fleecectl/backup_client/image_file.h"
#include "server/fleecectl/backup_client/nbd_reader.h"

namespace fleecectl::backup {

namespace {

constexpr char kAllocation[] = "base:allocation";

// The ranges worth reading: not-zero ones of base:allocation, or the dirty ones.
bool map_view(NbdReader& reader, const std::string& context, bool dirty,
              std::vector<ByteRange>* ranges, std::string* error) {
  const uint64_t size = reader.size();
  for (uint64_t off = 0; off < size;) {
    std::vector<StatusRun> runs;
    uint64_t covered = reader.block_status(context, off, size - off, &runs, error);
    if (covered == 0) return false;
    // A server may describe past the request's end; only what lies inside the disk counts.
    for (const ByteRange& r : dirty ? select_runs(off, runs, kStateDirty, true)
                                    : select_runs(off, runs, kStateZero, false)) {
      if (r.offset >= size) break;
      ByteRange clipped{r.offset, std::min(r.end(), size) - r.offset};
      if (!ranges->empty() && ranges->back().end() == clipped.offset) {
        ranges->back().length += clipped.length;
      } else {
        ranges->push_back(clipped);
      }
    }
    off += covered;
  }
  return true;
}

// Stores one completed read: data runs written, zero runs skipped or zeroed.
bool store(ImageFile& target, const NbdReader::Completed& c, uint32_t cluster, bool zero_runs,
           uint64_t* written, std::string* error) {
  for (const BufferRun& run : split_zero_clusters(c.range.offset, c.data, cluster)) {
    blockcore::Status s = blockcore::Status::ok();
    if (!run.zero) {
      const auto at = static_cast<size_t>(run.offset - c.range.offset);
      s = target.write(run.offset,
                       std::span<const std::byte>(c.data).subspan(at, static_cast<size_t>(run.length)));
      *written += run.length;
    } else if (zero_runs) {
      s = target.write_zeroes(run.offset, run.length);
    }
    if (!s.is_ok()) {
      *error = "writing the backup file: " + s.to_string();
      return false;
    }
  }
  return true;
}

bool pull_into(const PullOptions& o, NbdReader& reader, const std::vector<ByteRange>& plan,
               ImageFile& target, Progress& progress, PullResult* result, std::string* error) {
  const bool incremental = !o.bitmap_context.empty();
  size_t next = 0;
  uint64_t started = 0;
  while (next < plan.size() || reader.in_flight() > 0) {
    if (o.interrupted && o.interrupted()) {
      *error = "interrupted";
      return false;
    }
    while (next < plan.size() && reader.in_flight() < o.max_in_flight) {
      if (o.max_rate > 0 &&
          static_cast<double>(started) >
              static_cast<double>(o.max_rate) * progress.elapsed_seconds()) {
        break;  // ahead of the rate: wait
      }
      if (!reader.start_read(plan[next], error)) return false;
      started += plan[next].length;
      ++next;
    }
    std::vector<NbdReader::Completed> done;
    if (reader.in_flight() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // rate-limited
    } else if (!reader.poll(200, &done, error)) {
      return false;
    }
    for (const auto& c : done) {
      if (!store(target, c, o.cluster_size, incremental, &result->bytes_written, error)) {
        return false;
      }
      result->bytes_read += c.range.length;
    }
    progress.update(result->bytes_read);
  }
  blockcore::Status s = target.close();
  if (!s.is_ok()) {
    *error = "closing the backup file: " + s.to_string();
    return false;
  }
  return true;
}

}  // namespace

bool pull_point(const PullOptions& o, Progress& progress, const nlohmann::json& start_info,
                PullResult* result, std::string* error) {
  std::vector<std::string> contexts = {kAllocation};
  const bool incremental = !o.bitmap_context.empty();
  if (incremental) contexts.push_back(o.bitmap_context);
  std::unique_ptr<NbdReader> reader = NbdReader::connect(o.uri, contexts, error);
  if (!reader) return false;
  const std::string& context = incremental ? o.bitmap_context : contexts[0];
  if (!reader->has_context(context)) {
    *error = "the export does not offer " + context;
    return false;
  }
  std::vector<ByteRange> wanted;
  if (!map_view(*reader, context, incremental, &wanted, error)) return false;
  // Under a rate limit, requests of about an eighth of a second's worth keep the pace even.
  uint64_t max_request = o.max_request;
  if (o.max_rate > 0) {
    max_request = std::clamp<uint64_t>(o.max_rate / 8 / o.cluster_size * o.cluster_size,
                                       o.cluster_size, o.max_request);
  }
  const std::vector<ByteRange> plan =
      plan_requests(wanted, o.cluster_size, reader->size(), max_request);
  result->virtual_size = reader->size();

  auto target = ImageFile::create_qcow2(o.target_path, reader->size(), o.cluster_size, o.backing);
  if (!target.is_ok()) {
    *error = "cannot create the backup file: " + target.status().to_string();
    return false;
  }
  nlohmann::json info = start_info;
  info["virtual-size"] = reader->size();
  info["file"] = o.target_path;
  progress.start(total_bytes(plan), info);
  bool ok = pull_into(o, *reader, plan, *target.value(), progress, result, error);
  if (!ok) {
    (void)target.value()->close();
    std::error_code ec;
    std::filesystem::remove(o.target_path, ec);
  }
  return ok;
}

}  // namespace fleecectl::backup
