#include "server/fleecectl/backup_client/extent_plan.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace fleecectl::backup {

std::vector<ByteRange> select_runs(uint64_t start, const std::vector<StatusRun>& runs,
                                   uint32_t mask, bool want_set) {
  std::vector<ByteRange> out;
  uint64_t off = start;
  for (const StatusRun& r : runs) {
    const bool match = want_set ? (r.flags & mask) != 0 : (r.flags & mask) == 0;
    if (match && r.length > 0) {
      if (!out.empty() && out.back().end() == off) {
        out.back().length += r.length;
      } else {
        out.push_back({off, r.length});
      }
    }
    off += r.length;
  }
  return out;
}

std::vector<ByteRange> plan_requests(const std::vector<ByteRange>& ranges, uint64_t align,
                                     uint64_t size, uint64_t max_request) {
  std::vector<ByteRange> merged;
  for (const ByteRange& r : ranges) {
    if (r.length == 0 || r.offset >= size) continue;
    uint64_t begin = r.offset & ~(align - 1);
    uint64_t end = std::min(size, r.end());
    end = std::min(size, (end + align - 1) & ~(align - 1));
    if (!merged.empty() && begin <= merged.back().end()) {
      merged.back().length = std::max(merged.back().end(), end) - merged.back().offset;
    } else {
      merged.push_back({begin, end - begin});
    }
  }
  std::vector<ByteRange> out;
  for (const ByteRange& r : merged) {
    for (uint64_t off = r.offset; off < r.end(); off += max_request) {
      out.push_back({off, std::min(max_request, r.end() - off)});
    }
  }
  return out;
}

uint64_t total_bytes(const std::vector<ByteRange>& ranges) {
  uint64_t n = 0;
  for (const ByteRange& r : ranges) n += r.length;
  return n;
}

namespace {

bool all_zero(std::span<const std::byte> data) {
  return std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace

std::vector<BufferRun> split_zero_clusters(uint64_t offset, std::span<const std::byte> data,
                                           uint64_t cluster) {
  std::vector<BufferRun> out;
  size_t pos = 0;
  while (pos < data.size()) {
    // Up to the next cluster boundary of the disk.
    const uint64_t disk_off = offset + pos;
    const uint64_t next = (disk_off / cluster + 1) * cluster;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(next - disk_off, data.size() - pos));
    const bool zero = all_zero(data.subspan(pos, len));
    if (!out.empty() && out.back().zero == zero) {
      out.back().length += len;
    } else {
      out.push_back({disk_off, len, zero});
    }
    pos += len;
  }
  return out;
}

namespace {

std::string percent_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace

std::string uri_with_export(const std::string& uri, const std::string& export_name) {
  const size_t scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) return {};
  const size_t authority = scheme_end + 3;
  const size_t query = uri.find('?', authority);
  const size_t path = std::min(uri.find('/', authority), query);
  std::string out = uri.substr(0, std::min(path, uri.size()));
  out += "/" + percent_encode(export_name);
  if (query != std::string::npos) out += uri.substr(query);
  return out;
}

}  // namespace fleecectl::backup
