// DatagramEndpoint on rdma_cm's UDP port space: lookup is the SIDR exchange (resolve, route,
// connect -> the peer's QP number), join_multicast is rdma_join_multicast plus the attach.
// The kernel joins only through an id that is bound or resolved, never through a listening one,
// so each group gets an rdma_cm id of its own (bound to this endpoint's address, or resolved
// towards the group when the endpoint has no address), which leave_multicast and the
// destructor release.
// rdma_cm answers lookups with its own Q_Key, so an accept puts the QP's real Q_Key in front
// of the application's private data.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ib_cm_common.h"
#include "ib_queue_pair.h"
#include "wv/verbs/datagram_endpoint.h"

namespace wv::verbs::ib {

class IbProvider;

class IbDatagramEndpoint final : public DatagramEndpoint,
                                 public std::enable_shared_from_this<IbDatagramEndpoint> {
 public:
  static Result<std::shared_ptr<IbDatagramEndpoint>> create(std::shared_ptr<IbProvider> provider);
  ~IbDatagramEndpoint() override;

  size_t max_private_data() const override { return kMaxPrivateData; }
  Status bind(const SocketAddress& address) override;
  Status listen(int backlog) override;
  Operation<std::shared_ptr<DatagramEndpoint>> get_request() override;
  Operation<DatagramPeer> lookup(const SocketAddress& destination,
                                 std::span<const std::byte> private_data,
                                 std::chrono::milliseconds timeout) override;
  Operation<void> accept(std::shared_ptr<DatagramQueuePair> qp,
                         std::span<const std::byte> private_data) override;
  Status reject(std::span<const std::byte> private_data) override;
  DatagramPeer request() const override;
  SocketAddress local_address() const override;
  Operation<DatagramPeer> join_multicast(std::shared_ptr<DatagramQueuePair> qp,
                                         const SocketAddress& group) override;
  Status leave_multicast(const SocketAddress& group) override;

  // SIDR REP carries 136 bytes; the frame byte and the Q_Key take 5.
  static constexpr size_t kMaxPrivateData = 128;

 private:
  explicit IbDatagramEndpoint(std::shared_ptr<IbProvider> provider);
  std::function<void(rdma_cm_event*)> handler();
  void on_event(rdma_cm_event* event);
  void on_request(rdma_cm_event* event);
  DatagramPeer peer_of(const rdma_ud_param& param, bool with_qkey) const;
  void fail(Status status);

  // One group's membership: its own rdma_cm id (on its own event channel) and the joined QP.
  struct Membership {
    explicit Membership(std::shared_ptr<EventLoop> loop) : cm(std::move(loop)) {}
    CmChannel cm;
    SocketAddress group;
    std::shared_ptr<IbDatagramQueuePair> qp;
    DatagramPeer peer;
    Completer<DatagramPeer> joining;
    bool join_issued = false;  // rdma_join_multicast accepted: leave before destroying the id
    bool attached = false;     // the QP is attached to the group
  };
  std::function<void(rdma_cm_event*)> membership_handler(std::string key, const Membership* tag);
  void on_membership_event(const std::string& key, const Membership* tag, rdma_cm_event* event);
  // Issues rdma_join_multicast on the membership's id (bound or resolved).
  Status start_join(Membership& membership);
  // Detaches, leaves and destroys the id; never under mutex_ (closing waits for the loop).
  static Status release(Membership& membership);

  enum class Phase : uint8_t { kIdle, kResolving, kRouting, kAsking, kDone };

  std::shared_ptr<IbProvider> provider_;
  CmChannel cm_;
  mutable std::mutex mutex_;
  Phase phase_ = Phase::kIdle;
  bool listening_ = false;
  bool incoming_ = false;
  SocketAddress local_;
  std::vector<std::byte> lookup_data_;
  std::chrono::milliseconds timeout_{0};
  DatagramPeer request_;
  Completer<DatagramPeer> looking_up_;
  std::map<std::string, std::unique_ptr<Membership>> memberships_;  // by group address
  std::deque<std::shared_ptr<DatagramEndpoint>> requests_;
  std::deque<Completer<std::shared_ptr<DatagramEndpoint>>> request_waiters_;
};

}  // namespace wv::verbs::ib
