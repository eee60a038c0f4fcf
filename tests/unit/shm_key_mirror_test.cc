// The shm provider's key mirror (shm_key_mirror.h): what a peer's one-sided read may trust.
#include "shm_key_mirror.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

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
  uint64_t sequence = 0;
  const auto check = [&](uint32_t k, uint64_t address, uint64_t length, Access access,
                         uint64_t domain, uint32_t qp) {
    return m.peer->check(k, address, length, access, domain, qp, &sequence);
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
}

TEST(ShmKeyMirror, AWithdrawnKeyIsRefusedAndAChangeDuringACopyIsSeen) {
  Mirrored m;
  ASSERT_NO_FATAL_FAILURE(mirror_table(m));
  const uint32_t key = m.table.add(region(0x10000, 0x1000, Access::kRemoteRead));
  uint64_t sequence = 0;
  ASSERT_TRUE(m.peer->check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 1, &sequence));
  EXPECT_TRUE(m.peer->unchanged(key, sequence));
  m.table.remove(key);  // deregistered while a copy ran
  EXPECT_FALSE(m.peer->unchanged(key, sequence));
  EXPECT_FALSE(m.peer->check(key, 0x10000, 0x10, Access::kRemoteRead, kDomainId, 1, &sequence));

  soft::KeyEntry invalidatable = region(0x30000, 0x100, Access::kRemoteRead);
  invalidatable.invalidatable = true;
  const uint32_t window = m.table.add(invalidatable);
  ASSERT_TRUE(m.peer->check(window, 0x30000, 0x10, Access::kRemoteRead, kDomainId, 1, &sequence));
  EXPECT_EQ(m.table.invalidate(window, kDomain, 1), soft::KeyCheck::kOk);
  EXPECT_FALSE(m.peer->check(window, 0x30000, 0x10, Access::kRemoteRead, kDomainId, 1, &sequence));
}

TEST(ShmKeyMirror, KeysOfATableBeforeTheMirrorArePublishedAndCollisionsAreNot) {
  soft::KeyTable table;
  const uint32_t early = table.add(region(0x10000, 0x100, Access::kRemoteRead));
  auto mirror = KeyMirror::create();
  ASSERT_TRUE(mirror.is_ok());
  table.set_listener(mirror.value());
  auto peer = PeerKeys::attach(::dup(mirror.value()->fd()));
  ASSERT_TRUE(peer.is_ok());
  uint64_t sequence = 0;
  EXPECT_TRUE(
      peer.value()->check(early, 0x10000, 0x100, Access::kRemoteRead, kDomainId, 1, &sequence));
  // A second key for the same slot is not published (the ring serves it), and removing it
  // leaves the first one's entry alone.
  const uint32_t twin = early ^ kMirrorSlots;
  table.insert(twin, region(0x50000, 0x100, Access::kRemoteRead));
  EXPECT_FALSE(
      peer.value()->check(twin, 0x50000, 0x100, Access::kRemoteRead, kDomainId, 1, &sequence));
  table.remove(twin);
  EXPECT_TRUE(
      peer.value()->check(early, 0x10000, 0x100, Access::kRemoteRead, kDomainId, 1, &sequence));
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

}  // namespace
}  // namespace wv::verbs::shm
