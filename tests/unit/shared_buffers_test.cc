// The table through which the ranks of a host share collective buffers (shared_buffers.h), in
// one process standing for two ranks: rank 0 allocates and lists, rank 1 maps (its own process,
// which pidfd_getfd allows) and acknowledges. A buffer is readable through the mapping only while
// its owner lists it, a slot reused for another buffer is mapped afresh, and a full table leaves
// further buffers unshared.
#include "shared_buffers.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace wv::coll::detail {
namespace {

constexpr int kOwner = 0;
constexpr int kReader = 1;

// Mappings of the collectives' buffers in this process (owner's and reader's alike).
int buffer_mappings() {
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("wv-coll-buffer") != std::string::npos) ++count;
  }
  return count;
}

class SharedBuffersTest : public ::testing::Test {
 protected:
  SharedBuffersTest()
      : memory_(SharedTable::bytes(2)), table_(memory_.data(), 2), reader_(table_, kReader) {
    owner_.attach(table_, kOwner);
  }
  ~SharedBuffersTest() override { owner_.detach(); }
  void refresh() { reader_.refresh(pids_); }
  uint64_t acknowledged(int slot) const {
    return table_.mapped_by(kOwner, slot, kReader).load(std::memory_order_acquire);
  }

  std::vector<std::byte> memory_;
  SharedTable table_;
  SharedBuffers owner_;
  PeerMappings reader_;
  std::vector<pid_t> pids_{getpid(), getpid()};
};

TEST_F(SharedBuffersTest, AReaderMapsWhatTheOwnerListsAndAcknowledgesIt) {
  auto buffer = owner_.allocate(10000);
  ASSERT_TRUE(buffer.is_ok()) << buffer.status().to_string();
  std::memset(buffer->address, 0x5a, 10000);
  const auto start = reinterpret_cast<uint64_t>(buffer->address);
  const SharedBuffers::Found found =
      owner_.find(static_cast<std::byte*>(buffer->address) + 100, 50);
  ASSERT_GE(found.slot, 0);
  EXPECT_EQ(found.id, buffer->id);
  EXPECT_EQ(acknowledged(found.slot), 0u);
  EXPECT_EQ(reader_.find(kOwner, static_cast<uint32_t>(found.slot), start, 10000), nullptr);

  refresh();
  EXPECT_EQ(acknowledged(found.slot), buffer->id);
  const std::byte* seen = reader_.find(kOwner, static_cast<uint32_t>(found.slot), start + 100, 50);
  ASSERT_NE(seen, nullptr);
  EXPECT_NE(static_cast<const void*>(seen), static_cast<std::byte*>(buffer->address) + 100);
  EXPECT_EQ(seen[0], std::byte{0x5a});
  // The same pages: the owner's later stores show through the reader's mapping.
  static_cast<std::byte*>(buffer->address)[100] = std::byte{0x11};
  EXPECT_EQ(seen[0], std::byte{0x11});
  // Beyond the buffer, nothing.
  EXPECT_EQ(reader_.find(kOwner, static_cast<uint32_t>(found.slot), start + 9990, size_t{4096} * 3),
            nullptr);
  EXPECT_EQ(owner_.find(static_cast<std::byte*>(buffer->address) + 9990, 11).slot, -1);
}

TEST_F(SharedBuffersTest, AFreedBufferIsUnmappedAndItsSlotMappedAfresh) {
  auto first = owner_.allocate(8192);
  ASSERT_TRUE(first.is_ok());
  const int slot = owner_.find(first->address, 8192).slot;
  refresh();
  const int mapped = buffer_mappings();  // the owner's and the reader's
  owner_.release(first->id);
  refresh();
  EXPECT_EQ(buffer_mappings(), mapped - 2) << "the reader kept a freed buffer mapped";
  EXPECT_EQ(reader_.find(kOwner, static_cast<uint32_t>(slot), 0, 0), nullptr);

  auto second = owner_.allocate(8192);
  ASSERT_TRUE(second.is_ok());
  std::memset(second->address, 0x33, 8192);
  ASSERT_EQ(owner_.find(second->address, 8192).slot, slot);  // the freed slot, reused
  EXPECT_NE(second->id, first->id);
  EXPECT_EQ(acknowledged(slot), 0u) << "an acknowledgement of the old buffer survived";
  refresh();
  EXPECT_EQ(acknowledged(slot), second->id);
  const std::byte* seen = reader_.find(kOwner, static_cast<uint32_t>(slot),
                                       reinterpret_cast<uint64_t>(second->address), 8192);
  ASSERT_NE(seen, nullptr);
  EXPECT_EQ(seen[8191], std::byte{0x33});
}

TEST_F(SharedBuffersTest, BuffersBeyondTheTableAreNotShared) {
  std::vector<SharedBuffers::Allocated> buffers;
  for (int i = 0; i <= SharedTable::kSlots; ++i) {
    auto buffer = owner_.allocate(4096);
    ASSERT_TRUE(buffer.is_ok());
    buffers.push_back(*buffer);
  }
  for (int i = 0; i < SharedTable::kSlots; ++i) {
    EXPECT_GE(owner_.find(buffers[static_cast<size_t>(i)].address, 4096).slot, 0);
  }
  EXPECT_EQ(owner_.find(buffers.back().address, 4096).slot, -1);
  // Once one is freed the next allocation takes its slot.
  owner_.release(buffers.front().id);
  auto again = owner_.allocate(4096);
  ASSERT_TRUE(again.is_ok());
  EXPECT_GE(owner_.find(again->address, 4096).slot, 0);
}

TEST_F(SharedBuffersTest, ADetachedOwnerListsNothingAndABufferStaysUsable) {
  auto buffer = owner_.allocate(4096);
  ASSERT_TRUE(buffer.is_ok());
  owner_.detach();
  EXPECT_EQ(owner_.find(buffer->address, 4096).slot, -1);
  std::memset(buffer->address, 1, 4096);  // still the owner's memory
  owner_.release(buffer->id);
  EXPECT_EQ(table_.entry(kOwner, 0).id.load(), buffer->id)
      << "a detached owner must not touch the table (the segment may be gone)";
}

}  // namespace
}  // namespace wv::coll::detail
