#include "match_queue.h"

#include <algorithm>
#include <bit>

namespace wv::transport {

MatchQueue::MatchQueue(bool ordered, uint32_t bucket_count)
    : ordered_(ordered),
      buckets_(std::bit_ceil(std::max<uint32_t>(bucket_count, 1))),
      bucket_mask_(static_cast<uint32_t>(buckets_.size()) - 1) {}

uint32_t MatchQueue::bucket_of(PeerId source, uint64_t tag) const {
  // A multiplicative mix: tags are often small consecutive integers.
  uint64_t h = (tag ^ (uint64_t{source} << 32 | source)) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(h >> 32) & bucket_mask_;  // a division here cost ~40 cycles
}

void MatchQueue::link(List& list, uint32_t id, Links Node::*links) {
  Node& node = nodes_[id];
  (node.*links).prev = list.tail;
  (node.*links).next = kNone;
  if (list.tail == kNone) {
    list.head = id;
  } else {
    (nodes_[list.tail].*links).next = id;
  }
  list.tail = id;
}

void MatchQueue::unlink(List& list, uint32_t id, Links Node::*links) {
  Links& l = nodes_[id].*links;
  if (l.prev == kNone) {
    list.head = l.next;
  } else {
    (nodes_[l.prev].*links).next = l.next;
  }
  if (l.next == kNone) {
    list.tail = l.prev;
  } else {
    (nodes_[l.next].*links).prev = l.prev;
  }
  l = Links{};
}

void MatchQueue::push(uint32_t id, PeerId source, uint64_t tag, uint64_t mask) {
  if (id >= nodes_.size()) nodes_.resize(std::max<size_t>(id + 1, nodes_.size() * 2));
  Node& node = nodes_[id];
  node.source = source;
  node.tag = tag;
  node.mask = mask;
  node.sequence = next_sequence_++;
  node.exact = source != kAnyPeer && mask == kTagMaskAll;
  node.linked = true;
  link(node.exact ? buckets_[bucket_of(source, tag)] : wildcards_, id, &Node::bucket);
  if (ordered_) link(arrival_, id, &Node::order);
  ++size_;
}

void MatchQueue::remove(uint32_t id) {
  if (!contains(id)) return;
  Node& node = nodes_[id];
  unlink(node.exact ? buckets_[bucket_of(node.source, node.tag)] : wildcards_, id, &Node::bucket);
  if (ordered_) unlink(arrival_, id, &Node::order);
  node.linked = false;
  --size_;
}

uint32_t MatchQueue::find_accepting(PeerId source, uint64_t tag) const {
  uint32_t exact = buckets_[bucket_of(source, tag)].head;
  while (exact != kNone && !(nodes_[exact].source == source && nodes_[exact].tag == tag)) {
    exact = nodes_[exact].bucket.next;
  }
  uint32_t wild = wildcards_.head;
  while (wild != kNone && !accepts(nodes_[wild], source, tag)) wild = nodes_[wild].bucket.next;
  if (exact == kNone) return wild;
  if (wild == kNone) return exact;
  return nodes_[exact].sequence < nodes_[wild].sequence ? exact : wild;
}

uint32_t MatchQueue::find_matching(PeerId source, uint64_t tag, uint64_t mask) const {
  if (source != kAnyPeer && mask == kTagMaskAll) {
    uint32_t id = buckets_[bucket_of(source, tag)].head;
    while (id != kNone && !(nodes_[id].source == source && nodes_[id].tag == tag)) {
      id = nodes_[id].bucket.next;
    }
    return id;
  }
  Node pattern;
  pattern.source = source;
  pattern.tag = tag;
  pattern.mask = mask;
  uint32_t id = arrival_.head;
  while (id != kNone && !accepts(pattern, nodes_[id].source, nodes_[id].tag)) {
    id = nodes_[id].order.next;
  }
  return id;
}

std::vector<uint32_t> MatchQueue::ids_from(PeerId source) const {
  std::vector<uint32_t> ids;
  for (uint32_t id = 0; id < nodes_.size(); ++id) {
    if (nodes_[id].linked && nodes_[id].source == source) ids.push_back(id);
  }
  return ids;
}

}  // namespace wv::transport
