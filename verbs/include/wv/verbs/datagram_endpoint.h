// Address resolution for datagram QPs: a lookup asks a listening peer for the QP number and
// Q_Key to send to (the service-ID-resolution pattern), and multicast groups are joined here.
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
#include "wv/verbs/types.h"

namespace wv::verbs {

class DatagramQueuePair;

// Everything needed to send datagrams to a peer QP or a multicast group.
struct DatagramPeer {
  AddressVector address;
  uint32_t qp_number = 0;
  uint32_t qkey = 0;
  std::vector<std::byte> private_data;
};

class DatagramEndpoint {
 public:
  DatagramEndpoint(const DatagramEndpoint&) = delete;
  DatagramEndpoint& operator=(const DatagramEndpoint&) = delete;
  virtual ~DatagramEndpoint() = default;

  virtual size_t max_private_data() const = 0;
  virtual Status bind(const SocketAddress& address) = 0;
  virtual Status listen(int backlog) = 0;
  // One new endpoint per lookup received; it accept()s with a QP or reject()s.
  virtual Operation<std::shared_ptr<DatagramEndpoint>> get_request() = 0;
  virtual Operation<DatagramPeer> lookup(const SocketAddress& destination,
                                         std::span<const std::byte> private_data,
                                         std::chrono::milliseconds timeout) = 0;
  virtual Operation<void> accept(std::shared_ptr<DatagramQueuePair> qp,
                                 std::span<const std::byte> private_data) = 0;
  virtual Status reject(std::span<const std::byte> private_data) = 0;
  // For an endpoint from get_request: the lookup's private data and the asking peer. For an
  // endpoint that looked up: the last answer (accept or reject) with its private data.
  virtual DatagramPeer request() const = 0;
  // The address this endpoint is bound to (the real port after binding port 0); empty before.
  virtual SocketAddress local_address() const = 0;
  // Joins `group` (an IP multicast address) and attaches `qp`; the result addresses the group.
  virtual Operation<DatagramPeer> join_multicast(std::shared_ptr<DatagramQueuePair> qp,
                                                 const SocketAddress& group) = 0;
  virtual Status leave_multicast(const SocketAddress& group) = 0;

 protected:
  DatagramEndpoint() = default;
};

}  // namespace wv::verbs
