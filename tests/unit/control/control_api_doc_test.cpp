// Replays every ```qmp block of docs/control-api.md, in order, through one QmpDispatcher
// over a real graph: each `->` request must get exactly the `<-` reply shown, and each
// `<-` event must have been emitted (timestamps vary). Keeps the document true to the
// code. /var/lib/fleeced/disk0.img and golden.img become 64 MiB temp files.
#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "control_test_env.h"

namespace server::control {
namespace {

using nlohmann::json;

struct DocMessage {
  bool request = false;  // "->" (else "<-")
  std::string text;
  int line = 0;
};

std::filesystem::path doc_path() {
  // tests/unit/control/<this file> -> the repository root.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path() /
         "docs" / "control-api.md";
}

std::vector<DocMessage> read_qmp_blocks(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<DocMessage> out;
  std::string line;
  bool in_block = false;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!in_block) {
      in_block = line == "```qmp";
      continue;
    }
    if (line.rfind("```", 0) == 0) {
      in_block = false;
      continue;
    }
    if (line.rfind("-> ", 0) == 0 || line.rfind("<- ", 0) == 0) {
      out.push_back({line[0] == '-', line.substr(3), n});
    } else if (!line.empty() && !out.empty()) {
      out.back().text += "\n" + line;
    }
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

TEST(ControlApiDocTest, EveryExampleExchangeIsWhatFleecedSends) {
  fleece_test::TempDir dir;
  for (const char* name : {"disk0.img", "golden.img"})
    fleece_test::make_file(dir.file(name), 64 << 20);
  blockcore::io::BlockingPool pool(0);
  blockcore::Graph graph(pool);
  ExportRegistry exports;
  CommandTable table = make_default_command_table();
  CommandContext ctx{graph, exports};
  backup::FleeceManager fleeces(pool, nullptr);
  ctx.fleeces = &fleeces;
  ctx.overlay_dir = dir.file("fleece");
  std::filesystem::create_directory(ctx.overlay_dir);
  std::deque<QmpEvent> events;
  ctx.events->subscribe([&events](const QmpEvent& e) { events.push_back(e); });
  QmpDispatcher dispatcher(table, ctx);

  std::vector<DocMessage> messages = read_qmp_blocks(doc_path().string());
  ASSERT_GT(messages.size(), 20u);
  std::deque<std::pair<json, int>> replies;  // (reply, line of its request)
  for (const DocMessage& m : messages) {
    std::string text = replace_all(m.text, "/var/lib/fleeced/", dir.path() + "/");
    SCOPED_TRACE("docs/control-api.md:" + std::to_string(m.line));
    if (m.request) {
      ASSERT_TRUE(replies.empty())
          << "the reply to line " << replies.front().second << " is not shown";
      replies.emplace_back(fleece_test::run_task(dispatcher.handle(text)), m.line);
      continue;
    }
    json expected;
    try {
      expected = json::parse(text);
    } catch (const json::parse_error& e) {
      FAIL() << "not JSON: " << e.what();
    }
    if (expected.contains("QMP")) {
      EXPECT_EQ(expected, QmpDispatcher::greeting());
    } else if (expected.contains("event")) {
      ASSERT_FALSE(events.empty()) << "no event was emitted";
      QmpEvent e = events.front();
      events.pop_front();
      EXPECT_EQ(expected["event"], e.name);
      EXPECT_EQ(expected["data"], e.data);
      EXPECT_GT(e.seconds, 0);
      EXPECT_TRUE(expected["timestamp"].contains("seconds"));
      EXPECT_TRUE(expected["timestamp"].contains("microseconds"));
    } else {
      ASSERT_FALSE(replies.empty()) << "a reply without a request";
      EXPECT_EQ(expected, replies.front().first);
      replies.pop_front();
    }
  }
  EXPECT_TRUE(replies.empty());
  EXPECT_TRUE(events.empty()) << "an emitted event is not shown: " << events.front().name;
}

}  // namespace
}  // namespace server::control
