// The Worker's implementation. One class, its members grouped by concern in several files:
//   worker_impl.cc   creation, peers, connection on demand, progress, completions
//   sending.cc       the per-peer send queues: credits, inline/eager framing, posting
//   tagged.cc        tagged messaging: matching, unexpected messages, requests
//   rendezvous.cc    large messages: read and write schemes, fragments
//   active_rma.cc    active messages, put/get/atomics, flush
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "buffer_pool.h"
#include "eager_limit.h"
#include "mailbox.h"
#include "match_queue.h"
#include "registration_cache.h"
#include "ring_queue.h"
#include "wire_format.h"
#include "wv/config/config.h"
#include "wv/recursive_spin_lock.h"
#include "wv/transport/worker.h"
#include "wv/verbs.h"

namespace wv::transport {

// What a work request id names; the kind is the top byte.
enum class WorkKind : uint8_t {
  kSendBuffer = 1,  // a send from an eager send buffer (value: send_value(buffer, retired))
  kInlineSend = 2,  // an inline send (nothing to release; value: send_value(0, retired))
  kFragment = 3,    // an RDMA operation of a request (value: request id)
  kReceive = 4,     // a shared receive queue buffer (value: buffer index)
  kZeroCopy = 5,    // a zero-copy active message (value: request id)
};
inline uint64_t make_wr_id(WorkKind kind, uint64_t value) {
  return (uint64_t{static_cast<uint8_t>(kind)} << 56) | (value & ((uint64_t{1} << 56) - 1));
}
inline WorkKind wr_kind(uint64_t wr_id) {
  return static_cast<WorkKind>(wr_id >> 56);
}
inline uint64_t wr_value(uint64_t wr_id) {
  return wr_id & ((uint64_t{1} << 56) - 1);
}
// A signaled send's value: its buffer, and how many unsignaled sends before it on the QP its
// completion retires (a QP completes its send queue in order).
inline uint64_t send_value(uint32_t buffer, uint32_t retired) {
  return (uint64_t{retired} << 32) | buffer;
}
inline uint32_t send_buffer(uint64_t value) {
  return static_cast<uint32_t>(value);
}
inline uint32_t send_retired(uint64_t value) {
  return static_cast<uint32_t>(value >> 32);
}

// The largest eager limit the cost model chooses, and the receive buffers' default capacity.
inline constexpr size_t kMaxEagerLimit = kMaxEagerChoice + kUpperHeaderRoom;

enum class RequestKind : uint8_t { kFree, kSend, kReceive, kPut, kGet, kAtomic, kActiveSend };

// A request's plain state, reset to these values whenever a slot is reused.
struct RequestFields {
  RequestKind kind = RequestKind::kFree;
  bool done = false;
  bool cancel_requested = false;
  bool started = false;  // a send left the queue, or a receive matched
  RequestResult result;
  PeerId peer = kAnyPeer;
  uint64_t tag = 0;
  uint64_t mask = kTagMaskAll;
  std::byte* buffer = nullptr;
  size_t length = 0;
  SendMode mode = SendMode::kStandard;
  Path path = Path::kEager;
  verbs::Access fragment_access = verbs::Access::kNone;
  RemoteMemory remote;
  uint64_t peer_cookie = 0;    // the other side's request
  size_t transfer_length = 0;  // bytes moved by RDMA (receiver: min(message, buffer))
  size_t issued = 0;           // bytes of RDMA posted so far
  size_t completed = 0;        // bytes of RDMA completed
  bool write_scheme = false;
  bool truncated = false;
  // Atomics.
  uint64_t atomic_compare = 0;
  uint64_t atomic_operand = 0;
  uint64_t* atomic_result = nullptr;
  uint32_t atomic_slot = BufferPool::kNone;
  bool is_compare_swap = false;
  // Zero-copy active message: the send buffer holding its framing (wire header, AM header).
  uint32_t framing_buffer = BufferPool::kNone;
  uint32_t framing_bytes = 0;
};

// The members that own something are emptied when the request is released, not rebuilt
// with the plain state: a slot is reused once per message.
struct RequestSlot : RequestFields {
  uint32_t generation = 1;  // bumped at release; 24 bits are used
  Status status;
  // Rendezvous and RMA. The local buffer is registered whole (`region`), or, for transfers of
  // several fragments, one fragment at a time as each is posted, so that registering the next
  // overlaps moving the previous ones (`fragment_regions`: those in flight, oldest first).
  std::shared_ptr<verbs::MemoryRegion> region;
  RingQueue<std::shared_ptr<verbs::MemoryRegion>> fragment_regions;
};

// A small message waiting for queue space: credit returns, acknowledgements, rendezvous
// answers. Never needs credits, so it can always overtake credit-blocked data.
struct ControlMessage {
  wire::Type type;
  uint8_t flags = 0;
  uint64_t cookie = 0;
  wire::ReadyBody ready{};
  bool wake = false;  // kCredit sent even with no credits: wakes a receiver (mailbox.h)
};

// An item of a peer's data queue (needs a credit): a tagged send, or an active message
// already copied into a send buffer.
struct DataItem {
  bool is_request;
  uint64_t value;  // request id or send buffer index
  size_t bytes;    // send buffer: bytes to send
};

// An item of a peer's RDMA queue.
struct RdmaItem {
  uint64_t request;
  bool put = false;  // a put or atomic (see Peer::puts_queued)
};

enum class PeerState : uint8_t {
  kIdle,        // nothing tried yet
  kConnecting,  // our connect is in flight
  kAccepting,   // we accepted the peer's connect; waiting for it to finish
  kAwaiting,    // our connect lost a race; the peer's connect is on its way
  kConnected,
  kFailed,
};

struct Connection {
  std::shared_ptr<verbs::ConnectEndpoint> endpoint;
  std::shared_ptr<verbs::ConnectQueuePair> qp;
  std::optional<verbs::Operation<void>> step;  // resolve_address, resolve_route or accept
  std::optional<verbs::Operation<verbs::ConnectParameters>> connect;
  // Done when the connection ends (the peer disconnected or died); armed once connected.
  std::optional<verbs::Operation<void>> closed;
  int stage = 0;  // outgoing: 0 resolving address, 1 resolving route, 2 connecting
  bool incoming = false;
};

struct Peer {
  PeerId id = 0;
  uint64_t uuid = 0;
  std::string address;     // "ip:port"
  size_t eager_limit = 0;  // ours, within the peer's receive buffers
  PeerState state = PeerState::kIdle;
  std::unique_ptr<Connection> active;    // carries traffic once connected
  std::unique_ptr<Connection> outgoing;  // our attempt while connecting or after losing
  std::unique_ptr<Connection> loopback;  // self only: the accepted side of our own connect
  std::chrono::steady_clock::time_point deadline;
  Status failure;
  uint32_t credits = 0;            // messages we may still send
  uint32_t credits_to_return = 0;  // messages of the peer we processed
  bool credit_queued = false;
  uint32_t in_flight = 0;   // work requests posted, not completed
  uint32_t unsignaled = 0;  // inline sends posted without a completion since the last signaled send
  RingQueue<ControlMessage> control;
  RingQueue<DataItem> data;
  RingQueue<RdmaItem> rdma;  // requests with RDMA left to post
  // Puts and atomics in `rdma`: messages wait until they are posted, so as not to arrive first.
  uint32_t puts_queued = 0;
  uint32_t reads_in_flight = 0;
  uint32_t rma_pending = 0;  // put/get/atomic requests not done
  // Target of the last put not yet fenced by a read (flush reads one byte from it).
  std::optional<RemoteMemory> unfenced_put;
  // Mailboxes (mailbox.h): ours, offered in our hello; the peer's, from its hello, mapped.
  std::unique_ptr<Inbox> inbox;
  std::optional<InboxOffer> peer_inbox;
  std::unique_ptr<Outbox> outbox;
  uint64_t regular_sent = 0;      // sends posted to the QP
  uint64_t regular_received = 0;  // sends received from the QP
  // An RDMA write or atomic posted since the last regular send: the next message goes behind it
  // through the QP (a mailbox message would overtake it).
  bool rdma_unordered = false;
};

struct UnexpectedMessage {
  PeerId source = kAnyPeer;
  uint64_t tag = 0;
  wire::Type type = wire::Type::kEager;
  uint8_t flags = 0;
  uint64_t cookie = 0;
  wire::RendezvousBody rendezvous{};
  std::vector<std::byte> payload;
};

class WorkerImpl final : public Worker {
 public:
  WorkerImpl();
  ~WorkerImpl() override;
  Status init(const WorkerOptions& options);

  std::vector<std::byte> address() const override;
  Result<PeerId> add_peer(std::span<const std::byte> address) override;
  std::string_view provider_name() const override { return provider_->name(); }
  const ProtocolThresholds& thresholds() const override { return thresholds_; }
  WorkerCounters counters() const override;

  int progress() override;
  Status wait_for_event(std::chrono::milliseconds bound) override;
  WaitPolicy wait_policy() const override { return wait_policy_; }
  Status start_progress_thread() override;
  void stop_progress_thread() override;

  Result<Request> isend(PeerId peer, uint64_t tag, const void* buffer, size_t length,
                        SendMode mode) override;
  Result<Request> irecv(PeerId source, uint64_t tag, uint64_t mask, void* buffer,
                        size_t length) override;
  Result<RequestResult> iprobe(PeerId source, uint64_t tag, uint64_t mask) override;
  Result<RequestResult> probe(PeerId source, uint64_t tag, uint64_t mask,
                              std::chrono::milliseconds bound) override;
  Result<bool> test(Request request, RequestResult* result) override;
  Status wait(Request request, RequestResult* result, std::chrono::milliseconds bound) override;
  Status wait_all(std::span<Request> requests, std::span<RequestResult> results,
                  std::chrono::milliseconds bound) override;
  Status cancel(Request request) override;

  Status set_am_handler(uint8_t id, AmHandler handler) override;
  size_t am_limit() const override;
  Status am_send(PeerId peer, uint8_t id, std::span<const std::byte> header,
                 std::span<const std::byte> payload) override;
  Result<Request> am_send_zcopy(PeerId peer, uint8_t id, std::span<const std::byte> header,
                                std::span<const std::byte> payload) override;

  Result<std::unique_ptr<RegisteredMemory>> register_memory(void* address, size_t length) override;
  Result<std::unique_ptr<RegisteredMemory>> allocate_memory(size_t length) override;
  Result<std::unique_ptr<RegisteredMemory>> register_memory_cached(void* address,
                                                                   size_t length) override;
  Result<Request> put(PeerId peer, const void* local, size_t length, RemoteMemory remote) override;
  Result<Request> get(PeerId peer, void* local, size_t length, RemoteMemory remote) override;
  Result<Request> atomic_fetch_add(PeerId peer, RemoteMemory remote, uint64_t add,
                                   uint64_t* result) override;
  Result<Request> atomic_compare_swap(PeerId peer, RemoteMemory remote, uint64_t compare,
                                      uint64_t swap, uint64_t* result) override;
  Status flush(PeerId peer, std::chrono::milliseconds bound) override;

 private:
  using Clock = std::chrono::steady_clock;

  // ---- worker_impl.cc ----
  Status choose_thresholds();
  Result<Peer*> peer_for_send(PeerId id);
  void start_connect(Peer& peer);
  Result<std::shared_ptr<verbs::ConnectQueuePair>> create_qp(Peer& peer);
  // Connection set-up and teardown. `thorough`: also look for new requests and for
  // connections that ended (not on every call: these are rare and cost a lock each).
  void progress_connections(bool thorough);
  void unsettle(Peer& peer);
  void progress_device_events();
  void progress_listener();
  void handle_request(std::shared_ptr<verbs::ConnectEndpoint> endpoint);
  void progress_peer_connection(Peer& peer);
  void connected(Peer& peer);
  void fail_peer(Peer& peer, Status status);
  int poll_completions();
  int poll_completions_into(std::span<verbs::Completion> completions);
  int progress_locked();  // one pass of progress() with the lock held
  void handle_completion(const verbs::Completion& completion);
  void repost_receive(uint32_t buffer);
  // A consumed receive buffer goes back to the SRQ at the next idle pass (or once
  // deferred_limit_ wait), so that reposting is off the path from a message to its handler's
  // reply.
  void defer_repost(uint32_t buffer);
  void repost_deferred();
  Peer* peer_of(const verbs::Completion& completion);
  bool anything_connecting() const;
  // Our address, and an inbox for the peer where its messages may go to one (mailbox.h).
  std::vector<std::byte> hello(Peer& peer);
  // The address part of a peer's hello; the inbox it offers, if any, into *inbox.
  static std::span<const std::byte> read_hello(std::span<const std::byte> hello,
                                               std::optional<InboxOffer>* inbox);
  // A message from the peer, through its QP (`regular`) or our inbox.
  void handle_message(Peer& peer, std::span<const std::byte> bytes, bool regular);
  // Delivers what the peer's mailbox holds that may go before its next regular send.
  int drain_inbox(Peer& peer);
  int poll_mailboxes();
  // Counts this thread as sleeping in every inbox; false when it must not sleep after all (an
  // inbox holds a message, or the fence failed), then it is counted awake again already.
  bool announce_sleep();
  void announce_awake();

  // ---- sending.cc ----
  void queue_control(Peer& peer, const ControlMessage& message);
  void return_credits(Peer& peer, uint32_t count);
  // Posts what the peer's queues allow; called after anything that may unblock them.
  void pump(Peer& peer);
  bool post_control(Peer& peer, const ControlMessage& message);
  enum class Posted { kBlocked, kSent, kSkipped };
  Posted post_data(Peer& peer, const DataItem& item);
  // Sends header + body + payload as one message, inline when small enough, else through a
  // send buffer; false when no buffer is free.
  // `regular_only`: through the QP even where the mailbox could take it.
  bool post_message(Peer& peer, wire::Header& header, std::span<const std::byte> body,
                    std::span<const std::byte> payload, bool regular_only = false);
  // Stores a message of `bytes` whose framing starts with a header of `type` returning `credits`
  // in the peer's mailbox, when it may go there (mailbox.h); false: it takes the QP.
  bool store_in_mailbox(Peer& peer, wire::Type type, uint16_t credits,
                        std::span<const std::span<const std::byte>> parts, size_t bytes);
  // Whether a message of `bytes` with its header fits the peer's mailbox: then it may go at once
  // like an inline send, with no send buffer to frame it in and copy it from again.
  static bool fits_mailbox(const Peer& peer, size_t bytes) {
    return peer.outbox && bytes <= MailboxLayout::kCapacity;
  }
  bool post_from_buffer(Peer& peer, uint32_t buffer, size_t bytes);
  // Writes the credits owed to the peer into a message framed earlier (a queued send buffer's
  // header) and returns them; count_posted books them as returned once the message is posted.
  uint16_t stamp_credits(const Peer& peer, std::byte* framed);
  void count_posted(Peer& peer, uint16_t credits);
  // A zero-copy active message: its framing from a send buffer, its payload from the caller.
  bool post_zero_copy(Peer& peer, uint64_t request_id, RequestSlot& request);
  bool can_post(const Peer& peer) const;

  // ---- tagged.cc ----
  Result<uint64_t> new_request(RequestKind kind);
  RequestSlot* find_request(uint64_t id);
  void complete(uint64_t id, RequestSlot& request, Status status);
  void release(uint64_t id, RequestSlot& request);
  void deliver_eager(Peer& peer, const wire::Header& header, std::span<const std::byte> payload);
  void deliver_rendezvous(Peer& peer, const wire::Header& header, const wire::RendezvousBody& body);
  // A message nobody has asked for yet: queued in arrival order (kind, tag, cookie from
  // `header`); the caller adds the payload or the rendezvous offer.
  UnexpectedMessage& store_unexpected(Peer& peer, const wire::Header& header);
  void match_eager(uint64_t request_id, RequestSlot& request, PeerId source,
                   const wire::Header& header, std::span<const std::byte> payload);
  // The error every send reports once unexpected messages exceed transport_unexpected_limit.
  Status unexpected_overflow() const;
  // A standard inline send that goes at once (nothing queued ahead, a credit, queue space):
  // Request::completed(), or the peer's failure; nullopt when it must take the queue.
  std::optional<Result<Request>> send_at_once(Peer& peer, uint64_t tag, const void* buffer,
                                              size_t length, SendMode mode);
  // What test() and the waits answer for Request::completed().
  static Result<bool> take_completed(RequestResult* result);
  // test() without progress: the waits progress between checks themselves.
  Result<bool> take_if_done_locked(Request request, RequestResult* result);
  // A non-owning reference to the condition of a wait: std::function would allocate for a
  // lambda with several captures, on every wait.
  class DoneCheck {
   public:
    template <typename F>
    DoneCheck(F&& check)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
        : object_(&check), call_([](void* object) {
            return (*static_cast<std::remove_reference_t<F>*>(object))();
          }) {}
    bool operator()() const { return call_(object_); }

   private:
    void* object_;
    bool (*call_)(void*);
  };
  // Progresses until done() holds or `bound` passes, sleeping per the progress mode. done() runs
  // with mutex_ held: a pass takes the lock once for the check and the progress together.
  Status progress_until(DoneCheck done, std::chrono::milliseconds bound, std::string_view what);

  // ---- rendezvous.cc ----
  void start_rendezvous_receive(uint64_t request_id, RequestSlot& request, PeerId source,
                                uint64_t sender_cookie, const wire::RendezvousBody& body,
                                bool write_scheme);
  void handle_ready(Peer& peer, const wire::Header& header, const wire::ReadyBody& body);
  void handle_finish(Peer& peer, const wire::Header& header);
  // Posts the request's next RDMA operations; true when it has nothing left to post.
  bool post_rdma(Peer& peer, uint64_t request_id, RequestSlot& request);
  void fragment_done(Peer& peer, uint64_t request_id, bool ok, const Status& failure);
  void send_finish(Peer& peer, uint64_t cookie, bool truncated);
  verbs::Access sink_access(bool write_scheme) const;
  // Whether a local buffer of `length` is registered fragment by fragment (see RequestSlot).
  bool registers_per_fragment(size_t length) const { return length > thresholds_.fragment_size; }

  // ---- active_rma.cc ----
  // The peer an active message of `bytes` (header and payload) may go to, or why not.
  Result<Peer*> active_message_peer(PeerId id, size_t header_bytes, size_t bytes);
  // What registered memory allows peers: everything the device can do.
  verbs::Access exposed_access() const;
  void deliver_active(Peer& peer, const wire::Header& header, std::span<const std::byte> bytes);
  Result<Request> start_rma(RequestKind kind, PeerId peer, std::byte* local, size_t length,
                            RemoteMemory remote);
  Result<Request> atomic_compare_swap_or_add(PeerId peer, RemoteMemory remote, bool compare_swap,
                                             uint64_t compare, uint64_t operand, uint64_t* result);

  // ---- state ----
  mutable RecursiveSpinLock mutex_;
  std::shared_ptr<verbs::Provider> provider_;
  std::shared_ptr<verbs::Device> device_;
  std::shared_ptr<verbs::ProtectionDomain> domain_;
  std::shared_ptr<verbs::CompletionQueue> cq_;
  std::shared_ptr<verbs::SharedReceiveQueue> srq_;
  std::shared_ptr<verbs::ConnectEndpoint> listener_;
  std::optional<verbs::Operation<std::shared_ptr<verbs::ConnectEndpoint>>> next_request_;
  std::optional<verbs::Operation<verbs::DeviceEvent>> device_event_;
  std::optional<verbs::Operation<void>> srq_limit_;  // armed until the reserve is posted
  std::unique_ptr<BufferPool> send_buffers_;
  std::unique_ptr<BufferPool> receive_buffers_;
  std::unique_ptr<BufferPool> atomic_buffers_;
  std::unique_ptr<RegistrationCache> cache_;
  ProtocolThresholds thresholds_;
  verbs::Capability capabilities_ = verbs::Capability::kNone;
  std::string listen_address_;
  size_t inline_bytes_ = 0;      // largest inline message with its header; 0: no inline
  size_t receive_capacity_ = 0;  // payload bytes one receive buffer takes
  uint64_t uuid_ = 0;

  // Settings (from the configuration).
  std::optional<config::Config> config_;
  uint32_t credit_window_ = 32;
  uint32_t send_depth_ = 128;
  uint32_t unsignaled_limit_ = 1;  // every unsignaled_limit_-th inline send is signaled
  uint32_t outbound_read_depth_ = 16;
  size_t unexpected_limit_ = 0;
  WaitPolicy wait_policy_;
  std::chrono::milliseconds connect_timeout_{10000};
  bool mailboxes_ = false;  // offer peers an inbox (transport_mailbox, where the device maps)

  std::vector<std::unique_ptr<Peer>> peers_;
  // Peers with connection work under way: progress looks only at these.
  std::vector<PeerId> unsettled_;
  std::vector<PeerId> mailbox_peers_;  // connected peers whose inbox progress polls
  uint64_t progress_calls_ = 0;
  uint32_t mailbox_passes_ = 0;  // passes that delivered from a mailbox
  std::unordered_map<uint64_t, PeerId> peer_by_uuid_;

  std::deque<RequestSlot> requests_;  // a deque: slots never move while others are added
  std::vector<uint32_t> free_requests_;
  MatchQueue posted_{false};
  MatchQueue unexpected_{true};
  std::vector<UnexpectedMessage> unexpected_messages_;
  std::vector<uint32_t> free_unexpected_;
  size_t unexpected_bytes_ = 0;

  std::array<AmHandler, 256> am_handlers_;
  std::array<std::byte, 64> fence_sink_{};  // where flush's fencing reads land
  WorkerCounters counters_;
  static constexpr size_t kMaxDeferredReposts = 32;
  std::array<uint32_t, kMaxDeferredReposts> deferred_reposts_{};
  static constexpr size_t kCompletionBatch = 32;
  std::array<verbs::Completion, kCompletionBatch> completions_{};
  bool polling_ = false;  // poll_completions is handling completions_ (handlers may re-enter)
  size_t deferred_count_ = 0;
  size_t deferred_limit_ = 0;  // an eighth of the receive buffers, at most kMaxDeferredReposts

  std::thread progress_thread_;
  std::atomic<bool> stop_progress_{false};
};

}  // namespace wv::transport
