// Out-of-band connection of connected QPs (queue_pair.h): addresses exchanged by the
// application, no connection manager. InfiniBand and RoCE devices have it; iWARP and the software
// providers refuse it with kNotSupported, which the suite checks before it skips the rest.
#include <cstring>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

OutOfBandAddress sample_address() {
  OutOfBandAddress address;
  address.qp_number = 0x123456;
  address.psn = 0xabcdef;
  for (size_t i = 0; i < address.gid.raw.size(); ++i) {
    address.gid.raw[i] = static_cast<uint8_t>(0xf0 + i);
  }
  address.lid = 0x1234;
  address.port = 2;
  address.mtu = 1024;
  address.inbound_read_depth = 16;
  return address;
}

TEST(OutOfBandAddressTest, EncodingRoundTripsAndGarbageIsRefused) {
  const OutOfBandAddress address = sample_address();
  const std::vector<std::byte> bytes = address.encode();
  ASSERT_EQ(bytes.size(), kOutOfBandAddressBytes);
  ASSERT_OK_AND_ASSIGN(OutOfBandAddress decoded, OutOfBandAddress::decode(bytes));
  EXPECT_EQ(decoded.qp_number, address.qp_number);
  EXPECT_EQ(decoded.psn, address.psn);
  EXPECT_EQ(decoded.gid, address.gid);
  EXPECT_EQ(decoded.lid, address.lid);
  EXPECT_EQ(decoded.port, address.port);
  EXPECT_EQ(decoded.mtu, address.mtu);
  EXPECT_EQ(decoded.inbound_read_depth, address.inbound_read_depth);

  EXPECT_ERRC(Errc::kInvalidArgument,
              OutOfBandAddress::decode(std::span(bytes).first(bytes.size() - 1)));
  std::vector<std::byte> other = bytes;
  other[0] = std::byte{'X'};
  EXPECT_ERRC(Errc::kProtocolError, OutOfBandAddress::decode(other));
  other = bytes;
  other[1] = std::byte{2};  // a later version
  EXPECT_ERRC(Errc::kProtocolError, OutOfBandAddress::decode(other));

  const auto refused = [](void (*change)(OutOfBandAddress&)) {
    OutOfBandAddress bad = sample_address();
    change(bad);
    return OutOfBandAddress::decode(bad.encode()).status().code();
  };
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.qp_number = 0; }), Errc::kInvalidArgument);
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.qp_number = 0x1000000; }), Errc::kInvalidArgument);
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.psn = 0x1000000; }), Errc::kInvalidArgument);
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.mtu = 1500; }), Errc::kInvalidArgument);
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.mtu = 8192; }), Errc::kInvalidArgument);
  EXPECT_EQ(refused([](OutOfBandAddress& a) { a.port = 0; }), Errc::kInvalidArgument);
}

class OutOfBandPairTest : public VerbsTest {
 protected:
  // Creates both sides; on a device without the capability, checks the refusal and skips.
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client_));
    ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server_));
    if (!has_capability(Capability::kOutOfBandConnect)) {
      EXPECT_ERRC(Errc::kNotSupported, client_.qp->out_of_band_address());
      EXPECT_ERRC(Errc::kNotSupported, client_.qp->connect_out_of_band(sample_address(), {}));
      EXPECT_EQ(client_.qp->query().state, QpState::kInit);
      GTEST_SKIP() << "device lacks capability out_of_band_connect (both calls refused it with "
                      "kNotSupported and left the QP in kInit)";
    }
  }

  // Exchanges the two addresses through their encoded bytes, as two processes would.
  void connect(const ConnectParameters& client_parameters = {},
               const ConnectParameters& server_parameters = {}) {
    ASSERT_OK_AND_ASSIGN(OutOfBandAddress client_address, client_.qp->out_of_band_address());
    ASSERT_OK_AND_ASSIGN(OutOfBandAddress server_address, server_.qp->out_of_band_address());
    EXPECT_EQ(client_address.qp_number, client_.qp->number());
    ASSERT_OK_AND_ASSIGN(OutOfBandAddress at_server,
                         OutOfBandAddress::decode(client_address.encode()));
    ASSERT_OK_AND_ASSIGN(OutOfBandAddress at_client,
                         OutOfBandAddress::decode(server_address.encode()));
    ASSERT_OK(server_.qp->connect_out_of_band(at_server, server_parameters));
    ASSERT_OK(client_.qp->connect_out_of_band(at_client, client_parameters));
  }

  QpSide client_;
  QpSide server_;
};

TEST_P(OutOfBandPairTest, SendsWritesAndReadsFlowBothWays) {
  Buffer memory;
  ASSERT_NO_FATAL_FAILURE(register_buffer(
      8192, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite | read_sink_access(),
      memory));
  // Receives first: a send that finds none is an error on some devices.
  const Sge server_receive = memory.sge(1024, 256);
  const Sge client_receive = memory.sge(1280, 256);
  ASSERT_OK(server_.qp->post_receive(1, std::span(&server_receive, 1)));
  ASSERT_OK(client_.qp->post_receive(2, std::span(&client_receive, 1)));
  ASSERT_NO_FATAL_FAILURE(connect());
  EXPECT_EQ(client_.qp->query().state, QpState::kReadyToSend);
  EXPECT_EQ(server_.qp->query().state, QpState::kReadyToSend);

  fill_pattern(memory.bytes(0, 100), 1);
  const Sge hello = memory.sge(0, 100);
  ASSERT_OK(client_.qp->send(10, std::span(&hello, 1), SendFlags::kSignaled));
  Completion completion;
  ASSERT_TRUE(poll_one(*server_.receive_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kSuccess) << describe(completion);
  EXPECT_EQ(completion.wr_id, 1u);
  EXPECT_EQ(completion.length, 100u);
  EXPECT_TRUE(has_pattern(memory.bytes(1024, 100), 1));
  ASSERT_TRUE(poll_one(*client_.send_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kSuccess) << describe(completion);

  fill_pattern(memory.bytes(100, 50), 2);
  const Sge reply = memory.sge(100, 50);
  ASSERT_OK(server_.qp->send(11, std::span(&reply, 1), SendFlags::kSignaled));
  ASSERT_TRUE(poll_one(*client_.receive_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kSuccess) << describe(completion);
  EXPECT_EQ(completion.length, 50u);
  EXPECT_TRUE(has_pattern(memory.bytes(1280, 50), 2));
  ASSERT_TRUE(poll_one(*server_.send_cq, completion));

  // RDMA write from the client into [4096, 6144), then read it back into [6144, 8192).
  fill_pattern(memory.bytes(2048, 2048), 3);
  const Sge source = memory.sge(2048, 2048);
  ASSERT_OK(
      client_.qp->rdma_write(12, std::span(&source, 1), memory.remote(4096), SendFlags::kSignaled));
  ASSERT_TRUE(poll_one(*client_.send_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kSuccess) << describe(completion);
  EXPECT_TRUE(has_pattern(memory.bytes(4096, 2048), 3));
  const Sge sink = memory.sge(6144, 2048);
  ASSERT_OK(
      server_.qp->rdma_read(13, std::span(&sink, 1), memory.remote(4096), SendFlags::kSignaled));
  ASSERT_TRUE(poll_one(*server_.send_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kSuccess) << describe(completion);
  EXPECT_EQ(completion.opcode, Opcode::kRdmaRead);
  EXPECT_TRUE(has_pattern(memory.bytes(6144, 2048), 3));
}

TEST_P(OutOfBandPairTest, BadInputIsRefusedAndTheQpStaysInInit) {
  ASSERT_OK_AND_ASSIGN(OutOfBandAddress server_address, server_.qp->out_of_band_address());
  ConnectParameters with_data;
  with_data.private_data = to_bytes("hello");
  EXPECT_ERRC(Errc::kInvalidArgument, client_.qp->connect_out_of_band(server_address, with_data));
  OutOfBandAddress bad = server_address;
  bad.qp_number = 0;
  EXPECT_ERRC(Errc::kInvalidArgument, client_.qp->connect_out_of_band(bad, {}));
  bad = server_address;
  bad.mtu = 100;
  EXPECT_ERRC(Errc::kInvalidArgument, client_.qp->connect_out_of_band(bad, {}));
  EXPECT_EQ(client_.qp->query().state, QpState::kInit);

  ASSERT_OK(client_.qp->connect_out_of_band(server_address, {}));
  EXPECT_ERRC(Errc::kInvalidState, client_.qp->connect_out_of_band(server_address, {}))
      << "a connected QP cannot be connected again";
}

// No message ends an out-of-band connection: a peer that is gone shows as the transport's
// retries running out, bounded by the retry count.
TEST_P(OutOfBandPairTest, APeerThatIsGoneFailsTheNextRequest) {
  ConnectParameters few_retries;
  few_retries.retry_count = 1;
  ASSERT_NO_FATAL_FAILURE(connect(few_retries, {}));
  server_.qp.reset();  // destroyed: the device drops what arrives for it
  const Sge one = scratch_.sge(0, 8);
  ASSERT_OK(
      client_.qp->rdma_write(20, std::span(&one, 1), scratch_.remote(64), SendFlags::kSignaled));
  Completion completion;
  ASSERT_TRUE(poll_one(*client_.send_cq, completion));
  EXPECT_EQ(completion.status, CompletionStatus::kTransportError) << describe(completion);
  EXPECT_TRUE(wait_qp_state(*client_.qp, QpState::kError));
}

WV_INSTANTIATE_FOR_PROVIDERS(OutOfBandPairTest);

}  // namespace
}  // namespace wv::verbs::conformance
