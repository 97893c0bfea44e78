// The Prometheus text rendering and the metrics endpoint's HTTP request handling: every
// line is a comment or a valid sample, histograms are cumulative and end in +Inf, label
// values are escaped; malformed requests get 400/404/405/505, never an exception.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>

#include "server/metrics/http_request.h"
#include "server/metrics/prometheus_text.h"

namespace server::metrics {
namespace {

using blockcore::IoOp;

StatsSnapshot sample_snapshot() {
  StatsSnapshot s;
  NodeStats n;
  n.node_name = "disk0";
  n.driver = "qcow2";
  n.size = 1 << 20;
  blockcore::IoOpSnapshot& rd = n.io.ops[static_cast<size_t>(IoOp::kRead)];
  rd.ok = 3;
  rd.failed = 1;
  rd.bytes = 12288;
  rd.total_ns = 2'500'000;
  rd.latency.counts[0] = 1;
  rd.latency.counts[3] = 2;
  rd.latency.counts[blockcore::LatencyHistogram::kFiniteBuckets] = 1;
  n.bitmaps.push_back(BitmapStats{"nightly", 65536, 65536, true});
  s.nodes.push_back(n);
  ExportStats e{"vm \"a\"", "disk0", true, 2, {}};
  e.nbd.connections = 5;
  e.nbd.requests[0] = 7;  // NBD_CMD_READ
  e.nbd.errors[0] = 1;
  e.nbd.bytes_read = 28672;
  s.exports.push_back(e);
  FleeceStats f;
  f.id = "backup";
  f.node_name = "disk0";
  f.overlay_bytes = 131072;
  f.copied_bytes = 65536;
  f.broken = true;
  s.fleeces.push_back(f);
  return s;
}

TEST(PrometheusTextTest, EveryLineIsACommentOrAValidSample) {
  const std::string text = render_prometheus(sample_snapshot());
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")*\})? [-+0-9.eE]+(Inf)?$)");
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
    } else {
      EXPECT_TRUE(std::regex_match(line, sample)) << line;
      ++samples;
    }
  }
  EXPECT_GT(samples, 100);
  EXPECT_EQ(text.back(), '\n');
}

TEST(PrometheusTextTest, CountersMatchTheSnapshot) {
  const std::string text = render_prometheus(sample_snapshot());
  auto has = [&](const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
  };
  EXPECT_TRUE(has("fleece_node_read_bytes_total{node=\"disk0\"} 12288"));
  EXPECT_TRUE(has("fleece_node_requests_total{node=\"disk0\",op=\"read\"} 4"));
  EXPECT_TRUE(has("fleece_node_errors_total{node=\"disk0\",op=\"read\"} 1"));
  EXPECT_TRUE(has("fleece_node_requests_total{node=\"disk0\",op=\"write\"} 0"));
  EXPECT_TRUE(has("fleece_bitmap_dirty_bytes{node=\"disk0\",bitmap=\"nightly\"} 65536"));
  EXPECT_TRUE(has("fleece_export_connections{export=\"vm \\\"a\\\"\",node=\"disk0\"} 2"));
  EXPECT_TRUE(has("fleece_export_connections_total{export=\"vm \\\"a\\\"\",node=\"disk0\"} 5"));
  EXPECT_TRUE(
      has("fleece_export_requests_total{export=\"vm \\\"a\\\"\",node=\"disk0\",op=\"read\"} 7"));
  EXPECT_TRUE(
      has("fleece_export_errors_total{export=\"vm \\\"a\\\"\",node=\"disk0\",op=\"read\"} 1"));
  EXPECT_TRUE(has("fleece_export_read_bytes_total{export=\"vm \\\"a\\\"\",node=\"disk0\"} 28672"));
  EXPECT_EQ(text.find("op=\"disc\""), std::string::npos);
  EXPECT_TRUE(has("fleece_fleece_overlay_bytes{id=\"backup\",node=\"disk0\"} 131072"));
  EXPECT_TRUE(has("fleece_fleece_copied_bytes{id=\"backup\",node=\"disk0\"} 65536"));
  EXPECT_TRUE(has("fleece_fleece_broken{id=\"backup\",node=\"disk0\"} 1"));
  EXPECT_TRUE(has("# TYPE fleece_node_latency_seconds histogram"));
}

TEST(PrometheusTextTest, HistogramBucketsAreCumulativeWithInf) {
  const std::string text = render_prometheus(sample_snapshot());
  const std::string p = "fleece_node_latency_seconds_bucket{node=\"disk0\",op=\"read\",le=\"";
  auto has = [&](const std::string& le, int v) {
    return text.find(p + le + "\"} " + std::to_string(v) + "\n") != std::string::npos;
  };
  EXPECT_TRUE(has("1e-06", 1));
  EXPECT_TRUE(has("2e-06", 1));
  EXPECT_TRUE(has("8e-06", 3));
  EXPECT_TRUE(has("16.777216", 3));
  EXPECT_TRUE(has("+Inf", 4));
  EXPECT_NE(text.find("fleece_node_latency_seconds_sum{node=\"disk0\",op=\"read\"} 0.0025\n"),
            std::string::npos);
  EXPECT_NE(text.find("fleece_node_latency_seconds_count{node=\"disk0\",op=\"read\"} 4\n"),
            std::string::npos);
}

TEST(PrometheusTextTest, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(escape_label_value("plain"), "plain");
}

std::string body_of(int* status, std::string_view head) {
  HttpResponse r = respond_to(head, [](std::string& type) {
    type = "text/plain";
    return std::string("metrics\n");
  });
  *status = r.status;
  return serialize(r);
}

TEST(MetricsHttpTest, GetMetricsIsServed) {
  int status = 0;
  const std::string out = body_of(&status, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(out.find("Content-Length: 8\r\n"), std::string::npos);
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 8), "metrics\n");
  EXPECT_EQ(body_of(&status, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").substr(out.size() - 8),
            "metrics\n");
  EXPECT_EQ(status, 200);
}

TEST(MetricsHttpTest, HeadHasNoBody) {
  int status = 0;
  const std::string out = body_of(&status, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(MetricsHttpTest, BadRequestsGetErrors) {
  int status = 0;
  body_of(&status, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(status, 405);
  EXPECT_NE(body_of(&status, "DELETE /metrics HTTP/1.1\r\n\r\n").find("Allow: GET, HEAD\r\n"),
            std::string::npos);
  body_of(&status, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status, 404);
  body_of(&status, "GET /metricsx HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status, 404);
  body_of(&status, "GET /metrics HTTP/2.0\r\n\r\n");
  EXPECT_EQ(status, 505);
  for (const char* bad : {"\r\n\r\n", "garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n",
                          "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1 x\r\n\r\n",
                          "GET /metrics FTP/1.1\r\n\r\n", "G\x01T /metrics HTTP/1.1\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                          "GET /met rics HTTP/1.1\r\n\r\n"}) {
    body_of(&status, bad);
    EXPECT_EQ(status, 400) << bad;
  }
}

}  // namespace
}  // namespace server::metrics
