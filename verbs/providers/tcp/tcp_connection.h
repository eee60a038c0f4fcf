// One connected QP's TCP stream after MPA negotiation: FPDUs out (the QP's requests, our
// responses to the peer's reads and atomics, terminates) and FPDUs in, placed straight into
// the destination memory. Transmit runs on the posting thread under the QP lock; receive runs
// under rx_mutex_ on whichever thread drives progress: an application thread polling a CQ the
// stream feeds, or the device's progress thread when nobody polls.
#pragma once

#include <sys/epoll.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ddp_rdmap.h"
#include "poller_presence.h"
#include "progress.h"
#include "soft_completion_queue.h"
#include "soft_queue_pair.h"
#include "wv/verbs/operation.h"

namespace wv::verbs::tcp {

// How a connection ended, shared with the endpoint that made it (notify_disconnect).
class ConnectionEvents {
 public:
  void closed(Status reason);
  Operation<void> wait_closed();
  bool is_closed();

 private:
  std::mutex mutex_;
  bool closed_ = false;
  Status reason_;
  std::vector<Completer<void>> waiters_;
};

struct ConnectionOptions {
  bool crc = false;
  uint32_t segment_size = 65536;
  int64_t rnr_timeout_ms = 2000;
  // MPA: the initiator sends first. With peer-to-peer negotiated it opens with a zero-length
  // RDMA write (the RTR message of RFC 6581) and the responder holds its FPDUs until the
  // first FPDU arrives.
  bool send_rtr = false;
  bool wait_for_first_fpdu = false;
  uint32_t inbound_read_depth = 1;  // sizes the responder queue (reads and atomics we serve)
};

class TcpConnection final : public soft::Wire,
                            public soft::PollHandler,
                            public soft::ProgressSource,
                            public std::enable_shared_from_this<TcpConnection> {
 public:
  TcpConnection(int fd, soft::Progress& progress,
                const std::shared_ptr<soft::SoftConnectQueuePair>& qp,
                std::shared_ptr<ConnectionEvents> events, const ConnectionOptions& options);
  ~TcpConnection() override;

  // Starts serving the stream on the progress thread and on polls of the QP's CQs. Call once,
  // after the QP is connected.
  Status start(soft::SoftCompletionQueue& send_cq, soft::SoftCompletionQueue& receive_cq);

  void kick_locked(soft::SoftConnectQueuePair& qp) override;
  void receive_posted() override;
  void close() override;
  void on_events(uint32_t events) override;
  void on_deadline() override;
  void progress_from_poll() override;
  void poller_sleeping() override;

 private:
  struct Response {
    enum class Kind : uint8_t { kReadResponse, kAtomicResponse, kTerminate } kind;
    const std::byte* source = nullptr;
    uint64_t length = 0;
    uint64_t sent = 0;
    uint32_t sink_stag = 0;
    uint64_t sink_offset = 0;
    AtomicResponseBody atomic;
    TerminateBody terminate;
  };
  // The FPDUs of one request or response written by one sendmsg: header (with any fixed body),
  // payload iovecs, pad + CRC each. A large message goes out as up to kMaxFpdus segments per
  // system call: one 64 KiB sendmsg per segment made a 1 MiB loopback transfer about 1.6x
  // slower than the same bytes in one call.
  struct Frame {
    static constexpr int kMaxFpdus = 16;
    struct Fpdu {
      std::array<std::byte, kMaxFpduHeaderBytes + kTerminateMaxBodyBytes + 64> header{};
      FpduTrailer trailer;
    };
    std::array<Fpdu, kMaxFpdus> fpdus{};
    std::array<iovec, kMaxFpdus*(soft::kMaxSge + 2)> iov{};
    int fpdu_count = 0;
    int iov_count = 0;
    int iov_index = 0;
    bool active = false;
    bool ends_item = false;  // the request or response is fully sent after this frame
    bool from_response = false;
    bool extendable = false;  // the item's next FPDU may join this frame

    void reset() {
      fpdu_count = 0;
      iov_count = 0;
      iov_index = 0;
      extendable = false;
    }
    // Where the FPDU being built puts its header.
    std::span<std::byte> next_header() { return fpdus[static_cast<size_t>(fpdu_count)].header; }
    // iov has room for kMaxFpdus FPDUs of the most iovecs one can take.
    bool has_room() const { return fpdu_count < kMaxFpdus; }
  };
  enum class RxStage : uint8_t { kHeader, kBegin, kPayload, kTrailer, kFinish };

  // ---- transmit (under the QP lock) ----
  void pump_locked(soft::SoftConnectQueuePair& qp);
  bool write_frame();  // false: the socket is full (or failed)
  void finish_frame_locked(soft::SoftConnectQueuePair& qp);
  void build_request_frame(soft::SendWorkRequest& request);
  void build_response_frame(Response& response);
  void build_rtr_frame();
  // Appends an FPDU to the frame: `header_size` bytes in frame_.next_header(), then `length`
  // payload bytes gathered from `segments` at `offset`, then pad and CRC.
  void finish_fpdu(size_t header_size, const soft::Segment* segments, uint32_t count,
                   uint64_t offset, uint32_t length);
  // False when the responder queue is full (the peer exceeded our inbound read depth).
  bool queue_response_locked(soft::SoftConnectQueuePair& qp, const Response& response);
  void set_interest();

  // ---- receive (progress thread) ----
  void on_readable(soft::SoftConnectQueuePair& qp);
  // At least `want` bytes buffered, reading up to `lookahead` more when the socket has them;
  // false when the socket has no more.
  bool fill(size_t want, size_t lookahead);
  // Each returns a failed Status after it has terminated the connection itself.
  Status begin_segment(soft::SoftConnectQueuePair& qp, bool* stalled);
  Status receive_payload(bool* more);
  Status end_segment(soft::SoftConnectQueuePair& qp, bool* stalled);
  Status serve_read_request(soft::SoftConnectQueuePair& qp, const ReadRequestBody& body);
  Status serve_atomic(soft::SoftConnectQueuePair& qp, const AtomicRequestBody& body);
  Status on_atomic_response(soft::SoftConnectQueuePair& qp, const AtomicResponseBody& body);
  Status handle_terminate(soft::SoftConnectQueuePair& qp, std::span<const std::byte> body);
  void stall_for_receive(soft::SoftConnectQueuePair& qp);
  // While an application thread polls, the progress thread leaves the stream to it.
  void park();
  void unpark();
  void resume_after_rnr();
  // An error found in the incoming stream: tell the peer (best effort), fail the QP.
  void terminate(soft::SoftConnectQueuePair& qp, TerminateCode code, CompletionStatus status,
                 const std::string& reason);
  void lost(soft::SoftConnectQueuePair& qp, CompletionStatus status, const std::string& reason);

  const int fd_;
  soft::Progress& progress_;
  std::weak_ptr<soft::SoftConnectQueuePair> qp_;
  std::shared_ptr<ConnectionEvents> events_;
  const ConnectionOptions options_;
  const uint32_t max_payload_;
  std::atomic<bool> closed_{false};

  // Transmit state, under the QP lock.
  Frame frame_;
  soft::SendWorkRequest* current_ = nullptr;
  uint8_t current_stage_ = 0;        // 0: data; 1: the immediate after a write / the data after it
  std::vector<Response> responses_;  // ring bounded by the inbound read depth
  size_t responses_head_ = 0;
  size_t responses_count_ = 0;
  uint32_t send_msn_ = 1;
  uint32_t read_msn_ = 1;
  uint32_t atomic_response_msn_ = 1;
  uint32_t request_sequence_ = 1;  // names reads (sink STag) and atomics (request id)
  bool rtr_pending_;
  bool may_transmit_;
  bool tx_failed_ = false;

  // epoll interest, changed from both threads.
  std::mutex interest_mutex_;
  std::atomic<bool> read_interest_{true};
  std::atomic<bool> write_interest_{false};
  uint32_t interest_ = EPOLLIN | EPOLLRDHUP;

  // Receive state: whoever holds rx_mutex_ (the progress thread, or a thread polling a CQ).
  std::mutex rx_mutex_;
  std::vector<std::byte> rx_buffer_;
  size_t rx_begin_ = 0;
  size_t rx_end_ = 0;
  bool rx_eof_ = false;
  int rx_errno_ = 0;
  RxStage stage_ = RxStage::kHeader;
  SegmentHeader header_;
  std::array<std::byte, kMaxFpduHeaderBytes> offending_{};  // for the terminate we may send
  size_t offending_length_ = 0;
  std::array<std::byte, kAtomicRequestBodyBytes + kTerminateMaxBodyBytes> body_{};
  uint32_t rx_crc_ = 0;
  uint64_t payload_done_ = 0;
  // How far a header read may read ahead: a staging read's worth after small FPDUs (they come
  // in batches) and after a message's last segment, only the header inside a message of several
  // large segments (the next payload belongs in its destination, not in the staging buffer).
  size_t header_lookahead_;
  soft::Segment placement_[soft::kMaxSge];  // where the payload goes
  uint32_t placement_count_ = 0;
  uint64_t placement_offset_ = 0;
  bool receiving_ = false;  // an untagged message is being received into receive_
  soft::ReceiveWorkRequest receive_;
  soft::SendWorkRequest* current_read_ = nullptr;
  uint32_t expected_send_msn_ = 1;
  uint32_t expected_request_msn_ = 1;
  bool pending_immediate_valid_ = false;
  uint32_t pending_immediate_ = 0;
  std::atomic<bool> rnr_stalled_{false};
  std::atomic<bool> parked_{false};
  soft::PollerPresence poller_;
  bool first_fpdu_seen_ = false;
};

}  // namespace wv::verbs::tcp
