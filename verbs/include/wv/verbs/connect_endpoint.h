// Connection management for connected QPs, the rdma_cm shape: listening lives on the endpoint.
//
// Active side:  bind (optional) -> resolve_address -> resolve_route -> connect(qp).
// Passive side: bind -> listen -> get_request gives one new endpoint per incoming request,
//               which accept(qp)s or reject()s it, both with private data.
// Listening on a wildcard address serves every local address; a listen on a specific address
// wins over a wildcard listen on the same port.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/operation.h"
#include "wv/verbs/socket_address.h"

namespace wv::verbs {

class ConnectQueuePair;

// What one side offers (connect, accept) or the peer offered (query, get_request, connect's
// result). Read depths use the iWARP names: inbound = RDMA reads this side serves at once,
// outbound = RDMA reads this side issues at once. 0 means the device's maximum.
struct ConnectParameters {
  std::vector<std::byte> private_data;
  uint32_t inbound_read_depth = 0;
  uint32_t outbound_read_depth = 0;
  uint8_t retry_count = 7;
  uint8_t rnr_retry_count = 7;
};

enum class EndpointState : uint8_t {
  kIdle,
  kBound,
  kListening,
  kAddressResolved,
  kRouteResolved,
  kConnecting,
  kRequestReceived,  // an incoming request, waiting for accept or reject
  kConnected,
  kRejected,
  kDisconnected,
  kError,
};
std::string_view to_string(EndpointState state);

struct ConnectAttributes {
  EndpointState state = EndpointState::kIdle;
  SocketAddress local;
  SocketAddress peer;
  ConnectParameters peer_parameters;  // from the request, the accept or the reject
};

class ConnectEndpoint {
 public:
  ConnectEndpoint(const ConnectEndpoint&) = delete;
  ConnectEndpoint& operator=(const ConnectEndpoint&) = delete;
  virtual ~ConnectEndpoint() = default;

  virtual size_t max_private_data() const = 0;
  virtual Status bind(const SocketAddress& address) = 0;
  virtual Status listen(int backlog) = 0;
  virtual Operation<std::shared_ptr<ConnectEndpoint>> get_request() = 0;
  virtual Operation<void> resolve_address(const SocketAddress& destination,
                                          std::chrono::milliseconds timeout) = 0;
  virtual Operation<void> resolve_route(std::chrono::milliseconds timeout) = 0;
  // Done when the peer accepts (its parameters are the result) or fails: kRejected (the peer's
  // private data is in query()), kConnectionRefused, kTimedOut, kProtocolError.
  virtual Operation<ConnectParameters> connect(std::shared_ptr<ConnectQueuePair> qp,
                                               const ConnectParameters& parameters) = 0;
  virtual Operation<void> accept(std::shared_ptr<ConnectQueuePair> qp,
                                 const ConnectParameters& parameters) = 0;
  virtual Status reject(std::span<const std::byte> private_data) = 0;
  // Orderly close: outstanding work requests are flushed, the peer sees a disconnect.
  virtual Operation<void> disconnect() = 0;
  // Done when the connection ends for any reason (the peer disconnected or died).
  virtual Operation<void> notify_disconnect() = 0;
  virtual ConnectAttributes query() const = 0;

 protected:
  ConnectEndpoint() = default;
};

}  // namespace wv::verbs
