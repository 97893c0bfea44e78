// Throttle commands: block-set-throttle (fleece's own) changes a throttle node's limits
// at run time — every limit at once, an absent key meaning unlimited, like QEMU's
// block_set_io_throttle, but addressed by node-name and with the ThrottleLimits names
// the config uses. Requests waiting in the node are re-evaluated at once.
#include <asio/awaitable.hpp>

#include "blockcore/filters/throttle_node.h"
#include "server/control/arg_reader.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/throttle_info.h"

namespace server::control {

using blockcore::Result;
using blockcore::Status;
using blockcore::ThrottleBucket;
using nlohmann::json;

namespace {

asio::awaitable<Result<json>> block_set_throttle(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  std::string name = r.required_string("node-name");
  blockcore::ThrottleLimits limits;
  if (auto l = r.optional_object("limits")) {
    limits = read_throttle_limits(*l);
  } else if (r.ok()) {
    r.fail(generic_error(missing_parameter("limits")));
  }
  if (Status s = r.finish(); !s.is_ok()) co_return s;

  blockcore::BlockNodePtr node = ctx.graph.find(name);
  if (!node) co_return device_not_found("Cannot find device='' nor node-name='" + name + "'");
  auto* throttle = dynamic_cast<blockcore::ThrottleNode*>(node.get());
  if (throttle == nullptr) {
    co_return generic_error("Node '" + name + "' is not a throttle node (driver '" +
                            node->driver() + "')");
  }
  if (Status s = throttle->set_limits(limits); !s.is_ok()) co_return generic_error(s.message());
  co_return json::object();
}

// QEMU's BlockDeviceInfo member names of one bucket ("bps_rd" and its _max, _max_length).
const char* qemu_member(ThrottleBucket b) {
  switch (b) {
    case ThrottleBucket::kBpsTotal: return "bps";
    case ThrottleBucket::kBpsRead: return "bps_rd";
    case ThrottleBucket::kBpsWrite: return "bps_wr";
    case ThrottleBucket::kIopsTotal: return "iops";
    case ThrottleBucket::kIopsRead: return "iops_rd";
    case ThrottleBucket::kIopsWrite: return "iops_wr";
  }
  return "?";
}

}  // namespace

json throttle_limits_json(const blockcore::ThrottleLimits& limits) {
  json out = json::object();
  for (const blockcore::ThrottleKey& key : blockcore::throttle_keys()) {
    out[key.name] = key.field(limits);
  }
  return out;
}

void add_throttle_info(const blockcore::BlockNode& node, json& info) {
  const auto* throttle = dynamic_cast<const blockcore::ThrottleNode*>(&node);
  const blockcore::ThrottleLimits limits =
      throttle != nullptr ? throttle->limits() : blockcore::ThrottleLimits{};
  for (size_t i = 0; i < blockcore::kThrottleBuckets; ++i) {
    const auto b = static_cast<ThrottleBucket>(i);
    const std::string member = qemu_member(b);
    info[member] = limits[b].avg;
    if (throttle == nullptr) continue;  // QEMU shows the rest only for throttled devices
    info[member + "_max"] = limits[b].max;
    info[member + "_max_length"] = limits[b].max_length;
  }
  if (throttle == nullptr) return;
  info["iops_size"] = limits.iops_size;
  info["throttle-limits"] = throttle_limits_json(limits);
}

void register_throttle_commands(CommandTable& table) {
  table.add("block-set-throttle", block_set_throttle);
}

}  // namespace server::control
