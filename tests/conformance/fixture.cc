#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

namespace wv::verbs::conformance {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kAddressVariable = "VERBS_CONFORMANCE_ADDRESS";
constexpr std::string_view kRoleVariable = "VERBS_CONFORMANCE_PEER_ROLE";
constexpr std::string_view kChannelVariable = "VERBS_CONFORMANCE_PEER_FD";
// A peer process never outlives this, whatever happens to its parent.
constexpr unsigned kPeerSeconds = 60;

char client_tag_storage;
char server_tag_storage;

// Polls gently: spin briefly (completions on loopback arrive within microseconds), then sleep
// in short steps so that the provider's progress thread gets the CPU on a small machine.
class Backoff {
 public:
  void pause() {
    if (++rounds_ < 200) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

 private:
  int rounds_ = 0;
};

}  // namespace

std::string describe(const Status& status) {
  return status.to_string();
}

std::string describe(const Completion& c) {
  std::ostringstream out;
  out << "{wr_id=" << c.wr_id << " status=" << to_string(c.status)
      << " opcode=" << to_string(c.opcode) << " length=" << c.length << " qp=" << c.qp_number
      << " source_qp=" << c.source_qp_number << " flags=" << static_cast<unsigned>(c.flags)
      << " immediate=0x" << std::hex << c.immediate << " invalidated_rkey=0x" << c.invalidated_rkey
      << std::dec << " vendor_error=" << c.vendor_error << "}";
  return out.str();
}

std::vector<std::string> provider_names() {
  std::vector<std::string> names;
  for (std::string_view name : Provider::names()) names.emplace_back(name);
  return names;
}

std::string provider_test_name(const testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

void fill_pattern(std::span<std::byte> bytes, uint32_t seed) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    uint32_t x = seed * 0x9E3779B9u + static_cast<uint32_t>(i) * 0x85EBCA6Bu;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    x ^= x >> 12;
    bytes[i] = static_cast<std::byte>(x);
  }
}

std::vector<std::byte> pattern(size_t length, uint32_t seed) {
  std::vector<std::byte> bytes(length);
  fill_pattern(bytes, seed);
  return bytes;
}

std::vector<std::byte> to_bytes(std::string_view text) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

namespace {

testing::AssertionResult compare_bytes(std::span<const std::byte> actual,
                                       std::span<const std::byte> expected) {
  if (actual.size() != expected.size()) {
    return testing::AssertionFailure()
           << "length " << actual.size() << ", expected " << expected.size();
  }
  for (size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] != expected[i]) {
      return testing::AssertionFailure() << "byte " << i << " of " << actual.size() << " is 0x"
                                         << std::hex << static_cast<unsigned>(actual[i])
                                         << ", expected 0x" << static_cast<unsigned>(expected[i]);
    }
  }
  return testing::AssertionSuccess();
}

}  // namespace

testing::AssertionResult has_pattern(std::span<const std::byte> bytes, uint32_t seed,
                                     size_t offset) {
  const std::vector<std::byte> expected = pattern(offset + bytes.size(), seed);
  return compare_bytes(bytes, std::span(expected).subspan(offset));
}

testing::AssertionResult wait_for_memory(const std::byte* memory,
                                         std::span<const std::byte> expected,
                                         Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::byte> copy(expected.size());
  Backoff backoff;
  for (;;) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const volatile std::byte* source = memory;
    for (size_t i = 0; i < copy.size(); ++i) copy[i] = source[i];
    if (std::equal(copy.begin(), copy.end(), expected.begin())) {
      return testing::AssertionSuccess();
    }
    if (Clock::now() >= deadline) {
      return compare_bytes(copy, expected)
             << " (memory still differs after " << timeout.count() << " ms)";
    }
    backoff.pause();
  }
}

testing::AssertionResult poll_one(CompletionQueue& cq, Completion& out, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    const int n = cq.poll(std::span<Completion>(&out, 1));
    if (n == 1) return testing::AssertionSuccess();
    if (n < 0) {
      return testing::AssertionFailure()
             << "poll() reported an overrun: " << cq.status().to_string();
    }
    if (n != 0) return testing::AssertionFailure() << "poll() of one entry returned " << n;
    if (Clock::now() >= deadline) {
      return testing::AssertionFailure() << "no completion within " << timeout.count() << " ms";
    }
    backoff.pause();
  }
}

testing::AssertionResult poll_n(CompletionQueue& cq, size_t count, std::vector<Completion>& out,
                                Milliseconds timeout) {
  out.clear();
  out.reserve(count);
  const auto deadline = Clock::now() + timeout;
  Completion batch[16];
  Backoff backoff;
  while (out.size() < count) {
    const size_t want = std::min<size_t>(std::size(batch), count - out.size());
    const int n = cq.poll(std::span<Completion>(batch, want));
    if (n < 0) {
      return testing::AssertionFailure() << "poll() reported an overrun after " << out.size()
                                         << " completions: " << cq.status().to_string();
    }
    if (static_cast<size_t>(n) > want) {
      return testing::AssertionFailure() << "poll() of " << want << " entries returned " << n;
    }
    out.insert(out.end(), batch, batch + n);
    if (n > 0) continue;
    if (Clock::now() >= deadline) {
      testing::AssertionResult failure = testing::AssertionFailure();
      failure << "only " << out.size() << " of " << count << " completions within "
              << timeout.count() << " ms:";
      for (const Completion& c : out) failure << " [" << describe(c) << "]";
      return failure;
    }
    backoff.pause();
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult stays_empty(CompletionQueue& cq, Milliseconds duration) {
  const auto deadline = Clock::now() + duration;
  while (Clock::now() < deadline) {
    if (cq.peek() != 0) {
      Completion c;
      const int n = cq.poll(std::span<Completion>(&c, 1));
      return testing::AssertionFailure()
             << "unexpected completion: "
             << (n == 1 ? describe(c) : "(poll returned " + std::to_string(n) + ")");
    }
    std::this_thread::sleep_for(2ms);
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult wait_qp_state(const QueuePair& qp, QpState state, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    const QpState now = qp.query().state;
    if (now == state) return testing::AssertionSuccess();
    if (Clock::now() >= deadline) {
      return testing::AssertionFailure()
             << "QP " << qp.number() << " is " << to_string(now) << ", not " << to_string(state)
             << ", after " << timeout.count() << " ms";
    }
    backoff.pause();
  }
}

testing::AssertionResult wait_peek(const CompletionQueue& cq, size_t count, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    const size_t queued = cq.peek();
    if (queued >= count) return testing::AssertionSuccess();
    if (Clock::now() >= deadline) {
      return testing::AssertionFailure() << "peek() is " << queued << ", not " << count
                                         << ", after " << timeout.count() << " ms";
    }
    backoff.pause();
  }
}

testing::AssertionResult wait_event(Device& device, EventType type, uint32_t qp_number,
                                    DeviceEvent& out, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string skipped;
  for (;;) {
    const auto remaining = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now());
    auto next = device.next_event();
    auto event = next.wait(std::max(remaining, 0ms));
    if (!event.is_ok()) {
      next.cancel();
      return testing::AssertionFailure()
             << "no " << to_string(type) << " event for QP " << qp_number << " within "
             << timeout.count() << " ms (" << event.status().to_string() << ")"
             << (skipped.empty() ? "" : "; other events: " + skipped);
    }
    if (event->type == type && event->qp_number == qp_number) {
      out = event.value();
      return testing::AssertionSuccess();
    }
    skipped += std::string(to_string(event->type)) + " (QP " + std::to_string(event->qp_number) +
               ": " + event->detail + ") ";
  }
}

bool fd_readable(int fd, Milliseconds timeout) {
  pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
  int n;
  do {
    n = ::poll(&entry, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  return n > 0 && (entry.revents & POLLIN) != 0;
}

void* client_tag() {
  return &client_tag_storage;
}
void* server_tag() {
  return &server_tag_storage;
}

// ---- VerbsTest -----------------------------------------------------------------------------

void VerbsTest::SetUp() {
  auto opened = Provider::open(GetParam());
  if (!opened.is_ok()) {
    GTEST_SKIP() << "provider " << GetParam()
                 << " cannot be opened on this machine: " << opened.status().to_string();
  }
  provider_ = std::move(opened).value();
  ASSERT_NE(provider_, nullptr);
  ASSERT_EQ(provider_->name(), GetParam());
  auto devices = provider_->devices();
  if (devices.is_ok() && devices->empty()) {
    GTEST_SKIP() << "provider " << GetParam() << " has no device on this machine";
  }
  ASSERT_OK(devices);
  ASSERT_OK_AND_ASSIGN(device_, provider_->open_device(""));
  ASSERT_NE(device_, nullptr);
  ASSERT_OK_AND_ASSIGN(pd_, device_->allocate_protection_domain());
  auto port = device_->query_port(1);
  ASSERT_OK(port);
  transport_ = port->transport;
  ASSERT_NO_FATAL_FAILURE(register_buffer(
      4096,
      Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite | Access::kRemoteAtomic,
      scratch_));
}

SocketAddress VerbsTest::address(uint16_t port) {
  if (const char* text = std::getenv(std::string(kAddressVariable).c_str());
      text != nullptr && *text != '\0') {
    std::string host = text;
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    auto parsed = SocketAddress::parse(host + ":" + std::to_string(port));
    if (parsed.is_ok()) return parsed.value();
    ADD_FAILURE() << kAddressVariable << "=" << text
                  << " is not an address: " << parsed.status().to_string();
  }
  return SocketAddress::ipv4_loopback(port);
}

Access VerbsTest::read_sink_access() const {
  return has_capability(Capability::kReadSinkNeedsRemoteWrite)
             ? Access::kLocalWrite | Access::kRemoteWrite
             : Access::kLocalWrite;
}

uint32_t VerbsTest::expected_source_qp(const QueuePair& sender) const {
  return transport_ == Transport::kIwarp ? 0 : sender.number();
}

void VerbsTest::make_cq(std::shared_ptr<CompletionQueue>& out, uint32_t entries) {
  ASSERT_OK_AND_ASSIGN(out, device_->create_completion_queue(entries));
  ASSERT_NE(out, nullptr);
}

void VerbsTest::register_buffer(size_t bytes, Access access, Buffer& out, ProtectionDomain* pd) {
  out.region.reset();
  const size_t rounded = std::max<size_t>((bytes + 4095) / 4096 * 4096, 4096);
  out.storage.reset(static_cast<std::byte*>(std::aligned_alloc(4096, rounded)));
  ASSERT_NE(out.storage, nullptr);
  std::memset(out.data(), 0, rounded);
  out.size = bytes;
  ProtectionDomain& domain = pd != nullptr ? *pd : *pd_;
  ASSERT_OK_AND_ASSIGN(out.region, domain.register_memory(out.data(), bytes, access));
  ASSERT_NE(out.region, nullptr);
}

void VerbsTest::make_side(QueuePairOptions options, void* default_context, QpSide& side) {
  const DeviceAttributes& device = attributes();
  options.send_sge = std::min(options.send_sge, device.max_sge);
  options.receive_sge = std::min(options.receive_sge, device.max_sge);
  options.send_depth = std::min(options.send_depth, device.max_qp_wr);
  options.receive_depth = std::min(options.receive_depth, device.max_qp_wr);
  if (!options.send_cq) {
    ASSERT_NO_FATAL_FAILURE(make_cq(options.send_cq));
  }
  if (!options.receive_cq) {
    ASSERT_NO_FATAL_FAILURE(make_cq(options.receive_cq));
  }
  if (options.context == nullptr) options.context = default_context;
  side.send_cq = options.send_cq;
  side.receive_cq = options.receive_cq;
  side.context = options.context;
  ASSERT_OK_AND_ASSIGN(side.qp, pd_->create_connect_queue_pair(options));
  ASSERT_NE(side.qp, nullptr);
}

void VerbsTest::listen_on(const SocketAddress& where, std::shared_ptr<ConnectEndpoint>& listener) {
  ASSERT_OK_AND_ASSIGN(listener, provider_->create_connect_endpoint());
  ASSERT_OK(listener->bind(where));
  ASSERT_OK(listener->listen(16));
  ASSERT_NE(listener->query().local.port(), 0)
      << "a listener bound to port 0 reports the port it was given in query().local";
}

void VerbsTest::connect_sides(ConnectEndpoint& listener, QpSide& client, QpSide& server,
                              const ConnectParameters& client_parameters,
                              const ConnectParameters& server_parameters,
                              ConnectParameters* client_saw, ConnectParameters* server_saw) {
  const uint16_t port = listener.query().local.port();
  ASSERT_OK_AND_ASSIGN(client.endpoint, provider_->create_connect_endpoint());
  ASSERT_OK(client.endpoint->resolve_address(address(port), kBound).wait(kBound));
  ASSERT_OK(client.endpoint->resolve_route(kBound).wait(kBound));
  auto connecting = client.endpoint->connect(client.qp, client_parameters);
  auto request = listener.get_request();
  ASSERT_OK_AND_ASSIGN(server.endpoint, request.wait(kBound));
  ASSERT_NE(server.endpoint, nullptr);
  if (server_saw != nullptr) *server_saw = server.endpoint->query().peer_parameters;
  auto accepting = server.endpoint->accept(server.qp, server_parameters);
  // An accept that failed at once would leave the client waiting out its bound: say why now.
  if (accepting.ready()) {
    ASSERT_OK(accepting.result().status());
  }
  auto connected = connecting.wait(kBound);
  ASSERT_OK(connected);
  if (client_saw != nullptr) *client_saw = connected.value();
  ASSERT_OK(accepting.wait(kBound));
}

void VerbsTest::make_pair(ConnectedPair& pair, const PairOptions& options) {
  ASSERT_NO_FATAL_FAILURE(make_side(options.client, client_tag(), pair.client));
  ASSERT_NO_FATAL_FAILURE(make_side(options.server, server_tag(), pair.server));
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), pair.listener));
  ASSERT_NO_FATAL_FAILURE(connect_sides(*pair.listener, pair.client, pair.server,
                                        options.client_parameters, options.server_parameters,
                                        &pair.client_saw, &pair.server_saw));
}

void VerbsTest::expect_new_send_flushed(QpSide& side, uint64_t wr_id) {
  const Sge sge = scratch_.sge(0, 1);
  ASSERT_OK(side.qp->send(wr_id, std::span(&sge, 1), SendFlags::kSignaled))
      << "a post to a QP in kError is accepted and completes kFlushed (queue_pair.h)";
  Completion c;
  ASSERT_TRUE(poll_one(*side.send_cq, c));
  EXPECT_EQ(c.wr_id, wr_id) << describe(c);
  EXPECT_EQ(c.status, CompletionStatus::kFlushed) << describe(c);
  EXPECT_EQ(c.qp_number, side.qp->number()) << describe(c);
}

void VerbsTest::expect_responder_error(ConnectedPair& pair, uint64_t wr_id,
                                       CompletionStatus requester_status) {
  Completion c;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.wr_id, wr_id) << describe(c);
  if (has_capability(Capability::kRemoteErrorsInCompletion)) {
    EXPECT_EQ(c.status, requester_status)
        << "with remote_errors_in_completion the responder's error completes the requester's "
           "work request: "
        << describe(c);
  } else {
    EXPECT_EQ(c.status, CompletionStatus::kSuccess)
        << "without remote_errors_in_completion a send or write completes once transmitted: "
        << describe(c);
    DeviceEvent event;
    EXPECT_TRUE(wait_event(*device_, EventType::kQpFatal, pair.client.qp->number(), event))
        << "without remote_errors_in_completion the responder's terminate raises kQpFatal";
    EXPECT_EQ(event.context, pair.client.context) << "a QP event carries the QP's context";
  }
  ASSERT_TRUE(wait_qp_state(*pair.client.qp, QpState::kError));
  ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(pair.client));
}

// ---- Channel and PeerProcess ----------------------------------------------------------------

Channel& Channel::operator=(Channel&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

Channel::~Channel() {
  close();
}

void Channel::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool Channel::send(const void* data, size_t length) {
  const auto* bytes = static_cast<const char*>(data);
  while (length > 0) {
    const ssize_t n = ::send(fd_, bytes, length, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

bool Channel::receive(void* data, size_t length, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto* bytes = static_cast<char*>(data);
  while (length > 0) {
    const auto remaining = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now());
    if (remaining <= 0ms || !fd_readable(fd_, remaining)) return false;
    const ssize_t n = ::recv(fd_, bytes, length, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

PeerProcess::~PeerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
}

void PeerProcess::spawn(const std::string& role, PeerProcess& out) {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  ASSERT_NE(info, nullptr);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0) << std::strerror(errno);

  // Everything is prepared before fork: between fork and exec only async-signal-safe calls.
  std::vector<std::string> arguments = {
      program_invocation_name,
      std::string("--gtest_filter=") + info->test_suite_name() + "." + info->name(),
      "--gtest_brief=1",
  };
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    // The parent's sharding, output file and repeat settings must not reach the peer.
    if (text.starts_with("GTEST_") || text.starts_with(kRoleVariable) ||
        text.starts_with(kChannelVariable)) {
      continue;
    }
    environment.emplace_back(text);
  }
  environment.push_back(std::string(kRoleVariable) + "=" + role);
  environment.push_back(std::string(kChannelVariable) + "=" + std::to_string(fds[1]));
  std::vector<char*> argv;
  for (std::string& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    FAIL() << "fork: " << std::strerror(error);
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
    if (::getppid() != parent) ::_exit(126);
    ::fcntl(fds[1], F_SETFD, 0);  // the child's end survives exec
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    ::execve("/proc/self/exe", argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  out.pid_ = pid;
  out.channel_ = Channel(fds[0]);
}

testing::AssertionResult PeerProcess::wait_exit(Milliseconds timeout) {
  if (pid_ <= 0) return testing::AssertionFailure() << "no peer process";
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped == pid_) {
      pid_ = -1;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return testing::AssertionSuccess();
      if (WIFEXITED(status)) {
        return testing::AssertionFailure()
               << "peer exited with status " << WEXITSTATUS(status) << " (see its stderr)";
      }
      if (WIFSIGNALED(status)) {
        return testing::AssertionFailure() << "peer killed by signal " << WTERMSIG(status) << " ("
                                           << strsignal(WTERMSIG(status)) << ")";
      }
      return testing::AssertionFailure() << "peer ended with wait status " << status;
    }
    if (reaped < 0 && errno != EINTR) {
      return testing::AssertionFailure() << "waitpid: " << std::strerror(errno);
    }
    if (Clock::now() >= deadline) {
      return testing::AssertionFailure()
             << "peer still running after " << timeout.count() << " ms (it will be killed)";
    }
    std::this_thread::sleep_for(5ms);
  }
}

void PeerProcess::kill(int signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  if (signal != SIGSTOP) return;
  // kill() only queues the signal: wait until the peer is really stopped, so that what the test
  // posts next cannot be served by a peer that was still running for a moment.
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WSTOPPED | WNOWAIT) < 0 &&
         errno == EINTR) {
  }
}

std::optional<std::string> peer_role() {
  const char* role = std::getenv(std::string(kRoleVariable).c_str());
  if (role == nullptr) return std::nullopt;
  return std::string(role);
}

void run_peer(const std::function<int(Channel&)>& body) {
  ::alarm(kPeerSeconds);
  int status = 1;
  const char* fd_text = std::getenv(std::string(kChannelVariable).c_str());
  if (fd_text == nullptr) {
    std::fprintf(stderr, "peer: %s is not set\n", std::string(kChannelVariable).c_str());
  } else {
    Channel channel(std::atoi(fd_text));
    status = body(channel);
  }
  if (status == 0 && testing::Test::HasFailure()) status = 1;
  std::fflush(stdout);
  std::fflush(stderr);
  // No destructors: the provider's threads and connections simply end with the process.
  ::_exit(status);
}

}  // namespace wv::verbs::conformance
