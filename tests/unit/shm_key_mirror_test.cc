// The shm provider's key mirror (shm_key_mirror.h): what a peer's one-sided read may trust;
// and the peer's mappings of regions from allocate_memory that the mirror names
// (shm_peer_memory.h).
#include "shm_key_mirror.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "shm_peer_memory.h"
#include "wv/host_memory.h"

namespace wv::verbs::shm {
namespace {

struct Mirrored {
  soft::KeyTable table;
  std::shared_ptr<KeyMirror> mirror;
  std::unique_ptr<PeerKeys> peer;  // the same mirror as a peer maps it
};

void mirror_table(Mirrored& m) {
  auto mirror = KeyMirror::create();
  ASSERT_TRUE(mirror.is_ok()) << mirror.status().to_string();
  m.mirror = mirror.value();
  m.table.set_listener(m.mirror);
  auto peer = PeerKeys::attach(::dup(m.mirror->fd()));
  ASSERT_TRUE(peer.is_ok()) << peer.status().to_string();
  m.peer = std::move(peer).value();
}

const void* const kDomain = reinterpret_cast<const void*>(0x1000);
const uint64_t kDomainId = 0x1000;

soft::KeyEntry region(uint64_t address, uint64_t length, Access access) {
  soft::KeyEntry entry;
  entry.address = address;
  entry.length = length;
  entry.access = access;
  entry.protection_domain = kDomain;
  return entry;
}

TEST(ShmKeyMirror, GrantsExactlyWhatTheKeyTableGrants) {
  Mirrored m;
  ASSERT_NO_FATAL_FAILURE(mirror_table(m));
  const uint32_t key = m.table.add(region(0x10000, 0x1000, Access::kRemoteRead));
  PeerKeys::Grant grant;
  const auto check = [&](uint32_t k, uint64_t address, uint64_t length, Access access,
                         uint64_t domain, uint32_t qp) {
    return m.peer->check(k, address, length, access, domain, qp, &grant);
  };
  EXPECT_TRUE(check(key, 0x10000, 0x1000, Access::kRemoteRead, kDomainId, 7));
  EXPECT_TRUE(check(key, 0x10800, 0x800, Access::kRemoteRead, kDomainId, 7));
  EXPECT_FALSE(check(key, 0x10800, 0x801, Access::kRemoteRead, kDomainId, 7)) << "past the end";
  EXPECT_FALSE(check(key, 0xffff, 0x10, Access::kRemoteRead, kDomainId, 7)) << "before the start";
  EXPECT_FALSE(check(key, UINT64_MAX - 4, 0x10, Access::kRemoteRead, kDomainId, 7)) << "wraps";
  EXPECT_FALSE(check(key, 0x10000, 0x10, Access::kRemoteWrite, kDomainId, 7)) << "access";
  EXPECT_FALSE(check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId + 1, 7)) << "domain";
  EXPECT_FALSE(check(key ^ 0x10000, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 7))
      << "another key in the same slot";
  EXPECT_FALSE(check(0, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 7)) << "no key";

  // A type 2 window: only its QP.
  soft::KeyEntry window = region(0x20000, 0x100, Access::kRemoteRead);
  window.kind = soft::KeyKind::kWindow;
  window.bound_qp = 9;
  const uint32_t window_key = m.table.add(window);
  EXPECT_TRUE(check(window_key, 0x20000, 0x100, Access::kRemoteRead, kDomainId, 9));
  EXPECT_FALSE(check(window_key, 0x20000, 0x100, Access::kRemoteRead, kDomainId, 8));
  EXPECT_EQ(grant.shared_fd, -1) << "a window names no memfd";

  // A region from allocate_memory names its memfd and start; other keys name none.
  soft::KeyEntry allocated = region(0x40000, 0x2000, Access::kRemoteWrite);
  allocated.shared_fd = 0;
  const uint32_t allocated_key = m.table.add(allocated);
  ASSERT_TRUE(check(allocated_key, 0x41000, 0x10, Access::kRemoteWrite, kDomainId, 7));
  EXPECT_EQ(grant.shared_fd, 0);
  EXPECT_EQ(grant.start, 0x40000u);
  ASSERT_TRUE(check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 7));
  EXPECT_EQ(grant.shared_fd, -1);
  EXPECT_EQ(grant.start, 0x10000u);
}

TEST(ShmKeyMirror, AWithdrawnKeyIsRefusedAndAChangeDuringACopyIsSeen) {
  Mirrored m;
  ASSERT_NO_FATAL_FAILURE(mirror_table(m));
  const uint32_t key = m.table.add(region(0x10000, 0x1000, Access::kRemoteRead));
  PeerKeys::Grant grant;
  ASSERT_TRUE(m.peer->check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 1, &grant));
  EXPECT_TRUE(m.peer->unchanged(key, grant.sequence));
  m.table.remove(key);  // deregistered while a copy ran
  EXPECT_FALSE(m.peer->unchanged(key, grant.sequence));
  EXPECT_FALSE(m.peer->check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 1, &grant));

  soft::KeyEntry invalidatable = region(0x30000, 0x100, Access::kRemoteRead);
  invalidatable.invalidatable = true;
  const uint32_t window = m.table.add(invalidatable);
  ASSERT_TRUE(m.peer->check(window, 0x30000, 0x10, Access::kRemoteRead, kDomainId, 1, &grant));
  EXPECT_EQ(m.table.invalidate(window, kDomain, 1), soft::KeyCheck::kOk);
  EXPECT_FALSE(m.peer->check(window, 0x30000, 0x10, Access::kRemoteRead, kDomainId, 1, &grant));
}

TEST(ShmKeyMirror, KeysOfATableBeforeTheMirrorArePublishedAndCollisionsAreNot) {
  soft::KeyTable table;
  const uint32_t early = table.add(region(0x10000, 0x100, Access::kRemoteRead));
  auto mirror = KeyMirror::create();
  ASSERT_TRUE(mirror.is_ok());
  table.set_listener(mirror.value());
  auto peer = PeerKeys::attach(::dup(mirror.value()->fd()));
  ASSERT_TRUE(peer.is_ok());
  PeerKeys::Grant grant;
  EXPECT_TRUE(
      peer.value()->check(early, 0x10000, 0x100, Access::kRemoteRead, kDomainId, 1, &grant));
  // A second key for the same slot is not published (the ring serves it), and removing it
  // leaves the first one's entry alone.
  const uint32_t twin = early ^ kMirrorSlots;
  table.insert(twin, region(0x50000, 0x100, Access::kRemoteRead));
  EXPECT_FALSE(
      peer.value()->check(twin, 0x50000, 0x100, Access::kRemoteRead, kDomainId, 1, &grant));
  table.remove(twin);
  EXPECT_TRUE(
      peer.value()->check(early, 0x10000, 0x100, Access::kRemoteRead, kDomainId, 1, &grant));
}

TEST(ShmKeyMirror, APeerCannotMapItWritable) {
  auto mirror = KeyMirror::create();
  ASSERT_TRUE(mirror.is_ok());
  void* writable =
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mirror.value()->fd(), 0);
  if (writable != MAP_FAILED) {
    ::munmap(writable, 4096);
    GTEST_SKIP() << "this kernel has no F_SEAL_FUTURE_WRITE (before Linux 5.1)";
  }
  EXPECT_EQ(errno, EPERM);
}

TEST(ShmKeyMirror, AttachRefusesWhatIsNotAMirror) {
  const int fd = ::memfd_create("not-a-mirror", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  auto attached = PeerKeys::attach(fd);  // unsealed, and the wrong size
  EXPECT_FALSE(attached.is_ok());
  EXPECT_EQ(attached.status().code(), Errc::kProtocolError);
}

// Mappings of memfd regions in this process.
int region_mappings() {
  int count = 0;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find("wv-region") != std::string::npos) ++count;
  }
  return count;
}

// A region from allocate_memory as its key table and mirror hold it.
struct Allocated {
  std::unique_ptr<HostMemory> memory;
  uint32_t key = 0;
};

// `reuse`: under that key (withdrawn before), as a rebound key would be.
void allocate(Mirrored& m, size_t bytes, Access access, Allocated& out, uint32_t reuse = 0) {
  auto memory = HostMemory::allocate(bytes);
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  out.memory = std::move(memory).value();
  soft::KeyEntry entry = region(reinterpret_cast<uint64_t>(out.memory->address()), bytes, access);
  entry.shared_fd = out.memory->fd();
  if (reuse != 0) {
    m.table.insert(reuse, entry);
    out.key = reuse;
  } else {
    out.key = m.table.add(entry);
  }
}

// This process plays the peer of itself: pidfd_getfd of its own descriptor needs no privilege.
TEST(ShmPeerMemory, MapsWhatTheMirrorGrantsAndSeesTheSamePages) {
  Mirrored m;
  ASSERT_NO_FATAL_FAILURE(mirror_table(m));
  Allocated allocated;
  ASSERT_NO_FATAL_FAILURE(allocate(m, 3 * 4096 + 100, Access::kRemoteWrite, allocated));
  const auto start = reinterpret_cast<uint64_t>(allocated.memory->address());
  PeerMemory peer_memory(::getpid());
  PeerKeys::Grant grant;
  ASSERT_TRUE(
      m.peer->check(allocated.key, start + 4096, 200, Access::kRemoteWrite, kDomainId, 1, &grant));
  std::byte* mapped = peer_memory.map(*m.peer, allocated.key, grant, start + 4096, 200);
  ASSERT_NE(mapped, nullptr);
  EXPECT_NE(mapped, static_cast<std::byte*>(allocated.memory->address()) + 4096)
      << "a mapping of its own, as in another process";
  std::memset(mapped, 0x6b, 200);
  EXPECT_EQ(static_cast<std::byte*>(allocated.memory->address())[4096 + 199], std::byte{0x6b});
  EXPECT_EQ(peer_memory.map(*m.peer, allocated.key, grant, start + 4096, 200), mapped)
      << "the second use finds the mapping";

  // Registered (not allocated) memory names no memfd: the caller takes another path.
  const uint32_t plain = m.table.add(region(0x10000, 0x1000, Access::kRemoteWrite));
  ASSERT_TRUE(m.peer->check(plain, 0x10000, 8, Access::kRemoteWrite, kDomainId, 1, &grant));
  EXPECT_EQ(peer_memory.map(*m.peer, plain, grant, 0x10000, 8), nullptr);

  // A key the mirror says names a memfd, but that descriptor is another file (here: none, or
  // an unsealed file): nothing is mapped.
  soft::KeyEntry wrong = region(0x20000, 0x1000, Access::kRemoteWrite);
  wrong.shared_fd = 1000000;
  const uint32_t wrong_key = m.table.add(wrong);
  ASSERT_TRUE(m.peer->check(wrong_key, 0x20000, 8, Access::kRemoteWrite, kDomainId, 1, &grant));
  EXPECT_EQ(peer_memory.map(*m.peer, wrong_key, grant, 0x20000, 8), nullptr);
  const int unsealed = ::memfd_create("wv-region", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(unsealed, 4096), 0);
  wrong.shared_fd = unsealed;
  m.table.remove(wrong_key);
  const uint32_t unsealed_key = m.table.add(wrong);
  ASSERT_TRUE(m.peer->check(unsealed_key, 0x20000, 8, Access::kRemoteWrite, kDomainId, 1, &grant));
  EXPECT_EQ(peer_memory.map(*m.peer, unsealed_key, grant, 0x20000, 8), nullptr)
      << "a file its owner could shrink under the mapping";
  ::close(unsealed);
}

TEST(ShmPeerMemory, AChangedKeyIsMappedAfreshAndFewMappingsOutliveTheirRegions) {
  Mirrored m;
  ASSERT_NO_FATAL_FAILURE(mirror_table(m));
  PeerMemory peer_memory(::getpid());
  const int before = region_mappings();
  // Regions come and go, each used once by the peer: the peer's mappings of freed regions (which
  // keep their pages alive) stay bounded. Every other one reuses one key, whose mapping must
  // follow the key to its new region.
  uint32_t reused = 0;
  for (int i = 0; i < 200; ++i) {
    Allocated allocated;
    ASSERT_NO_FATAL_FAILURE(
        allocate(m, 4096, Access::kRemoteRead, allocated, i % 2 == 0 ? reused : 0));
    if (i == 0) reused = allocated.key;
    const auto start = reinterpret_cast<uint64_t>(allocated.memory->address());
    static_cast<std::byte*>(allocated.memory->address())[7] = std::byte(i);
    PeerKeys::Grant grant;
    ASSERT_TRUE(m.peer->check(allocated.key, start, 8, Access::kRemoteRead, kDomainId, 1, &grant));
    const std::byte* mapped = peer_memory.map(*m.peer, allocated.key, grant, start, 8);
    ASSERT_NE(mapped, nullptr) << i;
    EXPECT_EQ(mapped[7], std::byte(i)) << "a fresh mapping of this region, not an older one";
    m.table.remove(allocated.key);
  }
  EXPECT_LE(region_mappings() - before, 32) << "mappings of regions freed long ago";
}

}  // namespace
}  // namespace wv::verbs::shm
