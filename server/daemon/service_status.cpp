#include "server/daemon/service_status.h"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

namespace server::daemon {
namespace {

std::string counted(size_t n, const char* singular, const char* plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000u + uint64_t(ts.tv_nsec) / 1000u;
}

}  // namespace

std::string service_status_text(const ServiceCounts& c) {
  std::string text = counted(c.exports, "export", "exports") + ", " +
                     counted(c.connections, "connection", "connections") + ", " +
                     counted(c.fleeces, "fleece", "fleeces");
  if (c.broken_fleeces > 0) text += " (" + std::to_string(c.broken_fleeces) + " broken)";
  return text;
}

void ServiceNotifier::ready(const ServiceCounts& counts) {
  last_status_ = service_status_text(counts);
  send("READY=1\nSTATUS=" + last_status_);
}

void ServiceNotifier::reloading() {
  last_status_ = "reloading the configuration";
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) +
       "\nSTATUS=" + last_status_);
}

void ServiceNotifier::stopping() {
  last_status_ = "shutting down";
  send("STOPPING=1\nSTATUS=" + last_status_);
}

void ServiceNotifier::update_status(const ServiceCounts& counts) {
  std::string text = service_status_text(counts);
  if (text == last_status_) return;
  last_status_ = std::move(text);
  send("STATUS=" + last_status_);
}

void ServiceNotifier::send(const std::string& message) {
  // 0: not under systemd (no NOTIFY_SOCKET); < 0: the socket is gone, which must not stop
  // the daemon.
  int r = sd_notify(0, message.c_str());
  if (r < 0) spdlog::debug("sd_notify failed: {}", std::strerror(-r));
}

}  // namespace server::daemon
