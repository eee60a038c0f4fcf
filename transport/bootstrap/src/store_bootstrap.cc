// The wvrun Bootstrap: one TCP connection to the job's store, one request at a time.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <mutex>

#include "socket_io.h"
#include "wv/bootstrap/store_client.h"
#include "wv/bootstrap/store_protocol.h"

namespace wv::bootstrap {
namespace {

using store::Frame;
using store::MsgType;
using store::Writer;

class StoreBootstrap final : public transport::Bootstrap {
 public:
  StoreBootstrap(const StoreClientOptions& options, UniqueFd fd)
      : options_(options), fd_(std::move(fd)) {}

  Status hello() {
    Writer w;
    w.u32(store::kMagic)
        .bytes(options_.token)
        .u32(static_cast<std::uint32_t>(options_.rank))
        .u32(static_cast<std::uint32_t>(options_.size));
    std::lock_guard lock(mutex_);
    return request(MsgType::kHello, w.data(), Clock::now() + options_.request_bound).status();
  }

  std::string_view kind() const override { return "wvrun"; }
  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  int local_rank() const override { return options_.local_rank; }
  int local_size() const override { return options_.local_size; }
  std::string_view job_id() const override { return options_.job_id; }

  Status put(std::string_view key, std::span<const std::byte> value) override {
    if (Status s = check_key(key); !s) return s;
    if (value.size() > store::kMaxValueBytes) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("value of {} bytes exceeds the {}-byte limit", value.size(),
                                store::kMaxValueBytes));
    }
    Writer w;
    w.u16(static_cast<std::uint16_t>(key.size())).bytes(key).bytes(value);
    std::lock_guard lock(mutex_);
    return request(MsgType::kPut, w.data(), Clock::now() + options_.request_bound).status();
  }

  Status fence(std::chrono::milliseconds bound) override {
    return collective(MsgType::kFence, bound);
  }
  Status barrier(std::chrono::milliseconds bound) override {
    return collective(MsgType::kBarrier, bound);
  }

  Result<std::vector<std::byte>> get(int rank, std::string_view key,
                                     std::chrono::milliseconds bound) override {
    using R = Result<std::vector<std::byte>>;
    if (rank < 0 || rank >= options_.size) {
      return R(Errc::kInvalidArgument,
               fmt::format("rank {} is out of range for {} ranks", rank, options_.size));
    }
    if (Status s = check_key(key); !s) return s;
    Writer w;
    w.u32(static_cast<std::uint32_t>(rank)).u16(static_cast<std::uint16_t>(key.size())).bytes(key);
    std::lock_guard lock(mutex_);
    return request(MsgType::kGet, w.data(), Clock::now() + bound);
  }

 private:
  static Status check_key(std::string_view key) {
    if (key.empty() || key.size() > store::kMaxKeyBytes) {
      return Status(Errc::kInvalidArgument, fmt::format("key of {} bytes: keys are 1 to {} bytes",
                                                        key.size(), store::kMaxKeyBytes));
    }
    return Status::ok();
  }

  Status collective(MsgType type, std::chrono::milliseconds bound) {
    std::lock_guard lock(mutex_);
    if (!collectives_broken_.is_ok()) return collectives_broken_;
    Status s = request(type, {}, Clock::now() + bound).status();
    if (s.code() == Errc::kTimedOut) {
      // The store counted this rank as arrived; calling again would be counted as the next
      // collective and put this rank out of step with the others for good.
      collectives_broken_ =
          Status(Errc::kInvalidState,
                 fmt::format("an earlier {} timed out; the job's collectives cannot be resumed",
                             store::to_string(type)));
      return Status(Errc::kTimedOut,
                    fmt::format("{} of rank {} did not complete within {} ms (other ranks have "
                                "not joined)",
                                store::to_string(type), options_.rank, bound.count()));
    }
    return s;
  }

  // Sends one request and waits for its answer; answers to earlier requests that timed out are
  // skipped by their sequence number. Caller holds mutex_.
  Result<std::vector<std::byte>> request(MsgType type, std::span<const std::byte> payload,
                                         Deadline deadline) {
    using R = Result<std::vector<std::byte>>;
    if (!stream_broken_.is_ok()) return stream_broken_;
    std::uint32_t seq = ++seq_;
    auto frame = store::encode_frame(type, seq, payload);
    if (Status s = send_all(fd_.get(), frame, deadline); !s) {
      // Part of a frame may be on the wire: nothing further can be framed correctly.
      stream_broken_ = Status(s.code(), "connection to the job store lost: " + s.message());
      return s;
    }
    for (;;) {
      auto answer = read_frame(deadline);
      if (!answer) return answer.status();
      if (answer->seq != seq) continue;  // the late answer to a request that timed out
      if (answer->type == MsgType::kOk) return std::move(answer->payload);
      if (answer->type == MsgType::kError) return R(store::decode_error(answer->payload));
      stream_broken_ = Status(Errc::kProtocolError,
                              "the store answered with an unexpected "
                              "message type");
      return stream_broken_;
    }
  }

  // The next whole frame. Bytes of a frame that was cut short by the deadline stay buffered,
  // so a timed-out call does not desynchronise the stream.
  Result<Frame> read_frame(Deadline deadline) {
    for (;;) {
      if (in_.size() >= store::kLengthBytes) {
        std::span<const std::byte, store::kLengthBytes> prefix(in_.data(), store::kLengthBytes);
        auto length = store::decode_length(prefix);
        if (!length) {
          stream_broken_ = length.status();
          return stream_broken_;
        }
        if (in_.size() >= store::kLengthBytes + *length) {
          auto frame = store::decode_body(
              std::span<const std::byte>(in_.data() + store::kLengthBytes, *length));
          in_.erase(in_.begin(),
                    in_.begin() + static_cast<std::ptrdiff_t>(store::kLengthBytes + *length));
          if (!frame) stream_broken_ = frame.status();
          return frame;
        }
      }
      std::byte chunk[16 * 1024];
      ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n > 0) {
        in_.insert(in_.end(), chunk, chunk + n);
        continue;
      }
      if (n == 0) {
        stream_broken_ = Status(Errc::kDisconnected, "the job store closed the connection");
        return stream_broken_;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        stream_broken_ = errno_status(Errc::kDisconnected, "receive from the job store");
        return stream_broken_;
      }
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Result<Frame>(Errc::kTimedOut, "the job store did not answer in time");
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000))) < 0 &&
          errno != EINTR) {
        return errno_status(Errc::kIoError, "poll");
      }
    }
  }

  StoreClientOptions options_;
  std::mutex mutex_;
  UniqueFd fd_;
  std::uint32_t seq_ = 0;
  std::vector<std::byte> in_;
  Status stream_broken_;
  Status collectives_broken_;
};

}  // namespace

Result<std::unique_ptr<transport::Bootstrap>> connect_store(const StoreClientOptions& options) {
  using R = Result<std::unique_ptr<transport::Bootstrap>>;
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    return R(Errc::kInvalidArgument, fmt::format("rank {} of {} is not a valid position in a job",
                                                 options.rank, options.size));
  }
  if (options.local_size < 1 || options.local_rank < 0 ||
      options.local_rank >= options.local_size) {
    return R(Errc::kInvalidArgument, fmt::format("local rank {} of {} is not valid",
                                                 options.local_rank, options.local_size));
  }
  auto where = split_host_port(options.store, "job store address");
  if (!where) return where.status();
  auto fd = connect_tcp(where->first, where->second, Clock::now() + options.request_bound);
  if (!fd) {
    return R(fd.status().code(), fmt::format("cannot reach the job store at {}: {}", options.store,
                                             fd.status().message()));
  }
  auto bootstrap = std::make_unique<StoreBootstrap>(options, std::move(fd).value());
  if (Status s = bootstrap->hello(); !s) {
    return R(s.code(), fmt::format("the job store at {} refused rank {}: {}", options.store,
                                   options.rank, s.message()));
  }
  return std::unique_ptr<transport::Bootstrap>(std::move(bootstrap));
}

}  // namespace wv::bootstrap
