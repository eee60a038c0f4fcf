// Buffers the ranks of a host read in place (Communicator::allocate_buffer): a rank allocates
// them as HostMemory and lists them in its table in the host segment; its peers map each listed
// buffer (PeerFiles, SealedMapping) and acknowledge it in the table. A rank then exposes a
// collective's buffer to its peers only when every peer acknowledged it, so a peer never meets a
// buffer it cannot read: the collective's steps need no agreement on who maps what.
//
// Buffer numbers (ids) are never reused by their owner, so a mapping is valid while the table
// shows its id in its slot. A peer drops a mapping whose buffer is gone at its next refresh();
// until then the mapping keeps the freed pages alive (never memory the owner reused).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "wv/host_memory.h"
#include "wv/result.h"

namespace wv::coll::detail {

// Every rank's table of buffers, in the host segment.
class SharedTable {
 public:
  static constexpr int kSlots = 16;       // tabled buffers per rank; more are not shared
  static constexpr int kMaxMembers = 64;  // larger hosts have no tables (they grow as members²)
  static size_t bytes(int members);

  SharedTable(std::byte* base, int members) : base_(base), members_(members) {}
  int members() const { return members_; }

  struct Entry {
    std::atomic<uint64_t> id;       // 0: free; stored last when filled, first when withdrawn
    std::atomic<uint64_t> address;  // the owner's address of the buffer
    std::atomic<uint64_t> bytes;
    std::atomic<uint64_t> inode;  // of its memfd
    std::atomic<int64_t> fd;      // the owner's descriptor number of its memfd
  };
  Entry& entry(int rank, int slot) const;
  // Bumped by the owner after each change to its entries: a peer rereads them only then.
  std::atomic<uint64_t>& version(int rank) const;
  // The id of the buffer at (rank, slot) that `reader` has mapped.
  std::atomic<uint64_t>& mapped_by(int rank, int slot, int reader) const;

 private:
  size_t words_per_entry() const { return sizeof(Entry) / 8 + static_cast<size_t>(members_); }
  size_t rank_bytes() const { return 8 + kSlots * words_per_entry() * 8; }
  std::byte* base_;
  int members_;
};

// The buffers this process allocated through one communicator; shared with the SharedBuffer
// handles, which may outlive the communicator (they then stay plain memory).
class SharedBuffers {
 public:
  struct Allocated {
    uint64_t id;
    void* address;
  };
  Result<Allocated> allocate(size_t bytes);
  void release(uint64_t id);

  // The tabled buffer holding [address, address + length), if any.
  struct Found {
    int slot = -1;
    uint64_t id = 0;
    uint64_t start = 0;  // the buffer's address
  };
  Found find(const void* address, size_t length) const;

  // From now on this rank's buffers are listed in `table` (which the segment owns) as `rank`.
  void attach(const SharedTable& table, int rank);
  void detach();

 private:
  struct Buffer {
    uint64_t id;
    int slot;  // -1: not in the table
    std::unique_ptr<HostMemory> memory;
  };
  void publish_locked(Buffer& buffer);

  mutable std::mutex mutex_;
  std::atomic<int> tabled_{0};  // buffers in the table: find() needs no lock while none are
  std::vector<Buffer> buffers_;
  uint64_t next_id_ = 1;
  std::optional<SharedTable> table_;
  int rank_ = -1;
};

// A rank's mappings of its peers' tabled buffers.
class PeerMappings {
 public:
  PeerMappings(const SharedTable& table, int rank);
  ~PeerMappings();
  PeerMappings(const PeerMappings&) = delete;
  PeerMappings& operator=(const PeerMappings&) = delete;

  // Maps what the peers newly listed (acknowledging each in the table) and drops the mappings of
  // buffers no longer listed. `pids`: each member's process.
  void refresh(std::span<const pid_t> pids);
  // This process's address of `rank`'s [address, address + length) in its buffer at `slot`;
  // null if that is not mapped.
  std::byte* find(int rank, uint32_t slot, uint64_t address, size_t length) const;

 private:
  struct Mapping {
    uint64_t id = 0;  // the buffer's id when mapped, or when mapping it failed
    uint64_t start = 0;
    SealedMapping mapping;
  };
  Mapping& mapping(int rank, int slot) const {
    return mappings_[static_cast<size_t>(rank) * SharedTable::kSlots + static_cast<size_t>(slot)];
  }
  void map(int rank, int slot, uint64_t id, pid_t pid);

  SharedTable table_;
  int rank_;
  std::vector<uint64_t> versions_;  // each rank's table version as last read
  std::unique_ptr<Mapping[]> mappings_;
  std::vector<std::unique_ptr<PeerFiles>> files_;  // by rank, opened on first use
};

}  // namespace wv::coll::detail
