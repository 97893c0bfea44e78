// The little HTTP/1.1 the metrics endpoint speaks: parse a request head (request line
// and headers, up to the blank line) and build a complete response that closes the
// connection. Only what a Prometheus scraper or curl sends is understood; anything
// else is answered with an error status, never an exception.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace server::metrics {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  bool head_only = false;  // a HEAD request: headers without the body
  std::string extra_headers;  // complete lines, each ending in \r\n
};

// Maps a request head to a response: 400 for a malformed head, 505 for a version other
// than HTTP/1.x, 405 for a method other than GET or HEAD, 404 for a path other than
// /metrics (a query string is ignored); for GET/HEAD /metrics, `render()` gives the
// body (text exposition format).
template <class Render>
HttpResponse respond_to(std::string_view head, Render render);

// The request line's parts; ok = false when the head is malformed.
struct RequestLine {
  bool ok = false;
  std::string method;
  std::string path;  // without the query string
  std::string version;
};
RequestLine parse_request_line(std::string_view head);

// The bytes of `r` on the wire (status line, headers, Connection: close, body).
std::string serialize(const HttpResponse& r);
const char* reason_phrase(int status);
// An error response with a one-line text body.
HttpResponse error_response(int status);

template <class Render>
HttpResponse respond_to(std::string_view head, Render render) {
  const RequestLine line = parse_request_line(head);
  if (!line.ok) return error_response(400);
  if (line.version != "HTTP/1.1" && line.version != "HTTP/1.0") return error_response(505);
  if (line.method != "GET" && line.method != "HEAD") {
    HttpResponse r = error_response(405);
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }
  if (line.path != "/metrics") return error_response(404);
  HttpResponse r;
  r.body = render(r.content_type);
  r.head_only = line.method == "HEAD";
  return r;
}

}  // namespace server::metrics
