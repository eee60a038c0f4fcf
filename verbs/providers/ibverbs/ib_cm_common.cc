#include "ib_cm_common.h"

#include <cstring>

#include "ib_convert.h"

namespace wv::verbs::ib {

CmChannel::~CmChannel() {
  close();
}

Status CmChannel::watch(std::function<void(rdma_cm_event*)> handler) {
  rdma_event_channel* channel = channel_;
  Status status = loop_->add(channel->fd, [channel, handler = std::move(handler)] {
    // One event per wakeup (the loop is level-triggered): the handler may destroy this
    // channel's owner, after which the channel must not be touched again.
    rdma_cm_event* event = nullptr;
    if (rdma_get_cm_event(channel, &event) == 0) handler(event);
  });
  watched_ = status.is_ok();
  return status;
}

Status CmChannel::open(rdma_port_space space, std::function<void(rdma_cm_event*)> handler) {
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) return verbs_status(-1, "rdma_create_event_channel");
  if (rdma_create_id(channel_, &id_, nullptr, space) != 0) {
    id_ = nullptr;
    return verbs_status(-1, "rdma_create_id");
  }
  return watch(std::move(handler));
}

Status CmChannel::adopt(rdma_cm_id* id, std::function<void(rdma_cm_event*)> handler) {
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) {
    rdma_destroy_id(id);
    return verbs_status(-1, "rdma_create_event_channel");
  }
  id_ = id;
  if (rdma_migrate_id(id, channel_) != 0) return verbs_status(-1, "rdma_migrate_id");
  return watch(std::move(handler));
}

void CmChannel::close() {
  if (channel_ != nullptr && watched_) loop_->remove(channel_->fd);
  watched_ = false;
  if (id_ != nullptr) rdma_destroy_id(id_);
  id_ = nullptr;
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  channel_ = nullptr;
}

bool is_iwarp(const rdma_cm_id* id) {
  return id != nullptr && id->verbs != nullptr &&
         id->verbs->device->transport_type == IBV_TRANSPORT_IWARP;
}

std::vector<std::byte> frame_private_data(bool iwarp, std::span<const std::byte> data,
                                          std::span<const std::byte> header) {
  std::vector<std::byte> out;
  if (iwarp) {
    out.assign(data.begin(), data.end());
    return out;
  }
  out.reserve(1 + header.size() + data.size());
  out.push_back(static_cast<std::byte>(data.size()));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> unframe_private_data(bool iwarp, const void* data, size_t length,
                                            std::span<std::byte> header) {
  const auto* bytes = static_cast<const std::byte*>(data);
  if (bytes == nullptr || length == 0) return {};
  if (iwarp) return std::vector<std::byte>(bytes, bytes + length);
  const size_t stated = static_cast<size_t>(bytes[0]);
  if (1 + header.size() > length) return {};
  std::memcpy(header.data(), bytes + 1, header.size());
  const size_t available = length - 1 - header.size();
  const size_t n = std::min(stated, available);
  const std::byte* start = bytes + 1 + header.size();
  return std::vector<std::byte>(start, start + n);
}

SocketAddress local_address_of(rdma_cm_id* id) {
  sockaddr* address = rdma_get_local_addr(id);
  if (address == nullptr || address->sa_family == AF_UNSPEC) return {};
  return SocketAddress(address,
                       address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
}

SocketAddress peer_address_of(rdma_cm_id* id) {
  sockaddr* address = rdma_get_peer_addr(id);
  if (address == nullptr || address->sa_family == AF_UNSPEC) return {};
  return SocketAddress(address,
                       address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
}

}  // namespace wv::verbs::ib
