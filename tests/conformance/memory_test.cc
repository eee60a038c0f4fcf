// Memory registration (memory_region.h, protection_domain.h).
#include <cstring>

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

WV_INSTANTIATE_FOR_PROVIDERS(MemoryTest);

}  // namespace
}  // namespace wv::verbs::conformance
