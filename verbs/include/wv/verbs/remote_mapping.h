// A peer's memory mapped into this process: ConnectQueuePair::map_remote, UCX's ucp_rkey_ptr.
//
// Loads and stores through data() reach the peer's memory with no work request, no completion
// and no action of either side's provider: the fastest way to move a few bytes to a peer on the
// same host (a mailbox the peer polls, as Open MPI's vader "fast boxes"). They follow the CPU's
// memory model, not the QP's ordering: publish with a release store and read with an acquire
// load what the other side polls. The mapping holds its pages: it stays valid until destroyed,
// even after the peer deregistered the memory or exited (stores then land in pages nobody reads,
// never in memory the peer reused).
#pragma once

#include <cstddef>

namespace wv::verbs {

class RemoteMapping {
 public:
  RemoteMapping(const RemoteMapping&) = delete;
  RemoteMapping& operator=(const RemoteMapping&) = delete;
  virtual ~RemoteMapping() = default;

  // The peer's bytes [remote.address, remote.address + size()) as map_remote named them.
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 protected:
  RemoteMapping(std::byte* data, size_t size) : data_(data), size_(size) {}

 private:
  std::byte* data_;
  size_t size_;
};

}  // namespace wv::verbs
