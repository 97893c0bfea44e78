#include "server/fleecectl/arg_parser.h"

#include <cctype>
#include <cstdint>

namespace fleecectl {

ArgParser::ArgParser(std::vector<std::string> args) : args_(std::move(args)) {}

void ArgParser::fail(const std::string& message) {
  if (error_.empty()) error_ = message;
}

size_t ArgParser::options_end() const {
  for (size_t i = 0; i < args_.size(); ++i) {
    if (args_[i] == "--") return i;
  }
  return args_.size();
}

bool ArgParser::flag(const std::string& name) {
  const std::string word = "--" + name;
  bool found = false;
  for (size_t i = 0; i < options_end();) {
    if (args_[i] == word) {
      args_.erase(args_.begin() + static_cast<long>(i));
      found = true;
    } else if (args_[i].rfind(word + "=", 0) == 0) {
      fail("option " + word + " takes no value");
      args_.erase(args_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
  return found;
}

std::vector<std::string> ArgParser::option_list(const std::string& name) {
  const std::string word = "--" + name;
  std::vector<std::string> values;
  for (size_t i = 0; i < options_end();) {
    if (args_[i] == word) {
      if (i + 1 >= options_end()) {
        fail("option " + word + " needs a value");
        args_.erase(args_.begin() + static_cast<long>(i));
        continue;
      }
      values.push_back(args_[i + 1]);
      args_.erase(args_.begin() + static_cast<long>(i), args_.begin() + static_cast<long>(i) + 2);
    } else if (args_[i].rfind(word + "=", 0) == 0) {
      values.push_back(args_[i].substr(word.size() + 1));
      args_.erase(args_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
  return values;
}

std::optional<std::string> ArgParser::option(const std::string& name) {
  std::vector<std::string> values = option_list(name);
  if (values.empty()) return std::nullopt;
  return values.back();
}

std::optional<std::string> ArgParser::optional_positional() {
  for (size_t i = 0; i < args_.size(); ++i) {
    if (args_[i] == "--") {
      if (i + 1 >= args_.size()) return std::nullopt;
      std::string v = args_[i + 1];
      args_.erase(args_.begin() + static_cast<long>(i) + 1);
      return v;
    }
    if (args_[i].size() > 2 && args_[i].rfind("--", 0) == 0) continue;  // an unknown option
    std::string v = args_[i];
    args_.erase(args_.begin() + static_cast<long>(i));
    return v;
  }
  return std::nullopt;
}

std::string ArgParser::positional(const std::string& what) {
  auto v = optional_positional();
  if (!v) {
    fail("missing " + what);
    return {};
  }
  return *v;
}

bool ArgParser::finish() {
  for (const auto& a : args_) {
    if (a == "--") continue;
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      fail("unknown option " + a);
    } else {
      fail("unexpected argument '" + a + "'");
    }
  }
  return ok();
}

std::optional<uint64_t> parse_size(const std::string& text) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string suffix;
  for (; i < text.size(); ++i) suffix += static_cast<char>(std::tolower(text[i]));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "k" || suffix == "kib" || suffix == "kb") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mib" || suffix == "mb") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gib" || suffix == "gb") {
    shift = 30;
  } else if (suffix == "t" || suffix == "tib" || suffix == "tb") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

}  // namespace fleecectl
