// EventSink: where QMP asynchronous events start. Any part of the daemon (command
// handlers, bitmap and fleecing services, the NBD layer) calls emit(); the event is
// stamped with the wall-clock time and handed to every subscriber — a ControlServer
// subscribes and broadcasts it to its negotiated clients as
// {"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}.
// Threading: thread-safe. Listeners run on the emitting thread, outside the lock, and
// must not block (ControlServer only posts to its own executor).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace server::control {

struct QmpEvent {
  std::string name;
  nlohmann::json data;  // an object, or null for an event without data
  int64_t seconds = -1;
  int64_t microseconds = -1;

  // The wire form (without the line terminator).
  nlohmann::json to_json() const;
};

// A QmpEvent stamped with the current time.
QmpEvent make_event(std::string name, nlohmann::json data);

class EventSink {
 public:
  using Listener = std::function<void(const QmpEvent&)>;
  using ListenerId = uint64_t;

  // Sends `name` with `data` (an object; null = no data member) to every subscriber.
  void emit(std::string name, nlohmann::json data = nlohmann::json::object());
  void emit(const QmpEvent& event);

  ListenerId subscribe(Listener listener);
  // After unsubscribe() returns, the listener is not called again (a call in progress on
  // another thread may still be running).
  void unsubscribe(ListenerId id);

 private:
  std::mutex mu_;
  std::map<ListenerId, std::shared_ptr<Listener>> listeners_;  // GUARDED_BY(mu_)
  ListenerId next_id_ = 1;                                     // GUARDED_BY(mu_)
};

}  // namespace server::control
