// One side of a wv_perf verbs connection: the verbs resources, the control protocol that lets
// the client drive the server over the same connection, and the measured loops of both roles.
//
// Memory: one registered mapping per side, in page-aligned areas:
//   receive area  every posted receive points here (all receives are alike, so a control
//                 message and a data message can consume any of them in order)
//   rdma area     the peer writes into and reads from it; advertised in the private data
//   source area   what this side sends and writes, and where its reads land
//   control slot  outgoing control messages
// The client drives: it sends a control message naming the next run, the server prepares and
// answers, both run their part, and a sync round trip puts the server back to listening for
// control messages. Every wait is a busy poll bounded by a StallGuard.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "process.h"
#include "report.h"
#include "tcp_baseline.h"
#include "wv/result.h"
#include "wv/verbs.h"

namespace wv::perf::verbs_bench {

enum class Op : uint32_t {
  kSendLat,
  kWriteLat,
  kMappedLat,
  kReadLat,
  kSendBw,
  kWriteBw,
  kReadBw,
  kTcpLat,
  kTcpBw,
};

struct OpInfo {
  Op op;
  std::string_view name;
  Metric metric;
  uint64_t min_size;  // 1 where a 0-byte message makes no sense (write_lat polls a byte)
  int divisor;        // 2 for ping-pongs (half round trip), 1 otherwise
};

// Every operation, in the order a run measures them.
std::span<const OpInfo> all_ops();
const OpInfo& op_info(Op op);

struct SessionOptions {
  std::string device;      // "" opens the `device` parameter's device, or the first one
  uint64_t area_size = 1;  // bytes of each data area: the largest message (client side)
  uint32_t window = 64;    // outstanding operations in bandwidth runs
  std::chrono::milliseconds timeout{60000};
  // Connect the QPs from addresses exchanged over a TCP connection (ConnectQueuePair::
  // connect_out_of_band, as perftest does without -R) instead of through the provider's endpoint.
  bool out_of_band = false;
  // The buffers come from ProtectionDomain::allocate_memory (which the shm provider's peers
  // read and write themselves) instead of the benchmark's own memory registered.
  bool allocated_memory = false;
};

// What the server tells the client about itself, for the report's header.
struct PeerDescription {
  ProcessInfo process;
  std::string provider;
  std::string device;
};

class Session;

// The server's listening endpoint.
class Listener {
 public:
  // Out of band, the listener is a TCP socket on `address` that carries the QP addresses.
  static Result<Listener> listen(std::shared_ptr<verbs::Provider> provider,
                                 const verbs::SocketAddress& address, bool out_of_band);
  verbs::SocketAddress address() const;
  // Waits for one client; the data areas take the client's size from its memory advert.
  Result<std::unique_ptr<Session>> accept(const SessionOptions& options);

 private:
  Listener(std::shared_ptr<verbs::Provider> provider,
           std::shared_ptr<verbs::ConnectEndpoint> endpoint)
      : provider_(std::move(provider)), endpoint_(std::move(endpoint)) {}
  Listener(std::shared_ptr<verbs::Provider> provider, TcpListener tcp,
           const verbs::SocketAddress& address)
      : provider_(std::move(provider)), tcp_(std::move(tcp)), tcp_address_(address) {}
  Result<std::unique_ptr<Session>> accept_out_of_band(const SessionOptions& options);

  std::shared_ptr<verbs::Provider> provider_;
  std::shared_ptr<verbs::ConnectEndpoint> endpoint_;
  std::optional<TcpListener> tcp_;
  verbs::SocketAddress tcp_address_;
};

class Session {
 public:
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  static Result<std::unique_ptr<Session>> connect(const std::shared_ptr<verbs::Provider>& provider,
                                                  const verbs::SocketAddress& server,
                                                  const SessionOptions& options);

  std::string_view provider_name() const { return provider_->name(); }
  const verbs::DeviceAttributes& device_attributes() const { return device_->attributes(); }
  uint32_t max_inline() const { return max_inline_; }
  uint32_t window() const { return window_; }
  uint32_t read_window() const { return read_window_; }

  // --- client side: each call drives the server through one run ---
  Result<PeerDescription> hello();
  // One timed round trip (or read) per element of `samples_ns`, after `warmup` untimed ones.
  Status latency(Op op, uint64_t size, uint64_t warmup, std::span<int64_t> samples_ns);
  // `count` operations with a window; returns seconds from the first post until the data is
  // known to be at the target.
  Result<double> bandwidth(Op op, uint64_t size, uint64_t count);
  // Opens the plain TCP connection of the floor measurements, to the same server process.
  Status tcp_connect();
  // Ends the server's loop and disconnects.
  Status quit();

  // --- server side: answers the client until it quits ---
  Status serve(const PeerDescription& self);

 private:
  friend class Listener;
  struct Control;

  Session(std::shared_ptr<verbs::Provider> provider, const SessionOptions& options);
  Status create_resources(uint64_t area_size);
  std::vector<std::byte> advert() const;
  Status take_peer_advert(std::span<const std::byte> private_data);
  Status connect_through_endpoint(const verbs::SocketAddress& server);
  void settle_read_window();
  Status connect_out_of_band(const verbs::SocketAddress& server);
  // Out of band: this side's advert and QP address, and the peer's, over out_of_band_.
  Status send_out_of_band_hello();
  Result<verbs::OutOfBandAddress> receive_out_of_band_hello();

  verbs::SendFlags send_flags(uint64_t size) const;
  Status post(Op op, uint64_t wr_id, std::span<const verbs::Sge> sges);
  Status poll_sends();
  Status wait_sends(StallGuard& guard);
  Status wait_receive(StallGuard& guard, uint32_t* length);
  Status wait_byte(const std::byte* at, uint8_t value, StallGuard& guard);
  // mapped_lat: the peer's data area mapped (ConnectQueuePair::map_remote) on first use, and
  // a message of `size` bytes stored into it, its last byte (the one the peer polls) last.
  Status map_peer();
  void store_mapped(uint64_t size, uint8_t value);

  Status send_control(const Control& control);
  Status receive_control(Control& control);
  Status expect(uint32_t command);
  Status start_run(Op op, uint64_t size, uint64_t count);
  Status sync();

  Status serve_run(const Control& request);
  Status serve_ping_pong(Op op, uint64_t size, uint64_t count);
  Status serve_receives(uint64_t count);

  std::shared_ptr<verbs::Provider> provider_;
  SessionOptions options_;
  std::shared_ptr<verbs::Device> device_;
  std::shared_ptr<verbs::ProtectionDomain> pd_;
  std::shared_ptr<verbs::CompletionQueue> send_cq_;
  std::shared_ptr<verbs::CompletionQueue> receive_cq_;
  std::shared_ptr<verbs::ConnectQueuePair> qp_;
  std::shared_ptr<verbs::ConnectEndpoint> endpoint_;
  std::shared_ptr<verbs::MemoryRegion> region_;

  std::byte* memory_ = nullptr;
  size_t memory_length_ = 0;
  std::byte* receive_area_ = nullptr;
  size_t receive_length_ = 0;
  std::byte* rdma_area_ = nullptr;
  std::byte* source_area_ = nullptr;
  std::byte* control_slot_ = nullptr;
  uint64_t area_size_ = 0;
  verbs::Sge receive_sge_;
  // Completion arrays live here so that no poll in a measured loop constructs one.
  std::array<verbs::Completion, 32> send_completions_;
  std::array<verbs::Completion, 32> receive_completions_;

  verbs::SocketAddress server_;  // client side: where it connected, for the TCP floor
  verbs::RemoteAddress peer_;
  uint64_t peer_size_ = 0;
  std::unique_ptr<verbs::RemoteMapping> peer_mapping_;
  uint32_t max_inline_ = 0;
  uint32_t window_ = 0;
  uint32_t read_window_ = 0;
  uint32_t send_depth_ = 0;
  uint64_t sends_posted_ = 0;
  uint64_t sends_completed_ = 0;

  std::optional<TcpListener> tcp_listener_;
  std::optional<TcpSocket> tcp_;
  // Out of band: the TCP connection that carried the QP addresses; its close ends the session.
  std::optional<TcpSocket> out_of_band_;
  verbs::SocketAddress local_;  // server side, out of band: where the client reached us
};

}  // namespace wv::perf::verbs_bench
