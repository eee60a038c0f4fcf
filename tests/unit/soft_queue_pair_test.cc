// The software engine's QP and the wires (connections) that serve it: a QP that was failed,
// reset and connected again belongs to its new wire only. The old connection's progress may
// still report its peer's hang-up or find data; neither may touch the QP any more (a
// reconnected server QP was once failed this way between its re-init and its accept).
#include "soft_queue_pair.h"

#include <gtest/gtest.h>

#include <memory>

#include "soft_side.h"

namespace wv::verbs::test {
namespace {

class CountingWire final : public soft::Wire {
 public:
  void kick_locked(soft::SoftConnectQueuePair&) override {}
  void receive_posted() override {}
  void close() override { ++closes; }
  int closes = 0;
};

void connect(soft::SoftConnectQueuePair& qp, std::shared_ptr<soft::Wire> wire) {
  std::lock_guard lock(qp.mutex());
  ASSERT_TRUE(qp.connect_locked(std::move(wire), 7, 1, 1).is_ok());
}

TEST(SoftQueuePair, AnOldWireNeitherFailsNorFeedsTheQpConnectedAgain) {
  Side side;
  ASSERT_NO_FATAL_FAILURE(open_side("tcp", side));
  auto& qp = static_cast<soft::SoftConnectQueuePair&>(*side.qp);
  auto old_wire = std::make_shared<CountingWire>();
  auto new_wire = std::make_shared<CountingWire>();
  ASSERT_NO_FATAL_FAILURE(connect(qp, old_wire));
  ASSERT_TRUE(qp.modify(QpState::kError).is_ok());
  EXPECT_EQ(old_wire->closes, 1);
  ASSERT_TRUE(qp.modify(QpState::kReset).is_ok());
  ASSERT_TRUE(qp.modify(QpState::kInit).is_ok());
  ASSERT_NO_FATAL_FAILURE(connect(qp, new_wire));

  {
    std::lock_guard lock(qp.mutex());
    qp.fail_by_wire_locked(*old_wire, CompletionStatus::kTransportError, "old peer hung up");
  }
  EXPECT_EQ(qp.query().state, QpState::kReadyToSend);
  EXPECT_EQ(new_wire->closes, 0);

  std::byte buffer[64];
  auto region = side.pd->register_memory(buffer, sizeof(buffer), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok()) << region.status().to_string();
  const Sge sge{region.value().get(), buffer, sizeof(buffer)};
  ASSERT_TRUE(qp.post_receive(11, std::span(&sge, 1)).is_ok());
  soft::ReceiveWorkRequest receive;
  EXPECT_FALSE(qp.take_receive(*old_wire, receive)) << "the old wire took the new one's receive";
  ASSERT_TRUE(qp.take_receive(*new_wire, receive));
  EXPECT_EQ(receive.wr_id, 11u);

  {
    std::lock_guard lock(qp.mutex());
    qp.fail_by_wire_locked(*new_wire, CompletionStatus::kTransportError, "new peer hung up");
  }
  EXPECT_EQ(qp.query().state, QpState::kError);
  EXPECT_EQ(new_wire->closes, 1);
}

}  // namespace
}  // namespace wv::verbs::test
