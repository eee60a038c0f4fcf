// btl/wv: Open MPI's BTL API 3.1 (what pml/ob1 and osc/rdma use) mapped onto wv's messaging
// engine (wv::transport::Worker). The protocol lives in transport/; this file only translates:
//
//   BTL send/sendi        -> Worker::am_send with one active-message id; the 8-bit BTL tag is the
//                            first byte of the active-message header
//   BTL receive callbacks <- without MPI threads, the active-message handler calls them straight
//                            from the receive buffer; with them, it copies each message into a
//                            queue that the component's progress drains after Worker::progress()
//                            returned, so no OPAL callback runs under the worker's lock (ob1 and
//                            osc/rdma take their own locks in callbacks and around BTL calls; two
//                            locks taken in both orders would deadlock under MPI_THREAD_MULTIPLE)
//   put/get/atomics       -> Worker::put/get/atomic_*; completions found by testing the requests
//                            in progress (the engine has no per-request callbacks)
//   register_mem          -> Worker::register_memory_cached (ob1 registers every rendezvous
//                            buffer); the handle ob1 copies is the RemoteMemory (address + key),
//                            which is self-contained
//   add_procs             -> Worker::add_peer with the address each process published through
//                            the modex in btl_init
//
// Nothing here throws into OPAL: every entry point catches and maps to an OPAL error code.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "wv/config/config.h"
#include "wv/config/definition.h"
#include "wv/transport/worker.h"

// Several OPAL headers lack extern "C" guards; opal_config.h must come first.
extern "C" {
#include "opal/class/opal_bitmap.h"
#include "opal/constants.h"
#include "opal/datatype/opal_convertor.h"
#include "opal/mca/base/mca_base_var.h"
#include "opal/mca/btl/base/base.h"
#include "opal/mca/btl/btl.h"
#include "opal/mca/pmix/pmix.h"
#include "opal/runtime/opal.h"
#include "opal/util/output.h"
#include "opal/util/proc.h"
#include "opal/version.h"
#include "opal_config.h"
}

namespace transport = wv::transport;

// ---- BTL-visible types (their tags are declared, incomplete, by btl.h) ----

struct mca_btl_base_endpoint_t {
  opal_proc_t* proc = nullptr;
  transport::PeerId peer = 0;
  size_t am_limit = 0;  // what this peer receives in one active message
  // The last put's target, for flush: a read behind the writes on the same connection returns
  // only once they are placed (a put's completion may be local only on iWARP-like providers).
  std::atomic<bool> put_since_flush{false};
  std::atomic<uint64_t> last_put_address{0};
  std::atomic<uint32_t> last_put_key{0};
};

// What ob1 copies (exactly btl_registration_handle_size bytes) into its control messages and
// what osc/rdma stores for peers: only the remote address and key, no pointers.
struct mca_btl_base_registration_handle_t {
  uint64_t address;
  uint32_t key;
  uint32_t reserved;
};

extern "C" {
// The one exported symbol; defined at the end of the file.
extern mca_btl_base_component_3_0_0_t mca_btl_wv_component;
}

namespace {

// Active-message ids on the Worker. One id carries every BTL tag (in the header's first byte);
// two more carry emulated atomics where the device has none.
constexpr uint8_t kAmBtl = 0x42;
constexpr uint8_t kAmAtomicRequest = 0x43;
constexpr uint8_t kAmAtomicReply = 0x44;
constexpr size_t kTagBytes = 1;
// The tag and an upper-layer header that sendi stages on the stack; longer ones (none of
// ob1's) take the heap.
constexpr size_t kSendiHeaderBytes = 128;
// The longest any adapter-internal wait may take (flush, finalize drain).
constexpr std::chrono::milliseconds kFlushBound{120000};

// ---- Small helpers ----

int opal_code(const wv::Status& status) {
  switch (status.code()) {
    case wv::Errc::kOk:
      return OPAL_SUCCESS;
    case wv::Errc::kQueueFull:
    case wv::Errc::kBusy:
      return OPAL_ERR_OUT_OF_RESOURCE;
    case wv::Errc::kNoMemory:
      return OPAL_ERR_OUT_OF_RESOURCE;
    case wv::Errc::kNotSupported:
      return OPAL_ERR_NOT_SUPPORTED;
    case wv::Errc::kInvalidArgument:
      return OPAL_ERR_BAD_PARAM;
    case wv::Errc::kTimedOut:
      return OPAL_ERR_TIMEOUT;
    case wv::Errc::kNotFound:
      return OPAL_ERR_NOT_FOUND;
    case wv::Errc::kDisconnected:
    case wv::Errc::kUnreachable:
    case wv::Errc::kConnectionRefused:
      return OPAL_ERR_UNREACH;
    default:
      return OPAL_ERROR;
  }
}

std::span<const std::byte> bytes_of(const void* data, size_t length) {
  return {static_cast<const std::byte*>(data), length};
}

// A send descriptor: the BTL descriptor, its segments and the bytes the first points to. An
// in-place send (prepare_src of a large contiguous payload) has a second segment: the caller's
// bytes, sent from where they are.
struct Frag {
  mca_btl_base_descriptor_t base;
  mca_btl_base_segment_t segments[2];
  mca_btl_base_endpoint_t* endpoint;
  size_t capacity;
  uint8_t tag;
  unsigned char* data() { return reinterpret_cast<unsigned char*>(this + 1); }
};

// A received message waiting for delivery to the upper layer.
struct RxMessage {
  uint8_t tag = 0;
  std::vector<unsigned char> bytes;
};

// A send that found every eager buffer in flight, retried from progress in order.
struct PendingSend {
  transport::PeerId peer = 0;
  uint8_t am_id = 0;
  std::vector<std::byte> header;
  std::vector<std::byte> payload;
  Frag* frag = nullptr;  // a btl_send descriptor to complete once sent, or null
};

// An outstanding put/get/atomic or in-place send, and what to run when it is done.
struct RdmaOp {
  transport::Request request;  // invalid for an emulated atomic
  bool emulated = false;
  std::atomic<int> emulated_state{0};  // 1: reply arrived
  uint64_t result = 0;                 // a fetching atomic's prior value
  void* fetch_into = nullptr;          // where the prior value goes (the BTL's local buffer)
  mca_btl_base_endpoint_t* endpoint = nullptr;
  void* local_address = nullptr;
  mca_btl_base_registration_handle_t* local_handle = nullptr;
  mca_btl_base_rdma_completion_fn_t cbfunc = nullptr;
  void* cbcontext = nullptr;
  void* cbdata = nullptr;
  Frag* send_frag = nullptr;  // an in-place send: completed (complete_send) instead of cbfunc
};

// Emulated atomic request and reply (active messages; both ends are this adapter).
struct AtomicRequestWire {
  uint64_t cookie;
  uint64_t address;
  uint64_t operand;
  uint64_t compare;
  uint32_t key;
  uint8_t compare_swap;
  uint8_t pad[3];
};
struct AtomicReplyWire {
  uint64_t cookie;
  uint64_t value;
  int32_t status;
  uint32_t pad;
};

struct Registration {
  mca_btl_base_registration_handle_t handle;  // first: the BTL sees only this part
  transport::RegisteredMemory* memory;
};

// The module: OPAL's struct first (OPAL casts between the two), then the adapter's state.
struct Module {
  mca_btl_base_module_t super;
  std::unique_ptr<transport::Worker> worker;
  size_t frag_capacity = 0;
  size_t zero_copy_min = 0;  // payloads from this size up are sent in place (0: never)
  mca_btl_base_module_error_cb_fn_t error_cb = nullptr;
  bool emulate_atomics = false;

  std::mutex frag_mutex;
  std::vector<Frag*> free_frags;

  // Without MPI_THREAD_MULTIPLE, messages go to ob1 from inside the worker's handler. With it,
  // they are queued and delivered after the worker's progress returns: ob1's callbacks take
  // ob1's locks, and under the worker's lock that order would deadlock against a thread that
  // holds an ob1 lock and sends. (Open MPI 4.1 passes enable_progress_threads as true in every
  // job, yet no second thread enters a BTL unless the application's do: queueing on that flag
  // cost every 8-byte message about 50 ns, a copy and two locks.)
  bool deliver_in_handler = false;
  std::mutex rx_mutex;
  std::deque<RxMessage> rx_queue;
  std::atomic<size_t> rx_count{0};                   // rx_queue's length, read without the lock
  std::vector<std::vector<unsigned char>> rx_spare;  // recycled message buffers
  std::atomic<bool> delivering{false};

  std::mutex send_mutex;
  std::deque<PendingSend> pending_sends;
  std::atomic<size_t> pending_count{0};

  std::mutex rdma_mutex;
  std::vector<RdmaOp*> rdma_ops;  // started, not yet seen done
  std::vector<void*> rdma_spare;  // finished ops' memory, for the next ones
  std::atomic<size_t> rdma_count{0};
  // The progress thread of the moment tests these (the rest move on); kept between calls so a
  // pass allocates nothing.
  std::atomic<bool> rdma_testing{false};
  std::vector<RdmaOp*> rdma_tested;
  std::vector<std::pair<RdmaOp*, int>> rdma_done;

  std::mutex endpoints_mutex;
  std::vector<std::unique_ptr<mca_btl_base_endpoint_t>> endpoints;

  // Local registrations by key, for checking emulated atomics' targets. Cached registrations
  // share keys: a key covers the span of its live registrations until the last is dropped.
  struct KeySpan {
    uint64_t begin;
    uint64_t end;
    size_t users;
  };
  std::mutex registrations_mutex;
  std::unordered_map<uint32_t, KeySpan> registrations;
};

// ---- Component state ----

// One module per process: the Worker multiplexes every peer over one device.
Module* g_module = nullptr;
// The wv parameters as MCA variables: storage that OPAL writes the (string) values into.
std::vector<char*> g_param_storage;
std::vector<int> g_param_index;
int g_verbose = 0;

Module* as_module(mca_btl_base_module_t* btl) {
  return reinterpret_cast<Module*>(btl);
}

void log_error(const char* what, const wv::Status& status) {
  opal_output(0, "btl/wv: %s: %s", what, status.to_string().c_str());
}

// ---- Frags ----

Frag* frag_get(Module* module, mca_btl_base_endpoint_t* endpoint) {
  Frag* frag = nullptr;
  {
    std::lock_guard lock(module->frag_mutex);
    if (!module->free_frags.empty()) {
      frag = module->free_frags.back();
      module->free_frags.pop_back();
    }
  }
  if (frag == nullptr) {
    void* memory = std::malloc(sizeof(Frag) + module->frag_capacity);
    if (memory == nullptr) return nullptr;
    frag = new (memory) Frag{};
    OBJ_CONSTRUCT(&frag->base, mca_btl_base_descriptor_t);
    frag->capacity = module->frag_capacity;
  }
  frag->endpoint = endpoint;
  frag->segments[0].seg_addr.pval = frag->data();
  frag->segments[0].seg_len = 0;
  frag->base.des_segments = frag->segments;
  frag->base.des_segment_count = 1;
  frag->base.des_cbfunc = nullptr;
  frag->base.des_cbdata = nullptr;
  frag->base.des_context = nullptr;
  frag->base.des_flags = 0;
  frag->base.order = MCA_BTL_NO_ORDER;
  frag->tag = 0;
  return frag;
}

void frag_return(Module* module, Frag* frag) {
  std::lock_guard lock(module->frag_mutex);
  module->free_frags.push_back(frag);
}

// What ob1 expects once a btl_send descriptor has gone out: the callback (when asked for) and
// the descriptor released when the BTL owns it.
void complete_send(Module* module, Frag* frag, int status) {
  const uint32_t flags = frag->base.des_flags;
  if (frag->base.des_cbfunc != nullptr) {
    frag->base.des_cbfunc(&module->super, frag->endpoint, &frag->base, status);
  }
  if (flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP) frag_return(module, frag);
}

void report_peer_failure(Module* module, mca_btl_base_endpoint_t* endpoint, const wv::Status& s) {
  log_error("peer failed", s);
  if (module->error_cb != nullptr) {
    char info[] = "btl/wv: the connection to a peer failed";
    module->error_cb(&module->super, MCA_BTL_ERROR_FLAGS_FATAL,
                     endpoint != nullptr ? endpoint->proc : nullptr, info);
  }
}

// ---- Sending ----

RdmaOp* new_rdma_op(Module* module);
void add_rdma_op(Module* module, RdmaOp* op);

bool in_place(const Frag* frag) {
  return frag->base.des_segment_count == 2;
}

// What a btl_send descriptor sends after its header: the bytes of its one segment, or in place
// the caller's bytes (the second segment).
std::span<const std::byte> frag_payload(const Frag* frag) {
  const mca_btl_base_segment_t& segment = frag->segments[in_place(frag) ? 1 : 0];
  return bytes_of(segment.seg_addr.pval, segment.seg_len);
}

// Whether a payload of `bytes` goes in place (sendi declines it, prepare_src points at it): large
// enough that the copy costs more than the engine's wait for the send, and contiguous.
bool goes_in_place(const Module* module, opal_convertor_t* convertor, size_t bytes) {
  return module->zero_copy_min != 0 && bytes >= module->zero_copy_min &&
         !opal_convertor_need_buffers(convertor);
}

// The transport's request for an in-place send, tested from progress like RDMA operations; the
// descriptor completes when the caller's bytes are no longer needed.
void track_in_place_send(Module* module, Frag* frag, transport::Request request) {
  RdmaOp* op = new_rdma_op(module);
  op->request = request;
  op->endpoint = frag->endpoint;
  op->send_frag = frag;
  add_rdma_op(module, op);
}

// Sends (or, in place, starts sending) one message; kQueueFull when the transport has no send
// buffer free. *sent_now: the message is gone and the descriptor may complete at once.
wv::Status send_now(Module* module, transport::PeerId peer, uint8_t am_id,
                    std::span<const std::byte> header, std::span<const std::byte> payload,
                    Frag* frag, bool* sent_now) {
  if (frag == nullptr || !in_place(frag)) {
    wv::Status status = module->worker->am_send(peer, am_id, header, payload);
    *sent_now = status.is_ok();
    return status;
  }
  auto request = module->worker->am_send_zcopy(peer, am_id, header, payload);
  if (!request.is_ok()) return request.status();
  track_in_place_send(module, frag, *request);
  return wv::Status::ok();
}

// Sends at once, or queues behind earlier queued sends (order between two processes matters to
// ob1's control messages). *sent_now: sent, and the descriptor may complete now.
wv::Status send_or_queue(Module* module, transport::PeerId peer, uint8_t am_id,
                         std::span<const std::byte> header, std::span<const std::byte> payload,
                         Frag* frag, bool* sent_now) {
  *sent_now = false;
  if (module->pending_count.load(std::memory_order_acquire) == 0) {
    wv::Status status = send_now(module, peer, am_id, header, payload, frag, sent_now);
    if (status.code() != wv::Errc::kQueueFull) return status;
  }
  std::lock_guard lock(module->send_mutex);
  PendingSend pending;
  pending.peer = peer;
  pending.am_id = am_id;
  pending.header.assign(header.begin(), header.end());
  if (frag == nullptr) pending.payload.assign(payload.begin(), payload.end());
  pending.frag = frag;
  module->pending_sends.push_back(std::move(pending));
  module->pending_count.fetch_add(1, std::memory_order_release);
  return wv::Status::ok();
}

int progress_pending_sends(Module* module) {
  if (module->pending_count.load(std::memory_order_acquire) == 0) return 0;
  std::vector<std::pair<Frag*, int>> done;
  {
    std::unique_lock lock(module->send_mutex, std::try_to_lock);
    if (!lock.owns_lock()) return 0;
    while (!module->pending_sends.empty()) {
      PendingSend& pending = module->pending_sends.front();
      std::span<const std::byte> payload = pending.payload;
      if (pending.frag != nullptr) payload = frag_payload(pending.frag);
      bool sent = false;
      wv::Status status = send_now(module, pending.peer, pending.am_id, pending.header, payload,
                                   pending.frag, &sent);
      if (status.code() == wv::Errc::kQueueFull) break;
      if (!status.is_ok()) log_error("queued send failed", status);
      if (pending.frag != nullptr && (sent || !status.is_ok())) {
        done.emplace_back(pending.frag, opal_code(status));
      }
      module->pending_sends.pop_front();
      module->pending_count.fetch_sub(1, std::memory_order_release);
    }
  }
  for (auto& [frag, status] : done) complete_send(module, frag, status);
  return static_cast<int>(done.size());
}

// ---- Receiving ----

// Hands one message (ob1's header and data, contiguous) to the callback of its tag.
void deliver(Module* module, uint8_t tag, void* data, size_t length) {
  const mca_btl_active_message_callback_t& reg = mca_btl_base_active_message_trigger[tag];
  if (reg.cbfunc == nullptr) {
    opal_output(0, "btl/wv: dropped a message with tag %d, which has no receiver", tag);
    return;
  }
  mca_btl_base_segment_t segment;
  segment.seg_addr.pval = data;
  segment.seg_len = length;
  mca_btl_base_descriptor_t descriptor;
  std::memset(static_cast<void*>(&descriptor), 0, sizeof descriptor);
  descriptor.des_segments = &segment;
  descriptor.des_segment_count = 1;
  reg.cbfunc(&module->super, tag, &descriptor, reg.cbdata);
}

void on_btl_message(Module* module, std::span<const std::byte> header,
                    std::span<const std::byte> payload) {
  if (header.size() < kTagBytes) return;
  if (module->deliver_in_handler && module->rx_count.load(std::memory_order_acquire) == 0) {
    // Straight from the receive buffer, where the transport keeps header and payload
    // contiguous: no copy, no queue (unless an earlier message is queued: order first).
    const size_t length = header.size() - kTagBytes + payload.size();
    void* data = const_cast<std::byte*>(header.data() + kTagBytes);  // NOLINT: ob1 reads only
    if (payload.empty() || payload.data() == header.data() + header.size()) {
      deliver(module, static_cast<uint8_t>(header[0]), data, length);
      return;
    }
  }
  RxMessage message;
  message.tag = static_cast<uint8_t>(header[0]);
  {
    std::lock_guard lock(module->rx_mutex);
    if (!module->rx_spare.empty()) {
      message.bytes = std::move(module->rx_spare.back());
      module->rx_spare.pop_back();
    }
  }
  const size_t upper_header = header.size() - kTagBytes;
  message.bytes.resize(upper_header + payload.size());
  if (upper_header) std::memcpy(message.bytes.data(), header.data() + kTagBytes, upper_header);
  if (!payload.empty()) {
    std::memcpy(message.bytes.data() + upper_header, payload.data(), payload.size());
  }
  std::lock_guard lock(module->rx_mutex);
  module->rx_queue.push_back(std::move(message));
  module->rx_count.fetch_add(1, std::memory_order_release);
}

// Delivers queued messages in arrival order; one thread at a time (ob1 requires a peer's
// fragments to be handed over in order), others move on.
int deliver_messages(Module* module) {
  if (module->rx_count.load(std::memory_order_acquire) == 0) return 0;
  bool expected = false;
  if (!module->delivering.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    return 0;
  }
  int delivered = 0;
  for (;;) {
    RxMessage message;
    {
      std::lock_guard lock(module->rx_mutex);
      if (module->rx_queue.empty()) break;
      message = std::move(module->rx_queue.front());
      module->rx_queue.pop_front();
      module->rx_count.fetch_sub(1, std::memory_order_relaxed);
    }
    deliver(module, message.tag, message.bytes.data(), message.bytes.size());
    ++delivered;
    std::lock_guard lock(module->rx_mutex);
    if (module->rx_spare.size() < 64) module->rx_spare.push_back(std::move(message.bytes));
  }
  module->delivering.store(false, std::memory_order_release);
  return delivered;
}

// ---- Emulated atomics (devices without atomics) ----

void on_atomic_request(Module* module, transport::PeerId source,
                       std::span<const std::byte> header) {
  AtomicRequestWire request;
  if (header.size() != sizeof request) return;
  std::memcpy(&request, header.data(), sizeof request);
  AtomicReplyWire reply{};
  reply.cookie = request.cookie;
  reply.status = OPAL_SUCCESS;
  bool valid = false;
  {
    std::lock_guard lock(module->registrations_mutex);
    auto it = module->registrations.find(request.key);
    valid = it != module->registrations.end() && request.address >= it->second.begin &&
            request.address + 8 <= it->second.end && request.address % 8 == 0;
  }
  if (!valid) {
    reply.status = OPAL_ERR_BAD_PARAM;
  } else {
    auto* target = reinterpret_cast<uint64_t*>(request.address);
    if (request.compare_swap) {
      uint64_t expected = request.compare;
      __atomic_compare_exchange_n(target, &expected, request.operand, false, __ATOMIC_SEQ_CST,
                                  __ATOMIC_SEQ_CST);
      reply.value = expected;
    } else {
      reply.value = __atomic_fetch_add(target, request.operand, __ATOMIC_SEQ_CST);
    }
  }
  bool sent = false;
  wv::Status status = send_or_queue(module, source, kAmAtomicReply, bytes_of(&reply, sizeof reply),
                                    {}, nullptr, &sent);
  if (!status.is_ok()) log_error("atomic reply", status);
}

void on_atomic_reply(std::span<const std::byte> header) {
  AtomicReplyWire reply;
  if (header.size() != sizeof reply) return;
  std::memcpy(&reply, header.data(), sizeof reply);
  auto* op = reinterpret_cast<RdmaOp*>(reply.cookie);
  op->result = reply.value;
  op->emulated_state.store(reply.status == OPAL_SUCCESS ? 1 : 2, std::memory_order_release);
}

// ---- RDMA completion ----

// RDMA ops are made and finished once per put/get: their memory is reused.
constexpr size_t kSpareRdmaOps = 256;

RdmaOp* new_rdma_op(Module* module) {
  void* memory = nullptr;
  {
    std::lock_guard lock(module->rdma_mutex);
    if (!module->rdma_spare.empty()) {
      memory = module->rdma_spare.back();
      module->rdma_spare.pop_back();
    }
  }
  return memory != nullptr ? new (memory) RdmaOp : new RdmaOp;
}

void finish_rdma_op(Module* module, RdmaOp* op) {
  op->~RdmaOp();
  {
    std::lock_guard lock(module->rdma_mutex);
    if (module->rdma_spare.size() < kSpareRdmaOps) {
      module->rdma_spare.push_back(op);
      return;
    }
  }
  ::operator delete(op);
}

void add_rdma_op(Module* module, RdmaOp* op) {
  std::lock_guard lock(module->rdma_mutex);
  module->rdma_ops.push_back(op);
  module->rdma_count.fetch_add(1, std::memory_order_release);
}

int progress_rdma(Module* module) {
  if (module->rdma_count.load(std::memory_order_acquire) == 0) return 0;
  bool expected = false;
  if (!module->rdma_testing.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    return 0;
  }
  std::vector<RdmaOp*>& ops = module->rdma_tested;
  {
    std::lock_guard lock(module->rdma_mutex);
    ops.insert(ops.end(), module->rdma_ops.begin(), module->rdma_ops.end());
    module->rdma_ops.clear();
  }
  std::vector<std::pair<RdmaOp*, int>>& done = module->rdma_done;
  size_t kept = 0;
  for (RdmaOp* op : ops) {
    int status = OPAL_SUCCESS;
    bool finished = false;
    if (op->emulated) {
      const int state = op->emulated_state.load(std::memory_order_acquire);
      finished = state != 0;
      if (state == 2) status = OPAL_ERROR;
    } else {
      auto tested = module->worker->test(op->request);
      if (!tested.is_ok()) {
        finished = true;
        status = opal_code(tested.status());
        if (status == OPAL_SUCCESS) status = OPAL_ERROR;
        report_peer_failure(module, op->endpoint, tested.status());
      } else {
        finished = tested.value();
      }
    }
    if (finished) {
      done.emplace_back(op, status);
    } else {
      ops[kept++] = op;
    }
  }
  ops.resize(kept);
  module->rdma_count.fetch_sub(done.size(), std::memory_order_release);
  // The callbacks may start RDMA (added to rdma_ops) or progress (which finds rdma_testing set).
  for (auto& [op, status] : done) {
    if (op->fetch_into != nullptr && status == OPAL_SUCCESS) {
      std::memcpy(op->fetch_into, &op->result, sizeof op->result);
    }
    if (op->send_frag != nullptr) {
      complete_send(module, op->send_frag, status);
    } else if (op->cbfunc != nullptr) {
      op->cbfunc(&module->super, op->endpoint, op->local_address, op->local_handle, op->cbcontext,
                 op->cbdata, status);
    }
    finish_rdma_op(module, op);
  }
  const int finished = static_cast<int>(done.size());
  done.clear();
  module->rdma_testing.store(false, std::memory_order_release);
  return finished;
}

// ---- Component progress ----

int progress_module(Module* module) {
  int events = module->worker->progress();
  events += deliver_messages(module);
  events += progress_pending_sends(module);
  events += progress_rdma(module);
  return events;
}

int component_progress() {
  Module* module = g_module;
  if (module == nullptr) return 0;
  try {
    return progress_module(module);
  } catch (const std::exception& e) {
    opal_output(0, "btl/wv: progress: %s", e.what());
  } catch (...) {
    opal_output(0, "btl/wv: progress: unknown exception");
  }
  return 0;
}

// ---- Module functions ----

int module_add_procs(mca_btl_base_module_t* btl, size_t nprocs, opal_proc_t** procs,
                     mca_btl_base_endpoint_t** endpoints, opal_bitmap_t* reachable) try {
  Module* module = as_module(btl);
  const bool local_only = module->worker->provider_name() == "shm";
  size_t smallest_limit = module->worker->am_limit();
  for (size_t i = 0; i < nprocs; ++i) {
    if (endpoints[i] != nullptr) continue;  // added before (MPI_Comm_spawn/connect)
    opal_proc_t* proc = procs[i];
    // The shm provider reaches only processes on this node.
    if (local_only && proc != opal_proc_local_get() && !OPAL_PROC_ON_LOCAL_NODE(proc->proc_flags)) {
      continue;
    }
    void* data = nullptr;
    size_t size = 0;
    int rc = OPAL_SUCCESS;
    OPAL_MODEX_RECV(rc, &mca_btl_wv_component.btl_version, &proc->proc_name, &data, &size);
    if (rc != OPAL_SUCCESS || data == nullptr || size <= sizeof(uint64_t)) {
      // A peer without wv (e.g. it declined) is simply not reachable through this BTL.
      free(data);
      continue;
    }
    uint64_t peer_limit = 0;
    std::memcpy(&peer_limit, data, sizeof peer_limit);
    auto peer = module->worker->add_peer(
        bytes_of(static_cast<unsigned char*>(data) + sizeof peer_limit, size - sizeof peer_limit));
    free(data);
    if (!peer.is_ok()) {
      log_error("add_peer", peer.status());
      continue;
    }
    auto* endpoint = new mca_btl_base_endpoint_t;
    {
      std::lock_guard lock(module->endpoints_mutex);
      module->endpoints.emplace_back(endpoint);
    }
    endpoint->proc = proc;
    endpoint->peer = peer.value();
    endpoint->am_limit = std::min<size_t>(peer_limit, module->worker->am_limit());
    smallest_limit = std::min(smallest_limit, endpoint->am_limit);
    endpoints[i] = endpoint;
    if (reachable != nullptr) opal_bitmap_set_bit(reachable, static_cast<int>(i));
  }
  // Workers measure their thresholds and may choose different eager limits: a BTL fragment must
  // fit what every peer receives. ob1 reads these fields at each send.
  const size_t limit = smallest_limit - kTagBytes;
  if (btl->btl_eager_limit > limit) btl->btl_eager_limit = limit;
  if (btl->btl_max_send_size > limit) btl->btl_max_send_size = limit;
  if (btl->btl_rndv_eager_limit > btl->btl_eager_limit) {
    btl->btl_rndv_eager_limit = btl->btl_eager_limit;
  }
  return OPAL_SUCCESS;
} catch (...) {
  opal_output(0, "btl/wv: add_procs failed (exception)");
  return OPAL_ERROR;
}

int module_del_procs(mca_btl_base_module_t* /*btl*/, size_t /*nprocs*/, opal_proc_t** /*procs*/,
                     mca_btl_base_endpoint_t** /*endpoints*/) {
  // bml/r2 may hand over the same endpoint once per role (send and RDMA): endpoints are owned by
  // the module and freed at finalize; the Worker keeps its peers for its lifetime.
  return OPAL_SUCCESS;
}

int module_register(mca_btl_base_module_t* /*btl*/, mca_btl_base_tag_t tag,
                    mca_btl_base_module_recv_cb_fn_t cbfunc, void* cbdata) {
  mca_btl_base_active_message_trigger[tag].cbfunc = cbfunc;
  mca_btl_base_active_message_trigger[tag].cbdata = cbdata;
  return OPAL_SUCCESS;
}

int module_register_error(mca_btl_base_module_t* btl, mca_btl_base_module_error_cb_fn_t cbfunc) {
  as_module(btl)->error_cb = cbfunc;
  return OPAL_SUCCESS;
}

int module_finalize(mca_btl_base_module_t* btl) try {
  Module* module = as_module(btl);
  // Outstanding sends and RMA are given a bounded time to finish, then dropped.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((module->pending_count.load() != 0 || module->rdma_count.load() != 0) &&
         std::chrono::steady_clock::now() < deadline) {
    progress_module(module);
  }
  if (g_module == module) g_module = nullptr;
  module->worker.reset();
  for (Frag* frag : module->free_frags) {
    OBJ_DESTRUCT(&frag->base);
    frag->~Frag();
    std::free(frag);
  }
  for (RdmaOp* op : module->rdma_ops) delete op;
  for (RdmaOp* op : module->rdma_tested) delete op;
  for (void* memory : module->rdma_spare) ::operator delete(memory);
  delete module;
  return OPAL_SUCCESS;
} catch (...) {
  return OPAL_ERROR;
}

mca_btl_base_descriptor_t* module_alloc(mca_btl_base_module_t* btl,
                                        mca_btl_base_endpoint_t* endpoint, uint8_t order,
                                        size_t size, uint32_t flags) {
  Module* module = as_module(btl);
  if (size > module->frag_capacity) return nullptr;
  Frag* frag = frag_get(module, endpoint);
  if (frag == nullptr) return nullptr;
  frag->segments[0].seg_len = size;
  frag->base.des_flags = flags;
  frag->base.order = order;
  return &frag->base;
}

int module_free(mca_btl_base_module_t* btl, mca_btl_base_descriptor_t* descriptor) {
  frag_return(as_module(btl), reinterpret_cast<Frag*>(descriptor));
  return OPAL_SUCCESS;
}

mca_btl_base_descriptor_t* module_prepare_src(mca_btl_base_module_t* btl,
                                              mca_btl_base_endpoint_t* endpoint,
                                              opal_convertor_t* convertor, uint8_t order,
                                              size_t reserve, size_t* size, uint32_t flags) {
  Module* module = as_module(btl);
  if (reserve > module->frag_capacity) return nullptr;
  Frag* frag = frag_get(module, endpoint);
  if (frag == nullptr) return nullptr;
  size_t max_data =
      std::min(*size, btl->btl_max_send_size - std::min(reserve, btl->btl_max_send_size));
  // In place: a large contiguous payload stays where the caller has it (the transport sends it
  // from there, am_send_zcopy); the descriptor completes from progress once it has left.
  const bool zero_copy =
      kTagBytes + reserve <= kSendiHeaderBytes && goes_in_place(module, convertor, max_data);
  if (!zero_copy) max_data = std::min(max_data, module->frag_capacity - reserve);
  if (max_data > 0) {
    iovec iov;
    iov.iov_base = zero_copy ? nullptr : frag->data() + reserve;  // null: point, do not copy
    iov.iov_len = max_data;
    uint32_t iov_count = 1;
    if (opal_convertor_pack(convertor, &iov, &iov_count, &max_data) < 0) {
      frag_return(module, frag);
      return nullptr;
    }
    if (zero_copy) {
      frag->segments[1].seg_addr.pval = iov.iov_base;
      frag->segments[1].seg_len = max_data;
      frag->base.des_segment_count = 2;
    }
  }
  *size = max_data;
  frag->segments[0].seg_len = zero_copy ? reserve : reserve + max_data;
  frag->base.des_flags = flags;
  frag->base.order = order;
  return &frag->base;
}

int module_send(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint,
                mca_btl_base_descriptor_t* descriptor, mca_btl_base_tag_t tag) try {
  Module* module = as_module(btl);
  auto* frag = reinterpret_cast<Frag*>(descriptor);
  frag->endpoint = endpoint;
  frag->tag = tag;
  // The AM header: the tag, and in place also the upper layer's header (the first segment).
  std::array<std::byte, kSendiHeaderBytes> header;
  header[0] = std::byte{tag};
  size_t header_bytes = kTagBytes;
  if (in_place(frag)) {
    std::memcpy(header.data() + kTagBytes, frag->data(), frag->segments[0].seg_len);
    header_bytes += frag->segments[0].seg_len;
  }
  bool sent = false;
  wv::Status status =
      send_or_queue(module, endpoint->peer, kAmBtl, std::span(header.data(), header_bytes),
                    frag_payload(frag), frag, &sent);
  if (!status.is_ok()) {
    report_peer_failure(module, endpoint, status);
    return opal_code(status) == OPAL_ERR_OUT_OF_RESOURCE ? OPAL_ERROR : opal_code(status);
  }
  if (!sent) return OPAL_SUCCESS;  // queued or in place: completed from progress
  // am_send copied the data: the descriptor is done. Per the BTL contract, returning 1 means
  // "delivered, callback only if MCA_BTL_DES_SEND_ALWAYS_CALLBACK".
  const uint32_t flags = descriptor->des_flags;
  if ((flags & MCA_BTL_DES_SEND_ALWAYS_CALLBACK) && descriptor->des_cbfunc != nullptr) {
    descriptor->des_cbfunc(btl, endpoint, descriptor, OPAL_SUCCESS);
  }
  if (flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP) frag_return(module, frag);
  return 1;
} catch (...) {
  opal_output(0, "btl/wv: send failed (exception)");
  return OPAL_ERROR;
}

int module_sendi(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint,
                 opal_convertor_t* convertor, void* header, size_t header_size, size_t payload_size,
                 uint8_t /*order*/, uint32_t /*flags*/, mca_btl_base_tag_t tag,
                 mca_btl_base_descriptor_t** descriptor) try {
  Module* module = as_module(btl);
  if (descriptor != nullptr) *descriptor = nullptr;
  // Inline sends only when nothing is queued (order) and the message fits one fragment; a
  // payload large enough to go in place is left to prepare_src and send, which do not copy it.
  if (header_size + payload_size > btl->btl_eager_limit ||
      module->pending_count.load(std::memory_order_acquire) != 0 ||
      goes_in_place(module, convertor, payload_size)) {
    return OPAL_ERR_OUT_OF_RESOURCE;
  }
  // The AM header is the tag and the upper layer's header; the payload goes straight from the
  // user's buffer when it is contiguous, else it is packed here. ob1's headers fit the stack
  // (a thread_local buffer in a dlopen'ed component costs a __tls_get_addr call per message).
  std::array<std::byte, kSendiHeaderBytes> staging_on_stack;
  std::vector<std::byte> staging_on_heap;
  std::span<std::byte> staging(staging_on_stack.data(), kTagBytes + header_size);
  if (staging.size() > staging_on_stack.size()) {
    staging_on_heap.resize(staging.size());
    staging = staging_on_heap;
  }
  staging[0] = std::byte{tag};
  if (header_size) std::memcpy(staging.data() + kTagBytes, header, header_size);
  std::span<const std::byte> payload;
  thread_local std::vector<std::byte> packed;
  if (payload_size > 0) {
    if (!opal_convertor_need_buffers(convertor)) {
      void* data = nullptr;
      opal_convertor_get_current_pointer(convertor, &data);
      payload = bytes_of(data, payload_size);
    } else {
      packed.resize(payload_size);
      iovec iov;
      iov.iov_base = packed.data();
      iov.iov_len = payload_size;
      uint32_t iov_count = 1;
      size_t max_data = payload_size;
      if (opal_convertor_pack(convertor, &iov, &iov_count, &max_data) < 0) return OPAL_ERROR;
      payload = bytes_of(packed.data(), max_data);
    }
  }
  wv::Status status = module->worker->am_send(endpoint->peer, kAmBtl, staging, payload);
  if (status.is_ok()) return OPAL_SUCCESS;
  if (status.code() == wv::Errc::kQueueFull) return OPAL_ERR_OUT_OF_RESOURCE;
  report_peer_failure(module, endpoint, status);
  return opal_code(status);
} catch (...) {
  opal_output(0, "btl/wv: sendi failed (exception)");
  return OPAL_ERROR;
}

transport::RemoteMemory remote_of(uint64_t address, const mca_btl_base_registration_handle_t* h) {
  return transport::RemoteMemory{address, h->key};
}

// osc/rdma on a single node keeps its window state in a shared-memory segment that every process
// maps, and reaches it with CPU atomics; a few operations still come through the BTL, addressed
// in this process's mapping with no registration (a null or zeroed handle). They can only mean
// memory this process reaches itself, so they are done here by the CPU, atomically with respect
// to the other processes' CPU atomics on the same segment.
bool is_local_memory(const mca_btl_base_registration_handle_t* h) {
  return h == nullptr || (h->key == 0 && h->address == 0);
}

void complete_later(Module* module, RdmaOp* op, bool ok) {
  op->emulated = true;
  op->emulated_state.store(ok ? 1 : 2, std::memory_order_release);
  add_rdma_op(module, op);
}

int start_rdma(Module* module, mca_btl_base_endpoint_t* endpoint, bool is_put, void* local,
               uint64_t remote_address, mca_btl_base_registration_handle_t* local_handle,
               mca_btl_base_registration_handle_t* remote_handle, size_t size,
               mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext, void* cbdata) {
  if (g_verbose > 2) {
    opal_output(0, "btl/wv: %s peer %u local %p remote 0x%llx key %u size %zu%s",
                is_put ? "put" : "get", endpoint->peer, local,
                static_cast<unsigned long long>(remote_address),
                remote_handle != nullptr ? remote_handle->key : 0u, size,
                is_local_memory(remote_handle) ? " (by the CPU)" : "");
  }
  if (is_local_memory(remote_handle)) {
    RdmaOp* op = new_rdma_op(module);
    op->endpoint = endpoint;
    op->local_address = local;
    op->local_handle = local_handle;
    op->cbfunc = cbfunc;
    op->cbcontext = cbcontext;
    op->cbdata = cbdata;
    auto* remote = reinterpret_cast<void*>(remote_address);
    if (size) std::memmove(is_put ? remote : local, is_put ? local : remote, size);
    complete_later(module, op, true);
    return OPAL_SUCCESS;
  }
  if (is_put && size > 0) {
    endpoint->last_put_address.store(remote_address, std::memory_order_relaxed);
    endpoint->last_put_key.store(remote_handle->key, std::memory_order_relaxed);
    endpoint->put_since_flush.store(true, std::memory_order_release);
  }
  auto request = is_put ? module->worker->put(endpoint->peer, local, size,
                                              remote_of(remote_address, remote_handle))
                        : module->worker->get(endpoint->peer, local, size,
                                              remote_of(remote_address, remote_handle));
  if (!request.is_ok()) {
    const int code = opal_code(request.status());
    if (code != OPAL_ERR_OUT_OF_RESOURCE) log_error(is_put ? "put" : "get", request.status());
    return code;
  }
  RdmaOp* op = new_rdma_op(module);
  op->request = request.value();
  op->endpoint = endpoint;
  op->local_address = local;
  op->local_handle = local_handle;
  op->cbfunc = cbfunc;
  op->cbcontext = cbcontext;
  op->cbdata = cbdata;
  add_rdma_op(module, op);
  return OPAL_SUCCESS;
}

int module_put(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint, void* local_address,
               uint64_t remote_address, mca_btl_base_registration_handle_t* local_handle,
               mca_btl_base_registration_handle_t* remote_handle, size_t size, int /*flags*/,
               int /*order*/, mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext,
               void* cbdata) try {
  return start_rdma(as_module(btl), endpoint, true, local_address, remote_address, local_handle,
                    remote_handle, size, cbfunc, cbcontext, cbdata);
} catch (...) {
  return OPAL_ERROR;
}

int module_get(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint, void* local_address,
               uint64_t remote_address, mca_btl_base_registration_handle_t* local_handle,
               mca_btl_base_registration_handle_t* remote_handle, size_t size, int /*flags*/,
               int /*order*/, mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext,
               void* cbdata) try {
  return start_rdma(as_module(btl), endpoint, false, local_address, remote_address, local_handle,
                    remote_handle, size, cbfunc, cbcontext, cbdata);
} catch (...) {
  return OPAL_ERROR;
}

// Fetch-and-add and compare-and-swap, by the device or emulated through active messages.
int start_atomic(Module* module, mca_btl_base_endpoint_t* endpoint, void* local_address,
                 uint64_t remote_address, mca_btl_base_registration_handle_t* local_handle,
                 mca_btl_base_registration_handle_t* remote_handle, bool compare_swap,
                 uint64_t compare, uint64_t operand, int flags,
                 mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext, void* cbdata) {
  if (flags & (MCA_BTL_ATOMIC_FLAG_32BIT | MCA_BTL_ATOMIC_FLAG_FLOAT)) {
    return OPAL_ERR_NOT_SUPPORTED;
  }
  auto op = std::make_unique<RdmaOp>();
  op->endpoint = endpoint;
  op->fetch_into = local_address;
  op->local_address = local_address;
  op->local_handle = local_handle;
  op->cbfunc = cbfunc;
  op->cbcontext = cbcontext;
  op->cbdata = cbdata;
  if (is_local_memory(remote_handle)) {
    if (remote_address % 8 != 0) return OPAL_ERR_BAD_PARAM;
    auto* target = reinterpret_cast<uint64_t*>(remote_address);
    if (compare_swap) {
      uint64_t expected = compare;
      __atomic_compare_exchange_n(target, &expected, operand, false, __ATOMIC_SEQ_CST,
                                  __ATOMIC_SEQ_CST);
      op->result = expected;
    } else {
      op->result = __atomic_fetch_add(target, operand, __ATOMIC_SEQ_CST);
    }
    complete_later(module, op.release(), true);
    return OPAL_SUCCESS;
  }
  const transport::RemoteMemory remote = remote_of(remote_address, remote_handle);
  if (g_verbose > 2) {
    opal_output(0, "btl/wv: atomic %s peer %u remote 0x%llx key %u",
                compare_swap ? "cswap" : "fadd", endpoint->peer,
                static_cast<unsigned long long>(remote_address), remote.key);
  }
  if (!module->emulate_atomics) {
    auto request = compare_swap ? module->worker->atomic_compare_swap(endpoint->peer, remote,
                                                                      compare, operand, &op->result)
                                : module->worker->atomic_fetch_add(endpoint->peer, remote, operand,
                                                                   &op->result);
    if (request.is_ok()) {
      op->request = request.value();
      add_rdma_op(module, op.release());
      return OPAL_SUCCESS;
    }
    if (request.status().code() != wv::Errc::kNotSupported) {
      const int code = opal_code(request.status());
      if (code != OPAL_ERR_OUT_OF_RESOURCE) log_error("atomic", request.status());
      return code;
    }
    // The device has no atomics: from now on every atomic goes through the target's CPU.
    module->emulate_atomics = true;
  }
  AtomicRequestWire wire{};
  wire.cookie = reinterpret_cast<uint64_t>(op.get());
  wire.address = remote.address;
  wire.key = remote.key;
  wire.operand = operand;
  wire.compare = compare;
  wire.compare_swap = compare_swap ? 1 : 0;
  op->emulated = true;
  RdmaOp* raw = op.release();
  add_rdma_op(module, raw);
  bool sent = false;
  wv::Status status = send_or_queue(module, endpoint->peer, kAmAtomicRequest,
                                    bytes_of(&wire, sizeof wire), {}, nullptr, &sent);
  if (!status.is_ok()) {
    log_error("emulated atomic", status);
    raw->emulated_state.store(2, std::memory_order_release);  // completes with an error
  }
  return OPAL_SUCCESS;
}

int module_atomic_op(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint,
                     uint64_t remote_address, mca_btl_base_registration_handle_t* remote_handle,
                     mca_btl_base_atomic_op_t op, uint64_t operand, int flags, int /*order*/,
                     mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext, void* cbdata) try {
  if (op != MCA_BTL_ATOMIC_ADD) return OPAL_ERR_NOT_SUPPORTED;
  return start_atomic(as_module(btl), endpoint, nullptr, remote_address, nullptr, remote_handle,
                      false, 0, operand, flags, cbfunc, cbcontext, cbdata);
} catch (...) {
  return OPAL_ERROR;
}

int module_atomic_fop(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint,
                      void* local_address, uint64_t remote_address,
                      mca_btl_base_registration_handle_t* local_handle,
                      mca_btl_base_registration_handle_t* remote_handle,
                      mca_btl_base_atomic_op_t op, uint64_t operand, int flags, int /*order*/,
                      mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext, void* cbdata) try {
  if (op != MCA_BTL_ATOMIC_ADD) return OPAL_ERR_NOT_SUPPORTED;
  return start_atomic(as_module(btl), endpoint, local_address, remote_address, local_handle,
                      remote_handle, false, 0, operand, flags, cbfunc, cbcontext, cbdata);
} catch (...) {
  return OPAL_ERROR;
}

int module_atomic_cswap(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint,
                        void* local_address, uint64_t remote_address,
                        mca_btl_base_registration_handle_t* local_handle,
                        mca_btl_base_registration_handle_t* remote_handle, uint64_t compare,
                        uint64_t value, int flags, int /*order*/,
                        mca_btl_base_rdma_completion_fn_t cbfunc, void* cbcontext,
                        void* cbdata) try {
  return start_atomic(as_module(btl), endpoint, local_address, remote_address, local_handle,
                      remote_handle, true, compare, value, flags, cbfunc, cbcontext, cbdata);
} catch (...) {
  return OPAL_ERROR;
}

mca_btl_base_registration_handle_t* module_register_mem(mca_btl_base_module_t* btl,
                                                        mca_btl_base_endpoint_t* /*endpoint*/,
                                                        void* base, size_t size,
                                                        uint32_t /*flags*/) try {
  Module* module = as_module(btl);
  auto memory = module->worker->register_memory_cached(base, size);
  if (!memory.is_ok()) {
    log_error("register_mem", memory.status());
    return nullptr;
  }
  auto* registration = new Registration{};
  registration->memory = memory.value().release();
  const transport::RemoteMemory remote = registration->memory->remote();
  registration->handle.address = remote.address;
  registration->handle.key = remote.key;
  {
    std::lock_guard lock(module->registrations_mutex);
    const uint64_t begin = reinterpret_cast<uint64_t>(base);
    auto [it, added] =
        module->registrations.try_emplace(remote.key, Module::KeySpan{begin, begin + size, 0});
    it->second.begin = std::min(it->second.begin, begin);
    it->second.end = std::max(it->second.end, begin + size);
    ++it->second.users;
  }
  if (g_verbose > 2) {
    opal_output(0, "btl/wv: register %p size %zu -> 0x%llx key %u", base, size,
                static_cast<unsigned long long>(remote.address), remote.key);
  }
  return &registration->handle;
} catch (...) {
  opal_output(0, "btl/wv: register_mem failed (exception)");
  return nullptr;
}

int module_deregister_mem(mca_btl_base_module_t* btl,
                          mca_btl_base_registration_handle_t* handle) try {
  Module* module = as_module(btl);
  auto* registration = reinterpret_cast<Registration*>(handle);
  {
    std::lock_guard lock(module->registrations_mutex);
    auto it = module->registrations.find(handle->key);
    if (it != module->registrations.end() && --it->second.users == 0) {
      module->registrations.erase(it);
    }
  }
  delete registration->memory;
  delete registration;
  return OPAL_SUCCESS;
} catch (...) {
  return OPAL_ERROR;
}

int module_flush(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* endpoint) try {
  Module* module = as_module(btl);
  const transport::PeerId peer = (endpoint == nullptr || endpoint == MCA_BTL_ENDPOINT_ANY)
                                     ? transport::kAnyPeer
                                     : endpoint->peer;
  // Puts are remote-complete only once a read behind them on the same connection returned.
  std::vector<mca_btl_base_endpoint_t*> targets;
  if (peer == transport::kAnyPeer) {
    std::lock_guard lock(module->endpoints_mutex);
    for (auto& e : module->endpoints) targets.push_back(e.get());
  } else {
    targets.push_back(endpoint);
  }
  thread_local unsigned char scratch[8];
  for (mca_btl_base_endpoint_t* target : targets) {
    if (!target->put_since_flush.exchange(false, std::memory_order_acq_rel)) continue;
    auto read = module->worker->get(
        target->peer, scratch, 1,
        transport::RemoteMemory{target->last_put_address.load(std::memory_order_relaxed),
                                target->last_put_key.load(std::memory_order_relaxed)});
    if (!read.is_ok()) {
      log_error("flush read", read.status());
      return opal_code(read.status());
    }
    wv::Status waited = module->worker->wait(read.value(), nullptr, kFlushBound);
    if (!waited.is_ok()) {
      log_error("flush read", waited);
      return opal_code(waited);
    }
  }
  wv::Status status = module->worker->flush(peer, kFlushBound);
  if (!status.is_ok()) {
    log_error("flush", status);
    return opal_code(status);
  }
  // Emulated atomics are not RMA to the engine: wait for their replies too.
  const auto deadline = std::chrono::steady_clock::now() + kFlushBound;
  while (module->emulate_atomics && module->rdma_count.load() != 0) {
    if (std::chrono::steady_clock::now() > deadline) return OPAL_ERR_TIMEOUT;
    progress_module(module);
  }
  return OPAL_SUCCESS;
} catch (...) {
  return OPAL_ERROR;
}

void module_dump(mca_btl_base_module_t* btl, mca_btl_base_endpoint_t* /*endpoint*/,
                 int /*verbose*/) {
  Module* module = as_module(btl);
  const transport::WorkerCounters counters = module->worker->counters();
  opal_output(0, "btl/wv: provider %s, sent %llu, received %llu, connections %llu",
              std::string(module->worker->provider_name()).c_str(),
              static_cast<unsigned long long>(counters.messages_sent),
              static_cast<unsigned long long>(counters.messages_received),
              static_cast<unsigned long long>(counters.connections));
}

// ---- MCA parameters ----

mca_base_var_info_lvl_t info_level(wv::config::Level level) {
  switch (level) {
    case wv::config::Level::kUser:
      return OPAL_INFO_LVL_2;
    case wv::config::Level::kTuner:
      return OPAL_INFO_LVL_5;
    case wv::config::Level::kDeveloper:
      return OPAL_INFO_LVL_8;
  }
  return OPAL_INFO_LVL_9;
}

// Descriptions live as long as the variables (OPAL keeps a copy, but be safe across releases).
std::vector<std::string>& description_storage() {
  static std::vector<std::string> storage;
  return storage;
}

std::string describe(const wv::config::Definition& definition) {
  std::string text(definition.description);
  text += " [";
  text += wv::config::to_string(definition.type);
  if (!definition.choices.empty()) {
    text += ": ";
    for (size_t i = 0; i < definition.choices.size(); ++i) {
      if (i) text += "|";
      text += definition.choices[i];
    }
  }
  text += "; same as the environment variable ";
  text += wv::config::environment_variable(definition.name);
  text += ", which applies when this is not set]";
  return text;
}

int register_wv_parameters() {
  const auto definitions = wv::config::definitions();
  g_param_storage.assign(definitions.size(), nullptr);
  g_param_index.assign(definitions.size(), -1);
  description_storage().clear();
  description_storage().reserve(definitions.size());
  for (size_t i = 0; i < definitions.size(); ++i) {
    const wv::config::Definition& definition = definitions[i];
    const std::string name(definition.name);
    description_storage().push_back(describe(definition));
    // The storage starts at the default; OPAL replaces it with its own copy of the value.
    static std::deque<std::string> defaults;
    defaults.emplace_back(definition.default_value);
    g_param_storage[i] = defaults.back().data();
    g_param_index[i] = mca_base_component_var_register(
        &mca_btl_wv_component.btl_version, name.c_str(), description_storage().back().c_str(),
        MCA_BASE_VAR_TYPE_STRING, nullptr, 0, mca_base_var_flag_t{}, info_level(definition.level),
        MCA_BASE_VAR_SCOPE_READONLY, &g_param_storage[i]);
  }
  return OPAL_SUCCESS;
}

// The wv settings the user gave as MCA parameters (btl_wv_<name>), for WorkerOptions; the rest
// stays with wv's own configuration (WV_* environment, config file, defaults).
bool explicit_settings(std::vector<std::pair<std::string, std::string>>* settings) {
  const auto definitions = wv::config::definitions();
  for (size_t i = 0; i < definitions.size() && i < g_param_index.size(); ++i) {
    if (g_param_index[i] < 0) continue;
    mca_base_var_source_t source = MCA_BASE_VAR_SOURCE_DEFAULT;
    if (mca_base_var_get_value(g_param_index[i], nullptr, &source, nullptr) != OPAL_SUCCESS) {
      continue;
    }
    if (source == MCA_BASE_VAR_SOURCE_DEFAULT) continue;
    const char* value = g_param_storage[i] != nullptr ? g_param_storage[i] : "";
    wv::Status check = wv::config::check_value(definitions[i], value);
    if (!check.is_ok()) {
      opal_output(0, "btl/wv: btl_wv_%s = \"%s\": %s", std::string(definitions[i].name).c_str(),
                  value, check.message().c_str());
      return false;
    }
    settings->emplace_back(std::string(definitions[i].name), value);
  }
  return true;
}

bool user_set(const char* name) {
  const int index = mca_base_var_find("opal", "btl", "wv", name);
  if (index < 0) return false;
  mca_base_var_source_t source = MCA_BASE_VAR_SOURCE_DEFAULT;
  if (mca_base_var_get_value(index, nullptr, &source, nullptr) != OPAL_SUCCESS) return false;
  return source != MCA_BASE_VAR_SOURCE_DEFAULT;
}

// The module template: what mca_btl_base_param_register sees as defaults. The size limits are 0
// here and derived in btl_init from the Worker's thresholds unless the user set them.
mca_btl_base_module_t g_template;

void init_template() {
  std::memset(static_cast<void*>(&g_template), 0, sizeof g_template);
  g_template.btl_component = &mca_btl_wv_component;
  g_template.btl_exclusivity = MCA_BTL_EXCLUSIVITY_DEFAULT;
  g_template.btl_latency = 1;
  g_template.btl_bandwidth = 10000;
  g_template.btl_flags = MCA_BTL_FLAGS_SEND | MCA_BTL_FLAGS_PUT | MCA_BTL_FLAGS_GET |
                         MCA_BTL_FLAGS_ATOMIC_OPS | MCA_BTL_FLAGS_ATOMIC_FOPS |
                         MCA_BTL_FLAGS_RDMA_FLUSH;
  g_template.btl_atomic_flags = MCA_BTL_ATOMIC_SUPPORTS_ADD | MCA_BTL_ATOMIC_SUPPORTS_CSWAP;
  g_template.btl_registration_handle_size = sizeof(mca_btl_base_registration_handle_t);
  g_template.btl_get_limit = SIZE_MAX;
  g_template.btl_put_limit = SIZE_MAX;
  g_template.btl_get_alignment = 0;
  g_template.btl_put_alignment = 0;
  // Local buffers need no registration: the engine's registration cache handles them.
  g_template.btl_get_local_registration_threshold = SIZE_MAX;
  g_template.btl_put_local_registration_threshold = SIZE_MAX;
  g_template.btl_add_procs = module_add_procs;
  g_template.btl_del_procs = module_del_procs;
  g_template.btl_register = module_register;
  g_template.btl_finalize = module_finalize;
  g_template.btl_alloc = module_alloc;
  g_template.btl_free = module_free;
  g_template.btl_prepare_src = module_prepare_src;
  g_template.btl_send = module_send;
  g_template.btl_sendi = module_sendi;
  g_template.btl_put = module_put;
  g_template.btl_get = module_get;
  g_template.btl_dump = module_dump;
  g_template.btl_atomic_op = module_atomic_op;
  g_template.btl_atomic_fop = module_atomic_fop;
  g_template.btl_atomic_cswap = module_atomic_cswap;
  g_template.btl_register_mem = module_register_mem;
  g_template.btl_deregister_mem = module_deregister_mem;
  g_template.btl_register_error = module_register_error;
  g_template.btl_flush = module_flush;
}

// ---- Component functions ----

int component_open() {
  // Open MPI checks only the MCA interface version; a plugin built against another release
  // would load and misread every structure whose layout changed. Refuse instead.
  if (std::strcmp(opal_version_string, OPAL_VERSION) != 0) {
    opal_output(0,
                "btl/wv: this plugin was built against Open MPI %s but the running Open MPI is "
                "%s; the btl wv component refuses to load (rebuild wv against this Open MPI)",
                OPAL_VERSION, opal_version_string);
    return OPAL_ERR_NOT_AVAILABLE;
  }
  return OPAL_SUCCESS;
}

int component_close() {
  return OPAL_SUCCESS;
}

int component_register() try {
  init_template();
  g_verbose = 0;
  (void)mca_base_component_var_register(
      &mca_btl_wv_component.btl_version, "verbose",
      "Verbosity of btl/wv's own messages (0: errors only, 1: what was chosen at start-up)",
      MCA_BASE_VAR_TYPE_INT, nullptr, 0, mca_base_var_flag_t{}, OPAL_INFO_LVL_5,
      MCA_BASE_VAR_SCOPE_LOCAL, &g_verbose);
  register_wv_parameters();
  return mca_btl_base_param_register(&mca_btl_wv_component.btl_version, &g_template);
} catch (...) {
  return OPAL_ERROR;
}

// Sizes ob1 and osc/rdma use, from the engine's choices: one BTL fragment is one active message
// (the tag byte less), and the RDMA pipeline moves the engine's rendezvous fragment size.
void derive_limits(Module* module) {
  mca_btl_base_module_t& btl = module->super;
  const transport::ProtocolThresholds& thresholds = module->worker->thresholds();
  const size_t fragment = module->worker->am_limit() - kTagBytes;
  const size_t eager = user_set("eager_limit") ? std::min(btl.btl_eager_limit, fragment) : fragment;
  btl.btl_eager_limit = eager;
  btl.btl_max_send_size =
      user_set("max_send_size") ? std::min(btl.btl_max_send_size, fragment) : fragment;
  if (!user_set("rndv_eager_limit") || btl.btl_rndv_eager_limit > eager) {
    btl.btl_rndv_eager_limit = eager;
  }
  if (!user_set("rdma_pipeline_frag_size")) {
    btl.btl_rdma_pipeline_frag_size = std::max<size_t>(thresholds.fragment_size, fragment);
  }
  if (!user_set("rdma_pipeline_send_length")) btl.btl_rdma_pipeline_send_length = fragment;
  if (!user_set("min_rdma_pipeline_size")) btl.btl_min_rdma_pipeline_size = 0;
  module->zero_copy_min = thresholds.zero_copy_min;
  if (module->zero_copy_min != 0 && !user_set("flags")) btl.btl_flags |= MCA_BTL_FLAGS_SEND_INPLACE;
  mca_btl_base_param_verify(&btl);
  module->frag_capacity = fragment;
}

mca_btl_base_module_t** component_init(int* num_btls, bool /*enable_progress_threads*/,
                                       bool enable_mpi_threads) try {
  *num_btls = 0;
  transport::WorkerOptions options;
  if (!explicit_settings(&options.settings)) return nullptr;
  auto worker = transport::Worker::create(options);
  if (!worker.is_ok()) {
    opal_output(0, "btl/wv: no wv worker, the wv BTL is not used: %s",
                worker.status().to_string().c_str());
    return nullptr;
  }
  auto module = std::make_unique<Module>();
  module->super = g_template;
  module->worker = std::move(worker).value();
  module->deliver_in_handler = !enable_mpi_threads;
  derive_limits(module.get());
  Module* raw = module.get();
  wv::Status status = raw->worker->set_am_handler(
      kAmBtl, [raw](transport::PeerId, std::span<const std::byte> header,
                    std::span<const std::byte> payload) { on_btl_message(raw, header, payload); });
  if (status.is_ok()) {
    status = raw->worker->set_am_handler(
        kAmAtomicRequest,
        [raw](transport::PeerId source, std::span<const std::byte> header,
              std::span<const std::byte>) { on_atomic_request(raw, source, header); });
  }
  if (status.is_ok()) {
    status = raw->worker->set_am_handler(
        kAmAtomicReply, [](transport::PeerId, std::span<const std::byte> header,
                           std::span<const std::byte>) { on_atomic_reply(header); });
  }
  if (!status.is_ok()) {
    log_error("set_am_handler", status);
    return nullptr;
  }
  // The modex entry: this worker's receive limit, then its address.
  const std::vector<std::byte> address = raw->worker->address();
  std::vector<std::byte> modex(sizeof(uint64_t) + address.size());
  const uint64_t limit = raw->worker->am_limit();
  std::memcpy(modex.data(), &limit, sizeof limit);
  std::memcpy(modex.data() + sizeof limit, address.data(), address.size());
  int rc = OPAL_SUCCESS;
  OPAL_MODEX_SEND(rc, OPAL_PMIX_GLOBAL, &mca_btl_wv_component.btl_version, modex.data(),
                  modex.size());
  if (rc != OPAL_SUCCESS) {
    opal_output(0, "btl/wv: publishing the address through the modex failed (%d)", rc);
    return nullptr;
  }
  auto** modules =
      static_cast<mca_btl_base_module_t**>(std::malloc(sizeof(mca_btl_base_module_t*)));
  if (modules == nullptr) return nullptr;
  if (g_verbose > 0) {
    const auto& t = raw->worker->thresholds();
    opal_output(0,
                "btl/wv: provider %s, am_limit %zu, eager_limit %zu, max_send_size %zu, "
                "inline %zu, rendezvous %s, fragment %zu",
                std::string(raw->worker->provider_name()).c_str(), raw->worker->am_limit(),
                raw->super.btl_eager_limit, raw->super.btl_max_send_size, t.inline_limit,
                std::string(transport::to_string(t.scheme)).c_str(), t.fragment_size);
  }
  modules[0] = &module.release()->super;
  g_module = raw;
  *num_btls = 1;
  return modules;
} catch (const std::exception& e) {
  opal_output(0, "btl/wv: init failed: %s", e.what());
  return nullptr;
} catch (...) {
  opal_output(0, "btl/wv: init failed (unknown exception)");
  return nullptr;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) mca_btl_base_component_3_0_0_t mca_btl_wv_component = {
    .btl_version =
        {
            MCA_BTL_DEFAULT_VERSION("wv"),
            .mca_open_component = component_open,
            .mca_close_component = component_close,
            .mca_query_component = nullptr,
            .mca_register_component_params = component_register,
            .mca_component_flags = 0,
            .reserved = {},
        },
    .btl_data =
        {
            .param_field = MCA_BASE_METADATA_PARAM_CHECKPOINT,
            .reserved = {},
        },
    .btl_init = component_init,
    .btl_progress = component_progress,
};

}  // extern "C"
