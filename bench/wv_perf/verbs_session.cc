#include "verbs_session.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

namespace wv::perf::verbs_bench {
namespace {

using verbs::CompletionStatus;
using verbs::SendFlags;
using verbs::Sge;

// Indexed by Op.
constexpr OpInfo kOps[] = {
    {Op::kSendLat, "send_lat", Metric::kLatency, 0, 2},
    {Op::kWriteLat, "write_lat", Metric::kLatency, 1, 2},
    {Op::kMappedLat, "mapped_lat", Metric::kLatency, 1, 2},
    {Op::kReadLat, "read_lat", Metric::kLatency, 0, 1},
    {Op::kSendBw, "send_bw", Metric::kBandwidth, 0, 1},
    {Op::kWriteBw, "write_bw", Metric::kBandwidth, 0, 1},
    {Op::kReadBw, "read_bw", Metric::kBandwidth, 0, 1},
    {Op::kTcpLat, "tcp_lat", Metric::kLatency, 1, 2},
    {Op::kTcpBw, "tcp_bw", Metric::kBandwidth, 1, 1},
};
static_assert([] {
  for (size_t i = 0; i < std::size(kOps); ++i) {
    if (static_cast<size_t>(kOps[i].op) != i) return false;
  }
  return true;
}());

// The two sides are the same program, so the wire structs below are in host order; the magic
// numbers catch a peer that is something else.
constexpr uint32_t kAdvertMagic = 0x77764d52;   // "wvMR"
constexpr uint32_t kControlMagic = 0x77764354;  // "wvCT"
constexpr uint32_t kProtocolVersion = 2;        // 2: mapped_lat renumbered the operations

// Receives kept posted: enough that a window of sends never finds the receiver empty while it
// is still reposting.
constexpr uint32_t kReceiveDepth = 512;
// Send-queue room beyond the window, for the control message that follows a run.
constexpr uint32_t kControlDepth = 4;
constexpr size_t kControlBytes = 512;
constexpr uint64_t kControlWrId = ~uint64_t{0};

enum Command : uint32_t {
  kHello = 1,
  kInfo,
  kRun,
  kReady,
  kSync,
  kAck,
  kTcpListen,
  kTcpPort,
  kQuit,
};

// Where the peer may write and read, sent in the connection's private data.
struct MemoryAdvert {
  uint32_t magic;
  uint32_t version;
  uint64_t address;
  uint64_t length;
  uint32_t rkey;
  uint32_t reserved;
};

template <size_t N>
void copy_text(char (&to)[N], std::string_view from) {
  const size_t n = std::min(from.size(), N - 1);
  std::memcpy(to, from.data(), n);
  to[n] = '\0';
}

template <size_t N>
std::string text_of(const char (&from)[N]) {
  return std::string(from, strnlen(from, N));
}

Status with_context(std::string_view what, const Status& status) {
  return Status(status.code(), fmt::format("{}: {}", what, status.message()));
}

Status completion_error(const verbs::Completion& c) {
  // A flush after a lost connection is what a dead peer looks like from here.
  const bool lost =
      c.status == CompletionStatus::kFlushed || c.status == CompletionStatus::kTransportError;
  return Status(Errc::kIoError,
                fmt::format("{} completed with error: {} (vendor error {}){}",
                            verbs::to_string(c.opcode), verbs::to_string(c.status), c.vendor_error,
                            lost ? "; the connection failed or the peer exited" : ""));
}

// A pending operation waited for with a bound; cancelled if the bound runs out.
template <typename T>
Result<T> wait_for(verbs::Operation<T>& operation, std::chrono::milliseconds timeout,
                   std::string_view what) {
  Result<T> result = operation.wait(timeout);
  if (result.is_ok()) return result;
  if (result.status().code() == Errc::kTimedOut && !operation.ready()) {
    operation.cancel();
    return Status(Errc::kTimedOut, fmt::format("{}: not done within {:.1f} s (see --timeout)", what,
                                               std::chrono::duration<double>(timeout).count()));
  }
  return with_context(what, result.status());
}

size_t round_up(size_t value, size_t unit) {
  return (value + unit - 1) / unit * unit;
}

unsigned char* byte_at(std::byte* at) {
  return reinterpret_cast<unsigned char*>(at);
}

}  // namespace

// Control messages travel as sends of exactly this size; any other length is data, which means
// the two sides are out of step.
struct Session::Control {
  uint32_t magic = kControlMagic;
  uint32_t command = 0;
  uint32_t op = 0;
  uint32_t port = 0;
  uint64_t size = 0;
  uint64_t count = 0;
  int32_t pid = 0;
  uint32_t reserved = 0;
  char host[64] = {};
  char cpus[128] = {};
  char provider[16] = {};
  char device[64] = {};
};

std::span<const OpInfo> all_ops() {
  return kOps;
}

const OpInfo& op_info(Op op) {
  return kOps[static_cast<size_t>(op)];
}

// ---------------------------------------------------------------------------------------------
// Setting up

Session::Session(std::shared_ptr<verbs::Provider> provider, const SessionOptions& options)
    : provider_(std::move(provider)), options_(options) {}

Session::~Session() {
  // Users of the memory go first, the memory last.
  tcp_.reset();
  tcp_listener_.reset();
  endpoint_.reset();
  qp_.reset();
  send_cq_.reset();
  receive_cq_.reset();
  region_.reset();
  pd_.reset();
  device_.reset();
  if (memory_ != nullptr && !options_.allocated_memory) munmap(memory_, memory_length_);
}

Status Session::create_resources(uint64_t area_size) {
  auto device = provider_->open_device(options_.device);
  if (!device) return with_context("opening the device", device.status());
  device_ = std::move(device).value();
  const verbs::DeviceAttributes& attributes = device_->attributes();

  window_ = std::max<uint32_t>(options_.window, 1);
  uint32_t receive_depth = kReceiveDepth;
  send_depth_ = window_ + kControlDepth;
  if (attributes.max_qp_wr != 0) {
    receive_depth = std::min(receive_depth, attributes.max_qp_wr);
    if (send_depth_ > attributes.max_qp_wr) {
      send_depth_ = attributes.max_qp_wr;
      window_ =
          std::max<uint32_t>(send_depth_ > kControlDepth ? send_depth_ - kControlDepth : 1, 1);
    }
  }
  uint32_t send_entries = send_depth_;
  uint32_t receive_entries = receive_depth;
  if (attributes.max_cqe != 0) {
    send_entries = std::min(send_entries, attributes.max_cqe);
    receive_entries = std::min(receive_entries, attributes.max_cqe);
  }

  auto pd = device_->allocate_protection_domain();
  if (!pd) return with_context("allocating a protection domain", pd.status());
  pd_ = std::move(pd).value();
  auto send_cq = device_->create_completion_queue(send_entries);
  if (!send_cq) return with_context("creating the send CQ", send_cq.status());
  send_cq_ = std::move(send_cq).value();
  auto receive_cq = device_->create_completion_queue(receive_entries);
  if (!receive_cq) return with_context("creating the receive CQ", receive_cq.status());
  receive_cq_ = std::move(receive_cq).value();

  verbs::QueuePairOptions qp_options;
  qp_options.send_cq = send_cq_;
  qp_options.receive_cq = receive_cq_;
  qp_options.send_depth = send_depth_;
  qp_options.receive_depth = receive_depth;
  qp_options.send_sge = 1;
  qp_options.receive_sge = 1;
  qp_options.context = this;
  auto qp = pd_->create_connect_queue_pair(qp_options);
  if (!qp) return with_context("creating the queue pair", qp.status());
  qp_ = std::move(qp).value();
  max_inline_ = qp_->query().max_inline;

  area_size_ = std::max<uint64_t>(area_size, 1);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  receive_length_ = round_up(std::max<size_t>(area_size_, kControlBytes), page);
  const size_t area_bytes = round_up(area_size_, page);
  memory_length_ = receive_length_ + 2 * area_bytes + round_up(kControlBytes, page);
  const verbs::Access access =
      verbs::Access::kLocalWrite | verbs::Access::kRemoteRead | verbs::Access::kRemoteWrite;
  if (options_.allocated_memory) {
    auto region = pd_->allocate_memory(memory_length_, access);
    if (!region) return with_context("allocating memory", region.status());
    region_ = std::move(region).value();
    memory_ = static_cast<std::byte*>(region_->address());
  } else {
    void* memory =
        mmap(nullptr, memory_length_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      memory_ = nullptr;
      return Status(Errc::kNoMemory,
                    fmt::format("mmap of {} bytes: {}", memory_length_, std::strerror(errno)));
    }
    memory_ = static_cast<std::byte*>(memory);
  }
  std::memset(memory_, 0, memory_length_);  // fault every page in before anything is timed
  receive_area_ = memory_;
  rdma_area_ = receive_area_ + receive_length_;
  source_area_ = rdma_area_ + area_bytes;
  control_slot_ = source_area_ + area_bytes;

  if (!options_.allocated_memory) {
    auto region = pd_->register_memory(memory_, memory_length_, access);
    if (!region) return with_context("registering memory", region.status());
    region_ = std::move(region).value();
  }
  receive_sge_ = region_->sge(receive_area_, static_cast<uint32_t>(receive_length_));

  // Receives go in before the connection exists, so the peer's first message finds one.
  if (qp_->query().state == verbs::QpState::kReset) {
    if (Status status = qp_->modify(verbs::QpState::kInit); !status) {
      return with_context("moving the queue pair to init", status);
    }
  }
  for (uint32_t i = 0; i < receive_depth; ++i) {
    if (Status status = qp_->post_receive(0, {&receive_sge_, 1}); !status) {
      return with_context("posting receives", status);
    }
  }
  return Status::ok();
}

std::vector<std::byte> Session::advert() const {
  const MemoryAdvert advert{.magic = kAdvertMagic,
                            .version = kProtocolVersion,
                            .address = reinterpret_cast<uint64_t>(rdma_area_),
                            .length = area_size_,
                            .rkey = region_->remote_key(),
                            .reserved = 0};
  std::vector<std::byte> bytes(sizeof(advert));
  std::memcpy(bytes.data(), &advert, sizeof(advert));
  return bytes;
}

Status Session::take_peer_advert(std::span<const std::byte> private_data) {
  MemoryAdvert advert{};
  if (private_data.size() < sizeof(advert)) {
    return Status(Errc::kProtocolError,
                  fmt::format("the peer's private data has {} bytes, not the {} of a wv_perf "
                              "memory advert (is the peer wv_perf verbs?)",
                              private_data.size(), sizeof(advert)));
  }
  std::memcpy(&advert, private_data.data(), sizeof(advert));
  if (advert.magic != kAdvertMagic || advert.version != kProtocolVersion) {
    return Status(Errc::kProtocolError,
                  "the peer's private data is not a wv_perf verbs memory advert of this version");
  }
  peer_ = {.address = advert.address, .rkey = advert.rkey};
  peer_size_ = advert.length;
  return Status::ok();
}

Result<std::unique_ptr<Session>> Session::connect(const std::shared_ptr<verbs::Provider>& provider,
                                                  const verbs::SocketAddress& server,
                                                  const SessionOptions& options) {
  std::unique_ptr<Session> session(new Session(provider, options));
  session->server_ = server;
  if (Status status = session->create_resources(options.area_size); !status) return status;
  Status connected = options.out_of_band ? session->connect_out_of_band(server)
                                         : session->connect_through_endpoint(server);
  if (!connected) return connected;
  session->settle_read_window();
  return session;
}

// Reads in flight are bounded by the depth the connection settled on, too.
void Session::settle_read_window() {
  const uint32_t outbound = qp_->query().outbound_read_depth;
  read_window_ = outbound == 0 ? window_ : std::min(window_, outbound);
}

Status Session::connect_through_endpoint(const verbs::SocketAddress& server) {
  auto endpoint = provider_->create_connect_endpoint();
  if (!endpoint) return with_context("creating a connect endpoint", endpoint.status());
  endpoint_ = std::move(endpoint).value();
  if (endpoint_->max_private_data() < sizeof(MemoryAdvert)) {
    return Status(Errc::kNotSupported,
                  fmt::format("the provider carries {} bytes of private data; wv_perf needs {}",
                              endpoint_->max_private_data(), sizeof(MemoryAdvert)));
  }
  const std::string where = server.to_string();
  auto resolving = endpoint_->resolve_address(server, options_.timeout);
  if (auto r = wait_for(resolving, options_.timeout, "resolving " + where); !r) return r.status();
  auto routing = endpoint_->resolve_route(options_.timeout);
  if (auto r = wait_for(routing, options_.timeout, "resolving the route to " + where); !r) {
    return r.status();
  }
  verbs::ConnectParameters parameters;
  parameters.private_data = advert();
  auto connecting = endpoint_->connect(qp_, parameters);
  auto accepted = wait_for(connecting, options_.timeout, "connecting to " + where);
  if (!accepted) return accepted.status();
  return take_peer_advert(accepted.value().private_data);
}

// Out of band: the client sends its advert and QP address first; the server answers with its
// own once its QP is connected, so the client's first message never meets a QP not yet ready.
Status Session::connect_out_of_band(const verbs::SocketAddress& server) {
  auto socket = TcpSocket::connect(server, options_.timeout);
  if (!socket) {
    return with_context("connecting to " + server.to_string() + " for the QP addresses",
                        socket.status());
  }
  out_of_band_.emplace(std::move(socket).value());
  if (Status status = send_out_of_band_hello(); !status) return status;
  auto peer = receive_out_of_band_hello();
  if (!peer) return peer.status();
  if (Status status = qp_->connect_out_of_band(*peer, {}); !status) {
    return with_context("connecting the QP out of band", status);
  }
  return Status::ok();
}

Status Session::send_out_of_band_hello() {
  auto address = qp_->out_of_band_address();
  if (!address) return with_context("the QP's out-of-band address", address.status());
  std::vector<std::byte> hello = advert();
  const std::vector<std::byte> encoded = address->encode();
  hello.insert(hello.end(), encoded.begin(), encoded.end());
  if (Status status = out_of_band_->send_all(hello.data(), hello.size()); !status) {
    return with_context("sending the QP address", status);
  }
  return Status::ok();
}

Result<verbs::OutOfBandAddress> Session::receive_out_of_band_hello() {
  std::array<std::byte, sizeof(MemoryAdvert) + verbs::kOutOfBandAddressBytes> hello{};
  if (Status status = out_of_band_->recv_all(hello.data(), hello.size()); !status) {
    return with_context("receiving the peer's QP address", status);
  }
  if (Status status = take_peer_advert(std::span(hello).first(sizeof(MemoryAdvert))); !status) {
    return status;
  }
  auto address = verbs::OutOfBandAddress::decode(std::span(hello).subspan(sizeof(MemoryAdvert)));
  if (!address) return with_context("the peer's QP address", address.status());
  return address;
}

Result<Listener> Listener::listen(std::shared_ptr<verbs::Provider> provider,
                                  const verbs::SocketAddress& address, bool out_of_band) {
  if (out_of_band) {
    auto tcp = TcpListener::listen(address);
    if (!tcp) return with_context("listening on " + address.to_string(), tcp.status());
    verbs::SocketAddress bound = address;
    bound.set_port(tcp.value().port());
    return Listener(std::move(provider), std::move(tcp).value(), bound);
  }
  auto endpoint = provider->create_connect_endpoint();
  if (!endpoint) return with_context("creating a connect endpoint", endpoint.status());
  std::shared_ptr<verbs::ConnectEndpoint> listening = std::move(endpoint).value();
  if (Status status = listening->bind(address); !status) {
    return with_context("binding " + address.to_string(), status);
  }
  if (Status status = listening->listen(1); !status) return with_context("listening", status);
  return Listener(std::move(provider), std::move(listening));
}

verbs::SocketAddress Listener::address() const {
  return tcp_ ? tcp_address_ : endpoint_->query().local;
}

Result<std::unique_ptr<Session>> Listener::accept_out_of_band(const SessionOptions& options) {
  auto socket = tcp_->accept(options.timeout);
  if (!socket) return with_context("waiting for a client", socket.status());
  std::unique_ptr<Session> session(new Session(provider_, options));
  session->out_of_band_.emplace(std::move(socket).value());
  session->local_ = tcp_address_;
  // The client's advert says how large the data areas must be.
  auto peer = session->receive_out_of_band_hello();
  if (!peer) return peer.status();
  if (Status status = session->create_resources(session->peer_size_); !status) return status;
  if (Status status = session->qp_->connect_out_of_band(*peer, {}); !status) {
    return with_context("connecting the QP out of band", status);
  }
  if (Status status = session->send_out_of_band_hello(); !status) return status;
  session->settle_read_window();
  return session;
}

Result<std::unique_ptr<Session>> Listener::accept(const SessionOptions& options) {
  if (tcp_) return accept_out_of_band(options);
  auto requested = endpoint_->get_request();
  auto request = wait_for(requested, options.timeout, "a client to connect");
  if (!request) return request.status();
  std::shared_ptr<verbs::ConnectEndpoint> connection = std::move(request).value();
  std::unique_ptr<Session> session(new Session(provider_, options));
  // The client's advert says how large the data areas must be.
  Status status = session->take_peer_advert(connection->query().peer_parameters.private_data);
  if (status) status = session->create_resources(session->peer_size_);
  if (status && connection->max_private_data() < sizeof(MemoryAdvert)) {
    status = Status(Errc::kNotSupported, "the provider's private data cannot carry the advert");
  }
  if (!status) {
    (void)connection->reject({});
    return status;
  }
  verbs::ConnectParameters parameters;
  parameters.private_data = session->advert();
  auto accepting = connection->accept(session->qp_, parameters);
  if (auto r = wait_for(accepting, options.timeout, "accepting the client"); !r) {
    return r.status();
  }
  session->endpoint_ = std::move(connection);
  session->settle_read_window();
  return session;
}

// ---------------------------------------------------------------------------------------------
// The data path. Nothing here allocates unless it is returning an error.

verbs::SendFlags Session::send_flags(uint64_t size) const {
  return size > 0 && size <= max_inline_ ? SendFlags::kInline : SendFlags::kNone;
}

Status Session::post(Op op, uint64_t wr_id, std::span<const Sge> sges) {
  const uint64_t size = sges.empty() ? 0 : sges[0].length;
  Status status;
  switch (op) {
    case Op::kSendLat:
    case Op::kSendBw:
      status = qp_->send(wr_id, sges, send_flags(size));
      break;
    case Op::kWriteLat:
    case Op::kWriteBw:
      status = qp_->rdma_write(wr_id, sges, peer_, send_flags(size));
      break;
    case Op::kReadLat:
    case Op::kReadBw:
      status = qp_->rdma_read(wr_id, sges, peer_, SendFlags::kNone);
      break;
    case Op::kTcpLat:
    case Op::kTcpBw:
    case Op::kMappedLat:
      return Status(Errc::kInvalidArgument, "not a work request");
  }
  if (!status) {
    return Status(status.code(), fmt::format("posting {} of {} bytes: {}", op_info(op).name, size,
                                             status.message()));
  }
  ++sends_posted_;
  return status;
}

Status Session::poll_sends() {
  const int n = send_cq_->poll(send_completions_);
  if (n < 0) return with_context("send CQ", send_cq_->status());
  for (int i = 0; i < n; ++i) {
    if (send_completions_[i].status != CompletionStatus::kSuccess) {
      return completion_error(send_completions_[i]);
    }
  }
  sends_completed_ += static_cast<uint64_t>(n);
  return Status::ok();
}

Status Session::wait_sends(StallGuard& guard) {
  while (sends_completed_ < sends_posted_) {
    const uint64_t before = sends_completed_;
    if (Status status = poll_sends(); !status) return status;
    if (sends_completed_ != before) {
      guard.progress();
    } else if (guard.idle()) {
      return stalled("send completions", guard.limit());
    }
  }
  return Status::ok();
}

Status Session::wait_receive(StallGuard& guard, uint32_t* length) {
  for (;;) {
    const int n = receive_cq_->poll({receive_completions_.data(), 1});
    if (n == 1) {
      const verbs::Completion& c = receive_completions_[0];
      if (c.status != CompletionStatus::kSuccess) return completion_error(c);
      guard.progress();
      if (length != nullptr) *length = c.length;
      if (Status status = qp_->post_receive(0, {&receive_sge_, 1}); !status) {
        return with_context("reposting a receive", status);
      }
      return Status::ok();
    }
    if (n < 0) return with_context("receive CQ", receive_cq_->status());
    if (guard.idle()) return stalled("a message from the peer", guard.limit());
  }
}

Status Session::wait_byte(const std::byte* at, uint8_t value, StallGuard& guard) {
  // The peer's RDMA write lands from another agent (the NIC, or a provider thread).
  std::atomic_ref<unsigned char> cell(*byte_at(const_cast<std::byte*>(at)));
  for (;;) {
    if (cell.load(std::memory_order_acquire) == value) {
      guard.progress();
      return Status::ok();
    }
    // Polling the CQ even with nothing outstanding: it reaps our own write's completion (an
    // error shows at once instead of as a stall), and on a software provider the poll is what
    // moves incoming data into memory without waiting for the provider's thread to wake up.
    if (Status status = poll_sends(); !status) return status;
    if (guard.idle()) return stalled("the peer's RDMA write", guard.limit());
  }
}

Status Session::map_peer() {
  if (peer_mapping_) return Status::ok();
  auto mapped = qp_->map_remote(peer_, peer_size_, verbs::Access::kRemoteWrite);
  if (!mapped) {
    return Status(mapped.status().code(),
                  "mapped_lat maps the peer's data area (shm, --memory allocated on both sides): " +
                      mapped.status().message());
  }
  peer_mapping_ = std::move(mapped).value();
  return Status::ok();
}

void Session::store_mapped(uint64_t size, uint8_t value) {
  std::byte* to = peer_mapping_->data();
  std::memcpy(to, source_area_, size - 1);
  std::atomic_ref<unsigned char>(*byte_at(to + size - 1)).store(value, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// The control protocol

Status Session::send_control(const Control& control) {
  static_assert(sizeof(Control) <= kControlBytes);
  std::memcpy(control_slot_, &control, sizeof(control));
  const Sge sge = region_->sge(control_slot_, sizeof(Control));
  if (Status status = qp_->send(kControlWrId, {&sge, 1}, SendFlags::kNone); !status) {
    return with_context("sending a control message", status);
  }
  ++sends_posted_;
  StallGuard guard(options_.timeout);
  return wait_sends(guard);
}

Status Session::receive_control(Control& control) {
  StallGuard guard(options_.timeout);
  uint32_t length = 0;
  if (Status status = wait_receive(guard, &length); !status) return status;
  if (length != sizeof(Control)) {
    return Status(Errc::kProtocolError,
                  fmt::format("expected a {}-byte control message, received {} bytes (the two "
                              "sides are out of step)",
                              sizeof(Control), length));
  }
  std::memcpy(&control, receive_area_, sizeof(control));
  if (control.magic != kControlMagic) {
    return Status(Errc::kProtocolError, "received a control message with a bad magic number");
  }
  return Status::ok();
}

Status Session::expect(uint32_t command) {
  Control reply;
  if (Status status = receive_control(reply); !status) return status;
  if (reply.command != command) {
    return Status(Errc::kProtocolError,
                  fmt::format("expected control command {}, received {}", command, reply.command));
  }
  return Status::ok();
}

Status Session::start_run(Op op, uint64_t size, uint64_t count) {
  if (size > area_size_ || size > peer_size_) {
    return Status(Errc::kInvalidArgument, fmt::format("{} bytes exceed the {} bytes registered",
                                                      size, std::min(area_size_, peer_size_)));
  }
  Control request;
  request.command = kRun;
  request.op = static_cast<uint32_t>(op);
  request.size = size;
  request.count = count;
  if (Status status = send_control(request); !status) return status;
  return expect(kReady);
}

Status Session::sync() {
  Control request;
  request.command = kSync;
  if (Status status = send_control(request); !status) return status;
  return expect(kAck);
}

// ---------------------------------------------------------------------------------------------
// Client side

Result<PeerDescription> Session::hello() {
  Control request;
  request.command = kHello;
  if (Status status = send_control(request); !status) return status;
  Control reply;
  if (Status status = receive_control(reply); !status) return status;
  if (reply.command != kInfo) {
    return Status(Errc::kProtocolError, "the server did not answer hello with its description");
  }
  PeerDescription peer;
  peer.process = {
      .role = "server", .host = text_of(reply.host), .pid = reply.pid, .cpus = text_of(reply.cpus)};
  peer.provider = text_of(reply.provider);
  peer.device = text_of(reply.device);
  return peer;
}

Status Session::latency(Op op, uint64_t size, uint64_t warmup, std::span<int64_t> samples_ns) {
  const uint64_t total = warmup + samples_ns.size();
  if (op == Op::kTcpLat) {
    if (!tcp_) return Status(Errc::kInvalidState, "the TCP baseline is not connected");
    if (Status status = start_run(op, size, total); !status) return status;
    if (Status status = tcp_ping(*tcp_, source_area_, size, warmup, samples_ns); !status) {
      return status;
    }
    return sync();
  }
  if (op == Op::kWriteLat || op == Op::kMappedLat) {
    if (size == 0) return Status(Errc::kInvalidArgument, "a byte-polling run needs 1 byte or more");
    std::atomic_ref<unsigned char>(*byte_at(rdma_area_ + size - 1)).store(0);
  }
  if (op == Op::kMappedLat) {
    if (Status status = map_peer(); !status) return status;
  }
  if (Status status = start_run(op, size, total); !status) return status;

  const Sge sge = region_->sge(source_area_, static_cast<uint32_t>(size));
  const std::span<const Sge> sges(&sge, size > 0 ? 1 : 0);
  StallGuard guard(options_.timeout);
  switch (op) {
    case Op::kSendLat:
      for (uint64_t i = 0; i < total; ++i) {
        const Clock::time_point start = Clock::now();
        if (Status status = post(op, i, sges); !status) return status;
        if (Status status = wait_receive(guard, nullptr); !status) return status;
        const Clock::time_point end = Clock::now();
        if (Status status = wait_sends(guard); !status) return status;
        if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
      }
      break;
    case Op::kWriteLat: {
      std::byte* out = source_area_ + size - 1;
      const std::byte* in = rdma_area_ + size - 1;
      for (uint64_t i = 0; i < total; ++i) {
        // 1..255 and never two equal in a row, so the polled byte always changes.
        const auto value = static_cast<uint8_t>(i % 255 + 1);
        const Clock::time_point start = Clock::now();
        *out = std::byte{value};
        if (Status status = post(op, i, sges); !status) return status;
        if (Status status = wait_byte(in, value, guard); !status) return status;
        const Clock::time_point end = Clock::now();
        if (Status status = wait_sends(guard); !status) return status;
        if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
      }
      break;
    }
    case Op::kMappedLat: {
      const std::byte* in = rdma_area_ + size - 1;
      for (uint64_t i = 0; i < total; ++i) {
        const auto value = static_cast<uint8_t>(i % 255 + 1);
        const Clock::time_point start = Clock::now();
        store_mapped(size, value);
        if (Status status = wait_byte(in, value, guard); !status) return status;
        const Clock::time_point end = Clock::now();
        if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
      }
      break;
    }
    case Op::kReadLat:
      for (uint64_t i = 0; i < total; ++i) {
        const Clock::time_point start = Clock::now();
        if (Status status = post(op, i, sges); !status) return status;
        if (Status status = wait_sends(guard); !status) return status;
        const Clock::time_point end = Clock::now();
        if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
      }
      break;
    default:
      return Status(Errc::kInvalidArgument, "not a latency operation");
  }
  return sync();
}

Result<double> Session::bandwidth(Op op, uint64_t size, uint64_t count) {
  if (op == Op::kTcpBw) {
    if (!tcp_) return Status(Errc::kInvalidState, "the TCP baseline is not connected");
    if (Status status = start_run(op, size, count); !status) return status;
    Result<double> seconds = tcp_stream(*tcp_, source_area_, size, count);
    if (!seconds) return seconds;
    if (Status status = sync(); !status) return status;
    return seconds;
  }
  if (op != Op::kSendBw && op != Op::kWriteBw && op != Op::kReadBw) {
    return Status(Errc::kInvalidArgument, "not a bandwidth operation");
  }
  if (Status status = start_run(op, size, count); !status) return status;

  const Sge sge = region_->sge(source_area_, static_cast<uint32_t>(size));
  const std::span<const Sge> sges(&sge, size > 0 ? 1 : 0);
  const uint64_t window = op == Op::kReadBw ? read_window_ : window_;
  const uint64_t target = sends_posted_ + count;
  uint64_t posted = 0;
  StallGuard guard(options_.timeout);
  const Clock::time_point start = Clock::now();
  while (sends_completed_ < target) {
    while (posted < count && sends_posted_ - sends_completed_ < window) {
      if (Status status = post(op, posted, sges); !status) return status;
      ++posted;
    }
    const uint64_t before = sends_completed_;
    if (Status status = poll_sends(); !status) return status;
    if (sends_completed_ != before) {
      guard.progress();
    } else if (guard.idle()) {
      return stalled(fmt::format("{} completions", op_info(op).name), guard.limit());
    }
  }
  // A read is complete when its data is here. Sends and writes may complete once they are on
  // the wire, so the clock stops when the server acknowledges a message sent after them.
  Clock::time_point end = Clock::now();
  if (Status status = sync(); !status) return status;
  if (op != Op::kReadBw) end = Clock::now();
  return std::chrono::duration<double>(end - start).count();
}

Status Session::tcp_connect() {
  Control request;
  request.command = kTcpListen;
  if (Status status = send_control(request); !status) return status;
  Control reply;
  if (Status status = receive_control(reply); !status) return status;
  if (reply.command != kTcpPort) {
    return Status(Errc::kProtocolError, "the server did not answer with its TCP baseline port");
  }
  verbs::SocketAddress peer = server_;
  peer.set_port(static_cast<uint16_t>(reply.port));
  auto socket = TcpSocket::connect(peer, options_.timeout);
  if (!socket) return socket.status();
  tcp_.emplace(std::move(socket).value());
  return Status::ok();
}

Status Session::quit() {
  Control request;
  request.command = kQuit;
  if (Status status = send_control(request); !status) return status;
  if (Status status = expect(kAck); !status) return status;
  if (out_of_band_) {
    // No message ends an out-of-band connection: the QP goes to error, and the closed TCP
    // connection tells the server.
    (void)qp_->modify(verbs::QpState::kError);
    out_of_band_.reset();
    return Status::ok();
  }
  auto disconnecting = endpoint_->disconnect();
  if (auto r = wait_for(disconnecting, options_.timeout, "disconnecting"); !r) return r.status();
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Server side

Status Session::serve(const PeerDescription& self) {
  for (;;) {
    Control request;
    if (Status status = receive_control(request); !status) return status;
    Control reply;
    switch (request.command) {
      case kHello:
        reply.command = kInfo;
        reply.pid = self.process.pid;
        copy_text(reply.host, self.process.host);
        copy_text(reply.cpus, self.process.cpus);
        copy_text(reply.provider, self.provider);
        copy_text(reply.device, self.device);
        if (Status status = send_control(reply); !status) return status;
        break;
      case kRun:
        if (Status status = serve_run(request); !status) return status;
        break;
      case kSync:
        reply.command = kAck;
        if (Status status = send_control(reply); !status) return status;
        break;
      case kTcpListen: {
        verbs::SocketAddress local = endpoint_ ? endpoint_->query().local : local_;
        if (local.empty()) local = verbs::SocketAddress::ipv4_any(0);
        local.set_port(0);
        auto listener = TcpListener::listen(local);
        if (!listener) return listener.status();
        tcp_listener_.emplace(std::move(listener).value());
        reply.command = kTcpPort;
        reply.port = tcp_listener_->port();
        if (Status status = send_control(reply); !status) return status;
        auto socket = tcp_listener_->accept(options_.timeout);
        if (!socket) return socket.status();
        tcp_.emplace(std::move(socket).value());
        break;
      }
      case kQuit: {
        reply.command = kAck;
        if (Status status = send_control(reply); !status) return status;
        // The client disconnects; waiting for it keeps the ack from being flushed by our close.
        if (out_of_band_) {
          std::byte end{};
          (void)out_of_band_->recv_some(&end, 1);  // end of stream, or the socket's timeout
          return Status::ok();
        }
        auto ended = endpoint_->notify_disconnect();
        if (!ended.wait(options_.timeout).is_ok()) ended.cancel();
        return Status::ok();
      }
      default:
        return Status(Errc::kProtocolError,
                      fmt::format("unexpected control command {}", request.command));
    }
  }
}

Status Session::serve_run(const Control& request) {
  if (request.op > static_cast<uint32_t>(Op::kTcpBw)) {
    return Status(Errc::kProtocolError, fmt::format("unknown operation {}", request.op));
  }
  const auto op = static_cast<Op>(request.op);
  const uint64_t size = request.size;
  if (size > area_size_) {
    return Status(
        Errc::kProtocolError,
        fmt::format("the client asked for {} bytes; {} are registered", size, area_size_));
  }
  if (op == Op::kWriteLat || op == Op::kMappedLat) {
    if (size == 0) return Status(Errc::kProtocolError, "a byte-polling run of 0 bytes");
    std::atomic_ref<unsigned char>(*byte_at(rdma_area_ + size - 1)).store(0);
  }
  if (op == Op::kMappedLat) {
    if (Status status = map_peer(); !status) return status;
  }
  if ((op == Op::kTcpLat || op == Op::kTcpBw) && !tcp_) {
    return Status(Errc::kProtocolError, "TCP baseline run before the TCP connection");
  }
  Control ready;
  ready.command = kReady;
  if (Status status = send_control(ready); !status) return status;
  switch (op) {
    case Op::kSendLat:
    case Op::kWriteLat:
    case Op::kMappedLat:
      return serve_ping_pong(op, size, request.count);
    case Op::kSendBw:
      return serve_receives(request.count);
    case Op::kTcpLat:
      return tcp_pong(*tcp_, source_area_, size, request.count);
    case Op::kTcpBw:
      return tcp_sink(*tcp_, {receive_area_, receive_length_}, size, request.count);
    case Op::kReadLat:
    case Op::kWriteBw:
    case Op::kReadBw:
      break;  // one-sided: nothing to do here until the client's sync
  }
  return Status::ok();
}

Status Session::serve_ping_pong(Op op, uint64_t size, uint64_t count) {
  const Sge sge = region_->sge(source_area_, static_cast<uint32_t>(size));
  const std::span<const Sge> sges(&sge, size > 0 ? 1 : 0);
  StallGuard guard(options_.timeout);
  if (op == Op::kSendLat) {
    for (uint64_t i = 0; i < count; ++i) {
      if (Status status = wait_receive(guard, nullptr); !status) return status;
      if (Status status = post(op, i, sges); !status) return status;
      if (Status status = wait_sends(guard); !status) return status;
    }
    return Status::ok();
  }
  std::byte* out = source_area_ + size - 1;
  const std::byte* in = rdma_area_ + size - 1;
  if (op == Op::kMappedLat) {
    for (uint64_t i = 0; i < count; ++i) {
      const auto value = static_cast<uint8_t>(i % 255 + 1);
      if (Status status = wait_byte(in, value, guard); !status) return status;
      store_mapped(size, value);
    }
    return Status::ok();
  }
  for (uint64_t i = 0; i < count; ++i) {
    const auto value = static_cast<uint8_t>(i % 255 + 1);
    if (Status status = wait_byte(in, value, guard); !status) return status;
    *out = std::byte{value};
    if (Status status = post(op, i, sges); !status) return status;
    // Completions are reaped while polling for the next byte; wait only if the queue fills.
    if (sends_posted_ - sends_completed_ + 1 >= send_depth_) {
      if (Status status = wait_sends(guard); !status) return status;
    }
  }
  return wait_sends(guard);
}

Status Session::serve_receives(uint64_t count) {
  StallGuard guard(options_.timeout);
  uint64_t received = 0;
  while (received < count) {
    // Never take more than the run's messages: the client's sync follows them.
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(receive_completions_.size(), count - received));
    const int n = receive_cq_->poll({receive_completions_.data(), want});
    if (n < 0) return with_context("receive CQ", receive_cq_->status());
    if (n == 0) {
      if (guard.idle()) return stalled("the client's sends", guard.limit());
      continue;
    }
    for (int i = 0; i < n; ++i) {
      if (receive_completions_[i].status != CompletionStatus::kSuccess) {
        return completion_error(receive_completions_[i]);
      }
      if (Status status = qp_->post_receive(0, {&receive_sge_, 1}); !status) {
        return with_context("reposting a receive", status);
      }
    }
    received += static_cast<uint64_t>(n);
    guard.progress();
  }
  return Status::ok();
}

}  // namespace wv::perf::verbs_bench
