// A process's memory keys published in shared memory, so that a peer on the host can check an
// RDMA read itself and copy it with process_vm_readv: a one-sided read, done without this
// process's CPU, which may be descheduled (more ranks than cores) or busy computing. Without the
// mirror every read waits for the target to check the key and answer.
//
// Layout: a sealed memfd of kSlots cache-line slots. Key k lives in slot k & (kSlots - 1) when
// that slot is free; a key whose slot is taken is not published, and reads with it go through
// the ring, where the target checks them (keys are random, so collisions are rare and cost only
// the ring path). The mirror is a subset of the key table at every moment: the writer publishes
// a key after the table has it and withdraws it before the table's change is visible.
//
// Each slot is a seqlock with one writer (the key table's listener runs under the table's lock):
// the sequence is odd while the slot changes. A reader takes a slot that reads the same even
// sequence before and after, and after copying the data checks that the sequence is unchanged:
// a key withdrawn (deregistered, invalidated, rebound) while the copy ran fails the check, and
// the read goes through the ring instead, so a read that succeeds this way had its key valid
// for the whole copy.
//
// The peer maps the mirror read-only (and the memfd is sealed against new writable mappings
// where the kernel can: F_SEAL_FUTURE_WRITE). What it reads is only ever compared with the
// read it checks; a peer that may use CMA on this process could read its memory anyway.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "key_table.h"
#include "soft_device.h"
#include "wv/result.h"

namespace wv::verbs::shm {

inline constexpr uint32_t kMirrorSlots = 4096;

// This process's side: the device's key table tells it every change.
class KeyMirror final : public soft::KeyListener {
 public:
  // The device's mirror, created and installed on its key table on first use.
  static Result<std::shared_ptr<KeyMirror>> of(soft::SoftDevice& device);
  // An empty mirror, to install on a key table (KeyTable::set_listener).
  static Result<std::shared_ptr<KeyMirror>> create();
  ~KeyMirror() override;
  KeyMirror(const KeyMirror&) = delete;
  KeyMirror& operator=(const KeyMirror&) = delete;

  void key_changed(uint32_t key, const soft::KeyEntry* entry) override;
  // The memfd to send to a peer (the caller's copy is its own: dup).
  int fd() const { return fd_; }

 private:
  KeyMirror() = default;
  uint64_t* base_ = nullptr;
  int fd_ = -1;
};

// A peer's mirror, mapped read-only.
class PeerKeys {
 public:
  // Maps a peer's mirror after checking its seals and size. Takes ownership of `fd`.
  static Result<std::unique_ptr<PeerKeys>> attach(int fd);
  ~PeerKeys();
  PeerKeys(const PeerKeys&) = delete;
  PeerKeys& operator=(const PeerKeys&) = delete;

  // What check() found: `sequence` is what unchanged() compares with after the copy; a region
  // from allocate_memory names its memfd (the peer's descriptor number, -1 for other keys),
  // which maps the region's `start` at offset 0.
  struct Grant {
    uint64_t sequence = 0;
    uint64_t start = 0;
    int shared_fd = -1;
  };
  // Whether `key` grants `access` to [address, address + length) to the peer's QP `qp_number`
  // of protection domain `domain` (the peer's values).
  bool check(uint32_t key, uint64_t address, uint64_t length, Access access, uint64_t domain,
             uint32_t qp_number, Grant* grant) const;
  // The slot of `key` did not change since check() returned `sequence`.
  bool unchanged(uint32_t key, uint64_t sequence) const;

 private:
  PeerKeys() = default;
  const uint64_t* base_ = nullptr;
};

}  // namespace wv::verbs::shm
