// ConnectEndpoint of the shm provider. The API's IP socket addresses are names on this host:
// a listen on 127.0.0.1:5000 is the abstract unix socket "\0wv-shm/127.0.0.1:5000" (no file,
// gone with the socket), a wildcard listen is "\0wv-shm/0.0.0.0:5000". A connect tries the
// specific name first and then the wildcard of the same port, which is how a specific listen
// wins over a wildcard one. The handshake (shm_protocol.h) passes the shared segment and the
// doorbells as descriptors; the socket then lives as long as the connection, so the kernel
// tells each side when the other one goes.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>

#include "request_queue.h"
#include "shm_cma.h"
#include "shm_connection.h"
#include "shm_protocol.h"
#include "soft_device.h"
#include "wv/verbs/connect_endpoint.h"

namespace wv::verbs::shm {

class ShmProvider;

class ShmConnectEndpoint final : public ConnectEndpoint,
                                 public std::enable_shared_from_this<ShmConnectEndpoint> {
 public:
  // `names`: the name space of the listening sockets (shm_protocol.h); `device` may be another
  // software provider's (the hybrid provider's shm side door serves QPs of the tcp device).
  ShmConnectEndpoint(std::shared_ptr<ShmProvider> provider,
                     std::shared_ptr<soft::SoftDevice> device, std::string_view names = kShmNames);
  ~ShmConnectEndpoint() override;

  size_t max_private_data() const override { return kMaxPrivateData; }
  Status bind(const SocketAddress& address) override;
  Status listen(int backlog) override;
  Operation<std::shared_ptr<ConnectEndpoint>> get_request() override;
  Operation<void> resolve_address(const SocketAddress& destination,
                                  std::chrono::milliseconds timeout) override;
  Operation<void> resolve_route(std::chrono::milliseconds timeout) override;
  Operation<ConnectParameters> connect(std::shared_ptr<ConnectQueuePair> qp,
                                       const ConnectParameters& parameters) override;
  Operation<void> accept(std::shared_ptr<ConnectQueuePair> qp,
                         const ConnectParameters& parameters) override;
  Status reject(std::span<const std::byte> private_data) override;
  Operation<void> disconnect() override;
  Operation<void> notify_disconnect() override;
  ConnectAttributes query() const override;

  // Requests this endpoint receives once listening go to `queue` (shared with another
  // listener, so one get_request() serves both). Before listen().
  void share_requests(std::shared_ptr<soft::RequestQueue> queue) { requests_ = std::move(queue); }

  // Progress-thread side of the handshakes. Descriptors passed in are owned by the callee.
  // `keys_fd` is the peer's key mirror, or -1 when the peer sent none.
  void on_incoming(int fd, Handshake request, int segment_fd, int doorbell_fd, int keys_fd,
                   pid_t pid);
  void on_reply(int fd, const Handshake& reply, int peer_doorbell_fd, int keys_fd,
                std::unique_ptr<Segment> segment, int doorbell_fd,
                Completer<ConnectParameters>& completer);
  void on_connect_failed();

 private:
  Status check_parameters(const ConnectParameters& parameters) const;
  Result<std::shared_ptr<soft::SoftConnectQueuePair>> own_queue_pair(
      const std::shared_ptr<ConnectQueuePair>& qp) const;
  uint32_t offered(uint32_t wanted, uint32_t limit) const;
  Status bind_locked(const SocketAddress& address);
  // The peer as its handshake and socket describe it; keys_fd is owned (closed) by the callee.
  struct PeerSide {
    pid_t pid = 0;
    uint32_t qp_number = 0;
    uint64_t domain = 0;
    int keys_fd = -1;
  };
  Status start_connection(std::unique_ptr<Segment> segment, int fd, int doorbell_fd,
                          int peer_doorbell_fd, const PeerSide& peer, CmaWith cma, int side,
                          uint32_t inbound, uint32_t outbound);
  // This side's handshake fields for its key mirror; adds the mirror's descriptor to `fds`.
  void offer_key_mirror(const soft::SoftConnectQueuePair& qp, Handshake& message,
                        std::vector<int>& fds) const;

  std::shared_ptr<ShmProvider> provider_;
  std::shared_ptr<soft::SoftDevice> device_;
  const std::string_view names_;
  mutable std::mutex mutex_;
  EndpointState state_ = EndpointState::kIdle;
  int fd_ = -1;  // bound, listening, or an incoming connection before accept/reject
  bool bound_ = false;
  SocketAddress local_;
  SocketAddress peer_;
  ConnectParameters peer_parameters_;
  std::shared_ptr<ConnectionEvents> events_;
  std::shared_ptr<soft::SoftConnectQueuePair> qp_;
  // Listening.
  std::shared_ptr<soft::RequestQueue> requests_ = std::make_shared<soft::RequestQueue>();
  // An incoming request before accept/reject.
  Handshake request_;
  int segment_fd_ = -1;
  int peer_doorbell_fd_ = -1;
  int peer_keys_fd_ = -1;
  pid_t peer_pid_ = 0;
  uint32_t offered_inbound_ = 0;
  uint32_t offered_outbound_ = 0;
};

}  // namespace wv::verbs::shm
