// Memory registration (memory_region.h, protection_domain.h).
#include <cstring>
#include <string>
#include <vector>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

using MemoryTest = VerbsTest;

TEST_P(MemoryTest, RegionReportsAddressLengthAndAccess) {
  Buffer buffer;
  const Access access = Access::kLocalWrite | Access::kRemoteRead;
  ASSERT_NO_FATAL_FAILURE(register_buffer(10000, access, buffer));
  EXPECT_EQ(buffer.region->address(), buffer.data());
  EXPECT_EQ(buffer.region->length(), 10000u);
  EXPECT_EQ(buffer.region->access(), access);
  const RemoteAddress remote = buffer.region->remote(buffer.data() + 100);
  EXPECT_EQ(remote.address, reinterpret_cast<uint64_t>(buffer.data() + 100))
      << "addresses are virtual addresses in host order";
  EXPECT_EQ(remote.rkey, buffer.region->remote_key());
  const Sge whole = buffer.region->sge();
  EXPECT_EQ(whole.region, buffer.region.get());
  EXPECT_EQ(whole.address, buffer.data());
  EXPECT_EQ(whole.length, 10000u);
}

TEST_P(MemoryTest, RegionsHaveDistinctRemoteKeys) {
  const Access access = Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite;
  Buffer a;
  Buffer b;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, access, a));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, access, b));
  EXPECT_NE(a.region->remote_key(), b.region->remote_key());
  EXPECT_NE(a.region->remote_key(), scratch_.region->remote_key());
}

TEST_P(MemoryTest, SameMemoryRegisteredTwice) {
  Buffer buffer;
  ASSERT_NO_FATAL_FAILURE(register_buffer(8192, Access::kLocalWrite | Access::kRemoteRead, buffer));
  std::shared_ptr<MemoryRegion> second;
  ASSERT_OK_AND_ASSIGN(second,
                       pd_->register_memory(buffer.data() + 4096, 4096, Access::kRemoteRead));
  EXPECT_NE(second->remote_key(), buffer.region->remote_key());
}

// Memory the provider allocates (ProtectionDomain::allocate_memory) is a region like any other:
// as long as asked, page-aligned and zeroed, a local buffer for sends and receives, and a target
// of writes and reads through its key, in sizes a provider may move differently (on shm the
// peer stores and loads it through its own mapping).
TEST_P(MemoryTest, AllocatedMemoryIsARegionLikeAnyOther) {
  auto empty = pd_->allocate_memory(0, Access::kLocalWrite);
  ASSERT_FALSE(empty.is_ok());
  EXPECT_EQ(empty.status().code(), Errc::kInvalidArgument) << empty.status().to_string();

  constexpr size_t kBytes = 256 * 1024 + 17;
  const Access access = Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite;
  std::shared_ptr<MemoryRegion> target;
  ASSERT_OK_AND_ASSIGN(target, pd_->allocate_memory(kBytes, access));
  EXPECT_EQ(target->length(), kBytes);
  EXPECT_EQ(target->access(), access);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(target->address()) % 4096, 0u);
  auto* bytes = static_cast<std::byte*>(target->address());
  const std::vector<std::byte> zeros(kBytes);
  EXPECT_EQ(std::memcmp(bytes, zeros.data(), kBytes), 0);
  std::shared_ptr<MemoryRegion> local;
  ASSERT_OK_AND_ASSIGN(local, pd_->allocate_memory(2 * kBytes, access));
  auto* mine = static_cast<std::byte*>(local->address());

  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  // Writes of 8 B, 4 KiB and the whole region, each read back.
  for (const uint32_t size : {8u, 4096u, static_cast<uint32_t>(kBytes)}) {
    SCOPED_TRACE("bytes " + std::to_string(size));
    const uint32_t offset = size == kBytes ? 0 : 1000;
    fill_pattern(std::span(mine, size), size);
    const Sge out = local->sge(mine, size);
    ASSERT_OK(pair.client.qp->rdma_write(1, std::span(&out, 1), target->remote(bytes + offset),
                                         SendFlags::kSignaled));
    const Sge in = local->sge(mine + kBytes, size);
    ASSERT_OK(pair.client.qp->rdma_read(2, std::span(&in, 1), target->remote(bytes + offset),
                                        SendFlags::kSignaled));
    std::vector<Completion> done;
    ASSERT_TRUE(poll_n(*pair.client.send_cq, 2, done));
    for (const Completion& c : done) EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_TRUE(has_pattern(std::span<const std::byte>(bytes + offset, size), size));
    EXPECT_TRUE(has_pattern(std::span<const std::byte>(mine + kBytes, size), size));
  }
  // A send from allocated memory into a receive in allocated memory.
  const Sge receive = target->sge(bytes, 100);
  ASSERT_OK(pair.server.qp->post_receive(3, std::span(&receive, 1)));
  fill_pattern(std::span(mine, 100), 55);
  const Sge send = local->sge(mine, 100);
  ASSERT_OK(pair.client.qp->send(4, std::span(&send, 1), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_TRUE(has_pattern(std::span<const std::byte>(bytes, 100), 55));
}

// An allocated region's key grants what it says and only while it lives: a write past its end,
// a write to a read-only one and a write after it was freed are refused, and write nothing.
TEST_P(MemoryTest, AllocatedMemoryRefusesWhatItsKeyDoesNotGrant) {
  // `watched`: 32 bytes at the target that must stay zero.
  const auto refused = [&](RemoteAddress remote, uint32_t length, const std::byte* watched) {
    ConnectedPair pair;
    ASSERT_NO_FATAL_FAILURE(make_pair(pair));
    fill_pattern(scratch_.bytes(0, length), 9);
    const Sge out = scratch_.sge(0, length);
    ASSERT_OK(pair.client.qp->rdma_write(43, std::span(&out, 1), remote, SendFlags::kSignaled));
    ASSERT_NO_FATAL_FAILURE(expect_responder_error(pair, 43, CompletionStatus::kRemoteAccessError));
    if (watched != nullptr) {
      const std::vector<std::byte> zeros(32);
      EXPECT_EQ(std::memcmp(watched, zeros.data(), 32), 0) << "the refused write wrote";
    }
  };
  std::shared_ptr<MemoryRegion> region;
  ASSERT_OK_AND_ASSIGN(region,
                       pd_->allocate_memory(8192, Access::kLocalWrite | Access::kRemoteWrite));
  auto* bytes = static_cast<std::byte*>(region->address());
  {
    SCOPED_TRACE("past the end");
    ASSERT_NO_FATAL_FAILURE(refused(region->remote(bytes + 8192 - 32), 64, bytes + 8192 - 32));
  }
  std::shared_ptr<MemoryRegion> read_only;
  ASSERT_OK_AND_ASSIGN(read_only,
                       pd_->allocate_memory(4096, Access::kLocalWrite | Access::kRemoteRead));
  {
    SCOPED_TRACE("read-only");
    ASSERT_NO_FATAL_FAILURE(refused(read_only->remote(read_only->address()), 64,
                                    static_cast<std::byte*>(read_only->address())));
  }
  const RemoteAddress stale = region->remote(bytes);
  region.reset();
  {
    SCOPED_TRACE("freed");
    ASSERT_NO_FATAL_FAILURE(refused(stale, 64, nullptr));
  }
}

// A peer reads through both keys of one page registered twice: the keys are independent.
TEST_P(MemoryTest, RemoteReadThroughEachRegistration) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  Buffer target;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite | Access::kRemoteRead, target));
  fill_pattern(target.bytes(0, 4096), 7);
  std::shared_ptr<MemoryRegion> second;
  ASSERT_OK_AND_ASSIGN(second, pd_->register_memory(target.data(), 4096, Access::kRemoteRead));
  Buffer sink;
  ASSERT_NO_FATAL_FAILURE(register_buffer(8192, read_sink_access(), sink));

  const Sge first_sge = sink.sge(0, 4096);
  ASSERT_OK(pair.client.qp->rdma_read(1, std::span(&first_sge, 1), target.remote(),
                                      SendFlags::kSignaled));
  const Sge second_sge = sink.sge(4096, 4096);
  ASSERT_OK(pair.client.qp->rdma_read(2, std::span(&second_sge, 1), second->remote(target.data()),
                                      SendFlags::kSignaled));
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, 2, done));
  for (const Completion& c : done) EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_TRUE(has_pattern(sink.bytes(0, 4096), 7));
  EXPECT_TRUE(has_pattern(sink.bytes(4096, 4096), 7));
}

// After a region is deregistered its key names nothing: a read through it is refused (reads
// always report the responder's error at the requester).
TEST_P(MemoryTest, DeregisteredKeyIsRefused) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  Buffer target;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite | Access::kRemoteRead, target));
  const RemoteAddress stale = target.remote();
  target.region.reset();  // deregisters; the memory itself stays allocated
  Buffer sink;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, read_sink_access(), sink));
  const Sge sge = sink.sge(0, 64);
  ASSERT_OK(pair.client.qp->rdma_read(9, std::span(&sge, 1), stale, SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 9u);
  EXPECT_EQ(c.status, has_limitation(Limitation::kRefusedReadFlushed)
                          ? CompletionStatus::kFlushed
                          : CompletionStatus::kRemoteAccessError)
      << describe(c);
  EXPECT_TRUE(wait_qp_state(*pair.client.qp, QpState::kError));
}

// ConnectQueuePair::map_remote (remote_mapping.h): where the wire can map the peer's allocated
// memory (shm, and hybrid's connections on one host), loads and stores through the mapping are
// the peer's bytes, within what its key grants; everywhere else the call says kNotSupported, so
// that a caller falls back to work requests.
TEST_P(MemoryTest, MappedPeerMemoryIsThePeersBytesWithinItsKey) {
  constexpr size_t kBytes = size_t{3} * 4096;
  const Access access = Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite;
  std::shared_ptr<MemoryRegion> target;
  ASSERT_OK_AND_ASSIGN(target, pd_->allocate_memory(kBytes, access));
  auto* bytes = static_cast<std::byte*>(target->address());
  {
    QpSide unconnected;
    ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), unconnected));
    EXPECT_ERRC(Errc::kInvalidState,
                unconnected.qp->map_remote(target->remote(bytes), 64, Access::kRemoteWrite));
  }
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  ConnectQueuePair& qp = *pair.client.qp;
  auto mapped = qp.map_remote(target->remote(bytes + 4096), 4096, Access::kRemoteWrite);
  // Only the shm wire maps, and only with cross-memory attach (its key mirror), which
  // shm and hybrid also report as Limitation::kReadsServedWithoutTarget.
  const bool shm_wire = GetParam() == "shm" || GetParam() == "hybrid";
  EXPECT_EQ(has_capability(Capability::kRemoteMapping),
            shm_wire && has_limitation(Limitation::kReadsServedWithoutTarget));
  if (!has_capability(Capability::kRemoteMapping)) {
    ASSERT_FALSE(mapped.is_ok()) << GetParam() << " mapped a peer's memory";
    EXPECT_EQ(mapped.status().code(), Errc::kNotSupported) << mapped.status().to_string();
    return;
  }
  ASSERT_TRUE(mapped.is_ok()) << mapped.status().to_string();
  std::unique_ptr<RemoteMapping> mapping = std::move(mapped).value();
  ASSERT_EQ(mapping->size(), 4096u);
  // Stores through the mapping land in the peer's region, loads see its stores.
  fill_pattern(std::span(mapping->data(), 4096), 7);
  EXPECT_TRUE(has_pattern(std::span<const std::byte>(bytes + 4096, 4096), 7));
  const std::vector<std::byte> zeros(4096);
  EXPECT_EQ(std::memcmp(bytes, zeros.data(), 4096), 0) << "a store before the mapped range";
  EXPECT_EQ(std::memcmp(bytes + 8192, zeros.data(), 4096), 0) << "a store past the mapped range";
  fill_pattern(std::span(bytes + 4096, 4096), 8);
  EXPECT_TRUE(has_pattern(std::span<const std::byte>(mapping->data(), 4096), 8));

  // The key decides: range, access, key, kind of memory, length.
  EXPECT_ERRC(Errc::kPermissionDenied,
              qp.map_remote(target->remote(bytes + 8192), 4097, Access::kRemoteWrite));
  EXPECT_ERRC(Errc::kPermissionDenied,
              qp.map_remote(RemoteAddress{target->remote(bytes).address, target->remote_key() + 1},
                            64, Access::kRemoteRead));
  std::shared_ptr<MemoryRegion> read_only;
  ASSERT_OK_AND_ASSIGN(read_only,
                       pd_->allocate_memory(4096, Access::kLocalWrite | Access::kRemoteRead));
  EXPECT_ERRC(Errc::kPermissionDenied,
              qp.map_remote(read_only->remote(read_only->address()), 64, Access::kRemoteWrite));
  EXPECT_TRUE(
      qp.map_remote(read_only->remote(read_only->address()), 64, Access::kRemoteRead).is_ok());
  Buffer registered;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, access, registered));
  EXPECT_ERRC(Errc::kNotSupported, qp.map_remote(registered.region->remote(registered.data()), 64,
                                                 Access::kRemoteWrite));
  EXPECT_ERRC(Errc::kInvalidArgument,
              qp.map_remote(target->remote(bytes), 0, Access::kRemoteWrite));

  // The mapping keeps its pages: the peer's region may go first.
  target.reset();
  fill_pattern(std::span(mapping->data(), 4096), 9);
  EXPECT_TRUE(has_pattern(std::span<const std::byte>(mapping->data(), 4096), 9));
}

WV_INSTANTIATE_FOR_PROVIDERS(MemoryTest);

}  // namespace
}  // namespace wv::verbs::conformance
