// One connected QP's shm connection: the engine's Wire over the two rings of a shared segment.
//
// Transmit runs under the QP lock (posting threads, and the receive path when it answers a
// read or atomic): it is the rings' single producer. Receive runs under rx_mutex_ on whichever
// thread drives progress: an application thread polling a CQ the connection feeds (no system
// call, no wakeup), or the device's progress thread, which sleeps on this side's doorbell
// eventfd when nobody polls. Lock order: rx_mutex_, then the QP lock.
//
// Sends and small writes are copied through the ring (fragmented to a quarter of the ring).
// Large RDMA writes are pulled by the target and large RDMA reads pushed by it, each as one
// process_vm_readv/writev after the target checked the key (shm_cma.h). A pulled write
// completes when the target says it copied it, so its source buffer is never reused early; up
// to kMaxHeldWrites are in flight, and the target serves the ring in order, so later requests
// never overtake them. The writes of a stream take the ring or pulls, whichever this side
// measured faster (TransferPathChooser, as the reads of a stream). Atomics run at the target with
// the CPU's atomic instructions, so they are atomic against each other and the target's CPUs.
//
// One-sided reads. Where the peer publishes its keys (shm_key_mirror.h) and CMA works, a read
// of up to kDirectReadMax bytes that comes alone (nothing else outstanding on the QP, and
// kDirectReadGap after the previous read's completion) while no thread of the peer polls (the
// peer stamps consumer_polled_ns in the segment) is checked against the peer's mirror and copied
// by this side when it is posted: the peer's CPU takes no part, as with an RDMA NIC, so a
// computing, stopped, descheduled or sleeping peer delays nothing. MPI_Get through osc/rdma and
// btl/wv while the target computes: 2.7 us at 8 B against 24 through the ring (vader 2.0), 7.5
// at 64 KiB against 22 (7.2). A polling peer answers through the ring sooner than the system call
// (8 B: 1.0 against 2.6 us), and the reads of a stream keep the paths above, where the peer's
// CPU copies in parallel with this one (copied here one at a time, transport bandwidth at 16 KiB
// fell from 7.4 to 2.2-3.0 GB/s). A one-sided read waits for the ring to deliver the writes,
// atomics and sends with invalidate posted before it (it sees their effect on the peer's memory
// and keys); it is not ordered after earlier sends' placement in the peer's receive buffers.
// Anything the mirror does not grant (an unknown, withdrawn or foreign key, a bound or access
// violation, a key withdrawn during the copy) goes through the ring, where the peer decides.
//
// Errors follow the iWARP model the tcp provider has (no Capability::kRemoteErrorsInCompletion):
// a responder that refuses something sends a terminate entry and fails its QP; the requester
// fails its QP on the terminate (reads and atomics complete with the error, sends and writes
// were already complete) and raises kQpFatal. A malformed entry, the peer's hang-up or death
// fail the QP with kTransportError.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "poller_presence.h"
#include "progress.h"
#include "shm_key_mirror.h"
#include "shm_peer_memory.h"
#include "shm_protocol.h"
#include "shm_ring.h"
#include "soft_completion_queue.h"
#include "soft_queue_pair.h"
#include "transfer_path_chooser.h"
#include "wv/verbs/operation.h"

namespace wv::verbs::shm {

// How a connection ended, shared with the endpoint that made it (notify_disconnect).
class ConnectionEvents {
 public:
  void closed();
  Operation<void> wait_closed();
  bool is_closed();

 private:
  std::mutex mutex_;
  bool closed_ = false;
  std::vector<Completer<void>> waiters_;
};

struct ConnectionOptions {
  int side = 0;           // 0: the connecting side, 1: the accepting side
  pid_t peer_pid = 0;     // from SO_PEERCRED
  bool can_pull = false;  // this side copies from/to the peer with CMA
  // CMA works with the peer (shm_cma is not off here and the probe succeeded), even when
  // can_pull is false: a read request that comes alone (kPushRead) is answered by CMA, the peer
  // may hand over a lone write as a pull request, and this side pulls the reads of a stream that
  // measure faster that way than through the ring (kGrantRead, TransferPathChooser).
  bool cma_works = false;
  int64_t rnr_timeout_ms = 2000;
  uint32_t inbound_read_depth = 1;
  // The peer's published keys (with cma_works): reads this side checks and copies itself, as
  // the peer's QP `peer_qp_number` in its domain `peer_domain` would (see one-sided reads).
  std::shared_ptr<const PeerKeys> peer_keys;
  uint32_t peer_qp_number = 0;
  uint64_t peer_domain = 0;
};

// Payloads at least this long go by CMA (when both sides can): below it the ring's two
// copies cost less than a system call and the round trip of the pull's acknowledgement.
inline constexpr uint64_t kPullThreshold = 16 * 1024;
// A read or write that comes alone goes by CMA from this size (where CMA works): btl/wv
// ping-pong (reads) against the ring's copies, 16 KiB 5.4-6.4 against 4.5 us, 32 KiB 6.5-7.5
// against 7.3-7.4, 64 KiB 8.9-11.2 against 12.6-13.4.
inline constexpr uint64_t kLonePushThreshold = 32 * 1024;
// Pulled writes in flight at once on a connection: the target pulls one while the
// acknowledgement of the one before crosses the ring.
inline constexpr uint32_t kMaxHeldWrites = 4;
// The largest one-sided read: it is copied under the QP lock when posted (the transport's
// rendezvous reads come in fragments of 1 MiB); larger ones go through the ring's paths.
inline constexpr uint64_t kDirectReadMax = 1024 * 1024;
// A lone read this soon after the previous read's completion is taken for part of a stream.
inline constexpr std::chrono::nanoseconds kDirectReadGap{5000};
// A peer whose threads polled this recently answers a read through the ring.
inline constexpr std::chrono::nanoseconds kPeerPollingWindow{20'000};

class ShmConnection final : public soft::Wire,
                            public soft::PollHandler,
                            public soft::ProgressSource,
                            public std::enable_shared_from_this<ShmConnection> {
 public:
  // Takes ownership of the descriptors: the socket, this side's doorbell and the peer's.
  ShmConnection(std::unique_ptr<Segment> segment, int socket_fd, int doorbell_fd,
                int peer_doorbell_fd, soft::Progress& progress,
                const std::shared_ptr<soft::SoftConnectQueuePair>& qp,
                std::shared_ptr<ConnectionEvents> events, const ConnectionOptions& options);
  ~ShmConnection() override;

  // Starts serving the connection on the progress thread and on polls of the QP's CQs.
  Status start(soft::SoftCompletionQueue& send_cq, soft::SoftCompletionQueue& receive_cq);

  void kick_locked(soft::SoftConnectQueuePair& qp) override;
  bool transmit_at_once_locked(soft::SendWorkRequest& request) override;
  void receive_posted() override;
  Result<std::unique_ptr<RemoteMapping>> map_remote_locked(RemoteAddress remote, uint64_t length,
                                                           Access access) override;
  void close() override;
  void on_events(uint32_t events) override;  // the doorbell
  void on_deadline() override;               // park check
  void progress_from_poll() override;
  void poller_sleeping() override;
  // The socket (hang-up) and its deadline (receiver not ready).
  void on_socket_events(uint32_t events);
  void on_rnr_deadline();

 private:
  struct Response {
    enum class Kind : uint8_t { kReadData, kReadDone, kReadGrant, kAtomicReply, kWriteDone } kind;
    uint32_t tag = 0;
    const std::byte* source = nullptr;
    uint64_t length = 0;
    uint64_t sent = 0;
    uint64_t value = 0;
  };
  // kCompleted: a read or write this side carried out itself (it needs no response).
  enum class Emit : uint8_t { kDone, kFull, kHeld, kCompleted };
  enum class Outcome : uint8_t { kDone, kStall, kFailed };

  // ---- transmit (QP lock) ----
  void pump_locked(soft::SoftConnectQueuePair& qp);
  // `lone`: nothing else is outstanding on the QP (see kPushRead).
  Emit emit_request_locked(soft::SendWorkRequest& request, bool lone, bool* ring);
  bool emit_response_locked(Response& response, bool* ring);
  // Whether the target pulls this write (else it goes through the ring).
  bool pulls_write_locked(const soft::SendWorkRequest& request, bool lone);
  // A write of `length` bytes (of a stream, when it was) completed by `path`: feeds the chooser
  // as read_finished_locked does.
  void write_finished_locked(soft::SoftConnectQueuePair& qp, uint64_t length,
                             TransferPathChooser::Path path);
  // Where the peer's memory `request` names is mapped here (a region the peer allocated, whose
  // key grants `access`, with everything before it that changes memory or keys delivered);
  // null otherwise.
  std::byte* peer_mapping_locked(const soft::SendWorkRequest& request, Access access,
                                 PeerKeys::Grant* grant);
  // The oldest pulled write waiting for kWriteDone (there is one), out of held_.
  soft::SendWorkRequest* take_held_locked();
  // A one-sided write: stored through the mapping above; false when it takes the other paths.
  bool write_directly_locked(const soft::SendWorkRequest& request);
  // A one-sided read (see one-sided reads); false when it must go through the ring.
  bool read_directly_locked(const soft::SendWorkRequest& request, bool lone);
  // Copies a granted read from the peer's `source` into its sink, a piece at a time under the
  // QP lock (released between pieces); false when the read was flushed meanwhile.
  bool pull_read(soft::SoftConnectQueuePair& qp, std::unique_lock<SpinLock>& lock, uint64_t tag,
                 uint64_t source, Status* status);
  // Copies `length` bytes of the peer's memory at `source` into `read`'s buffers from `offset`.
  Status pull_into(const soft::SendWorkRequest& read, uint64_t offset, uint64_t length,
                   uint64_t source) const;
  // A read of `length` bytes completed (its data by `path`, when this side knows): feeds the
  // chooser its time when the stream was busy, and notes whether it still is.
  void read_finished_locked(soft::SoftConnectQueuePair& qp, uint64_t length,
                            std::optional<TransferPathChooser::Path> path);
  // Reserves an entry for `payload` bytes; null when the ring is full (blocked_bytes_ is set).
  std::byte* reserve_locked(uint32_t payload, EntryHeader& header, bool compact = false);
  bool commit_locked(const EntryHeader& header);
  bool queue_response_locked(soft::SoftConnectQueuePair& qp, const Response& response);
  void ring_peer();
  void ring_self();

  // ---- receive (rx_mutex_) ----
  // Serves the ring until it is empty or a ring's worth later; true when it stopped early.
  bool drain(soft::SoftConnectQueuePair& qp);
  Outcome handle(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                 const std::byte* payload);
  Outcome on_send(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                  const std::byte* payload);
  Outcome on_write(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                   const std::byte* payload);
  Outcome on_write_pull(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                        const std::byte* payload);
  Outcome on_read_request(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                          const std::byte* payload);
  Outcome on_atomic(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                    const std::byte* payload);
  Outcome on_response(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                      const std::byte* payload);
  Outcome on_terminate(soft::SoftConnectQueuePair& qp, const EntryHeader& header,
                       const std::byte* payload);
  // Receiver not ready: the entry stays in the ring until a receive is posted.
  Outcome stall(soft::SoftConnectQueuePair& qp);
  // Runs the receive side on the progress thread, then arms the doorbell and sleeps.
  void service();
  void park();
  void unpark();

  // An error found here: tell the peer (best effort), fail the QP with `local_status`.
  void terminate(soft::SoftConnectQueuePair& qp, bool about_request,
                 CompletionStatus requester_status, CompletionStatus local_status,
                 const std::string& reason);
  Outcome malformed(soft::SoftConnectQueuePair& qp, const std::string& why);
  void lost(soft::SoftConnectQueuePair& qp, const std::string& reason);

  std::unique_ptr<Segment> segment_;
  const int socket_fd_;
  const int doorbell_fd_;
  const int peer_doorbell_fd_;
  soft::Progress& progress_;
  std::weak_ptr<soft::SoftConnectQueuePair> qp_;
  std::shared_ptr<ConnectionEvents> events_;
  const ConnectionOptions options_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> cma_;  // starts as options_.can_pull; cleared if the kernel refuses
  bool cma_works_;         // options_.cma_works; cleared with cma_ (receive side only)
  // Reads of a stream (QP lock): the ring or a pull, by this side's measurements of both. A
  // completion's time since the previous one is the transfer's when the stream was busy.
  TransferPathChooser read_paths_;
  // Writes of a stream likewise. A write through the ring completes once it is in the ring, so
  // its time only counts once the ring carried two rings' worth since the stream last pulled
  // (before that, completions measure copies into a ring the peer had emptied).
  TransferPathChooser write_paths_;
  std::optional<TransferPathChooser::Path> write_path_;  // current_'s, once chosen
  uint64_t ring_bytes_since_pull_ = 0;
  std::shared_ptr<soft::PollHandler> socket_watch_;
  std::unique_ptr<PeerMemory> peer_memory_;  // with options_.peer_keys

  // Transmit state, under the QP lock.
  RingProducer producer_;
  uint32_t max_payload_ = 0;
  soft::SendWorkRequest* current_ = nullptr;  // partly transmitted (ring full)
  // Pulled writes waiting for kWriteDone, oldest first.
  std::array<soft::SendWorkRequest*, kMaxHeldWrites> held_{};
  uint32_t held_head_ = 0;
  uint32_t held_count_ = 0;
  std::vector<Response> responses_;  // ring bounded by the inbound read depth
  size_t responses_head_ = 0;
  size_t responses_count_ = 0;
  uint32_t tag_sequence_ = 0;
  uint32_t blocked_bytes_ = 0;
  // The ring position after the last write, atomic or send with invalidate: one-sided reads
  // wait until the peer has taken everything before it.
  uint64_t ordered_head_ = 0;
  std::atomic<bool> tx_blocked_{false};

  // Receive state, under rx_mutex_.
  SpinLock rx_mutex_;  // try-locked by every poll that finds an entry
  RingConsumer consumer_;
  bool receiving_ = false;
  uint64_t receive_offset_ = 0;
  soft::ReceiveWorkRequest receive_;
  bool pull_done_ = false;  // a pulled write with immediate waits for a receive
  std::atomic<bool> rnr_stalled_{false};
  soft::Progress::Clock::time_point stall_began_;  // of the current (or last) stall
  bool rnr_deadline_armed_ = false;
  std::atomic<bool> parked_{false};
  soft::PollerPresence poller_;
};

}  // namespace wv::verbs::shm
