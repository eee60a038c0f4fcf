// Shared helpers of the verbs conformance suite.
//
// Every test runs once per provider that Provider::names() lists; a provider this machine cannot
// open is skipped with the reason from its Status. Tests that need a capability the device lacks
// skip with "device lacks capability <name>". Every wait is bounded (kBound): a provider that
// hangs fails the test instead of hanging the suite.
//
// Environment (not WV_*, which the configuration reserves):
//   VERBS_CONFORMANCE_ADDRESS  IP address the in-process and multi-process pairs use
//                              (default 127.0.0.1; RDMA-CM devices need a real interface's IP).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "wv/result.h"
#include "wv/verbs.h"

// gtest printers for the API's enums (found by argument-dependent lookup).
namespace wv {
inline void PrintTo(Errc code, std::ostream* os) {
  *os << to_string(code);
}
}  // namespace wv

namespace wv::verbs {
inline void PrintTo(CompletionStatus status, std::ostream* os) {
  *os << to_string(status);
}
inline void PrintTo(Opcode opcode, std::ostream* os) {
  *os << to_string(opcode);
}
inline void PrintTo(QpState state, std::ostream* os) {
  *os << to_string(state);
}
inline void PrintTo(EndpointState state, std::ostream* os) {
  *os << to_string(state);
}
inline void PrintTo(EventType type, std::ostream* os) {
  *os << to_string(type);
}
inline void PrintTo(PortState state, std::ostream* os) {
  *os << to_string(state);
}
inline void PrintTo(Transport transport, std::ostream* os) {
  *os << to_string(transport);
}
}  // namespace wv::verbs

namespace wv::verbs::conformance {

using namespace std::chrono_literals;
using Milliseconds = std::chrono::milliseconds;

// The bound on every wait of the suite; nothing on loopback legitimately takes this long.
inline constexpr Milliseconds kBound = 10s;
// How long the suite watches for something that must not happen (an early notification, a
// dropped datagram arriving after all).
inline constexpr Milliseconds kQuiet = 200ms;

std::string describe(const Status& status);
template <typename T>
std::string describe(const Result<T>& result) {
  return result.status().to_string();
}
std::string describe(const Completion& completion);
inline Errc code_of(const Status& status) {
  return status.code();
}
template <typename T>
Errc code_of(const Result<T>& result) {
  return result.status().code();
}

#define WV_CONF_CONCAT_INNER(a, b) a##b
#define WV_CONF_CONCAT(a, b) WV_CONF_CONCAT_INNER(a, b)

// Status / Result<T> checks that print the error's code and message; all take `<< "more"`.
template <typename R>
testing::AssertionResult check_ok(const R& result, const char* text) {
  if (result.is_ok()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << text << " failed: " << describe(result);
}
template <typename R>
testing::AssertionResult check_errc(const R& result, Errc expected, const char* text) {
  if (code_of(result) == expected) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << text << " returned \"" << describe(result) << "\", expected " << to_string(expected);
}
#define ASSERT_OK(expr) ASSERT_TRUE(::wv::verbs::conformance::check_ok((expr), #expr))
#define EXPECT_OK(expr) EXPECT_TRUE(::wv::verbs::conformance::check_ok((expr), #expr))
#define ASSERT_ERRC(expected, expr) \
  ASSERT_TRUE(::wv::verbs::conformance::check_errc((expr), (expected), #expr))
#define EXPECT_ERRC(expected, expr) \
  EXPECT_TRUE(::wv::verbs::conformance::check_errc((expr), (expected), #expr))
// Declares nothing: assigns the value of a successful Result<T> to `lhs`, else fails the test.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  WV_CONF_ASSIGN_IMPL(WV_CONF_CONCAT(wv_conf_result_, __LINE__), lhs, expr)
#define WV_CONF_ASSIGN_IMPL(tmp, lhs, expr)                                                    \
  auto tmp = (expr);                                                                           \
  ASSERT_TRUE(tmp.is_ok()) << #expr << " failed: " << ::wv::verbs::conformance::describe(tmp); \
  lhs = std::move(tmp).value()

// Skips the current test (from a test body or a SetUp) when the device lacks `cap`.
#define REQUIRE_CAPABILITY(cap)                                                  \
  do {                                                                           \
    if (!::wv::verbs::has(attributes().capabilities, (cap))) {                   \
      GTEST_SKIP() << "device lacks capability " << ::wv::verbs::to_string(cap); \
    }                                                                            \
  } while (0)

// Skips the current test when the device has `limitation` (types.h), printing why.
#define SKIP_IF_LIMITATION(limitation, why)                                                       \
  do {                                                                                            \
    if (::wv::verbs::has(attributes().limitations, (limitation))) {                               \
      GTEST_SKIP() << "device " << attributes().name << " has limitation " << #limitation << ": " \
                   << why;                                                                        \
    }                                                                                             \
  } while (0)

// Names of the providers built into the library, the parameter of every suite.
std::vector<std::string> provider_names();
std::string provider_test_name(const testing::TestParamInfo<std::string>& info);

#define WV_INSTANTIATE_FOR_PROVIDERS(fixture)                                             \
  INSTANTIATE_TEST_SUITE_P(Providers, fixture,                                            \
                           testing::ValuesIn(::wv::verbs::conformance::provider_names()), \
                           ::wv::verbs::conformance::provider_test_name)

// Page-aligned memory and its registration (the region is released before the memory).
struct Buffer {
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte[], Free> storage;
  size_t size = 0;
  std::shared_ptr<MemoryRegion> region;

  std::byte* data() const { return storage.get(); }
  template <typename T>
  T* as(size_t offset = 0) const {
    return reinterpret_cast<T*>(data() + offset);
  }
  Sge sge(size_t offset, uint32_t length) const { return region->sge(data() + offset, length); }
  Sge sge() const { return region->sge(); }
  RemoteAddress remote(size_t offset = 0) const { return region->remote(data() + offset); }
  std::span<std::byte> bytes(size_t offset, size_t length) const {
    return {data() + offset, length};
  }
};

// Deterministic contents, so that a test can tell which write landed where.
void fill_pattern(std::span<std::byte> bytes, uint32_t seed);
std::vector<std::byte> pattern(size_t length, uint32_t seed);
std::vector<std::byte> to_bytes(std::string_view text);
// Compares `bytes` with bytes [offset, offset + size) of the pattern, naming the first byte
// that differs.
testing::AssertionResult has_pattern(std::span<const std::byte> bytes, uint32_t seed,
                                     size_t offset = 0);
// Waits (bounded) until memory written by a peer or the progress thread equals `expected`.
testing::AssertionResult wait_for_memory(const std::byte* memory,
                                         std::span<const std::byte> expected,
                                         Milliseconds timeout = kBound);

// Completion queue helpers: never an unbounded loop.
testing::AssertionResult poll_one(CompletionQueue& cq, Completion& out,
                                  Milliseconds timeout = kBound);
testing::AssertionResult poll_n(CompletionQueue& cq, size_t count, std::vector<Completion>& out,
                                Milliseconds timeout = kBound);
// True if the queue stays empty for `duration`.
testing::AssertionResult stays_empty(CompletionQueue& cq, Milliseconds duration = kQuiet);
testing::AssertionResult wait_qp_state(const QueuePair& qp, QpState state,
                                       Milliseconds timeout = kBound);
testing::AssertionResult wait_peek(const CompletionQueue& cq, size_t count,
                                   Milliseconds timeout = kBound);
// Waits for the next device event of `type` about QP `qp_number` (other events are skipped).
testing::AssertionResult wait_event(Device& device, EventType type, uint32_t qp_number,
                                    DeviceEvent& out, Milliseconds timeout = kBound);

bool fd_readable(int fd, Milliseconds timeout = 0ms);

// One side of a connected pair.
struct QpSide {
  std::shared_ptr<CompletionQueue> send_cq;
  std::shared_ptr<CompletionQueue> receive_cq;
  std::shared_ptr<ConnectQueuePair> qp;
  std::shared_ptr<ConnectEndpoint> endpoint;
  void* context = nullptr;
};

struct ConnectedPair {
  QpSide client;  // the active side: resolve, connect
  QpSide server;  // the passive side: the endpoint from get_request, accept
  std::shared_ptr<ConnectEndpoint> listener;
  ConnectParameters client_saw;  // connect's result: what the server offered in accept
  ConnectParameters server_saw;  // the request's parameters: what the client offered
};

struct PairOptions {
  QueuePairOptions client;  // CQs left empty are created; a null context gets a default tag
  QueuePairOptions server;
  ConnectParameters client_parameters;
  ConnectParameters server_parameters;
};

// Default QP contexts of the pairs (distinct addresses, never dereferenced).
void* client_tag();
void* server_tag();

class VerbsTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;

  const DeviceAttributes& attributes() const { return device_->attributes(); }
  bool has_capability(Capability capability) const {
    return has(attributes().capabilities, capability);
  }
  bool has_limitation(Limitation limitation) const {
    return has(attributes().limitations, limitation);
  }
  // The address the suite's pairs use, with `port`.
  static SocketAddress address(uint16_t port);
  // Access an RDMA read (or atomic) result buffer needs on this device.
  Access read_sink_access() const;
  // Completion::source_qp_number of a receive on a connected QP sent by `sender` (types.h):
  // the sender's number where the transport carries it, 0 on iWARP, which never names QPs.
  uint32_t expected_source_qp(const QueuePair& sender) const;

  void make_cq(std::shared_ptr<CompletionQueue>& out, uint32_t entries = 512);
  void register_buffer(size_t bytes, Access access, Buffer& out, ProtectionDomain* pd = nullptr);
  // Creates the QP (and CQs left empty in `options`) of one side.
  void make_side(QueuePairOptions options, void* default_context, QpSide& side);
  void listen_on(const SocketAddress& address, std::shared_ptr<ConnectEndpoint>& listener);
  // Connects two created QPs through `listener`, all in this process, every step bounded.
  void connect_sides(ConnectEndpoint& listener, QpSide& client, QpSide& server,
                     const ConnectParameters& client_parameters,
                     const ConnectParameters& server_parameters,
                     ConnectParameters* client_saw = nullptr,
                     ConnectParameters* server_saw = nullptr);
  void make_pair(ConnectedPair& pair, const PairOptions& options = {});

  // Posts a one-byte signaled send on `side` and checks that it completes kFlushed (the QP is
  // in error, so new work requests are flushed, queue_pair.h).
  void expect_new_send_flushed(QpSide& side, uint64_t wr_id = 0xF1005);
  // The requester's view of a work request the responder refused (bad rkey, bounds, access,
  // no receive, short receive), per Capability::kRemoteErrorsInCompletion:
  //  - with it (InfiniBand RC), the work request completes with `requester_status`;
  //  - without it (iWARP), it completes kSuccess once transmitted, and the responder's
  //    terminate raises kQpFatal for the requester QP.
  // Either way the requester QP ends in kError and later work requests are flushed.
  void expect_responder_error(ConnectedPair& pair, uint64_t wr_id,
                              CompletionStatus requester_status);

  std::shared_ptr<Provider> provider_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<ProtectionDomain> pd_;
  Transport transport_ = Transport::kSoftware;  // of port 1
  Buffer scratch_;                              // 4 KiB, every access right; for incidental sends
};

// ---- Multi-process tests ------------------------------------------------------------------
//
// A peer runs in a fresh process: the test binary re-executes itself for the current test only,
// with the peer role in its environment (no fork-without-exec of a process whose provider has
// threads). The test body starts with
//     if (peer_role()) run_peer([&](Channel& channel) { ...; return 0; });
// so that the child runs the peer and exits with its status, which the parent checks.

// A byte stream between the test process and its peer (one end of a socketpair).
class Channel {
 public:
  Channel() = default;
  explicit Channel(int fd) : fd_(fd) {}
  Channel(Channel&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Channel& operator=(Channel&& other) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  bool send(const void* data, size_t length);
  // Reads exactly `length` bytes; false on timeout, EOF or error.
  bool receive(void* data, size_t length, Milliseconds timeout = kBound);
  template <typename T>
  bool send_value(const T& value) {
    return send(&value, sizeof(value));
  }
  template <typename T>
  bool receive_value(T& value, Milliseconds timeout = kBound) {
    return receive(&value, sizeof(value), timeout);
  }
  void close();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// The parent's handle on a peer process. The destructor kills (SIGKILL) and reaps a child that
// is still running, so a failing test leaves no process behind.
class PeerProcess {
 public:
  PeerProcess() = default;
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  ~PeerProcess();

  // Starts this test again in a child process with peer_role() == role.
  static void spawn(const std::string& role, PeerProcess& out);
  Channel& channel() { return channel_; }
  pid_t pid() const { return pid_; }
  // Waits (bounded) for the child to exit; success means exit status 0.
  testing::AssertionResult wait_exit(Milliseconds timeout = kBound);
  void kill(int signal);

 private:
  pid_t pid_ = -1;
  Channel channel_;
};

// In a peer process, the role the parent asked for; nullopt in the test process itself.
std::optional<std::string> peer_role();
// Runs `body` as the peer (bounded by alarm()), then exits the process: status 0 if `body`
// returned 0 and no gtest assertion failed in the peer, else 1.
[[noreturn]] void run_peer(const std::function<int(Channel&)>& body);

// Checks inside a peer body (a function returning int): print the failure and return 1.
#define PEER_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "peer %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)
#define PEER_CHECK_OK(expr)                                                          \
  do {                                                                               \
    const auto& wv_conf_result = (expr);                                             \
    if (!wv_conf_result.is_ok()) {                                                   \
      std::fprintf(stderr, "peer %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, \
                   ::wv::verbs::conformance::describe(wv_conf_result).c_str());      \
      return 1;                                                                      \
    }                                                                                \
  } while (0)
// Like PEER_CHECK for a testing::AssertionResult, printing its message.
#define PEER_CHECK_TRUE(assertion)                                                 \
  do {                                                                             \
    const ::testing::AssertionResult wv_conf_assertion = (assertion);              \
    if (!wv_conf_assertion) {                                                      \
      std::fprintf(stderr, "peer %s:%d: %s: %s\n", __FILE__, __LINE__, #assertion, \
                   wv_conf_assertion.message());                                   \
      return 1;                                                                    \
    }                                                                              \
  } while (0)
// After calling a fixture helper (which reports through gtest) inside a peer body.
#define PEER_CHECK_NO_FAILURE() PEER_CHECK(!::testing::Test::HasFailure())

}  // namespace wv::verbs::conformance
