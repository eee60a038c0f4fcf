// The shm provider's shared ring (verbs/providers/shm/shm_ring.h) on its own: wrap-around,
// back-pressure when full, doorbell flags, and a peer that writes impossible indices or entries.
#include "shm_ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace wv::verbs::shm {
namespace {

constexpr uint32_t kRing = kMinRingBytes;

struct Pair {
  std::unique_ptr<Segment> segment;
  RingProducer producer;
  RingConsumer consumer;
};

void make_pair(Pair& pair) {
  auto created = Segment::create(kRing);
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  pair.segment = std::move(created).value();
  SegmentHeader& header = pair.segment->header();
  pair.producer = RingProducer(&header.rings[0], pair.segment->ring_data(0), kRing);
  pair.consumer = RingConsumer(&header.rings[0], pair.segment->ring_data(0), kRing);
}

// Writes one entry of `payload` bytes whose payload is `seed` repeated; false when full.
bool produce(RingProducer& producer, uint32_t payload, uint8_t seed, bool* ring = nullptr) {
  const uint32_t bytes = entry_bytes(payload);
  bool malformed = false;
  std::byte* at = producer.reserve(bytes, &malformed);
  EXPECT_FALSE(malformed);
  if (at == nullptr) return false;
  EntryHeader header{};
  header.size = bytes;
  header.type = 2;
  header.length = payload;
  header.tag = seed;
  std::memset(at + kEntryHeaderBytes, seed, payload);
  const bool woke = producer.commit(header);
  if (ring != nullptr) *ring = woke;
  return true;
}

// Reads one entry and checks it; returns false when empty.
bool consume(RingConsumer& consumer, uint32_t payload, uint8_t seed, bool* ring = nullptr) {
  EntryHeader header;
  const std::byte* data = nullptr;
  const char* why = "";
  const RingConsumer::Peek peek = consumer.peek(header, &data, &why);
  if (peek == RingConsumer::Peek::kEmpty) return false;
  EXPECT_EQ(peek, RingConsumer::Peek::kEntry) << why;
  EXPECT_EQ(header.length, payload);
  EXPECT_EQ(header.tag, seed);
  for (uint32_t i = 0; i < header.length; ++i) {
    if (data[i] != static_cast<std::byte>(seed)) {
      ADD_FAILURE() << "payload byte " << i << " differs";
      break;
    }
  }
  const bool woke = consumer.release(header);
  if (ring != nullptr) *ring = woke;
  return true;
}

TEST(ShmRing, SegmentIsAnonymousAndSealed) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  // No name anywhere: a memfd, sealed so that the peer cannot shrink it under us.
  char link[256] = {};
  const std::string path = "/proc/self/fd/" + std::to_string(pair.segment->fd());
  ASSERT_GT(::readlink(path.c_str(), link, sizeof(link) - 1), 0);
  EXPECT_EQ(std::string(link).rfind("/memfd:", 0), 0u) << link;
  EXPECT_NE(::ftruncate(pair.segment->fd(), 4096), 0) << "the segment can be shrunk";
  // The other side maps the same memory.
  auto attached = Segment::attach(::dup(pair.segment->fd()));
  ASSERT_TRUE(attached.is_ok()) << attached.status().to_string();
  EXPECT_EQ(attached.value()->ring_bytes(), kRing);
  pair.segment->ring_data(1)[5] = std::byte{42};
  EXPECT_EQ(attached.value()->ring_data(1)[5], std::byte{42});
}

TEST(ShmRing, UnsealedOrForeignFileRefused) {
  const int fd = ::memfd_create("not-a-segment", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kDataOffset + 2 * kRing), 0);
  EXPECT_EQ(Segment::attach(fd).status().code(), Errc::kProtocolError);
  const int sealed = ::memfd_create("zeros", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(sealed, 0);
  ASSERT_EQ(::ftruncate(sealed, kDataOffset + 2 * kRing), 0);
  ASSERT_EQ(::fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  EXPECT_EQ(Segment::attach(sealed).status().code(), Errc::kProtocolError) << "no magic";
}

TEST(ShmRing, WrapsAroundManyTimesInOrder) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  // Sizes that do not divide the ring, so entries meet its end at every offset.
  const uint32_t sizes[] = {0, 1, 7, 8, 100, 1000, 3000, 24, 333};
  uint64_t produced = 0;
  uint64_t consumed = 0;
  for (int round = 0; round < 2000; ++round) {
    for (int burst = 0; burst < 3; ++burst, ++produced) {
      const uint32_t size = sizes[produced % std::size(sizes)];
      ASSERT_TRUE(produce(pair.producer, size, static_cast<uint8_t>(produced)));
    }
    for (int burst = 0; burst < 3; ++burst, ++consumed) {
      const uint32_t size = sizes[consumed % std::size(sizes)];
      ASSERT_TRUE(consume(pair.consumer, size, static_cast<uint8_t>(consumed)));
    }
  }
  EXPECT_GT(pair.producer.head(), uint64_t{kRing} * 50) << "the test wrapped the ring";
  EXPECT_TRUE(pair.consumer.empty());
}

// A compact entry: 40 bytes of payload and its header in one cache line; the consumer reads the
// fields the entry does not carry as zero (not as the payload bytes at their place) and finds the
// payload right after the compact header, interleaved with full entries.
TEST(ShmRing, CompactEntriesFitALineAndReadAsFullOnes) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  constexpr uint32_t kPayload = kCacheLine - kCompactHeaderBytes;
  EXPECT_EQ(entry_bytes(kPayload, true), kCacheLine);
  EXPECT_EQ(entry_bytes(kPayload), 2 * kCacheLine);
  for (int round = 0; round < 1000; ++round) {
    const auto seed = static_cast<uint8_t>(round | 1);
    bool malformed = false;
    std::byte* at = pair.producer.reserve(entry_bytes(kPayload, true), &malformed);
    ASSERT_NE(at, nullptr);
    EntryHeader header{};
    header.size = entry_bytes(kPayload, true);
    header.type = 2 | kCompactType;
    header.flags = 3;
    header.length = kPayload;
    header.key = 77;
    header.tag = 99;  // not carried
    std::memset(at + header_bytes(header.type), seed, kPayload);
    pair.producer.commit(header);
    ASSERT_TRUE(produce(pair.producer, 8, seed));

    EntryHeader got;
    const std::byte* data = nullptr;
    const char* why = "";
    ASSERT_EQ(pair.consumer.peek(got, &data, &why), RingConsumer::Peek::kEntry) << why;
    EXPECT_EQ(got.type, 2);
    EXPECT_EQ(got.flags, 3);
    EXPECT_EQ(got.length, kPayload);
    EXPECT_EQ(got.key, 77u);
    EXPECT_EQ(got.tag, 0u);
    EXPECT_EQ(got.immediate, 0u);
    EXPECT_EQ(got.address, 0u);
    EXPECT_EQ(got.value, 0u);
    for (uint32_t i = 0; i < kPayload; ++i) ASSERT_EQ(data[i], std::byte{seed}) << i;
    pair.consumer.release(got);
    ASSERT_TRUE(consume(pair.consumer, 8, seed));
  }
}

// A compact entry that claims more payload than its line holds is malformed, as a full one is.
TEST(ShmRing, CompactEntryLongerThanItsSizeIsMalformed) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  bool malformed = false;
  std::byte* at = pair.producer.reserve(kCacheLine, &malformed);
  ASSERT_NE(at, nullptr);
  EntryHeader header{};
  header.size = kCacheLine;
  header.type = 2 | kCompactType;
  header.length = kCacheLine - kCompactHeaderBytes + 1;
  pair.producer.commit(header);
  EntryHeader got;
  const std::byte* data = nullptr;
  const char* why = "";
  EXPECT_EQ(pair.consumer.peek(got, &data, &why), RingConsumer::Peek::kMalformed);
}

TEST(ShmRing, FullRingPushesBackUntilTheConsumerFreesSpace) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const uint32_t payload = 1000;
  int written = 0;
  while (produce(pair.producer, payload, static_cast<uint8_t>(written))) ++written;
  const uint32_t entry = entry_bytes(payload);
  EXPECT_EQ(written, static_cast<int>(kRing / entry)) << "the ring takes what fits, no more";
  // The producer asks for a doorbell; the consumer owes it exactly one, once half the ring is
  // free (not one per entry it frees).
  EXPECT_FALSE(pair.producer.wait_for_space(entry));
  int consumed = 0;
  int doorbells = 0;
  int rung_at = -1;
  while (consumed < written) {
    bool ring = false;
    ASSERT_TRUE(consume(pair.consumer, payload, static_cast<uint8_t>(consumed), &ring));
    ++consumed;
    if (ring) {
      ++doorbells;
      rung_at = consumed;
    }
  }
  EXPECT_EQ(doorbells, 1) << "one doorbell per wait";
  // The first release after which at most half the ring is in use.
  const uint64_t in_use = uint64_t{entry} * static_cast<uint64_t>(written);
  const auto half_free = static_cast<int>((in_use - kRing / 2 + entry - 1) / entry);
  EXPECT_EQ(rung_at, half_free);
  ASSERT_TRUE(produce(pair.producer, payload, static_cast<uint8_t>(written)));
  ASSERT_TRUE(consume(pair.consumer, payload, static_cast<uint8_t>(written)));
  EXPECT_TRUE(pair.consumer.empty());
}

TEST(ShmRing, SleepingConsumerGetsOneDoorbell) {
  Pair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  EXPECT_FALSE(pair.consumer.prepare_to_sleep()) << "nothing arrived: may sleep";
  bool ring = false;
  ASSERT_TRUE(produce(pair.producer, 8, 1, &ring));
  EXPECT_TRUE(ring) << "the producer must wake a sleeping consumer";
  ASSERT_TRUE(produce(pair.producer, 8, 2, &ring));
  EXPECT_FALSE(ring) << "no second doorbell until the consumer sleeps again";
  ASSERT_TRUE(consume(pair.consumer, 8, 1));
  ASSERT_TRUE(consume(pair.consumer, 8, 2));
  ASSERT_TRUE(produce(pair.producer, 8, 3, &ring));
  EXPECT_FALSE(ring) << "an awake (polling) consumer costs the producer no system call";
  EXPECT_TRUE(pair.consumer.prepare_to_sleep()) << "an entry is there: do not sleep";
}

TEST(ShmRing, OnlyAnEntryStampedForThisPositionIsSeen) {
  // Zeroed memory, an older lap's entry at the same offset and bytes a payload left there all
  // carry another stamp than the one the consumer expects at its position (0 here).
  EntryHeader header;
  const std::byte* data = nullptr;
  const char* why = "";
  const auto peek_with_stamp = [&](bool salted, uint64_t position) {
    Pair p;
    make_pair(p);
    EntryHeader entry{};
    entry.stamp = salted ? position ^ p.segment->header().rings[0].salt : position;
    entry.size = entry_bytes(8);
    entry.type = 2;
    entry.length = 8;
    std::memcpy(p.segment->ring_data(0), &entry, sizeof(entry));
    return p.consumer.peek(header, &data, &why);
  };
  EXPECT_EQ(peek_with_stamp(true, 0), RingConsumer::Peek::kEntry) << why;
  EXPECT_EQ(peek_with_stamp(true, kRing), RingConsumer::Peek::kEmpty) << "an older lap";
  EXPECT_EQ(peek_with_stamp(true, uint64_t{kRing} * 7), RingConsumer::Peek::kEmpty);
  EXPECT_EQ(peek_with_stamp(true, 64), RingConsumer::Peek::kEmpty) << "another position";
  EXPECT_EQ(peek_with_stamp(false, 0), RingConsumer::Peek::kEmpty) << "an unsalted stamp";
}

TEST(ShmRing, HostileIndicesAndEntriesAreMalformed) {
  EntryHeader header;
  const std::byte* data = nullptr;
  const char* why = "";
  const auto fresh_with = [&](uint32_t size, uint8_t type, uint32_t length, Pair& p) {
    make_pair(p);
    EntryHeader bad{};
    bad.stamp = p.segment->header().rings[0].salt;  // a published entry at position 0
    bad.size = size;
    bad.type = type;
    bad.length = length;
    std::memcpy(p.segment->ring_data(0), &bad, sizeof(bad));
  };
  {  // size not whole cache lines
    Pair p;
    ASSERT_NO_FATAL_FAILURE(fresh_with(72, 2, 0, p));
    EXPECT_EQ(p.consumer.peek(header, &data, &why), RingConsumer::Peek::kMalformed);
    EXPECT_STRNE(why, "");
  }
  {  // size beyond the end of the ring
    Pair p;
    ASSERT_NO_FATAL_FAILURE(fresh_with(2 * kRing, 2, 0, p));
    EXPECT_EQ(p.consumer.peek(header, &data, &why), RingConsumer::Peek::kMalformed);
  }
  {  // a pad that would cross the end
    Pair p;
    ASSERT_NO_FATAL_FAILURE(fresh_with(kRing + 64, kPadType, 0, p));
    EXPECT_EQ(p.consumer.peek(header, &data, &why), RingConsumer::Peek::kMalformed);
  }
  {  // payload longer than the entry
    Pair p;
    ASSERT_NO_FATAL_FAILURE(fresh_with(64, 2, 100, p));
    EXPECT_EQ(p.consumer.peek(header, &data, &why), RingConsumer::Peek::kMalformed);
  }
  {  // zero size
    Pair p;
    ASSERT_NO_FATAL_FAILURE(fresh_with(0, 0, 0, p));
    EXPECT_EQ(p.consumer.peek(header, &data, &why), RingConsumer::Peek::kMalformed);
  }
  {  // a consumer index the producer can never have given
    Pair p;
    ASSERT_NO_FATAL_FAILURE(make_pair(p));
    p.segment->header().rings[0].tail.store(uint64_t{1} << 40);
    bool malformed = false;
    // Fill until the producer has to look at the tail.
    for (int i = 0; i < 100 && !malformed; ++i) {
      EntryHeader entry{};
      entry.size = entry_bytes(1000);
      if (p.producer.reserve(entry.size, &malformed) == nullptr) break;
      p.producer.commit(entry);
    }
    EXPECT_TRUE(malformed);
  }
}

}  // namespace
}  // namespace wv::verbs::shm
