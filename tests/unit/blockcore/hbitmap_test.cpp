// HBitmap against a plain std::vector<bool> model: set/reset/next_set/next_clear/count
// agree on random operations, serialization follows the qcow2 bit order, and a scan of a
// huge mostly-clean map visits only what is set.
#include "blockcore/bitmap/hbitmap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace blockcore {
namespace {

uint64_t model_next(const std::vector<bool>& m, uint64_t from, uint64_t end, bool value) {
  for (uint64_t i = from; i < end; ++i) {
    if (m[i] == value) return i;
  }
  return end;
}

TEST(HBitmap, EmptyAndTiny) {
  HBitmap zero(0);
  EXPECT_EQ(zero.size(), 0u);
  EXPECT_EQ(zero.next_set(0, 0), 0u);
  HBitmap one(1);
  EXPECT_FALSE(one.get(0));
  one.set(0, 1);
  EXPECT_TRUE(one.get(0));
  EXPECT_EQ(one.count(), 1u);
  EXPECT_EQ(one.next_set(0, 1), 0u);
  EXPECT_EQ(one.next_clear(0, 1), 1u);
}

TEST(HBitmap, MatchesModelOnRandomOperations) {
  for (uint64_t bits : {63u, 64u, 65u, 4095u, 4096u, 262145u + 17u}) {
    std::mt19937_64 rng(bits);
    HBitmap h(bits);
    std::vector<bool> m(bits);
    for (int step = 0; step < 400; ++step) {
      const uint64_t first = rng() % bits;
      const uint64_t n = 1 + rng() % std::min<uint64_t>(bits - first, step % 7 == 0 ? bits : 300);
      const bool set = rng() % 3 != 0;
      if (set) {
        h.set(first, n);
      } else {
        h.reset(first, n);
      }
      for (uint64_t i = first; i < first + n; ++i) m[i] = set;
      uint64_t count = 0;
      for (bool b : m) count += b;
      ASSERT_EQ(h.count(), count) << "bits " << bits << " step " << step;
      const uint64_t from = rng() % bits;
      const uint64_t end = from + rng() % (bits - from + 1);
      ASSERT_EQ(h.next_set(from, end), model_next(m, from, end, true)) << from << ".." << end;
      ASSERT_EQ(h.next_clear(from, end), model_next(m, from, end, false)) << from << ".." << end;
      ASSERT_EQ(h.all_set(first, n), set);
    }
  }
}

TEST(HBitmap, SerializesLeastSignificantBitFirst) {
  HBitmap h(20);
  h.set(0, 1);
  h.set(9, 2);   // bits 9, 10 -> byte 1 = 0b110
  h.set(19, 1);  // byte 2 bit 3
  std::vector<std::byte> out(4, std::byte{0xff});
  h.serialize(0, out);
  EXPECT_EQ(out[0], std::byte{0x01});
  EXPECT_EQ(out[1], std::byte{0x06});
  EXPECT_EQ(out[2], std::byte{0x08});
  EXPECT_EQ(out[3], std::byte{0x00});  // past the end reads as zero

  HBitmap back(20);
  back.deserialize(0, out);
  EXPECT_EQ(back, h);
  EXPECT_EQ(back.count(), 4u);
  // Bits past the end in the input are ignored.
  std::vector<std::byte> ones(8, std::byte{0xff});
  back.deserialize(0, ones);
  EXPECT_EQ(back.count(), 20u);
  EXPECT_EQ(back.next_clear(0, 20), 20u);
}

TEST(HBitmap, DeserializesAtAnOffset) {
  HBitmap h(1000);
  std::vector<std::byte> in{std::byte{0x80}, std::byte{0x01}};
  h.deserialize(64, in);  // bits 64+7 and 64+8
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.next_set(0, 1000), 71u);
  EXPECT_EQ(h.next_set(72, 1000), 72u);
  EXPECT_EQ(h.next_set(73, 1000), 1000u);
}

TEST(HBitmap, MergeAndResize) {
  HBitmap a(200), b(200);
  a.set(3, 2);
  b.set(150, 10);
  a.merge(b);
  EXPECT_EQ(a.count(), 12u);
  EXPECT_EQ(a.next_set(5, 200), 150u);
  a.resize(100);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_EQ(a.next_set(5, 100), 100u);
  a.resize(300);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_FALSE(a.get(155));
}

// A 1 TiB disk at 64 KiB granules: 16M bits in about 2 MiB; every scattered set bit is
// found in order (speed is measured by tests/bench, not here).
TEST(HBitmap, HugeSparseMap) {
  const uint64_t bits = 16ull << 20;
  HBitmap h(bits);
  EXPECT_LT(h.memory_bytes(), (2u << 20) + (64u << 10));
  std::mt19937_64 rng(7);
  std::vector<uint64_t> set;
  for (int i = 0; i < 3000; ++i) {
    set.push_back(rng() % bits);
    h.set(set.back(), 1);
  }
  std::sort(set.begin(), set.end());
  set.erase(std::unique(set.begin(), set.end()), set.end());
  std::vector<uint64_t> found;
  for (uint64_t pos = h.next_set(0, bits); pos < bits; pos = h.next_set(pos + 1, bits)) {
    found.push_back(pos);
  }
  EXPECT_EQ(found, set);
  EXPECT_EQ(h.count(), set.size());
}

}  // namespace
}  // namespace blockcore
