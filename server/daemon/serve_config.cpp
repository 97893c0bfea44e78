#include "server/daemon/serve_config.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

namespace server::daemon {

using blockcore::Result;
using blockcore::Status;

Result<config::Config> make_serve_config(const CommandLine& cl, bool activated) {
  config::Config cfg;
  for (const auto& text : cl.listen) {
    std::string error;
    auto addr = config::parse_listen_address(text, &error);
    if (!addr) return Status::invalid("--listen " + text + ": " + error);
    cfg.listen.push_back(*addr);
  }
  if (cfg.listen.empty() && !activated) {
    std::string error;
    cfg.listen.push_back(*config::parse_listen_address("tcp:127.0.0.1:10809", &error));
  }
  cfg.control.unix_path = cl.control;
  if (cl.log_level) cfg.log.level = *cl.log_level;

  auto file = std::make_shared<blockcore::NodeSpec>();
  file->driver = "file";
  file->node_name = "file0";
  file->read_only = cl.read_only;
  file->file.filename = cl.image;
  file->file.direct = cl.direct;
  file->origin = "serve IMAGE";

  std::string driver = cl.format;
  if (driver.empty()) {
    driver = probe_image_format(cl.image);
    spdlog::warn(
        "image format was not specified for '{}' and probing guessed {}; give --format raw or "
        "--format qcow2 (probing is dangerous for raw images: a guest that writes a qcow2 "
        "header into block 0 changes how the image is opened next time)",
        cl.image, driver);
  }

  blockcore::NodeSpec format;
  format.driver = driver;  // qcow2: backing_mode stays kFromImage (the header's chain)
  format.node_name = "disk0";
  format.read_only = cl.read_only;
  format.origin = "serve IMAGE";
  format.file_child = blockcore::ChildRef{"", file};
  if (!cl.bitmap_file.empty()) {
    if (driver != "raw") {
      return Status::invalid("--bitmap-file is for raw images; a " + driver +
                             " image keeps its persistent bitmaps itself");
    }
    format.bitmap_file = cl.bitmap_file;
  }
  cfg.nodes.push_back(format);

  config::ExportConfig e;
  e.name = cl.export_name;
  e.node = format.node_name;
  e.description = cl.description;
  e.writable = !cl.read_only;
  for (const std::string& name : cl.bitmaps) {
    if (name.empty()) return Status::invalid("--bitmap: the bitmap name is empty");
    if (std::find(e.bitmaps.begin(), e.bitmaps.end(), name) != e.bitmaps.end()) {
      return Status::invalid("--bitmap " + name + ": the bitmap is listed twice");
    }
    if (driver == "raw" && !format.bitmap_file) {
      return Status::invalid("--bitmap " + name +
                             ": a raw image keeps persistent bitmaps in a separate container; "
                             "give one with --bitmap-file PATH");
    }
    config::BitmapConfig b;
    b.node = format.node_name;
    b.name = name;
    b.persistent = true;
    b.where.file = "--bitmap " + name;
    cfg.bitmaps.push_back(b);
    e.bitmaps.push_back(name);
  }
  cfg.exports.push_back(e);
  if (!cl.zero_copy.empty()) {
    cfg.server.zero_copy = *config::parse_zero_copy(cl.zero_copy);
  }
  if (!cl.tls_creds_dir.empty() || !cl.tls_psk_file.empty()) {
    config::TlsConfig t;
    t.x509_dir = cl.tls_creds_dir;
    t.psk_file = cl.tls_psk_file;
    t.verify_peer = cl.tls_verify_peer;
    t.required = cl.tls == "required";
    t.x509_where.file = "--tls-creds-dir";
    t.psk_where.file = "--tls-psk-file";
    cfg.tls = t;
  }
  return cfg;
}

}  // namespace server::daemon
