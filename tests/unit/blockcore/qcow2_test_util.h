// Helpers shared by the qcow2 format-layer tests: running QEMU's tools through the
// shell, reading whole files, finding a value in qemu-img's JSON output.
// Threading: test-only, single-threaded.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace fleece_test {

inline bool have_program(const char* name) {
  const std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

inline bool have_qemu_tools() { return have_program("qemu-img") && have_program("qemu-io"); }

struct ShellResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `cmd` with /bin/sh, stderr folded into stdout.
inline ShellResult shell(const std::string& cmd) {
  ShellResult r;
  FILE* f = ::popen((cmd + " 2>&1 </dev/null").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int status = ::pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Single-quotes a path for the shell.
inline std::string sq(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::vector<std::byte> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(data.size());
  for (size_t i = 0; i < data.size(); ++i) out[i] = static_cast<std::byte>(data[i]);
  return out;
}

// True when qemu-img's pretty-printed JSON has `"key": value` (value as printed).
inline bool json_has(const std::string& json, const std::string& key, const std::string& value) {
  return json.find("\"" + key + "\": " + value) != std::string::npos;
}

}  // namespace fleece_test
