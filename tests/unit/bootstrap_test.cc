// The bootstrap's store and its client in one process: ranks are threads. Covers the exchange,
// and that hostile or broken input (wrong token, malformed or oversized frames, silent peers,
// ranks that never arrive) gets a clear error in bounded time and never takes the store down.
#include "wv/transport/bootstrap.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "wv/bootstrap/job_token.h"
#include "wv/bootstrap/singleton.h"
#include "wv/bootstrap/store_client.h"
#include "wv/bootstrap/store_protocol.h"
#include "wv/bootstrap/store_server.h"

namespace {

using namespace std::chrono_literals;
using wv::Errc;
using wv::bootstrap::JobToken;
using wv::bootstrap::StoreClientOptions;
using wv::bootstrap::StoreServer;
using wv::bootstrap::StoreServerOptions;
using wv::transport::Bootstrap;
namespace store = wv::bootstrap::store;

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span<const char>(s.data(), s.size()));
  return {b.begin(), b.end()};
}

std::string string_of(const std::vector<std::byte>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

JobToken test_token() {
  auto token = wv::bootstrap::generate_job_token();
  EXPECT_TRUE(token.is_ok());
  return *token;
}

std::unique_ptr<StoreServer> start_server(int size, const JobToken& token,
                                          std::chrono::milliseconds hello_timeout = 10s) {
  StoreServerOptions options;
  options.size = size;
  options.token = token;
  options.hello_timeout = hello_timeout;
  auto server = StoreServer::start(options);
  EXPECT_TRUE(server.is_ok()) << server.status().to_string();
  return std::move(server).value();
}

StoreClientOptions client_options(const StoreServer& server, const JobToken& token, int rank,
                                  int size) {
  StoreClientOptions options;
  options.store = server.address();
  options.token = token;
  options.rank = rank;
  options.size = size;
  options.local_rank = rank;
  options.local_size = size;
  options.job_id = "test-job";
  options.request_bound = 5s;
  return options;
}

std::unique_ptr<Bootstrap> connect(const StoreServer& server, const JobToken& token, int rank,
                                   int size) {
  auto client = wv::bootstrap::connect_store(client_options(server, token, rank, size));
  EXPECT_TRUE(client.is_ok()) << client.status().to_string();
  return client ? std::move(client).value() : nullptr;
}

// A raw TCP peer that speaks (or abuses) the store protocol by hand.
class RawPeer {
 public:
  explicit RawPeer(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};  // a broken server shows up as a failed read, not a hung test
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawPeer() { ::close(fd_); }
  bool connected() const { return connected_; }

  void send(std::span<const std::byte> data) {
    ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()));
  }
  void send_frame(store::MsgType type, std::uint32_t seq, std::span<const std::byte> payload) {
    send(store::encode_frame(type, seq, payload));
  }
  void hello(const JobToken& token, int rank, int size) {
    store::Writer w;
    w.u32(store::kMagic).bytes(token).u32(rank).u32(size);
    send_frame(store::MsgType::kHello, 1, w.data());
  }

  // The next frame, or nullopt when the server closed the connection (or after 5 s).
  std::optional<store::Frame> read_frame() {
    std::byte prefix[store::kLengthBytes];
    if (!read_exact(prefix)) return std::nullopt;
    auto length = store::decode_length(std::span<const std::byte, store::kLengthBytes>(prefix));
    if (!length) return std::nullopt;
    std::vector<std::byte> body(*length);
    if (!read_exact(body)) return std::nullopt;
    auto frame = store::decode_body(body);
    if (!frame) return std::nullopt;
    return std::move(frame).value();
  }

  // True when the server closed the connection (EOF), false on timeout or data.
  bool closed_by_server() {
    std::byte b;
    return ::recv(fd_, &b, 1, 0) == 0;
  }

 private:
  bool read_exact(std::span<std::byte> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::recv(fd_, out.data() + done, out.size() - done, 0);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
};

wv::Status error_of(const store::Frame& frame) {
  EXPECT_EQ(frame.type, store::MsgType::kError);
  return store::decode_error(frame.payload);
}

// The store still serves a whole job after whatever the test did to it.
void expect_store_alive(const StoreServer& server, const JobToken& token, int size) {
  std::vector<std::thread> ranks;
  std::vector<int> failures(static_cast<std::size_t>(size), 0);
  for (int r = 0; r < size; ++r) {
    ranks.emplace_back([&, r] {
      auto b = connect(server, token, r, size);
      if (!b || !b->barrier(10s)) failures[static_cast<std::size_t>(r)] = 1;
    });
  }
  for (auto& t : ranks) t.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(BootstrapStore, ExchangeAcrossRanks) {
  constexpr int kSize = 4;
  JobToken token = test_token();
  auto server = start_server(kSize, token);
  std::vector<std::thread> ranks;
  std::vector<std::string> errors(kSize);
  for (int r = 0; r < kSize; ++r) {
    ranks.emplace_back([&, r] {
      auto fail = [&](std::string why) { errors[static_cast<std::size_t>(r)] = std::move(why); };
      auto b = connect(*server, token, r, kSize);
      if (!b) return fail("connect");
      if (b->rank() != r || b->size() != kSize || b->kind() != "wvrun") return fail("identity");
      if (!b->put("addr", bytes_of("rank-" + std::to_string(r)))) return fail("put");
      // A value put but not yet fenced is invisible, even to its own rank.
      if (b->get(r, "addr", 5s).status().code() != Errc::kNotFound) return fail("visible early");
      if (wv::Status s = b->fence(10s); !s) return fail("fence: " + s.to_string());
      for (int peer = 0; peer < kSize; ++peer) {
        auto v = b->get(peer, "addr", 5s);
        if (!v) return fail("get: " + v.status().to_string());
        if (string_of(*v) != "rank-" + std::to_string(peer)) return fail("value " + string_of(*v));
      }
      if (b->get(0, "never-put", 5s).status().code() != Errc::kNotFound) return fail("missing");
      if (b->get(kSize, "addr", 5s).status().code() != Errc::kInvalidArgument) {
        return fail("bad rank accepted");
      }
      // A later put replaces the value at the next fence; a barrier alone does not publish.
      if (r == 0 && !b->put("addr", bytes_of("second"))) return fail("put 2");
      if (!b->barrier(10s)) return fail("barrier");
      auto before = b->get(0, "addr", 5s);
      if (!before || string_of(*before) != "rank-0") return fail("barrier published a put");
      if (!b->fence(10s)) return fail("fence 2");
      auto after = b->get(0, "addr", 5s);
      if (!after || string_of(*after) != "second") return fail("fence 2 did not publish");
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kSize; ++r)
    EXPECT_EQ(errors[static_cast<std::size_t>(r)], "") << "rank " << r;
}

TEST(BootstrapStore, BadTokenRefused) {
  JobToken token = test_token();
  auto server = start_server(1, token);
  JobToken wrong = token;
  wrong[0] ^= std::byte{1};
  auto client = wv::bootstrap::connect_store(client_options(*server, wrong, 0, 1));
  ASSERT_FALSE(client.is_ok());
  EXPECT_EQ(client.status().code(), Errc::kPermissionDenied);
  EXPECT_NE(client.status().message().find("token"), std::string::npos)
      << client.status().message();
  EXPECT_GE(server->refused_connections(), 1u);
  expect_store_alive(*server, token, 1);
}

TEST(BootstrapStore, RequestBeforeHelloRefused) {
  JobToken token = test_token();
  auto server = start_server(1, token);
  RawPeer peer(server->port());
  ASSERT_TRUE(peer.connected());
  peer.send_frame(store::MsgType::kGet, 7, {});
  auto answer = peer.read_frame();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(error_of(*answer).code(), Errc::kPermissionDenied);
  EXPECT_TRUE(peer.closed_by_server());
  expect_store_alive(*server, token, 1);
}

TEST(BootstrapStore, SilentConnectionDropped) {
  JobToken token = test_token();
  auto server = start_server(1, token, 200ms);
  RawPeer peer(server->port());
  ASSERT_TRUE(peer.connected());
  auto answer = peer.read_frame();  // within the 5 s receive timeout
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(error_of(*answer).code(), Errc::kTimedOut);
  EXPECT_TRUE(peer.closed_by_server());
  EXPECT_GE(server->refused_connections(), 1u);
}

TEST(BootstrapStore, MalformedFramesRefused) {
  JobToken token = test_token();
  auto server = start_server(2, token);
  {
    // Not our protocol at all: read as a length, it is far over the limit.
    RawPeer peer(server->port());
    peer.send(bytes_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto answer = peer.read_frame();
    ASSERT_TRUE(answer.has_value());
    wv::Status s = error_of(*answer);
    EXPECT_EQ(s.code(), Errc::kProtocolError);
    EXPECT_NE(s.message().find("exceeds"), std::string::npos) << s.message();
    EXPECT_TRUE(peer.closed_by_server());
  }
  {
    // A frame shorter than its own header.
    RawPeer peer(server->port());
    peer.send(std::vector<std::byte>{std::byte{0}, std::byte{0}, std::byte{0}, std::byte{2},
                                     std::byte{1}, std::byte{0}});
    auto answer = peer.read_frame();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(error_of(*answer).code(), Errc::kProtocolError);
    EXPECT_TRUE(peer.closed_by_server());
  }
  {
    // Authenticated, then an unknown message type.
    RawPeer peer(server->port());
    peer.hello(token, 0, 2);
    auto ok = peer.read_frame();
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->type, store::MsgType::kOk);
    peer.send_frame(static_cast<store::MsgType>(0x7f), 2, {});
    auto answer = peer.read_frame();
    ASSERT_TRUE(answer.has_value());
    wv::Status s = error_of(*answer);
    EXPECT_EQ(s.code(), Errc::kProtocolError);
    EXPECT_NE(s.message().find("unknown message type"), std::string::npos) << s.message();
    EXPECT_TRUE(peer.closed_by_server());
  }
  {
    // A put whose key length runs past the frame, then a get with trailing garbage: the
    // framing is intact, so each gets an error and the connection stays.
    RawPeer peer(server->port());
    peer.hello(token, 1, 2);
    ASSERT_TRUE(peer.read_frame().has_value());
    store::Writer put;
    put.u16(500).bytes(std::string_view("short"));
    peer.send_frame(store::MsgType::kPut, 2, put.data());
    auto answer = peer.read_frame();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->seq, 2u);
    EXPECT_EQ(error_of(*answer).code(), Errc::kProtocolError);
    store::Writer get;
    get.u32(0).u16(1).bytes(std::string_view("kX"));
    peer.send_frame(store::MsgType::kGet, 3, get.data());
    answer = peer.read_frame();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->seq, 3u);
    EXPECT_EQ(error_of(*answer).code(), Errc::kProtocolError);
  }
  EXPECT_GE(server->refused_connections(), 3u);
  expect_store_alive(*server, token, 2);
}

TEST(BootstrapStore, OversizeValueRefused) {
  JobToken token = test_token();
  auto server = start_server(1, token);
  std::vector<std::byte> big(store::kMaxValueBytes + 1, std::byte{0x5a});
  {
    auto b = connect(*server, token, 0, 1);
    ASSERT_NE(b, nullptr);
    wv::Status s = b->put("big", big);
    EXPECT_EQ(s.code(), Errc::kInvalidArgument);
    EXPECT_NE(s.message().find("65536"), std::string::npos) << s.message();
    std::string long_key(store::kMaxKeyBytes + 1, 'k');
    EXPECT_EQ(b->put(long_key, bytes_of("v")).code(), Errc::kInvalidArgument);
    // The limit itself is fine.
    big.pop_back();
    EXPECT_TRUE(b->put("max", big));
    ASSERT_TRUE(b->fence(5s));
    auto v = b->get(0, "max", 5s);
    ASSERT_TRUE(v.is_ok());
    EXPECT_EQ(v->size(), store::kMaxValueBytes);
    big.push_back(std::byte{0});
  }
  // The server checks too, for clients that do not.
  RawPeer peer(server->port());
  peer.hello(token, 0, 1);
  ASSERT_TRUE(peer.read_frame().has_value());
  store::Writer put;
  put.u16(3).bytes(std::string_view("big")).bytes(big);
  peer.send_frame(store::MsgType::kPut, 2, put.data());
  auto answer = peer.read_frame();
  ASSERT_TRUE(answer.has_value());
  wv::Status s = error_of(*answer);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds"), std::string::npos) << s.message();
}

TEST(BootstrapStore, GetTimesOutWhenStoreDoesNotAnswer) {
  // A store that accepts the hello and then never answers.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  int accepted = -1;
  std::thread mute([&] {
    accepted = ::accept(listener, nullptr, nullptr);
    std::byte hello[store::kLengthBytes + 64];
    ::recv(accepted, hello, sizeof hello, 0);
    auto ok = store::encode_frame(store::MsgType::kOk, 1, {});
    ::send(accepted, ok.data(), ok.size(), MSG_NOSIGNAL);
  });
  StoreClientOptions options;
  options.store = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  options.token = test_token();
  options.size = 2;
  options.local_size = 2;
  options.request_bound = 5s;
  auto client = wv::bootstrap::connect_store(options);
  mute.join();
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  auto start = std::chrono::steady_clock::now();
  auto v = (*client)->get(1, "addr", 300ms);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(v.status().code(), Errc::kTimedOut);
  EXPECT_GE(waited, 300ms);
  EXPECT_EQ((*client)->fence(200ms).code(), Errc::kTimedOut);
  ::close(accepted);
  ::close(listener);
}

TEST(BootstrapStore, FenceTimesOutWhenARankIsMissing) {
  JobToken token = test_token();
  auto server = start_server(2, token);
  auto b = connect(*server, token, 0, 2);
  ASSERT_NE(b, nullptr);
  wv::Status s = b->fence(300ms);
  EXPECT_EQ(s.code(), Errc::kTimedOut);
  EXPECT_NE(s.message().find("rank 0"), std::string::npos) << s.message();
  // Calling again would count as the next fence: refused instead of silently out of step.
  EXPECT_EQ(b->fence(300ms).code(), Errc::kInvalidState);
  // Plain requests still work: the late answer, if any, is skipped by sequence number.
  EXPECT_EQ(b->get(1, "x", 1s).status().code(), Errc::kNotFound);
}

TEST(BootstrapStore, DisconnectedRankFailsTheFence) {
  JobToken token = test_token();
  auto server = start_server(2, token);
  auto b0 = connect(*server, token, 0, 2);
  ASSERT_NE(b0, nullptr);
  wv::Status result;
  std::thread waiter([&] { result = b0->fence(20s); });
  std::this_thread::sleep_for(100ms);  // let rank 0 arrive first; correctness does not depend on it
  {
    auto b1 = connect(*server, token, 1, 2);
    ASSERT_NE(b1, nullptr);
  }  // rank 1 leaves without joining the fence
  waiter.join();
  EXPECT_EQ(result.code(), Errc::kDisconnected) << result.to_string();
  EXPECT_NE(result.message().find("rank 1"), std::string::npos) << result.message();
}

TEST(BootstrapStore, DuplicateRankRefused) {
  JobToken token = test_token();
  auto server = start_server(2, token);
  auto first = connect(*server, token, 0, 2);
  ASSERT_NE(first, nullptr);
  auto second = wv::bootstrap::connect_store(client_options(*server, token, 0, 2));
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), Errc::kBusy);
  auto wrong_size = wv::bootstrap::connect_store(client_options(*server, token, 1, 3));
  EXPECT_EQ(wrong_size.status().code(), Errc::kInvalidArgument);
}

TEST(BootstrapStore, MismatchedCollectivesFailForEveryone) {
  JobToken token = test_token();
  auto server = start_server(2, token);
  wv::Status fence_result;
  wv::Status barrier_result;
  std::thread r0([&] {
    auto b = connect(*server, token, 0, 2);
    if (b) fence_result = b->fence(10s);
  });
  std::thread r1([&] {
    auto b = connect(*server, token, 1, 2);
    if (b) barrier_result = b->barrier(10s);
  });
  r0.join();
  r1.join();
  EXPECT_EQ(fence_result.code(), Errc::kInvalidState) << fence_result.to_string();
  EXPECT_EQ(barrier_result.code(), Errc::kInvalidState) << barrier_result.to_string();
}

TEST(BootstrapSingleton, BehavesLikeAJobOfOne) {
  auto b = wv::bootstrap::make_singleton();
  EXPECT_EQ(b->kind(), "singleton");
  EXPECT_EQ(b->rank(), 0);
  EXPECT_EQ(b->size(), 1);
  EXPECT_EQ(b->local_rank(), 0);
  EXPECT_EQ(b->local_size(), 1);
  EXPECT_FALSE(b->job_id().empty());
  ASSERT_TRUE(b->put("addr", bytes_of("me")));
  EXPECT_EQ(b->get(0, "addr", 1s).status().code(), Errc::kNotFound);
  ASSERT_TRUE(b->fence(1s));
  auto v = b->get(0, "addr", 1s);
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(string_of(*v), "me");
  EXPECT_EQ(b->get(1, "addr", 1s).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(b->put("big", std::vector<std::byte>(store::kMaxValueBytes + 1)).code(),
            Errc::kInvalidArgument);
  EXPECT_TRUE(b->barrier(1s));
}

// Clears every variable a launcher could have set, so the test sees a plain process.
void clear_launcher_environment() {
  for (const char* name : {"WV_RANK", "WV_SIZE", "WV_LOCAL_RANK", "WV_LOCAL_SIZE", "WV_JOB_STORE",
                           "WV_JOB_TOKEN", "WV_JOB_ID", "PMIX_NAMESPACE", "PMIX_RANK"}) {
    ::unsetenv(name);
  }
}

TEST(BootstrapFromEnvironment, PlainProcessIsASingleton) {
  clear_launcher_environment();
  auto b = Bootstrap::from_environment();
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ((*b)->kind(), "singleton");
}

TEST(BootstrapFromEnvironment, WvrunVariables) {
  clear_launcher_environment();
  JobToken token = test_token();
  auto server = start_server(2, token);
  ::setenv("WV_JOB_STORE", server->address().c_str(), 1);
  ::setenv("WV_JOB_TOKEN", wv::bootstrap::to_hex(token).c_str(), 1);
  ::setenv("WV_RANK", "1", 1);
  ::setenv("WV_SIZE", "2", 1);
  ::setenv("WV_LOCAL_RANK", "1", 1);
  ::setenv("WV_LOCAL_SIZE", "2", 1);
  ::setenv("WV_JOB_ID", "job-42", 1);
  {
    auto b = Bootstrap::from_environment();
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    EXPECT_EQ((*b)->kind(), "wvrun");
    EXPECT_EQ((*b)->rank(), 1);
    EXPECT_EQ((*b)->size(), 2);
    EXPECT_EQ((*b)->job_id(), "job-42");
  }
  ::setenv("WV_JOB_TOKEN", "not-hex", 1);
  auto bad_token = Bootstrap::from_environment();
  EXPECT_EQ(bad_token.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(bad_token.status().message().find("WV_JOB_TOKEN"), std::string::npos);
  ::setenv("WV_JOB_TOKEN", wv::bootstrap::to_hex(token).c_str(), 1);
  ::setenv("WV_RANK", "two", 1);
  auto bad_rank = Bootstrap::from_environment();
  EXPECT_EQ(bad_rank.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(bad_rank.status().message().find("WV_RANK"), std::string::npos);
  ::setenv("WV_RANK", "1", 1);
  server.reset();  // nobody listens any more
  auto unreachable = Bootstrap::from_environment();
  EXPECT_EQ(unreachable.status().code(), Errc::kConnectionRefused)
      << unreachable.status().to_string();
  ::unsetenv("WV_JOB_STORE");
  EXPECT_EQ(Bootstrap::from_environment().status().code(), Errc::kInvalidArgument);
  clear_launcher_environment();
}

TEST(BootstrapToken, HexRoundTripAndRejects) {
  JobToken token = test_token();
  std::string hex = wv::bootstrap::to_hex(token);
  EXPECT_EQ(hex.size(), 32u);
  auto back = wv::bootstrap::parse_job_token(hex);
  ASSERT_TRUE(back.is_ok());
  EXPECT_TRUE(wv::bootstrap::tokens_equal(*back, token));
  EXPECT_FALSE(wv::bootstrap::parse_job_token(hex.substr(1)).is_ok());
  hex[3] = 'g';
  EXPECT_FALSE(wv::bootstrap::parse_job_token(hex).is_ok());
  EXPECT_NE(wv::bootstrap::to_hex(test_token()), wv::bootstrap::to_hex(token));
}

}  // namespace
