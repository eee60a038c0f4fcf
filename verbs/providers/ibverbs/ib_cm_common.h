// What both rdma_cm endpoints share: an rdma_cm_id on its own event channel, whose fd the
// provider's event loop watches, and the private-data framing.
//
// InfiniBand/RoCE CM messages carry a fixed-size private-data field that arrives zero-padded,
// so the provider frames private data there with a one-byte length. iWARP (MPA) carries the
// exact bytes, and they go unframed so that any iWARP peer (kernel siw, the tcp provider, a
// NIC) sees exactly what the application sent.
#pragma once

#include <rdma/rdma_cma.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "ib_event_loop.h"
#include "wv/result.h"
#include "wv/verbs/socket_address.h"

namespace wv::verbs::ib {

// Owns an event channel and one rdma_cm_id on it; the handler runs on the loop thread.
class CmChannel {
 public:
  CmChannel(std::shared_ptr<EventLoop> loop) : loop_(std::move(loop)) {}
  ~CmChannel();
  CmChannel(const CmChannel&) = delete;
  CmChannel& operator=(const CmChannel&) = delete;

  // A new channel and id in `space` (RDMA_PS_TCP or RDMA_PS_UDP).
  Status open(rdma_port_space space, std::function<void(rdma_cm_event*)> handler);
  // A new channel for `id` (an incoming request's id), migrated onto it.
  Status adopt(rdma_cm_id* id, std::function<void(rdma_cm_event*)> handler);
  // Stops the handler and destroys the id and channel (idempotent).
  void close();
  rdma_cm_id* id() const { return id_; }

 private:
  Status watch(std::function<void(rdma_cm_event*)> handler);

  std::shared_ptr<EventLoop> loop_;
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  bool watched_ = false;
};

bool is_iwarp(const rdma_cm_id* id);
// Frames `data` for the id's transport (see above).
std::vector<std::byte> frame_private_data(bool iwarp, std::span<const std::byte> data,
                                          std::span<const std::byte> header = {});
// The application's bytes out of a received private-data field; `header` bytes that follow the
// length byte (datagram accept's Q_Key) are copied to `header`.
std::vector<std::byte> unframe_private_data(bool iwarp, const void* data, size_t length,
                                            std::span<std::byte> header = {});
SocketAddress local_address_of(rdma_cm_id* id);
SocketAddress peer_address_of(rdma_cm_id* id);

}  // namespace wv::verbs::ib
