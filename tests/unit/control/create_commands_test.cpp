// blockdev-create against a real graph (file and qcow2 drivers) over temp files: file
// creation, qcow2 formatting of a file node with QEMU's options and fleece's `backing`
// node, the header it writes, opening the new image with blockdev-add and writing
// through it, and the errors (arguments, node checks, option values).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "blockcore/qcow2/qcow2_format.h"
#include "control_test_env.h"

namespace server::control {
namespace {

using blockcore::qcow2::Header;
using nlohmann::json;

class CreateCommandsTest : public ControlTestEnv {
 protected:
  json create(const json& options) {
    return exec("blockdev-create", {{"job-id", "j0"}, {"options", options}});
  }
  void create_ok(const json& options) {
    json r = create(options);
    EXPECT_EQ(r, json({{"return", json::object()}})) << options.dump();
  }
  std::string create_err(const json& options) {
    json r = create(options);
    EXPECT_TRUE(r.contains("error")) << options.dump() << " -> " << r.dump();
    return r.contains("error") ? r["error"]["desc"].get<std::string>() : std::string();
  }

  // A new empty file made by blockdev-create and opened as file node `node`.
  std::string new_file_node(const std::string& node, const std::string& name) {
    std::string path = dir_.file(name);
    create_ok({{"driver", "file"}, {"filename", path}, {"size", 0}});
    add_file_node(node, path);
    return path;
  }

  Header header_of(const std::string& path) {
    auto bytes = fleece_test::read_file(path, 0, blockcore::qcow2::kHeaderReadLimit);
    auto h = blockcore::qcow2::parse_header(bytes);
    EXPECT_TRUE(h.is_ok()) << h.status().to_string();
    return h.is_ok() ? *h : Header();
  }

  static uint64_t file_size(const std::string& path) {
    return std::filesystem::file_size(path);
  }
};

TEST_F(CreateCommandsTest, FileCreatesAnEmptyFileOnceOnly) {
  std::string path = dir_.file("new.img");
  create_ok({{"driver", "file"}, {"filename", path}, {"size", 3 << 20}});
  EXPECT_EQ(file_size(path), 3u << 20);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);  // sparse
  EXPECT_EQ(create_err({{"driver", "file"}, {"filename", path}, {"size", 1024}}),
            "Could not create '" + path + "': File exists");
  EXPECT_EQ(file_size(path), 3u << 20);  // untouched

  std::string full = dir_.file("full.img");
  create_ok({{"driver", "file"}, {"filename", full}, {"size", 1 << 20},
             {"preallocation", "falloc"}, {"nocow", false}});
  ASSERT_EQ(::stat(full.c_str(), &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20);
  EXPECT_EQ(create_err({{"driver", "file"}, {"filename", dir_.file("no/such/dir")},
                        {"size", 0}}),
            "Could not create '" + dir_.file("no/such/dir") + "': No such file or directory");
}

TEST_F(CreateCommandsTest, ArgumentErrorsUseQemuWording) {
  std::string path = dir_.file("x.img");
  EXPECT_EQ(err("blockdev-create", {{"options", {{"driver", "file"}, {"filename", path},
                                                 {"size", 0}}}}),
            "Parameter 'job-id' is missing");
  EXPECT_EQ(err("blockdev-create", {{"job-id", 1}, {"options", {{"driver", "file"}}}}),
            "Invalid parameter type for 'job-id', expected: string");
  EXPECT_EQ(err("blockdev-create", {{"job-id", "j0"}}), "Parameter 'options' is missing");
  EXPECT_EQ(create_err({{"filename", path}, {"size", 0}}),
            "Parameter 'options.driver' is missing");
  EXPECT_EQ(create_err({{"driver", "vmdk"}, {"file", "x"}, {"size", 0}}),
            "Parameter 'options.driver' does not accept value 'vmdk'");
  EXPECT_EQ(create_err({{"driver", "file"}, {"filename", path}}),
            "Parameter 'options.size' is missing");
  EXPECT_EQ(create_err({{"driver", "file"}, {"filename", path}, {"size", -1}}),
            "Parameter 'options.size' expects uint64");
  EXPECT_EQ(create_err({{"driver", "file"}, {"filename", path}, {"size", 0}, {"bogus", 1}}),
            "Parameter 'options.bogus' is unexpected");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", {{"driver", "file"}, {"filename", path}}},
                        {"size", 0}}),
            "Parameter 'options.file': fleece takes the node-name of a node added with "
            "blockdev-add, not an inline node definition");
  EXPECT_EQ(err("blockdev-create", {{"job-id", "0bad"},
                                    {"options", {{"driver", "file"}, {"filename", path},
                                                 {"size", 0}}}}),
            "Invalid job ID '0bad'");
  EXPECT_FALSE(std::filesystem::exists(path));  // no side effects
}

TEST_F(CreateCommandsTest, Qcow2DefaultsOpenAndTakeWrites) {
  std::string path = new_file_node("f0", "a.qcow2");
  create_ok({{"driver", "qcow2"}, {"file", "f0"}, {"size", 64 << 20}});
  Header h = header_of(path);
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.cluster_bits, 16u);
  EXPECT_EQ(h.size, 64u << 20);
  EXPECT_EQ(h.refcount_order, 4u);
  EXPECT_TRUE(h.backing_file.empty());
  EXPECT_FALSE(h.extended_l2());
  EXPECT_EQ(file_size(path), 4u * 65536);  // header, refcount table, block, L1

  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q0"}, {"file", "f0"}});
  auto q0 = graph_.find("q0");
  ASSERT_NE(q0, nullptr);
  EXPECT_EQ(q0->size(), 64u << 20);
  std::vector<std::byte> buf(65536, std::byte{0x5a}), back(65536);
  ASSERT_TRUE(fleece_test::run_task(q0->write(1 << 20, buf, blockcore::IoFlags::kNone)).is_ok());
  ASSERT_TRUE(fleece_test::run_task(q0->read(1 << 20, back)).is_ok());
  EXPECT_EQ(back, buf);
  // The file node now has a parent: formatting it again is refused.
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f0"}, {"size", 1 << 20}}),
            "Node 'f0' is in use by node 'q0'");
}

TEST_F(CreateCommandsTest, Qcow2OptionsReachTheHeader) {
  std::string p1 = new_file_node("f1", "v2.qcow2");
  create_ok({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 30}, {"version", "v2"},
             {"cluster-size", 4096}});
  Header h1 = header_of(p1);
  EXPECT_EQ(h1.version, 2u);
  EXPECT_EQ(h1.cluster_bits, 12u);
  EXPECT_EQ(h1.size, 1u << 30);

  std::string p2 = new_file_node("f2", "ext.qcow2");
  create_ok({{"driver", "qcow2"}, {"file", "f2"}, {"size", 1 << 30}, {"extended-l2", true},
             {"cluster-size", 131072}, {"refcount-bits", 8}, {"lazy-refcounts", true},
             {"compression-type", "zstd"}, {"backing-file", "base.raw"},
             {"backing-fmt", "raw"}});
  Header h2 = header_of(p2);
  EXPECT_TRUE(h2.extended_l2());
  EXPECT_EQ(h2.cluster_bits, 17u);
  EXPECT_EQ(h2.refcount_order, 3u);
  EXPECT_NE(h2.compatible_features & blockcore::qcow2::kCompatLazyRefcounts, 0u);
  EXPECT_EQ(h2.compression_type, blockcore::qcow2::CompressionType::kZstd);
  EXPECT_EQ(h2.backing_file, "base.raw");
  EXPECT_EQ(h2.backing_format, "raw");
}

TEST_F(CreateCommandsTest, Qcow2TruncatesALongerFile) {
  std::string path = image("old.img", 8 << 20);
  fleece_test::make_file(path, 8 << 20, /*fill=*/true);
  add_file_node("f0", path);
  create_ok({{"driver", "qcow2"}, {"file", "f0"}, {"size", 1 << 20}, {"cluster-size", 512}});
  EXPECT_LT(file_size(path), 8u << 10);
  EXPECT_EQ(graph_.find("f0")->size(), file_size(path));
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q0"}, {"file", "f0"}});
  std::vector<std::byte> back(4096, std::byte{1});
  ASSERT_TRUE(fleece_test::run_task(graph_.find("q0")->read(0, back)).is_ok());
  EXPECT_EQ(back, std::vector<std::byte>(4096));
}

TEST_F(CreateCommandsTest, BackingNodeIsRecordedByFileNameAndFormat) {
  std::string base = image("base.raw", 4 << 20);
  ok("blockdev-add", {{"driver", "raw"}, {"node-name", "base"}, {"read-only", true},
                      {"file", {{"driver", "file"}, {"filename", base}}}});
  std::string path = new_file_node("f0", "top.qcow2");
  create_ok({{"driver", "qcow2"}, {"file", "f0"}, {"size", 4 << 20}, {"backing", "base"}});
  Header h = header_of(path);
  EXPECT_EQ(h.backing_file, base);
  EXPECT_EQ(h.backing_format, "raw");
  // Opened with its chain from the header, or over the backing node itself.
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "top"}, {"file", "f0"},
                      {"backing", "base"}});

  ok("blockdev-add", {{"driver", "raw"}, {"node-name", "win"}, {"read-only", true},
                      {"offset", 4096}, {"file", {{"driver", "file"}, {"filename", base},
                                                  {"read-only", true}}}});
  new_file_node("f1", "w.qcow2");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 20},
                        {"backing", "win"}}),
            "Backing node 'win' is a window (offset/size) into its file, which an image "
            "header cannot name");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 20},
                        {"backing", "f0"}}),
            "Backing node 'f0' has driver 'file'; an image header can name a raw or qcow2 "
            "backing node");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 20},
                        {"backing", "base"}, {"backing-file", "x"}}),
            "'backing' and 'backing-file' cannot be used together");
}

TEST_F(CreateCommandsTest, FileNodeChecks) {
  std::string path = image("d.img");
  add_file_node("ro", path, /*read_only=*/true);
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "ro"}, {"size", 1 << 20}}),
            "Node 'ro' is read-only");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "nope"}, {"size", 1 << 20}}),
            "Cannot find device='nope' nor node-name='nope'");
  ok("blockdev-add", {{"driver", "raw"}, {"node-name", "r0"}, {"read-only", true},
                      {"file", "ro"}});
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "r0"}, {"size", 1 << 20}}),
            "The file node 'r0' has driver 'raw'; blockdev-create needs a node of driver "
            "'file'");
  std::string p2 = image("e.img");
  add_file_node("e0", p2);
  ok("block-export-add", {{"type", "nbd"}, {"id", "exp0"}, {"node-name", "e0"}});
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "e0"}, {"size", 1 << 20}}),
            "Node 'e0' is in use by export 'exp0'");
  // Nothing was written.
  EXPECT_EQ(fleece_test::read_file(p2, 0, 4), std::vector<std::byte>(4));
}

TEST_F(CreateCommandsTest, Qcow2ValueErrorsUseQemuWording) {
  new_file_node("f0", "v.qcow2");
  auto e = [this](json extra) {
    json o = {{"driver", "qcow2"}, {"file", "f0"}, {"size", 1 << 20}};
    o.update(extra);
    return create_err(o);
  };
  EXPECT_EQ(e({{"size", 1000}}), "Image size must be a multiple of 512 bytes");
  EXPECT_EQ(e({{"cluster-size", 3000}}),
            "Cluster size must be a power of two between 512 and 2048k");
  EXPECT_EQ(e({{"cluster-size", 4 << 20}}),
            "Cluster size must be a power of two between 512 and 2048k");
  EXPECT_EQ(e({{"extended-l2", true}, {"cluster-size", 4096}}),
            "Extended L2 entries are only supported with cluster sizes of at least 16384 "
            "bytes");
  EXPECT_EQ(e({{"version", "v2"}, {"extended-l2", true}}),
            "Extended L2 tables are only supported with compatibility level 1.1 and above "
            "(use version=v3 or greater)");
  EXPECT_EQ(e({{"version", "v2"}, {"lazy-refcounts", true}}),
            "Lazy refcounts only supported with compatibility level 1.1 and above (use "
            "version=v3 or greater)");
  EXPECT_EQ(e({{"refcount-bits", 12}}),
            "Refcount width must be a power of two and may not exceed 64 bits");
  EXPECT_EQ(e({{"version", "v2"}, {"refcount-bits", 8}}),
            "Different refcount widths than 16 bits require compatibility level 1.1 or above "
            "(use version=v3 or greater)");
  EXPECT_EQ(e({{"backing-fmt", "raw"}}), "Backing format cannot be used without backing file");
  EXPECT_EQ(e({{"data-file-raw", true}}), "data-file-raw requires data-file");
  EXPECT_EQ(e({{"version", "v2"}, {"compression-type", "zstd"}}),
            "Non-zlib compression type is only supported with compatibility level 1.1 and "
            "above (use version=v3 or greater)");
  EXPECT_EQ(e({{"compression-type", "lz4"}}),
            "Parameter 'options.compression-type' does not accept value 'lz4'");
  EXPECT_EQ(e({{"version", "v4"}}), "Parameter 'options.version' does not accept value 'v4'");
  EXPECT_EQ(e({{"preallocation", "full"}}),
            "Preallocation mode 'full' is not supported by fleece for qcow2 images");
  EXPECT_EQ(e({{"size", 1ull << 62}}).rfind("qcow2 create: size", 0), 0u);
  EXPECT_EQ(file_size(dir_.file("v.qcow2")), 0u);  // nothing written
}

TEST_F(CreateCommandsTest, ExternalDataFile) {
  std::string path = new_file_node("f0", "d.qcow2");
  std::string data = new_file_node("d0", "d.data");
  create_ok({{"driver", "qcow2"}, {"file", "f0"}, {"size", 2 << 20}, {"data-file", "d0"},
             {"data-file-raw", true}});
  Header h = header_of(path);
  EXPECT_TRUE(h.has_data_file());
  EXPECT_TRUE(h.data_file_raw());
  EXPECT_EQ(h.data_file, data);
  EXPECT_EQ(file_size(data), 2u << 20);  // the raw data file covers the disk
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q0"}, {"file", "f0"},
                      {"data-file", "d0"}});
  EXPECT_EQ(graph_.find("q0")->size(), 2u << 20);

  // A raw data file that already holds data would be hidden by empty L2 tables.
  std::string full = image("full.data", 1 << 20);
  fleece_test::make_file(full, 1 << 20, /*fill=*/true);
  add_file_node("d1", full);
  new_file_node("f1", "e.qcow2");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 20},
                        {"data-file", "d1"}, {"data-file-raw", true}}),
            "The data file node 'd1' holds data: data-file-raw over existing data needs "
            "metadata preallocation, which fleece does not do (use qemu-img create)");
  EXPECT_EQ(create_err({{"driver", "qcow2"}, {"file", "f1"}, {"size", 1 << 20},
                        {"data-file", "f1"}}),
            "The data file node cannot be the image's file node");
}

}  // namespace
}  // namespace server::control
