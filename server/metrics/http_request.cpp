#include "server/metrics/http_request.h"

namespace server::metrics {
namespace {

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.';
}

}  // namespace

RequestLine parse_request_line(std::string_view head) {
  RequestLine r;
  const size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return r;
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return r;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return r;
  if (line.find(' ', sp2 + 1) != std::string_view::npos) return r;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (!is_token_char(c)) return r;
  }
  if (target.front() != '/') return r;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return r;
  }
  if (version.substr(0, 5) != "HTTP/") return r;
  // Header lines: "name: value", no obs-fold, nothing but printable text.
  std::string_view rest = head.substr(eol + 2);
  while (!rest.empty()) {
    const size_t e = rest.find("\r\n");
    const std::string_view h = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
    if (h.empty()) break;
    const size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return r;
    for (char c : h.substr(0, colon)) {
      if (!is_token_char(c)) return r;
    }
  }
  r.ok = true;
  r.method = method;
  r.path = target.substr(0, target.find('?'));
  r.version = version;
  return r;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Error";
}

HttpResponse error_response(int status) {
  HttpResponse r;
  r.status = status;
  r.body = std::to_string(status) + " " + reason_phrase(status) + "\n";
  return r;
}

std::string serialize(const HttpResponse& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Connection: close\r\n";
  out += r.extra_headers;
  out += "\r\n";
  if (!r.head_only) out += r.body;
  return out;
}

}  // namespace server::metrics
