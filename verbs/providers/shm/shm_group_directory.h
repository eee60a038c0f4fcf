// The members of one multicast group among the shm devices of a host: a small memfd that every
// member maps, listing each member device by its datagram port (shm_datagram_wire.h).
//
// Finding it: one member, the holder, listens on the abstract unix socket
// "\0wv-shm-mc/<group GID in hex>" and hands the memfd to whoever connects, then keeps the
// connection open. Members and senders keep theirs: its hang-up says the holder left (or died),
// and a member then takes the name over with its own mapping, or connects to whoever got there
// first. A member that finds a different directory there (two groups formed while the name was
// free) moves its entry into the holder's. The kernel frees the memfd with its last user, so
// nothing is left behind on the host.
//
// Entries are claimed and freed with atomics, no lock, so a process killed in the middle blocks
// nobody: a half-claimed entry (pid set, port not yet) is skipped by readers, and entries of
// processes that no longer exist are freed by the next member that joins or takes over.
// `generation` changes with every entry change, so that a sender rereads the members only then.
// Everything read from the segment is checked: a port of 0 or an out-of-range count is skipped.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "wv/result.h"
#include "wv/verbs/types.h"

namespace wv::verbs::shm {

inline constexpr std::string_view kGroupNames = "wv-shm-mc/";
inline constexpr uint32_t kMaxGroupMembers = 64;
inline constexpr uint64_t kGroupMagic = 0x31524944'4d485357ull;  // "WSHMDIR1"
inline constexpr uint32_t kGroupVersion = 1;

struct GroupMember {
  std::atomic<int32_t> pid{0};    // 0: free
  std::atomic<uint32_t> port{0};  // 0: being claimed
};

struct GroupDirectoryHeader {
  uint64_t magic = 0;
  uint32_t version = 0;
  uint32_t capacity = 0;
  uint64_t id = 0;  // random: tells two directories of one group apart
  Gid group;
  alignas(64) std::atomic<uint64_t> generation{0};
  GroupMember members[kMaxGroupMembers];
};

class GroupDirectory {
 public:
  static Result<std::unique_ptr<GroupDirectory>> create(const Gid& group);
  // Maps a directory received from a holder, after checking seals, size, magic and group.
  // Takes ownership of `fd`.
  static Result<std::unique_ptr<GroupDirectory>> attach(int fd, const Gid& group);
  ~GroupDirectory();
  GroupDirectory(const GroupDirectory&) = delete;
  GroupDirectory& operator=(const GroupDirectory&) = delete;

  int fd() const { return fd_; }
  uint64_t id() const { return id_; }
  uint64_t generation() const { return header_->generation.load(std::memory_order_acquire); }

  // Lists this process's device under `port` (once); kNoMemory when every entry is taken.
  Status add(uint16_t port);
  void remove(uint16_t port);
  // The member ports, at most out.size(); a snapshot taken between two equal generations
  // when the members hold still long enough.
  size_t members(std::span<uint16_t> out) const;
  // Frees the entries of processes that no longer exist.
  void prune();

 private:
  GroupDirectory() = default;
  GroupDirectoryHeader* header_ = nullptr;
  int fd_ = -1;
  uint64_t id_ = 0;
};

// "wv-shm-mc/ff12401b...".
std::string group_name(const Gid& group);

}  // namespace wv::verbs::shm
