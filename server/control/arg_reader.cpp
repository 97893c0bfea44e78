#include "server/control/arg_reader.h"

#include <cassert>

#include "server/control/qmp_error.h"

namespace server::control {

using blockcore::Status;
using nlohmann::json;

ArgReader::ArgReader(const json& args)
    : ArgReader(args.is_null() ? nullptr : &args, std::string(), std::make_shared<State>()) {
  // REQUIRES: the dispatcher only passes objects (or null for "no arguments").
  assert(args.is_null() || args.is_object());
}

ArgReader::ArgReader(const json* obj, std::string prefix, std::shared_ptr<State> state)
    : obj_(obj), prefix_(std::move(prefix)), state_(std::move(state)) {
  if (obj_ != nullptr) state_->objects.emplace_back(obj_, prefix_);
}

std::string ArgReader::full_name(std::string_view key) const { return prefix_ + std::string(key); }

void ArgReader::fail(Status s) {
  if (state_->error.is_ok()) state_->error = std::move(s);
}

void ArgReader::fail_type(std::string_view key, std::string_view expected) {
  fail(generic_error(invalid_parameter_type(full_name(key), expected)));
}

const json* ArgReader::member(std::string_view key) {
  if (!ok() || obj_ == nullptr) return nullptr;
  auto it = obj_->find(key);
  if (it == obj_->end()) return nullptr;
  state_->used.insert(full_name(key));
  return &*it;
}

std::optional<std::string> ArgReader::string_member(std::string_view key) {
  const json* v = member(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    fail_type(key, "string");
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::string ArgReader::required_string(std::string_view key) {
  bool present = ok() && obj_ != nullptr && obj_->contains(key);
  auto v = string_member(key);
  if (!present) fail(generic_error(missing_parameter(full_name(key))));
  return v.value_or(std::string());
}

std::optional<std::string> ArgReader::optional_string(std::string_view key) {
  return string_member(key);
}

std::optional<bool> ArgReader::optional_bool(std::string_view key) {
  const json* v = member(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    fail_type(key, "boolean");
    return std::nullopt;
  }
  return v->get<bool>();
}

bool ArgReader::optional_bool(std::string_view key, bool default_value) {
  return optional_bool(key).value_or(default_value);
}

std::optional<uint64_t> ArgReader::optional_uint64(std::string_view key) {
  const json* v = member(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) {
    fail_type(key, "integer");
    return std::nullopt;
  }
  if (!v->is_number_unsigned()) {
    if (v->get<int64_t>() < 0) {
      fail(generic_error(parameter_expects(full_name(key), "uint64")));
      return std::nullopt;
    }
    return static_cast<uint64_t>(v->get<int64_t>());
  }
  return v->get<uint64_t>();
}

std::optional<std::string> ArgReader::optional_enum(
    std::string_view key, std::initializer_list<std::string_view> values) {
  auto v = string_member(key);
  if (!v) return std::nullopt;
  for (std::string_view allowed : values) {
    if (*v == allowed) return v;
  }
  fail(generic_error(invalid_parameter_value(full_name(key), *v)));
  return std::nullopt;
}

std::string ArgReader::required_enum(std::string_view key,
                                     std::initializer_list<std::string_view> values) {
  bool present = ok() && obj_ != nullptr && obj_->contains(key);
  auto v = optional_enum(key, values);
  if (!present) fail(generic_error(missing_parameter(full_name(key))));
  return v.value_or(std::string());
}

std::optional<std::vector<std::string>> ArgReader::optional_string_list(std::string_view key) {
  const json* v = member(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) {
    fail_type(key, "array");
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    if (!item.is_string()) {
      fail(generic_error(
          invalid_parameter_type(full_name(key) + "[" + std::to_string(i) + "]", "string")));
      return std::nullopt;
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::optional<ArgReader> ArgReader::optional_object(std::string_view key) {
  const json* v = member(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    fail_type(key, "object");
    return std::nullopt;
  }
  return ArgReader(v, full_name(key) + ".", state_);
}

const json* ArgReader::optional_value(std::string_view key) { return member(key); }

Status ArgReader::finish() {
  if (!ok()) return state_->error;
  for (const auto& [obj, prefix] : state_->objects) {
    for (auto it = obj->begin(); it != obj->end(); ++it) {
      std::string name = prefix + it.key();
      if (!state_->used.count(name)) {
        fail(generic_error(unexpected_parameter(name)));
        return state_->error;
      }
    }
  }
  return Status::ok();
}

}  // namespace server::control
