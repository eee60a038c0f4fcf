// DatagramEndpoint of the tcp provider: address resolution for datagram QPs over UDP (the
// service-ID-resolution pattern of InfiniBand's SIDR), and multicast joins.
//
// A lookup sends a request with private data to a listening endpoint's UDP address and
// retransmits it (kLookupAttempts times within the timeout: UDP may drop it). The listener's
// get_request() yields one new endpoint per lookup; its accept(qp) answers with the QP's number
// and Q_Key, the device's UDP address (the address the lookup arrived at, and the device
// socket's port) and private data; reject() answers with a refusal and private data. A
// retransmitted request is recognised by its transaction id and answered again, never turned
// into a second request. An endpoint from get_request that is destroyed unanswered rejects.
//
// Datagram listens are UDP, so they are independent of connect listens on the same port
// number. Endpoint sockets use SO_REUSEADDR, which lets a listen on a specific address win
// over a wildcard listen on the same port (the API's rule); binding port 0 takes an ephemeral
// port (tcp_port_base names the device socket's port, not endpoints').
//
// request(): for an endpoint from get_request, the lookup's private data and the asker's UDP
// address (qp_number and qkey 0: a lookup names no QP). For an endpoint that looked up, the
// last answer, so that a rejected lookup's private data can be read after kRejected.
//
// Lookup messages, network byte order:
//    0  u16  magic 0x574c ("WL")
//    2  u8   version 1
//    3  u8   type: 1 request, 2 accept, 3 reject
//    4  u64  transaction id (random, chosen by the requester; retransmissions reuse it)
//   12  u16  private data length
//   14  u16  accept: the device's UDP port
//   16  u32  accept: QP number
//   20  u32  accept: Q_Key
//   24  16B  accept: the device's address as a GID (zero: the address the lookup was sent to)
//   40       private data
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "soft_device.h"
#include "udp_wire.h"
#include "wv/verbs/datagram_endpoint.h"

namespace wv::verbs::soft {
class SoftDatagramQueuePair;
}

namespace wv::verbs::tcp {

class TcpProvider;

inline constexpr size_t kLookupHeaderBytes = 40;
// As much as an InfiniBand SIDR request carries, so applications stay portable.
inline constexpr size_t kLookupMaxPrivateData = 216;
inline constexpr int kLookupAttempts = 4;

class UdpDatagramEndpoint final : public DatagramEndpoint,
                                  public std::enable_shared_from_this<UdpDatagramEndpoint> {
 public:
  // `membership` joins and leaves groups for the device (the UDP wire itself when null).
  UdpDatagramEndpoint(std::shared_ptr<TcpProvider> provider,
                      std::shared_ptr<soft::SoftDevice> device, std::shared_ptr<UdpWire> wire,
                      std::shared_ptr<GroupMembership> membership = nullptr);
  ~UdpDatagramEndpoint() override;

  size_t max_private_data() const override { return kLookupMaxPrivateData; }
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

  // Progress thread.
  void on_readable();
  void on_deadline();

  // The socket's fd, shared by a listener and the endpoints it hands out (they answer on it).
  struct Socket {
    explicit Socket(int socket_fd) : fd(socket_fd) {}
    ~Socket();
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    int fd;
  };
  // One lookup a listener saw; the answer is kept to repeat it for retransmissions.
  struct Record {
    uint64_t id = 0;
    SocketAddress from;
    std::mutex mutex;
    std::vector<std::byte> answer;  // empty until accepted or rejected
  };

 private:
  enum class Role : uint8_t { kIdle, kBound, kListening, kRequest, kAccepted, kRejected };

  Status open_socket_locked(int family);
  Status bind_locked(const SocketAddress& address);
  Result<std::shared_ptr<soft::SoftDatagramQueuePair>> own_queue_pair(
      const std::shared_ptr<DatagramQueuePair>& qp) const;
  void on_request(uint64_t id, const SocketAddress& from, const SocketAddress& to,
                  std::span<const std::byte> private_data);
  void on_answer(std::span<const std::byte> message, uint8_t type, uint64_t id);
  Status answer_locked(std::vector<std::byte> message);
  void send_lookup_locked();

  std::shared_ptr<TcpProvider> provider_;
  std::shared_ptr<soft::SoftDevice> device_;
  std::shared_ptr<UdpWire> wire_;
  std::shared_ptr<GroupMembership> membership_;
  mutable std::mutex mutex_;
  Role role_ = Role::kIdle;
  std::shared_ptr<Socket> socket_;
  int family_ = AF_UNSPEC;
  bool watched_ = false;  // the socket is served by the progress thread (not for children)
  SocketAddress local_;
  std::vector<std::byte> receive_buffer_;  // progress thread only

  // Listening.
  size_t backlog_ = 0;
  std::deque<std::shared_ptr<DatagramEndpoint>> requests_;
  std::deque<Completer<std::shared_ptr<DatagramEndpoint>>> request_waiters_;
  std::deque<std::shared_ptr<Record>> recent_;

  // An endpoint from get_request.
  std::shared_ptr<Record> record_;
  SocketAddress arrived_at_;
  DatagramPeer request_;

  // Looking up.
  Completer<DatagramPeer> lookup_;
  uint64_t lookup_id_ = 0;
  SocketAddress lookup_destination_;
  std::vector<std::byte> lookup_message_;
  std::chrono::steady_clock::time_point lookup_end_;
  std::chrono::milliseconds lookup_interval_{0};
  std::chrono::milliseconds lookup_timeout_{0};
  DatagramPeer answer_;

  // Multicast joins made through this endpoint, left when it goes.
  struct Joined {
    SocketAddress group;
    std::shared_ptr<soft::SoftDatagramQueuePair> qp;
  };
  std::vector<Joined> joined_;
};

}  // namespace wv::verbs::tcp
