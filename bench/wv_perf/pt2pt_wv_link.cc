#include "pt2pt_wv_link.h"

namespace wv::perf {

Status WvLink::send(const void* buffer, size_t length, int tag) {
  return comm_.send(peer_, static_cast<uint64_t>(tag), buffer, length);
}

Status WvLink::recv(void* buffer, size_t length, int tag) {
  return comm_.recv(peer_, static_cast<uint64_t>(tag), buffer, length).status();
}

Status WvLink::post_send(const void* buffer, size_t length, int tag) {
  auto request = comm_.isend(peer_, static_cast<uint64_t>(tag), buffer, length);
  if (!request) return request.status();
  posted_.push_back(request.value());
  return Status::ok();
}

Status WvLink::post_recv(void* buffer, size_t length, int tag) {
  auto request = comm_.irecv(peer_, static_cast<uint64_t>(tag), buffer, length);
  if (!request) return request.status();
  posted_.push_back(request.value());
  return Status::ok();
}

Status WvLink::wait_posted() {
  Status s = comm_.wait_all(posted_);
  posted_.clear();
  return s;
}

}  // namespace wv::perf
