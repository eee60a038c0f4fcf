// Shared memory among the ranks of one host, for the intra-host steps of blocking collectives.
// Every member maps one segment holding, per rank, an arrival counter on its own cache line
// and kBuffers chunk buffers. A rank writes only its own buffers and reads the others' in place:
// a small allreduce is one cache-line exchange per peer instead of messages through the
// transport, and a large one moves its data through the shared cache between copy-in and
// copy-out, so the memory bus sees about what one memcpy of the vector costs.
//
// Protocol. The members make the same sequence of calls, so the n-th arrival of every rank
// belongs to the same step everywhere; a rank's counter is the number of steps it finished.
// Chunk k lives in buffer k % kBuffers of its writer. Each chunk ends by naming the step after
// which every rank is done reading it (a broadcast's readers arrive once they have read; the other
// collectives read until their next arrival), and a rank writes a buffer only after every
// member has reached that step of the chunk that used the buffer before. So a broadcast's
// root runs up to kBuffers - 1 chunks ahead of its readers, and no data is overwritten while being
// read.
//
// Waits spin for the group's spin time, then yield the core, then sleep on a futex of the
// awaited counter (more ranks than cores), are bounded by the group's timeout, and end at once with
// kDisconnected when the awaited member's process is gone. Not for non-blocking collectives: those
// run on helper threads and may interleave, the segment's steps may not.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "algorithms.h"
#include "channel.h"
#include "shared_buffers.h"

namespace wv::coll::detail {

class HostSegment {
 public:
  // Bytes of one chunk buffer; large transfers move in chunks of this size.
  static constexpr size_t kChunkBytes = 128 * 1024;
  // Chunk buffers per rank: how far a broadcast's root may run ahead of its readers.
  static constexpr size_t kBuffers = 8;
  // A broadcast of at most kSlotPayload bytes goes through one of kSlots small slots per rank
  // instead of a chunk buffer, so its root may run kSlots - 1 broadcasts ahead of the readers:
  // on a host with more ranks than cores that saves most of the context switches a loop of
  // small broadcasts costs. A slot starts with the number of the turn whose data it holds, on
  // the data's cache line: a reader that finds its turn there reads one line the root wrote
  // instead of the root's counter and then the data.
  static constexpr size_t kSlotBytes = 1024;
  static constexpr size_t kSlotHeader = sizeof(uint64_t);
  static constexpr size_t kSlotPayload = kSlotBytes - kSlotHeader;
  static constexpr size_t kSlots = 64;
  // Blocks of at least this many bytes are read straight from the sender's memory
  // (process_vm_readv, one copy) by allgather and alltoall, where every rank may and
  // collectives_pull asks for it.
  static constexpr size_t kPullBytes = 64 * 1024;
  // Buffers in place. A rank whose buffer of a call is a SharedBuffer every peer has mapped
  // (shared_buffers.h) exposes it for the call: it skips its copy into the segment, and its peers
  // read the buffer itself where they would have read its chunk buffer, so the bytes cross the
  // memory bus once. Who exposes what is each rank's own choice, published before its first
  // arrival of the call; the steps stay the same. A rank that exposed a buffer its peers read
  // after their last arrival (outputs, a broadcast's root) leaves only once all have arrived once
  // more.
  //
  // Waits follow the worker's WaitPolicy; asleep, a wait wakes at least every kSleepBound (to
  // look at the clock, the cancel flag and the peer).
  static constexpr std::chrono::milliseconds kSleepBound{10};

  // Collective over `host` (the ranks of one host; every member calls it). Rank 0 creates
  // the segment, the others map it by name, and the name is unlinked once all have it, so
  // nothing is left in /dev/shm even if a rank dies later. All or none: when any member
  // cannot map it, every member gets null and `*unavailable` says why. An error is the
  // transport's (the agreement itself failed). `cache_bytes` is the host's last-level cache
  // (0: unknown): a collective whose outputs and inputs together would overflow it writes its
  // output with non-temporal stores. `machine_ranks`: the job's ranks on this machine (more
  // than members with virtual hosts). `buffers` are this rank's SharedBuffers, listed in the
  // segment for the peers while it exists.
  static Result<std::unique_ptr<HostSegment>> create(Channel& host, size_t cache_bytes,
                                                     int machine_ranks,
                                                     std::shared_ptr<SharedBuffers> buffers,
                                                     std::string* unavailable);
  ~HostSegment();
  HostSegment(const HostSegment&) = delete;
  HostSegment& operator=(const HostSegment&) = delete;

  // The collectives, over the same host group the segment was created on (`c` supplies the
  // timeout, the cancel flag and the worker to progress while waiting).
  Status barrier(const Channel& c);
  Status bcast(const Channel& c, void* buffer, size_t bytes, int root);
  // `output` receives the result (identical on all ranks); `input` may equal it. Each rank
  // reads its input and writes its output once; the rest stays in the shared cache. A null
  // `output` (a reduce's other ranks) takes no result.
  Status allreduce(const Channel& c, const void* input, void* output, size_t count,
                   const Reduction& r);
  // Reduce-scatter into contiguous shares (split(count, members), in rank order): `output`'s
  // share of this rank receives the host's combination of that share; `input` may be `output`.
  Status reduce_scatter(const Channel& c, const void* input, void* output, size_t count,
                        const Reduction& r);
  // Shares of counts[i] elements at starts[i] of `input`; this rank's combination goes to
  // `share` (which may be its own place in `input`).
  Status reduce_scatter(const Channel& c, const void* input, void* share,
                        std::span<const size_t> counts, std::span<const size_t> starts,
                        const Reduction& r);
  // Equal blocks: `send` is this rank's block (it may be its place in `recv`), `recv` gets
  // every rank's block in rank order.
  Status allgather(const Channel& c, const void* send, void* recv, size_t block);
  // Blocks of bytes[i], packed in rank order in `buffer`, this rank's already in place.
  Status allgatherv(const Channel& c, void* buffer, std::span<const size_t> bytes);
  // allgather whose result only the ranks with a `recv` (the root) take.
  Status gather(const Channel& c, const void* send, void* recv, size_t block);
  // Member i receives block i of the root's `send` (read at the root only) in `recv`; a null
  // `recv` at the root keeps its block where it is.
  Status scatter(const Channel& c, const void* send, void* recv, size_t block, int root);
  // Equal blocks of `block` bytes among the segment's members; member i's block is at byte
  // at[i] in `send` and `recv` (distinct buffers), the same places on every member. Blocks for
  // ranks outside the segment (other hosts) are not touched.
  Status alltoall(const Channel& c, const void* send, void* recv, size_t block,
                  std::span<const size_t> at);

  // Calls in which this rank exposed a buffer, and peers' buffers it read in place (one per
  // peer and call).
  uint64_t exposed_calls() const { return exposed_calls_; }
  uint64_t peer_buffers_read() const { return peer_buffers_read_; }

 private:
  struct Line;
  HostSegment(void* base, size_t length, int rank, int members, size_t cache_bytes,
              int machine_ranks, std::shared_ptr<SharedBuffers> buffers);

  Line& line(int rank) const;

  // Publishes which of this call's buffers the peers may read in place (the call's first
  // arrival is arrived_ + 1); `output` may be null.
  struct Exposed {
    bool input = false;
    bool output = false;
  };
  Exposed expose(const void* input, size_t input_bytes, const void* output, size_t output_bytes);
  // Maps what the peers newly listed (every rank that may read a peer's buffer does, also when
  // it exposes nothing itself, so that the peer may expose next time).
  void map_peers();
  // Fills views_ with what the peers exposed for the call whose first arrival was `step`...
  struct View {
    const std::byte* input = nullptr;
    std::byte* output = nullptr;
  };
  // ... summed up over the peers; a peer for which `needed(rank)` is false (nothing of it to
  // read) counts as having exposed its input. With `exposing` false (a call of a size no rank
  // exposes) the views are cleared and nothing counts as exposed.
  struct Exposure {
    bool any_input = false;
    bool all_inputs = true;
    bool any_output = false;
    bool all_outputs = true;
  };
  template <typename Needed = bool (*)(int)>
  Result<Exposure> view_peers(
      uint64_t step, bool exposing, Needed needed = [](int) { return true; });
  Status view_peer(int rank, uint64_t step);
  // `offset` bytes into the input `rank` exposed for this call, or `otherwise` when it exposed
  // none (views_ hold this call's views only once view_peers ran for an `exposing` call).
  const std::byte* input_or(int rank, bool exposing, size_t offset,
                            const std::byte* otherwise) const {
    const std::byte* exposed = exposing ? views_[static_cast<size_t>(rank)].input : nullptr;
    return exposed != nullptr ? exposed + offset : otherwise;
  }
  // The one step of a rooted call whose root exposes `buffer` (`bytes` long): the root arrives
  // and waits for every reader; a reader maps the root's buffer, runs `read` on it and arrives.
  // *done is false, and nothing happened, when the root exposed nothing.
  template <typename Read>
  Status read_from_exposed_root(const Channel& c, int root, const void* buffer, size_t bytes,
                                Read&& read, bool* done);
  // An allreduce whose every input and output is exposed, after its first arrival: this rank
  // combines its share of the whole vector from the inputs in place and stores it into every
  // output, with no step between (nobody else reads or writes those bytes).
  void allreduce_exposed(const std::byte* input, std::byte* output, size_t count,
                         const Reduction& r);
  // After the last step of a call: with any output exposed, every rank arrives once more, and
  // a rank whose output the peers read waits for them.
  Status release(const Channel& c, bool exposed, bool any_exposed);
  std::byte* chunk_buffer(int rank, uint64_t chunk) const;
  std::byte* slot_buffer(int rank, uint64_t slot) const;
  // Buffers used in turn (the chunk buffers, the broadcast slots): `begun` counts the turns,
  // and reads_done[i] is the step by which every rank has read buffer i's last turn (0: none).
  struct Turns {
    uint64_t begun = 0;
    std::span<uint64_t> reads_done;
  };
  // Starts turn `turns.begun + 1`; a rank that will write its buffer first waits until the
  // buffer's previous turn is read everywhere.
  Status begin(const Channel& c, Turns& turns, bool writes);
  // Ends `turn`: every rank has read it once all have arrived at `reads_done`.
  static void end(Turns& turns, uint64_t turn, uint64_t reads_done) {
    turns.reads_done[turn % turns.reads_done.size()] = reads_done;
  }
  Status begin_chunk(const Channel& c, bool writes) { return begin(c, chunks_, writes); }
  void end_chunk(uint64_t reads_done) { end(chunks_, chunks_.begun, reads_done); }
  uint64_t arrive();
  // The reduce-scatters' loop: `shares` has size(rank) and start(rank), in elements.
  template <typename Shares>
  Status reduce_shares(const Channel& c, const std::byte* in, std::byte* result,
                       const Shares& shares, const Reduction& r);
  // The allgathers' loop: rank r's block is bytes_of(r) long and goes to recv + place_of(r).
  template <typename BytesOf, typename PlaceOf>
  Status gather_blocks(const Channel& c, const std::byte* send, std::byte* recv, BytesOf bytes_of,
                       PlaceOf place_of, size_t longest);
  // Returns once rank `rank` has arrived at `step`. Counters only grow, so what a wait saw is
  // kept (seen_) and a step already seen costs no read of the peer's line.
  Status wait_for(const Channel& c, int rank, uint64_t step);
  Status wait_all(const Channel& c, uint64_t step);

  // Reads `length` bytes at `from` in rank `rank`'s memory (cross-memory attach).
  Status pull(int rank, void* to, uint64_t from, size_t length) const;
  // A pulling collective: publishes `mine`, runs pull_all() once everyone has published, and
  // returns once everyone has pulled.
  template <typename Pull>
  Status pulled(const Channel& c, const void* mine, Pull&& pull_all);
  // How a collective that writes `bytes` to this rank's output copies into it: streamed past
  // the cache when every rank's input and output would not fit it together, so the copies and
  // reductions keep the cache for the segment's chunks.
  using Copy = void (*)(void* __restrict, const void* __restrict, size_t);
  Copy output_copy(size_t bytes) const;

  static constexpr uint64_t kProbe = 0x77762d70756c6c21;  // "wv-pull!"
  uint64_t probe_ = kProbe;  // what the peers read to see whether they may
  bool can_pull_ = false;
  void* base_;
  size_t length_;
  int rank_;
  int members_;
  size_t stream_from_;                // output_copy() streams outputs of this many bytes and more
  uint64_t arrived_ = 0;              // this rank's own counter, as last published
  std::unique_ptr<uint64_t[]> seen_;  // each rank's counter as this rank last read it
  uint64_t chunk_reads_done_[kBuffers] = {};
  uint64_t slot_reads_done_[kSlots] = {};
  Turns chunks_{0, chunk_reads_done_};
  Turns slots_{0, slot_reads_done_};
  size_t expose_from_;        // blocks of fewer bytes are not exposed
  size_t bcast_expose_from_;  // nor broadcasts of fewer bytes
  std::shared_ptr<SharedBuffers> buffers_;
  std::optional<SharedTable> table_;     // none on hosts of more than SharedTable::kMaxMembers
  std::unique_ptr<PeerMappings> peers_;  // with table_
  std::vector<pid_t> pids_;
  std::unique_ptr<View[]> views_;
  uint64_t exposed_calls_ = 0;
  uint64_t peer_buffers_read_ = 0;
};

}  // namespace wv::coll::detail
