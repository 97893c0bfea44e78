// QMP errors: the error classes a reply can carry, the Status codes that select them,
// and the builders for `{"error": {"class": ..., "desc": ...}, "id": ...}` replies plus
// the argument-error messages QEMU uses word for word.
// Threading: stateless functions.
#pragma once

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "blockcore/base/status.h"

namespace server::control {

// QEMU's QapiErrorClass values that fleece uses.
enum class ErrorClass { kGenericError, kCommandNotFound, kDeviceNotFound };

const char* error_class_name(ErrorClass c);

// A command handler fails with a Status; its message becomes `desc`. The code picks the
// class: kDeviceNotFoundCode -> DeviceNotFound, everything else -> GenericError
// (CommandNotFound is only produced by the dispatcher itself).
inline constexpr int kDeviceNotFoundCode = ENODEV;

ErrorClass error_class_of(const blockcore::Status& s);
// The `desc` of a failed Status: its message (or strerror when it has none).
std::string error_desc_of(const blockcore::Status& s);

// Status factories for handlers.
blockcore::Status generic_error(std::string desc);
blockcore::Status device_not_found(std::string desc);

// {"error": {"class": C, "desc": D}} plus "id" when `id` is not null/absent.
nlohmann::json make_error_reply(ErrorClass c, std::string_view desc, const nlohmann::json* id);
nlohmann::json make_error_reply(const blockcore::Status& s, const nlohmann::json* id);
// {"return": value} plus "id".
nlohmann::json make_return_reply(nlohmann::json value, const nlohmann::json* id);

// QEMU's argument messages (qapi/qmp visitor wording).
std::string missing_parameter(std::string_view name);           // Parameter 'x' is missing
std::string invalid_parameter_type(std::string_view name,       // Invalid parameter type for
                                   std::string_view expected);  //  'x', expected: boolean
std::string unexpected_parameter(std::string_view name);        // Parameter 'x' is unexpected
std::string invalid_parameter_value(std::string_view name,      // Parameter 'x' does not
                                    std::string_view value);    //  accept value 'v'
std::string parameter_expects(std::string_view name,            // Parameter 'x' expects
                              std::string_view what);           //  uint64

}  // namespace server::control
