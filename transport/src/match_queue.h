// One side of tag matching: posted receives (patterns) or unexpected messages (concrete
// source and tag), oldest first, with O(1) lookup for the common exact case.
//
// Exact entries (a concrete source and a full mask) live in hash buckets keyed by
// (source, tag); wildcard patterns live in one list. A query looks at the first candidate of
// each and takes the older, so MPI's matching order holds without scanning every entry.
// Entries are named by small ids chosen by the caller (request or message slots); storage
// grows only when a new id is beyond the current capacity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "wv/transport/worker.h"

namespace wv::transport {

class MatchQueue {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;

  // `ordered`: also keep every entry in one arrival list, needed to answer wildcard queries
  // over concrete entries (the unexpected queue).
  explicit MatchQueue(bool ordered, uint32_t bucket_count = 4096);

  void push(uint32_t id, PeerId source, uint64_t tag, uint64_t mask);
  void remove(uint32_t id);
  bool contains(uint32_t id) const { return id < nodes_.size() && nodes_[id].linked; }
  size_t size() const { return size_; }

  // Posted receives: the oldest pattern that accepts a message from `source` with `tag`.
  uint32_t find_accepting(PeerId source, uint64_t tag) const;
  // Unexpected messages (ordered queue): the oldest entry the pattern would accept.
  uint32_t find_matching(PeerId source, uint64_t tag, uint64_t mask) const;
  // Every id whose source is `source` (for failing a dead peer's entries).
  std::vector<uint32_t> ids_from(PeerId source) const;

 private:
  struct Links {
    uint32_t prev = kNone;
    uint32_t next = kNone;
  };
  struct List {
    uint32_t head = kNone;
    uint32_t tail = kNone;
  };
  struct Node {
    PeerId source = kAnyPeer;
    uint64_t tag = 0;
    uint64_t mask = 0;
    uint64_t sequence = 0;
    Links bucket;  // the bucket's list (exact) or the wildcard list
    Links order;   // the arrival list (ordered queues)
    bool linked = false;
    bool exact = false;
  };

  static bool accepts(const Node& pattern, PeerId source, uint64_t tag) {
    return (pattern.source == kAnyPeer || pattern.source == source) &&
           ((pattern.tag ^ tag) & pattern.mask) == 0;
  }
  uint32_t bucket_of(PeerId source, uint64_t tag) const;
  void link(List& list, uint32_t id, Links Node::*links);
  void unlink(List& list, uint32_t id, Links Node::*links);

  bool ordered_;
  std::vector<Node> nodes_;
  std::vector<List> buckets_;  // a power of two of them
  uint32_t bucket_mask_;
  List wildcards_;
  List arrival_;
  uint64_t next_sequence_ = 1;
  size_t size_ = 0;
};

}  // namespace wv::transport
