// ServiceNotifier: fleeced's side of the systemd notify protocol (sd_notify, for
// Type=notify units). READY=1 once every image is open and every listener bound;
// RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants) and READY=1 again
// around a SIGHUP reload; STOPPING=1 at shutdown; and a STATUS= line counting exports,
// NBD connections and fleeces (what `systemctl status fleeced` shows), resent only when
// its text changes. Without NOTIFY_SOCKET in the environment every call is a no-op.
// Threading: one thread (the daemon's main thread).
#pragma once

#include <cstddef>
#include <string>

namespace server::daemon {

struct ServiceCounts {
  size_t exports = 0;
  size_t connections = 0;
  size_t fleeces = 0;         // every session, active or broken
  size_t broken_fleeces = 0;  // of those, broken by a copy-before-write failure
};

// "2 exports, 1 connection, 1 fleece" (", 1 broken" appended when some are).
std::string service_status_text(const ServiceCounts& counts);

class ServiceNotifier {
 public:
  void ready(const ServiceCounts& counts);
  void reloading();
  void stopping();
  // Sends STATUS= when the text differs from the last one sent.
  void update_status(const ServiceCounts& counts);

 private:
  void send(const std::string& message);

  std::string last_status_;
};

}  // namespace server::daemon
