// QmpDispatcher: QMP framing and negotiation exactly as QEMU answers them, id echo,
// error classes, and the meta commands.
#include "server/control/qmp_dispatcher.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "control_test_env.h"
#include "server/control/qmp_error.h"
#include "server/control/version.h"

namespace server::control {
namespace {

using blockcore::Result;
using nlohmann::json;

// A fresh (not negotiated) dispatcher over a table with a few test commands.
class QmpDispatcherTest : public ::testing::Test {
 protected:
  QmpDispatcherTest()
      : pool_(0), graph_(pool_), table_(make_default_command_table()), ctx_{graph_, exports_} {
    table_.add("test-echo", [](const json& args, CommandContext&) -> asio::awaitable<Result<json>> {
      co_return args;
    });
    table_.add("test-throw", [](const json&, CommandContext&) -> asio::awaitable<Result<json>> {
      throw std::runtime_error("boom");
      co_return json();
    });
    table_.add("test-nodev", [](const json&, CommandContext&) -> asio::awaitable<Result<json>> {
      co_return device_not_found("Device 'x' not found");
    });
    dispatcher_ = std::make_unique<QmpDispatcher>(table_, ctx_);
  }

  json handle(const std::string& text) { return fleece_test::run_task(dispatcher_->handle(text)); }
  json negotiate() { return handle(R"({"execute": "qmp_capabilities"})"); }

  blockcore::io::BlockingPool pool_;
  blockcore::Graph graph_;
  ExportRegistry exports_;
  CommandTable table_;
  CommandContext ctx_;
  std::unique_ptr<QmpDispatcher> dispatcher_;
};

json error(const char* cls, const std::string& desc) {
  return {{"error", {{"class", cls}, {"desc", desc}}}};
}

json with_id(json j, json id) {
  j["id"] = std::move(id);
  return j;
}

TEST_F(QmpDispatcherTest, GreetingHasQemuShape) {
  json g = QmpDispatcher::greeting();
  EXPECT_EQ(g["QMP"]["capabilities"], json::array());
  EXPECT_EQ(g["QMP"]["version"]["qemu"]["major"], kVersionMajor);
  EXPECT_EQ(g["QMP"]["version"]["qemu"]["minor"], kVersionMinor);
  EXPECT_EQ(g["QMP"]["version"]["qemu"]["micro"], kVersionMicro);
  EXPECT_EQ(g["QMP"]["version"]["package"], version_package());
  EXPECT_EQ(version_package().rfind("fleece ", 0), 0u);
}

TEST_F(QmpDispatcherTest, EncodeIsOneAsciiLineEndingInCrLf) {
  std::string line = QmpDispatcher::encode({{"return", {{"s", "caf\xc3\xa9\n"}}}});
  EXPECT_EQ(line, "{\"return\":{\"s\":\"caf\\u00e9\\n\"}}\r\n");
}

TEST_F(QmpDispatcherTest, CommandsBeforeNegotiationAreCommandNotFound) {
  EXPECT_EQ(handle(R"({"execute": "query-version", "id": 7})"),
            with_id(error("CommandNotFound",
                          "Expecting capabilities negotiation with 'qmp_capabilities'"),
                    7));
  EXPECT_EQ(handle(R"({"execute": "no-such-command"})"),
            error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'"));
  EXPECT_FALSE(dispatcher_->negotiated());
  EXPECT_EQ(negotiate(), json({{"return", json::object()}}));
  EXPECT_TRUE(dispatcher_->negotiated());
  EXPECT_EQ(negotiate(), error("CommandNotFound",
                               "Capabilities negotiation is already complete, command ignored"));
  EXPECT_TRUE(handle(R"({"execute": "query-version"})").contains("return"));
}

TEST_F(QmpDispatcherTest, CapabilityNotOfferedIsRefused) {
  EXPECT_EQ(handle(R"({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}})"),
            error("GenericError", "Capability 'oob' not available"));
  EXPECT_FALSE(dispatcher_->negotiated());
  EXPECT_EQ(handle(R"({"execute": "qmp_capabilities", "arguments": {"enable": []}})"),
            json({{"return", json::object()}}));
}

TEST_F(QmpDispatcherTest, MalformedInputGetsQmpErrorsWithoutId) {
  json r = handle(R"({"execute": })");
  EXPECT_EQ(r["error"]["class"], "GenericError");
  EXPECT_EQ(r["error"]["desc"].get<std::string>().rfind("JSON parse error, ", 0), 0u) << r;
  EXPECT_FALSE(r.contains("id"));
  EXPECT_EQ(handle("[1, 2]"), error("GenericError", "QMP input must be a JSON object"));
  EXPECT_EQ(handle("42"), error("GenericError", "QMP input must be a JSON object"));
  EXPECT_EQ(handle("\"str\""), error("GenericError", "QMP input must be a JSON object"));
  EXPECT_EQ(QmpDispatcher::parse_error_reply("JSON parse error, x"),
            error("GenericError", "JSON parse error, x"));
  // A number out of range is a parse error too (nlohmann reports it as out_of_range).
  r = handle(R"({"execute": "query-version", "id": 1e400})");
  EXPECT_EQ(r["error"]["class"], "GenericError");
  EXPECT_FALSE(r.contains("id"));
  // Invalid UTF-8 is a parse error, never a crash.
  EXPECT_EQ(handle("{\"execute\": \"\xff\xfe\"}")["error"]["class"], "GenericError");
}

TEST_F(QmpDispatcherTest, RequestShapeErrorsEchoTheId) {
  negotiate();
  EXPECT_EQ(handle(R"({"id": "a1"})"),
            with_id(error("GenericError", "QMP input lacks member 'execute'"), "a1"));
  EXPECT_EQ(handle(R"({"execute": 5, "id": 2})"),
            with_id(error("GenericError", "QMP input member 'execute' must be a string"), 2));
  EXPECT_EQ(handle(R"({"execute": "query-version", "arguments": [], "id": 3})"),
            with_id(error("GenericError", "QMP input member 'arguments' must be an object"), 3));
  EXPECT_EQ(handle(R"({"execute": "query-version", "extra": 1, "id": 4})"),
            with_id(error("GenericError", "QMP input member 'extra' is unexpected"), 4));
  EXPECT_EQ(handle(R"({"exec-oob": "query-version"})"),
            error("GenericError", "QMP input member 'exec-oob' is unexpected"));
}

TEST_F(QmpDispatcherTest, UnknownCommand) {
  negotiate();
  EXPECT_EQ(handle(R"({"execute": "system_powerdown", "id": {"seq": [1]}})"),
            with_id(error("CommandNotFound", "The command system_powerdown has not been found"),
                    {{"seq", {1}}}));
}

TEST_F(QmpDispatcherTest, IdOfAnyTypeIsEchoedOnSuccess) {
  negotiate();
  for (json id : {json(1), json("x"), json({{"k", "v"}}), json::array({1, "2"}), json(nullptr)}) {
    json req = {{"execute", "test-echo"}, {"arguments", {{"a", 1}}}, {"id", id}};
    EXPECT_EQ(handle(req.dump()), with_id({{"return", {{"a", 1}}}}, id)) << id;
  }
  // No id: none in the reply; no arguments: handlers see an empty object.
  EXPECT_EQ(handle(R"({"execute": "test-echo"})"), json({{"return", json::object()}}));
}

TEST_F(QmpDispatcherTest, HandlerErrorsAndBugsBecomeQmpErrors) {
  negotiate();
  EXPECT_EQ(handle(R"({"execute": "test-nodev", "id": 1})"),
            with_id(error("DeviceNotFound", "Device 'x' not found"), 1));
  EXPECT_EQ(handle(R"({"execute": "test-throw", "id": 2})"),
            with_id(error("GenericError", "internal error: boom"), 2));
  // Still serving afterwards.
  EXPECT_TRUE(handle(R"({"execute": "query-version"})").contains("return"));
}

TEST_F(QmpDispatcherTest, QueryVersionAndArgumentChecking) {
  negotiate();
  EXPECT_EQ(handle(R"({"execute": "query-version"})")["return"], version_info());
  EXPECT_EQ(handle(R"({"execute": "query-version", "arguments": {"x": 1}})"),
            error("GenericError", "Parameter 'x' is unexpected"));
}

TEST_F(QmpDispatcherTest, QueryCommandsListsTheTable) {
  negotiate();
  json list = handle(R"({"execute": "query-commands"})")["return"];
  std::vector<std::string> names;
  for (const auto& c : list) names.push_back(c["name"]);
  EXPECT_EQ(names, table_.names());
  for (const char* expected :
       {"qmp_capabilities", "query-version", "query-commands", "blockdev-add", "blockdev-del",
        "query-named-block-nodes", "block-export-add", "block-export-del", "query-block-exports"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
}

TEST(CommandTableTest, DuplicateRegistrationIsAProgrammingError) {
  CommandTable t;
  register_meta_commands(t);
  EXPECT_THROW(register_meta_commands(t), std::logic_error);
}

}  // namespace
}  // namespace server::control
