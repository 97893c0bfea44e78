#include "server/control/event_sink.h"

#include <sys/time.h>

#include <memory>
#include <vector>

namespace server::control {

using nlohmann::json;

json QmpEvent::to_json() const {
  json j = {{"event", name}};
  if (!data.is_null()) j["data"] = data;
  j["timestamp"] = {{"seconds", seconds}, {"microseconds", microseconds}};
  return j;
}

QmpEvent make_event(std::string name, json data) {
  QmpEvent e{std::move(name), std::move(data)};
  timeval tv{};
  if (gettimeofday(&tv, nullptr) == 0) {
    e.seconds = tv.tv_sec;
    e.microseconds = tv.tv_usec;
  }
  return e;
}

void EventSink::emit(std::string name, json data) {
  emit(make_event(std::move(name), std::move(data)));
}

void EventSink::emit(const QmpEvent& event) {
  std::vector<std::shared_ptr<Listener>> targets;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, l] : listeners_) targets.push_back(l);
  }
  for (const auto& l : targets) (*l)(event);
}

EventSink::ListenerId EventSink::subscribe(Listener listener) {
  std::lock_guard lock(mu_);
  ListenerId id = next_id_++;
  listeners_.emplace(id, std::make_shared<Listener>(std::move(listener)));
  return id;
}

void EventSink::unsubscribe(ListenerId id) {
  std::lock_guard lock(mu_);
  listeners_.erase(id);
}

}  // namespace server::control
