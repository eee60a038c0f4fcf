// wv's collectives: a Communicator over the ranks of a wv::Comm.
//
//   auto comm = wv::Comm::init();
//   auto coll = wv::coll::Communicator::create(**comm);      // collective over all ranks
//   (*coll)->allreduce(send, recv, count, DataType::kFloat, Op::kSum);
//   (*coll)->bcast(buffer, count, DataType::kUint8, /*root=*/0, "chain");  // a named algorithm
//
// Rules (MPI's): every rank calls the same collectives in the same order with matching
// arguments (counts, types, op, root, algorithm). Buffers are element counts of a DataType.
// kInPlace as the send buffer means: allreduce/reduce (root)/reduce_scatter/alltoall take
// their input from recv; allgather/gather (root) find this rank's block already in place in
// recv; scatter (root) passes kInPlace as recv and keeps its block in send.
//
// Algorithms: `algorithm` empty = chosen by the decision table (decision_table.h) from the
// message size, process count and host count; else one of algorithm_names() (collective.h).
// Floating-point results agree with a sequential reduction up to rounding; the order of
// combination depends on the algorithm (tolerances in tests/collectives).
//
// Errors come back as Status, never as a crash: bad root, unknown algorithm, bitwise op on a
// floating type, a count mismatch noticed on the wire (kInvalidArgument), a peer's failure, or
// kTimedOut after Options::timeout (per step). A failed collective leaves the communicator
// usable only if every rank saw the failure; treat it as fatal otherwise.
//
// Traffic: tagged messages on comm.worker() with tag bit 62 set (bit 63 is wv::Comm's); Comm
// refuses user tags with either bit and its kAnyTag receives never match them.
//
// Threads: blocking calls from one thread at a time per communicator; non-blocking
// collectives run on a helper thread each (the worker is thread-safe), complete through
// wait()/test(), and cancel() stops one within milliseconds (its peers then fail or time out).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/collectives/collective.h"
#include "wv/collectives/decision_table.h"
#include "wv/collectives/topology.h"
#include "wv/collectives/types.h"
#include "wv/comm.h"

namespace wv::coll {

namespace detail {
struct Group;
struct NonBlocking;
class HostSegment;
class SharedBuffers;
}  // namespace detail

// Memory from Communicator::allocate_buffer: page-aligned, zeroed, freed with the handle (which
// may outlive the communicator). The other ranks of this rank's host map it, so the intra-host
// steps of blocking collectives read it in place: an allreduce, broadcast, allgather or
// alltoall whose buffers lie in SharedBuffers moves each byte across the memory bus about once
// instead of through the host segment (copy in, copy out), like MPI_Alloc_mem with XPMEM.
// Any part of a buffer may be passed to any collective; other memory works as before.
// A buffer's pages stay mapped by the peers until their next large collective after it is
// freed (or until the communicator goes). At most 16 buffers per rank are shared at a time.
class SharedBuffer {
 public:
  SharedBuffer() = default;
  SharedBuffer(SharedBuffer&& other) noexcept;
  SharedBuffer& operator=(SharedBuffer&& other) noexcept;
  ~SharedBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  friend class Communicator;
  void reset();
  std::shared_ptr<detail::SharedBuffers> owner_;
  uint64_t id_ = 0;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// A non-blocking collective in flight. Destroying it unfinished cancels it and waits.
class CollRequest {
 public:
  CollRequest() = default;
  CollRequest(CollRequest&&) noexcept;
  CollRequest& operator=(CollRequest&&) noexcept;
  ~CollRequest();
  bool valid() const { return state_ != nullptr; }
  // The collective's Status when it finished within `bound` (kTimedOut otherwise, the request
  // stays valid); the request is then released.
  Status wait(std::chrono::milliseconds bound = std::chrono::minutes(5));
  // true (and *result set) when finished; the request is then released.
  Result<bool> test(Status* result = nullptr);
  // Asks it to stop; wait() then returns kCancelled unless it had already finished.
  void cancel();

 private:
  friend class Communicator;
  std::shared_ptr<detail::NonBlocking> state_;
};

class Communicator {
 public:
  struct Options {
    // Bound of each step's wait (and so of every blocking call's stall).
    std::chrono::milliseconds timeout = std::chrono::minutes(5);
    // Decision table; default: DecisionTable::configured().
    std::optional<DecisionTable> table;
    // Virtual hosts per real host (testing); -1: the topology_fake_hosts parameter.
    int fake_hosts = -1;
    // Bytes per chunk of the pipelined chain broadcast.
    size_t chain_chunk = 256 * 1024;
    // Intra-host steps through a shared segment; -1: the collectives_shared_memory parameter.
    int shared_memory = -1;
  };

  // Collective over all ranks of `comm` (exchanges topology). `comm` must outlive it.
  static Result<std::unique_ptr<Communicator>> create(Comm& comm, const Options& options);
  static Result<std::unique_ptr<Communicator>> create(Comm& comm) {
    return create(comm, Options{});
  }
  ~Communicator();

  int rank() const;
  int size() const;
  const Topology& topology() const { return topology_; }
  const DecisionTable& table() const { return table_; }
  // Why this rank's host has no shared segment (empty when it has one, or is alone).
  const std::string& shared_memory_status() const { return segment_status_; }
  // The algorithm the table picks for `bytes` (as decision_table.h measures sizes).
  std::string_view select(Collective collective, uint64_t bytes) const;

  // `bytes` (at least 1) of memory the host's ranks read in place (SharedBuffer).
  Result<SharedBuffer> allocate_buffer(size_t bytes);
  // Blocking collectives in which this rank's peers read its SharedBuffers in place, and the
  // peers' buffers this rank read in place (one per peer and call).
  struct SharedBufferCounters {
    uint64_t exposed_calls = 0;
    uint64_t peer_buffers_read = 0;
  };
  SharedBufferCounters shared_buffer_counters() const;

  Status barrier(std::string_view algorithm = {});
  Status bcast(void* buffer, size_t count, DataType type, int root,
               std::string_view algorithm = {});
  Status reduce(const void* send, void* recv, size_t count, DataType type, const ReduceOp& op,
                int root, std::string_view algorithm = {});
  Status allreduce(const void* send, void* recv, size_t count, DataType type, const ReduceOp& op,
                   std::string_view algorithm = {});
  // recv holds size() blocks of `count` elements, in rank order.
  Status allgather(const void* send, void* recv, size_t count, DataType type,
                   std::string_view algorithm = {});
  // Rank i's counts[i] elements land at displacements[i] (elements) of recv.
  Status allgatherv(const void* send, size_t send_count, void* recv, std::span<const size_t> counts,
                    std::span<const size_t> displacements, DataType type,
                    std::string_view algorithm = {});
  // send holds size() * count elements; rank i gets the reduction of block i.
  Status reduce_scatter_block(const void* send, void* recv, size_t count, DataType type,
                              const ReduceOp& op, std::string_view algorithm = {});
  // send holds sum(counts) elements; rank i gets the reduction of its counts[i] (in order).
  Status reduce_scatter(const void* send, void* recv, std::span<const size_t> counts, DataType type,
                        const ReduceOp& op, std::string_view algorithm = {});
  Status alltoall(const void* send, void* recv, size_t count, DataType type,
                  std::string_view algorithm = {});
  Status alltoallv(const void* send, std::span<const size_t> send_counts,
                   std::span<const size_t> send_displacements, void* recv,
                   std::span<const size_t> recv_counts, std::span<const size_t> recv_displacements,
                   DataType type, std::string_view algorithm = {});
  Status gather(const void* send, void* recv, size_t count, DataType type, int root,
                std::string_view algorithm = {});
  // counts/displacements are read at the root only (may be empty elsewhere).
  Status gatherv(const void* send, size_t send_count, void* recv, std::span<const size_t> counts,
                 std::span<const size_t> displacements, DataType type, int root,
                 std::string_view algorithm = {});
  Status scatter(const void* send, void* recv, size_t count, DataType type, int root,
                 std::string_view algorithm = {});
  Status scatterv(const void* send, std::span<const size_t> counts,
                  std::span<const size_t> displacements, void* recv, size_t recv_count,
                  DataType type, int root, std::string_view algorithm = {});

  // Non-blocking forms: buffers must stay valid until the request completes. Argument errors
  // are returned at once.
  Result<CollRequest> ibarrier(std::string_view algorithm = {});
  Result<CollRequest> ibcast(void* buffer, size_t count, DataType type, int root,
                             std::string_view algorithm = {});
  Result<CollRequest> iallreduce(const void* send, void* recv, size_t count, DataType type,
                                 const ReduceOp& op, std::string_view algorithm = {});

 private:
  Communicator();
  uint64_t next_tag();
  Status check_root(int root) const;
  Result<std::string> pick(Collective collective, uint64_t bytes, std::string_view algorithm) const;
  Status run_barrier(uint64_t tag, const std::string& algorithm, const std::atomic<bool>* cancel);
  Status run_bcast(uint64_t tag, void* buffer, size_t bytes, int root, const std::string& algorithm,
                   const std::atomic<bool>* cancel);
  Status run_allreduce(uint64_t tag, void* recv, size_t count, DataType type, const ReduceOp& op,
                       const std::string& algorithm, const std::atomic<bool>* cancel);
  Result<CollRequest> launch(std::function<Status(const std::atomic<bool>*)> body);
  // The host segment a call may use: none for non-blocking calls (cancel set), and for
  // whole_job_segment none unless every rank of the job is on this host.
  detail::HostSegment* segment_for(const std::atomic<bool>* cancel) const;
  detail::HostSegment* whole_job_segment(const std::atomic<bool>* cancel) const;

  Comm* comm_ = nullptr;
  std::unique_ptr<detail::Group> world_;
  std::unique_ptr<detail::Group> host_;     // the ranks of this rank's host
  std::unique_ptr<detail::Group> leaders_;  // one rank per host; empty unless this rank leads
  std::unique_ptr<detail::Group> column_;   // rank i of every host (equal hosts only)
  std::shared_ptr<detail::SharedBuffers> buffers_;  // before segment_, which lists them
  std::unique_ptr<detail::HostSegment> segment_;    // this host's, when it has more than one rank
  std::string segment_status_;
  Topology topology_;
  DecisionTable table_;
  Options options_;
  uint32_t context_ = 0;
  uint64_t sequence_ = 0;
};

}  // namespace wv::coll
