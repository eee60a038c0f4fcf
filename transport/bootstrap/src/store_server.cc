#include "wv/bootstrap/store_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>
#include <unordered_map>
#include <vector>

#include "socket_io.h"
#include "wv/bootstrap/store_protocol.h"

namespace wv::bootstrap {
namespace {

using store::Frame;
using store::MsgType;
using store::Reader;
using store::Writer;

// Until it authenticates, a connection may send only a hello, which is this small; a bigger
// frame is refused before it is buffered, so strangers cannot make the server hold memory.
constexpr std::size_t kHelloBodyBytes = store::kBodyHeaderBytes + 4 + store::kTokenBytes + 4 + 4;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kTickMs = 100;  // how often hello deadlines are checked
// Answers a client has not read yet; past this the client is dropped.
constexpr std::size_t kMaxUnsentBytes = std::size_t{16} << 20;

struct Connection {
  UniqueFd fd;
  bool authenticated = false;
  int rank = -1;
  Deadline hello_deadline{};
  std::vector<std::byte> in;
  std::vector<std::byte> out;
  std::size_t out_sent = 0;
  bool close_after_flush = false;
  bool dead = false;
};

}  // namespace

class StoreServer::Impl {
 public:
  explicit Impl(const StoreServerOptions& options)
      : options_(options),
        rank_conn_(static_cast<std::size_t>(options.size), -1),
        pending_(static_cast<std::size_t>(options.size)),
        arrived_(static_cast<std::size_t>(options.size), false) {}

  ~Impl() {
    if (thread_.joinable()) {
      std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
      thread_.join();
    }
  }

  Status open() {
    if (options_.size < 1) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("a job has at least 1 rank, not {}", options_.size));
    }
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    std::string host = options_.bind_address;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(options_.port);
      addr_len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(options_.port);
      addr_len = sizeof *v6;
    } else {
      return Status(Errc::kInvalidArgument,
                    fmt::format("store bind address '{}' is not a numeric IPv4 or IPv6 address",
                                options_.bind_address));
    }
    listener_.reset(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener_.valid()) return errno_status(Errc::kIoError, "socket");
    int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
      return errno_status(Errc::kIoError,
                          fmt::format("bind the store to {}:{}", host, options_.port));
    }
    if (::listen(listener_.get(), 1024) != 0) return errno_status(Errc::kIoError, "listen");
    addr_len = sizeof addr;
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len);
    port_ = ntohs(addr.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    address_ = addr.ss_family == AF_INET ? fmt::format("{}:{}", host, port_)
                                         : fmt::format("[{}]:{}", host, port_);

    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!epoll_.valid() || !wake_.valid()) return errno_status(Errc::kIoError, "epoll/eventfd");
    if (Status s = watch(listener_.get(), EPOLLIN, kListenerId); !s) return s;
    if (Status s = watch(wake_.get(), EPOLLIN, kWakeId); !s) return s;
    thread_ = std::thread([this] { run(); });
    return Status::ok();
  }

  std::uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  std::size_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::uint64_t kListenerId = ~std::uint64_t{0};
  static constexpr std::uint64_t kWakeId = ~std::uint64_t{0} - 1;

  Status watch(int fd, std::uint32_t events, std::uint64_t id) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return errno_status(Errc::kIoError, "epoll_ctl");
    }
    return Status::ok();
  }

  void run() {
    epoll_event events[64];
    for (;;) {
      int n = ::epoll_wait(epoll_.get(), events, 64, kTickMs);
      if (n < 0 && errno != EINTR) return;
      for (int i = 0; i < n; ++i) {
        std::uint64_t id = events[i].data.u64;
        if (id == kWakeId) return;
        if (id == kListenerId) {
          accept_all();
          continue;
        }
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Connection& c = it->second;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(id, c);
        if (!c.dead && (events[i].events & EPOLLOUT)) flush(c);
      }
      expire_hellos();
      reap();
    }
  }

  void accept_all() {
    for (;;) {
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or a transient error (EMFILE): try again on the next event
      UniqueFd owned(fd);
      if (conns_.size() >= options_.max_connections) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        continue;  // closes it
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::uint64_t id = next_id_++;
      if (!watch(fd, EPOLLIN | EPOLLOUT | EPOLLET, id)) continue;
      Connection& c = conns_[id];
      c.fd = std::move(owned);
      c.hello_deadline = Clock::now() + options_.hello_timeout;
    }
  }

  void on_readable(std::uint64_t id, Connection& c) {
    // Edge-triggered: read until EAGAIN.
    std::byte chunk[kReadChunk];
    for (;;) {
      if (c.dead || c.close_after_flush) return;
      ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, 0);
      if (n > 0) {
        c.in.insert(c.in.end(), chunk, chunk + n);
        process_input(id, c);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      drop(id, c);  // closed by the peer, or a reset
      return;
    }
  }

  void process_input(std::uint64_t id, Connection& c) {
    std::size_t pos = 0;
    while (!c.dead && !c.close_after_flush && c.in.size() - pos >= store::kLengthBytes) {
      std::span<const std::byte, store::kLengthBytes> prefix(c.in.data() + pos,
                                                             store::kLengthBytes);
      auto length = store::decode_length(prefix);
      if (!length) {
        refuse(c, 0, length.status());
        break;
      }
      if (!c.authenticated && *length > kHelloBodyBytes) {
        refuse(c, 0,
               Status(Errc::kPermissionDenied,
                      "the first message must be a hello carrying the job token"));
        break;
      }
      if (c.in.size() - pos - store::kLengthBytes < *length) break;  // wait for the rest
      auto frame = store::decode_body(
          std::span<const std::byte>(c.in.data() + pos + store::kLengthBytes, *length));
      pos += store::kLengthBytes + *length;
      if (!frame) {
        refuse(c, 0, frame.status());
        break;
      }
      handle(id, c, std::move(frame).value());
    }
    if (c.dead || c.close_after_flush) {
      c.in.clear();  // nothing more is read from a refused peer
      return;
    }
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(pos));
  }

  void handle(std::uint64_t id, Connection& c, Frame frame) {
    if (!c.authenticated) {
      if (frame.type != MsgType::kHello) {
        refuse(c, frame.seq,
               Status(Errc::kPermissionDenied,
                      "the first message must be a hello carrying the job token"));
        return;
      }
      hello(id, c, frame);
      return;
    }
    switch (frame.type) {
      case MsgType::kPut:
        return answer(c, frame.seq, put(c, frame.payload));
      case MsgType::kGet:
        return get(c, frame);
      case MsgType::kFence:
      case MsgType::kBarrier:
        return collective(id, c, frame);
      default:
        refuse(c, frame.seq,
               Status(Errc::kProtocolError, fmt::format("a client may not send a '{}' message",
                                                        store::to_string(frame.type))));
    }
  }

  void hello(std::uint64_t id, Connection& c, const Frame& frame) {
    Reader r(frame.payload);
    auto magic = r.u32();
    auto token = r.bytes(store::kTokenBytes);
    auto rank = r.u32();
    auto size = r.u32();
    if (!magic || !token || !rank || !size || r.remaining() != 0 || *magic != store::kMagic) {
      return refuse(c, frame.seq, Status(Errc::kProtocolError, "malformed hello"));
    }
    JobToken presented{};
    std::memcpy(presented.data(), token->data(), presented.size());
    if (!tokens_equal(presented, options_.token)) {
      return refuse(c, frame.seq,
                    Status(Errc::kPermissionDenied,
                           "wrong job token (WV_JOB_TOKEN does not match this job's store)"));
    }
    if (*size != static_cast<std::uint32_t>(options_.size)) {
      return refuse(c, frame.seq,
                    Status(Errc::kInvalidArgument,
                           fmt::format("client says the job has {} ranks, the store has {}", *size,
                                       options_.size)));
    }
    if (*rank >= *size) {
      return refuse(c, frame.seq,
                    Status(Errc::kInvalidArgument,
                           fmt::format("rank {} is out of range for {} ranks", *rank, *size)));
    }
    auto r_index = static_cast<std::size_t>(*rank);
    if (rank_conn_[r_index] != -1) {
      return refuse(c, frame.seq,
                    Status(Errc::kBusy, fmt::format("rank {} is already connected to the store "
                                                    "(create one Bootstrap per process)",
                                                    *rank)));
    }
    c.authenticated = true;
    c.rank = static_cast<int>(*rank);
    rank_conn_[r_index] = static_cast<std::int64_t>(id);
    answer(c, frame.seq, Status::ok());
  }

  Status put(Connection& c, std::span<const std::byte> payload) {
    Reader r(payload);
    auto key_len = r.u16();
    if (!key_len) return Status(Errc::kProtocolError, "malformed put");
    auto key = r.bytes(*key_len);
    if (!key) return Status(Errc::kProtocolError, "put key runs past the end of the frame");
    auto value = r.rest();
    if (Status s = check_key(*key); !s) return s;
    if (value.size() > store::kMaxValueBytes) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("value of {} bytes exceeds the {}-byte limit", value.size(),
                                store::kMaxValueBytes));
    }
    std::string k(reinterpret_cast<const char*>(key->data()), key->size());
    auto& pending = pending_[static_cast<std::size_t>(c.rank)];
    std::size_t added = k.size() + value.size();
    if (bytes_ + added > options_.max_store_bytes) {
      return Status(Errc::kNoMemory,
                    fmt::format("the store is full ({} bytes of keys and values)", bytes_));
    }
    bytes_ += added;
    auto [it, inserted] = pending.try_emplace(k);
    if (!inserted) bytes_ -= k.size() + it->second.size();
    it->second.assign(value.begin(), value.end());
    return Status::ok();
  }

  static Status check_key(std::span<const std::byte> key) {
    if (key.empty()) return Status(Errc::kInvalidArgument, "empty key");
    if (key.size() > store::kMaxKeyBytes) {
      return Status(Errc::kInvalidArgument, fmt::format("key of {} bytes exceeds the {}-byte limit",
                                                        key.size(), store::kMaxKeyBytes));
    }
    return Status::ok();
  }

  void get(Connection& c, const Frame& frame) {
    Reader r(frame.payload);
    auto rank = r.u32();
    auto key_len = r.u16();
    std::optional<std::span<const std::byte>> key;
    if (key_len) key = r.bytes(*key_len);
    if (!rank || !key || r.remaining() != 0) {
      return answer(c, frame.seq, Status(Errc::kProtocolError, "malformed get"));
    }
    if (*rank >= static_cast<std::uint32_t>(options_.size)) {
      return answer(c, frame.seq,
                    Status(Errc::kInvalidArgument, fmt::format("rank {} is out of range for {} "
                                                               "ranks",
                                                               *rank, options_.size)));
    }
    if (Status s = check_key(*key); !s) return answer(c, frame.seq, s);
    std::string k(reinterpret_cast<const char*>(key->data()), key->size());
    auto it = committed_.find({static_cast<int>(*rank), k});
    if (it == committed_.end()) {
      return answer(c, frame.seq,
                    Status(Errc::kNotFound, fmt::format("rank {} put no value under '{}' before "
                                                        "the last fence",
                                                        *rank, k)));
    }
    send(c, store::encode_frame(MsgType::kOk, frame.seq, it->second));
  }

  void collective(std::uint64_t id, Connection& c, const Frame& frame) {
    if (!broken_.is_ok()) return answer(c, frame.seq, broken_);
    auto r = static_cast<std::size_t>(c.rank);
    if (arrived_[r]) {
      return answer(c, frame.seq,
                    Status(Errc::kInvalidState,
                           fmt::format("rank {} is already waiting in this {} (did an earlier "
                                       "call time out?)",
                                       c.rank, store::to_string(current_kind_))));
    }
    if (arrivals_ > 0 && frame.type != current_kind_) {
      fail_collective(Status(
          Errc::kInvalidState,
          fmt::format("rank {} called {} while other ranks are in {}; every "
                      "rank must make the same sequence of collective calls",
                      c.rank, store::to_string(frame.type), store::to_string(current_kind_))));
      return answer(c, frame.seq, broken_);
    }
    current_kind_ = frame.type;
    arrived_[r] = true;
    ++arrivals_;
    waiters_.push_back({id, frame.seq});
    if (arrivals_ < options_.size) return;
    if (current_kind_ == MsgType::kFence) {
      for (std::size_t rank = 0; rank < pending_.size(); ++rank) {
        for (auto& [key, value] : pending_[rank]) {
          auto [it, inserted] = committed_.try_emplace({static_cast<int>(rank), key});
          if (!inserted) bytes_ -= key.size() + it->second.size();
          it->second = std::move(value);
        }
        pending_[rank].clear();
      }
    }
    finish_collective(Status::ok());
  }

  void fail_collective(Status why) {
    broken_ = std::move(why);
    finish_collective(broken_);
  }

  void finish_collective(const Status& status) {
    for (auto [waiter, seq] : waiters_) {
      auto it = conns_.find(waiter);
      if (it != conns_.end() && !it->second.dead) answer(it->second, seq, status);
    }
    waiters_.clear();
    arrived_.assign(arrived_.size(), false);
    arrivals_ = 0;
  }

  void answer(Connection& c, std::uint32_t seq, const Status& status) {
    send(c, status.is_ok() ? store::encode_frame(MsgType::kOk, seq, {})
                           : store::encode_error(seq, status));
  }

  // Answers with the error, then closes once the answer is written: the stream can no longer be
  // trusted to be in step, or the peer is not allowed in.
  void refuse(Connection& c, std::uint32_t seq, const Status& status) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    send(c, store::encode_error(seq, status));
    c.close_after_flush = true;
    if (c.out_sent == c.out.size()) c.dead = true;
  }

  void send(Connection& c, std::vector<std::byte> frame) {
    c.out.insert(c.out.end(), frame.begin(), frame.end());
    flush(c);
    // A client that keeps asking without reading the answers is not one of ours.
    if (c.out.size() - c.out_sent > kMaxUnsentBytes) c.dead = true;
  }

  void flush(Connection& c) {
    while (c.out_sent < c.out.size()) {
      ssize_t n =
          ::send(c.fd.get(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT resumes
      c.dead = true;
      return;
    }
    c.out.clear();
    c.out_sent = 0;
    if (c.close_after_flush) c.dead = true;
  }

  void drop(std::uint64_t /*id*/, Connection& c) { c.dead = true; }

  void expire_hellos() {
    Deadline now = Clock::now();
    for (auto& [id, c] : conns_) {
      if (!c.authenticated && !c.dead && !c.close_after_flush && now >= c.hello_deadline) {
        refuse(c, 0, Status(Errc::kTimedOut, "no hello with the job token in time"));
        c.dead = true;  // do not wait for a peer that sends nothing to read our answer
      }
    }
  }

  // Closes dead connections; a rank whose connection closes while others wait in a collective
  // it has not joined will never join it, so that collective fails now instead of timing out.
  void reap() {
    for (auto it = conns_.begin(); it != conns_.end();) {
      Connection& c = it->second;
      if (!c.dead) {
        ++it;
        continue;
      }
      if (c.authenticated) {
        auto r = static_cast<std::size_t>(c.rank);
        rank_conn_[r] = -1;
        if (arrivals_ > 0 && !arrived_[r]) {
          fail_collective(Status(Errc::kDisconnected,
                                 fmt::format("rank {} disconnected from the store before joining "
                                             "the {}",
                                             c.rank, store::to_string(current_kind_))));
        }
      }
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
      it = conns_.erase(it);
    }
  }

  StoreServerOptions options_;
  UniqueFd listener_;
  UniqueFd epoll_;
  UniqueFd wake_;
  std::uint16_t port_ = 0;
  std::string address_;
  std::atomic<std::size_t> refused_{0};
  std::thread thread_;

  // Everything below belongs to the serving thread.
  std::unordered_map<std::uint64_t, Connection> conns_;
  std::uint64_t next_id_ = 0;
  std::vector<std::int64_t> rank_conn_;
  std::vector<std::map<std::string, std::vector<std::byte>>> pending_;
  std::map<std::pair<int, std::string>, std::vector<std::byte>> committed_;
  std::size_t bytes_ = 0;
  std::vector<bool> arrived_;
  int arrivals_ = 0;
  MsgType current_kind_ = MsgType::kFence;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> waiters_;
  Status broken_;
};

Result<std::unique_ptr<StoreServer>> StoreServer::start(const StoreServerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = impl->open(); !s) return s;
  return std::unique_ptr<StoreServer>(new StoreServer(std::move(impl)));
}

StoreServer::StoreServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreServer::~StoreServer() = default;
std::uint16_t StoreServer::port() const {
  return impl_->port();
}
std::string StoreServer::address() const {
  return impl_->address();
}
std::size_t StoreServer::refused_connections() const {
  return impl_->refused();
}

}  // namespace wv::bootstrap
