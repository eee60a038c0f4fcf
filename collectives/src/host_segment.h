// Shared memory among the ranks of one host, for the intra-host steps of blocking collectives.
// Every member maps one segment holding, per rank, an arrival counter on its own cache line
// and two chunk buffers. A rank writes only its own buffers and reads the others' in place:
// a small allreduce is one cache-line exchange per peer instead of messages through the
// transport, and a large one moves its data through the shared cache between copy-in and
// copy-out, so the memory bus sees about what one memcpy of the vector costs.
//
// Protocol. The members make the same sequence of calls, so the n-th arrival of every rank
// belongs to the same step everywhere; a rank's counter is the number of steps it finished.
// Chunk k lives in buffer k % 2 of its writer. A rank reads a chunk's buffers only between
// its arrivals of that chunk and its first arrival of the next one, and writes a new chunk's
// buffer only after every member's first arrival of the chunk before: by then the chunk that
// used the same buffer is read everywhere.
//
// Waits spin, then yield (oversubscribed hosts), and are bounded by the group's timeout; a
// member whose process is gone ends them at once with kDisconnected. Not for non-blocking
// collectives: those run on helper threads and may interleave, the segment's steps may not.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "algorithms.h"
#include "channel.h"

namespace wv::coll::detail {

class HostSegment {
 public:
  // Bytes of one chunk buffer: two per rank; large transfers move in chunks of this size.
  static constexpr size_t kChunkBytes = 64 * 1024;

  // Collective over `host` (the ranks of one host; every member calls it). Rank 0 creates
  // the segment, the others map it by name, and the name is unlinked once all have it, so
  // nothing is left in /dev/shm even if a rank dies later. All or none: when any member
  // cannot map it, every member gets null and `*unavailable` says why. An error is the
  // transport's (the agreement itself failed).
  static Result<std::unique_ptr<HostSegment>> create(Channel& host, std::string* unavailable);
  ~HostSegment();
  HostSegment(const HostSegment&) = delete;
  HostSegment& operator=(const HostSegment&) = delete;

  // The collectives, over the same host group the segment was created on (`c` supplies the
  // timeout, the cancel flag and the worker to progress while waiting).
  Status barrier(const Channel& c);
  Status bcast(const Channel& c, void* buffer, size_t bytes, int root);
  // `output` receives the result (identical on all ranks); `input` may equal it. Each rank
  // reads its input and writes its output once; the rest stays in the shared cache.
  Status allreduce(const Channel& c, const void* input, void* output, size_t count,
                   const Reduction& r);
  // Equal blocks: `send` is this rank's block (it may be its place in `recv`), `recv` gets
  // every rank's block in rank order.
  Status allgather(const Channel& c, const void* send, void* recv, size_t block);
  // Blocks of bytes[i], packed in rank order in `buffer`, this rank's already in place.
  Status allgatherv(const Channel& c, void* buffer, std::span<const size_t> bytes);
  // Equal blocks of `block` bytes, by rank in `send` and `recv` (distinct buffers).
  Status alltoall(const Channel& c, const void* send, void* recv, size_t block);

 private:
  struct Line;
  HostSegment(void* base, size_t length, int rank, int members);

  Line& line(int rank) const;
  std::byte* chunk_buffer(int rank, uint64_t chunk) const;
  // Starts chunk `chunk_ + 1`; a rank that will write its buffer first waits until the
  // buffer's previous chunk is read everywhere.
  Status begin_chunk(const Channel& c, bool writes);
  uint64_t arrive();
  // The allgathers' loop: rank r's block is bytes_of(r) long and goes to recv + place_of(r).
  template <typename BytesOf, typename PlaceOf>
  Status gather_blocks(const Channel& c, const std::byte* send, std::byte* recv, BytesOf bytes_of,
                       PlaceOf place_of, size_t longest);
  Status wait_for(const Channel& c, int rank, uint64_t step);
  Status wait_all(const Channel& c, uint64_t step);

  void* base_;
  size_t length_;
  int rank_;
  int members_;
  uint64_t arrived_ = 0;           // this rank's own counter, as last published
  uint64_t chunk_ = 0;             // chunks begun
  uint64_t chunk_first_step_ = 0;  // the current chunk's first arrival
  uint64_t previous_first_step_ = 0;
};

}  // namespace wv::coll::detail
