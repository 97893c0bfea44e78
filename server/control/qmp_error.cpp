#include "server/control/qmp_error.h"

#include <cstring>

namespace server::control {

using blockcore::Status;
using nlohmann::json;

const char* error_class_name(ErrorClass c) {
  switch (c) {
    case ErrorClass::kCommandNotFound:
      return "CommandNotFound";
    case ErrorClass::kDeviceNotFound:
      return "DeviceNotFound";
    case ErrorClass::kGenericError:
      break;
  }
  return "GenericError";
}

ErrorClass error_class_of(const Status& s) {
  return s.code() == kDeviceNotFoundCode ? ErrorClass::kDeviceNotFound : ErrorClass::kGenericError;
}

std::string error_desc_of(const Status& s) {
  if (!s.message().empty()) return s.message();
  return s.is_ok() ? std::string("OK") : std::string(std::strerror(s.code()));
}

Status generic_error(std::string desc) { return Status::invalid(std::move(desc)); }

Status device_not_found(std::string desc) {
  return Status::error(kDeviceNotFoundCode, std::move(desc));
}

json make_error_reply(ErrorClass c, std::string_view desc, const json* id) {
  json reply = {{"error", {{"class", error_class_name(c)}, {"desc", std::string(desc)}}}};
  if (id != nullptr) reply["id"] = *id;
  return reply;
}

json make_error_reply(const Status& s, const json* id) {
  return make_error_reply(error_class_of(s), error_desc_of(s), id);
}

json make_return_reply(json value, const json* id) {
  json reply = {{"return", std::move(value)}};
  if (id != nullptr) reply["id"] = *id;
  return reply;
}

std::string missing_parameter(std::string_view name) {
  return "Parameter '" + std::string(name) + "' is missing";
}

std::string invalid_parameter_type(std::string_view name, std::string_view expected) {
  return "Invalid parameter type for '" + std::string(name) +
         "', expected: " + std::string(expected);
}

std::string unexpected_parameter(std::string_view name) {
  return "Parameter '" + std::string(name) + "' is unexpected";
}

std::string invalid_parameter_value(std::string_view name, std::string_view value) {
  return "Parameter '" + std::string(name) + "' does not accept value '" + std::string(value) + "'";
}

std::string parameter_expects(std::string_view name, std::string_view what) {
  return "Parameter '" + std::string(name) + "' expects " + std::string(what);
}

}  // namespace server::control
