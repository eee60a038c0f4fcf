// The messaging engine: one Worker per thread context, written only against the verbs API.
//
// A Worker owns a device, a protection domain, one completion queue and one shared receive
// queue whose buffers serve every peer (receive memory does not grow with the peer count).
// Peers are added by address (the bytes another worker's address() returned, exchanged through
// a Bootstrap); the connection to a peer is made on first use, sends to a peer still connecting
// are queued, and two workers that connect to each other at once end up with one connection.
//
// Messages take one of three paths by size (protocol.h): inline, eager (copied through
// pre-registered buffers, flow-controlled by per-peer credits piggybacked on traffic), or
// rendezvous (zero-copy RDMA read by the receiver, or RDMA write by the sender), fragmented.
// Messages between two workers are never overtaken (MPI's non-overtaking rule).
//
// Two APIs over the same engine, like UCX's uct/ucp:
//   - tagged messaging for applications (isend/irecv/probe/cancel/test/wait),
//   - active messages + RMA (am_send with a handler id, put, get, atomics, flush), which the
//     Open MPI BTL maps onto.
//
// Threads: every member function may be called from any thread at any time (one internal lock,
// MPI_THREAD_MULTIPLE-style); handlers run inside progress() with that lock held and may call
// back into the worker. Nothing here waits without a bound.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wv/result.h"
#include "wv/transport/protocol.h"

namespace wv::transport {

using PeerId = uint32_t;
inline constexpr PeerId kAnyPeer = 0xffffffffu;
inline constexpr uint64_t kTagMaskAll = ~uint64_t{0};

// How wait() and an idle progress thread wait for the network.
enum class ProgressMode : uint8_t {
  kPoll,    // spin on the completion queue (lowest latency, burns a core)
  kBlock,   // sleep on the completion queue's fd (oversubscribed jobs)
  kHybrid,  // spin for transport_spin_us, then sleep
};
std::string_view to_string(ProgressMode mode);

// How an idle wait spends its time: it polls (spin), then polls with sched_yield() between
// passes (yield), then sleeps on the worker's events. On a host with more processes than
// cores a spinning rank holds the core its peer needs to answer, so there a hybrid wait
// skips the spin and yields at once, as Open MPI does when oversubscribed.
struct WaitPolicy {
  enum class Phase : uint8_t { kSpin, kYield, kSleep };
  ProgressMode mode = ProgressMode::kHybrid;
  std::chrono::microseconds spin{0};
  std::chrono::microseconds yield{0};

  // What a wait that has found nothing to do for `idle` does next.
  Phase phase(std::chrono::nanoseconds idle) const {
    if (mode == ProgressMode::kPoll) return Phase::kSpin;
    if (mode == ProgressMode::kBlock) return Phase::kSleep;
    if (idle < spin) return Phase::kSpin;
    return idle < spin + yield ? Phase::kYield : Phase::kSleep;
  }
};

struct WorkerOptions {
  std::string provider;        // empty: the configured provider
  std::string device;          // empty: the configured device, else the provider's first
  std::string listen_address;  // "ip:port"; empty: transport_address, else the first interface
  // Parameters of this worker that override the process configuration (name, value), e.g.
  // {"transport_eager_limit", "4K"}; an unknown name or bad value fails create().
  std::vector<std::pair<std::string, std::string>> settings;
  // Processes of the job on this host (0: unknown). More than the CPUs this process may run on
  // makes hybrid waits yield instead of spinning (see WaitPolicy).
  int local_processes = 0;
};

// A pending tagged or RMA operation. A small value; invalid after test() reported it done or
// wait() returned (using it again is a clear error, never a crash).
class Request {
 public:
  Request() = default;
  bool valid() const { return id_ != 0; }
  uint64_t id() const { return id_; }
  static Request from_id(uint64_t id) { return Request(id); }
  // A send the worker finished as it was posted (a small message copied out at once, as UCX's
  // send calls that return no request): nothing to track or release. test, wait and cancel
  // answer it at once, as often as asked.
  static Request completed() { return Request(kCompleted); }
  bool is_completed() const { return id_ == kCompleted; }

 private:
  static constexpr uint64_t kCompleted = ~uint64_t{0};  // no live request has this id
  explicit Request(uint64_t id) : id_(id) {}
  uint64_t id_ = 0;
};

// What a completed request did. Receives: the matched message's source, tag and length.
struct RequestResult {
  PeerId source = kAnyPeer;
  uint64_t tag = 0;
  size_t length = 0;
  bool cancelled = false;
};

enum class SendMode : uint8_t {
  kStandard,     // done when the buffer may be reused
  kSynchronous,  // done when the receiver has matched the message (MPI_Issend)
};

// Memory registered for RMA; what a peer needs to reach it is remote().
struct RemoteMemory {
  uint64_t address = 0;
  uint32_t key = 0;
};
class RegisteredMemory {
 public:
  virtual ~RegisteredMemory() = default;
  virtual RemoteMemory remote() const = 0;
  virtual void* address() const = 0;
  virtual size_t length() const = 0;
};

struct WorkerCounters {
  uint64_t messages_sent = 0;
  // Of those, stored in the receiver's mailbox instead of sent through the QP (the shm wire).
  uint64_t mailbox_messages = 0;
  // Completions of sends polled: small (inline) sends mostly complete without one, so this
  // stays well below messages_sent while traffic is small messages.
  uint64_t send_completions = 0;
  uint64_t messages_received = 0;
  uint64_t unexpected_messages = 0;
  uint64_t rendezvous_transfers = 0;
  uint64_t registration_cache_hits = 0;
  uint64_t registration_cache_misses = 0;
  uint64_t registration_cache_invalidations = 0;
  uint64_t connections = 0;
  uint64_t connect_races_resolved = 0;
  uint64_t receive_reserve_posted = 0;  // the SRQ limit event fired and the reserve went in
};

class Worker {
 public:
  static Result<std::unique_ptr<Worker>> create(const WorkerOptions& options = {});
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  virtual ~Worker() = default;

  // ---- Identity and peers ----
  // What other workers pass to add_peer() to reach this one.
  virtual std::vector<std::byte> address() const = 0;
  // The same address always gives the same PeerId; adding this worker's own address is allowed
  // (messages to self loop through the device).
  virtual Result<PeerId> add_peer(std::span<const std::byte> address) = 0;
  virtual std::string_view provider_name() const = 0;
  virtual const ProtocolThresholds& thresholds() const = 0;
  virtual WorkerCounters counters() const = 0;

  // ---- Progress ----
  // One pass over the network; returns how many events it handled. A peer's failure fails
  // that peer's requests; it is not an error of progress().
  virtual int progress() = 0;
  // Waits (per the configured ProgressMode) until progress may have something to do, at most
  // `bound`. Returns at once in kPoll mode.
  virtual Status wait_for_event(std::chrono::milliseconds bound) = 0;
  // The rule this worker's own waits follow; layers with waits of their own follow it too.
  virtual WaitPolicy wait_policy() const = 0;
  // A thread that calls progress() while the application computes; waits per ProgressMode.
  virtual Status start_progress_thread() = 0;
  virtual void stop_progress_thread() = 0;

  // ---- Tagged messaging ----
  // The buffer must stay untouched until the request is done. Never kQueueFull: sends wait
  // in the engine for connection, credits and queue space. A small standard send that can go
  // at once returns Request::completed().
  virtual Result<Request> isend(PeerId peer, uint64_t tag, const void* buffer, size_t length,
                                SendMode mode = SendMode::kStandard) = 0;
  // Matches the oldest message from `source` (or kAnyPeer) whose tag equals `tag` in the bits
  // set in `mask`. A longer message fails the request with kInvalidArgument (truncation).
  virtual Result<Request> irecv(PeerId source, uint64_t tag, uint64_t mask, void* buffer,
                                size_t length) = 0;
  // The oldest unmatched message that irecv(source, tag, mask) would match, without
  // receiving it; kNotFound when there is none yet.
  virtual Result<RequestResult> iprobe(PeerId source, uint64_t tag, uint64_t mask) = 0;
  // Progresses until a matching message arrives (kTimedOut past `bound`).
  virtual Result<RequestResult> probe(PeerId source, uint64_t tag, uint64_t mask,
                                      std::chrono::milliseconds bound) = 0;
  // true (and `result` filled, the request released) when done; an error Status when the
  // request failed (also released) or the handle is not a live request.
  virtual Result<bool> test(Request request, RequestResult* result = nullptr) = 0;
  virtual Status wait(Request request, RequestResult* result, std::chrono::milliseconds bound) = 0;
  virtual Status wait_all(std::span<Request> requests, std::span<RequestResult> results,
                          std::chrono::milliseconds bound) = 0;
  // A receive not yet matched, or a send not yet started, completes with cancelled = true;
  // otherwise the request completes normally (MPI_Cancel's rule). The caller still waits.
  virtual Status cancel(Request request) = 0;

  // ---- Active messages ----
  // Called inside progress() for every message sent with `id`; the spans are valid only
  // during the call.
  using AmHandler = std::function<void(PeerId source, std::span<const std::byte> header,
                                       std::span<const std::byte> payload)>;
  virtual Status set_am_handler(uint8_t id, AmHandler handler) = 0;
  // Largest header + payload of one active message (the eager limit less framing).
  virtual size_t am_limit() const = 0;
  // Copies header and payload and returns: the buffers may be reused at once. kQueueFull when
  // every send buffer is in flight (call progress() and retry); kInvalidArgument above
  // am_limit(). Active messages to one peer arrive in order, also relative to tagged ones.
  virtual Status am_send(PeerId peer, uint8_t id, std::span<const std::byte> header,
                         std::span<const std::byte> payload) = 0;
  // am_send without the payload's copy: the payload is sent from where it is (registered
  // through the registration cache) and must stay unchanged until the returned request is done
  // (test/wait; it cannot be cancelled). The header is copied. For payloads of at least
  // thresholds().zero_copy_min, where the copy costs more than the lookup and the wait; the
  // same errors as am_send, and kInvalidArgument for an empty payload.
  virtual Result<Request> am_send_zcopy(PeerId peer, uint8_t id, std::span<const std::byte> header,
                                        std::span<const std::byte> payload) = 0;

  // ---- RMA ----
  // Registers memory peers may put to, get from and use for atomics.
  virtual Result<std::unique_ptr<RegisteredMemory>> register_memory(void* address,
                                                                    size_t length) = 0;
  // The same through the registration cache, for memory registered per message (btl/wv's
  // rendezvous buffers): registering it again is a lookup, not a new key. The registration
  // outlives the returned object (until the cache evicts it or the memory is unmapped), so a
  // peer holding the key may still reach the memory after it is dropped, as with Open MPI's
  // leave_pinned.
  virtual Result<std::unique_ptr<RegisteredMemory>> register_memory_cached(void* address,
                                                                           size_t length) = 0;
  // Memory the provider allocates and registers (zeroed, page-aligned, freed with the returned
  // object), like MPI_Win_allocate's: on the shm provider peers on the host put to, get from
  // and (through the ring) use it for atomics without a system call or this process's CPU
  // (verbs::ProtectionDomain::allocate_memory). kInvalidArgument for 0 bytes.
  virtual Result<std::unique_ptr<RegisteredMemory>> allocate_memory(size_t length) = 0;
  // Local buffers need no registration (the registration cache handles them). A get is done
  // when the data is here. A put is done when its buffer may be reused; its data is in place
  // at the target once flush() returns, and before any later message of this worker arrives
  // there (on iWARP and the software providers a write completes when it is sent).
  virtual Result<Request> put(PeerId peer, const void* local, size_t length,
                              RemoteMemory remote) = 0;
  virtual Result<Request> get(PeerId peer, void* local, size_t length, RemoteMemory remote) = 0;
  // 64-bit atomics on 8-byte aligned remote memory; the prior value lands in *result when
  // the request is done (result may be null for a non-fetching add).
  virtual Result<Request> atomic_fetch_add(PeerId peer, RemoteMemory remote, uint64_t add,
                                           uint64_t* result) = 0;
  virtual Result<Request> atomic_compare_swap(PeerId peer, RemoteMemory remote, uint64_t compare,
                                              uint64_t swap, uint64_t* result) = 0;
  // Waits until every RMA operation issued to `peer` (kAnyPeer: to all) is done and every put
  // is in place at its target: after the puts, one byte is read back from the last put's
  // target (reads are not served before the writes ahead of them), so that memory must allow
  // remote reads, as register_memory()'s does.
  virtual Status flush(PeerId peer, std::chrono::milliseconds bound) = 0;

 protected:
  Worker() = default;
};

}  // namespace wv::transport
