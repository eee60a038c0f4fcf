#include "wv/bootstrap/singleton.h"

#include <fmt/format.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <string>

#include "wv/bootstrap/store_protocol.h"

namespace wv::bootstrap {
namespace {

class SingletonBootstrap final : public transport::Bootstrap {
 public:
  SingletonBootstrap() : job_id_(fmt::format("singleton-{}", ::getpid())) {}

  std::string_view kind() const override { return "singleton"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string_view job_id() const override { return job_id_; }

  Status put(std::string_view key, std::span<const std::byte> value) override {
    if (key.empty() || key.size() > store::kMaxKeyBytes) {
      return Status(Errc::kInvalidArgument, fmt::format("key of {} bytes: keys are 1 to {} bytes",
                                                        key.size(), store::kMaxKeyBytes));
    }
    if (value.size() > store::kMaxValueBytes) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("value of {} bytes exceeds the {}-byte limit", value.size(),
                                store::kMaxValueBytes));
    }
    std::lock_guard lock(mutex_);
    pending_[std::string(key)].assign(value.begin(), value.end());
    return Status::ok();
  }

  Status fence(std::chrono::milliseconds /*bound*/) override {
    std::lock_guard lock(mutex_);
    for (auto& [key, value] : pending_) committed_[key] = std::move(value);
    pending_.clear();
    return Status::ok();
  }

  Result<std::vector<std::byte>> get(int rank, std::string_view key,
                                     std::chrono::milliseconds /*bound*/) override {
    using R = Result<std::vector<std::byte>>;
    if (rank != 0) {
      return R(Errc::kInvalidArgument,
               fmt::format("rank {} does not exist: a singleton job has rank 0 only", rank));
    }
    std::lock_guard lock(mutex_);
    auto it = committed_.find(std::string(key));
    if (it == committed_.end()) {
      return R(Errc::kNotFound,
               fmt::format("rank 0 put no value under '{}' before the last fence", key));
    }
    return it->second;
  }

  Status barrier(std::chrono::milliseconds /*bound*/) override { return Status::ok(); }

 private:
  std::string job_id_;
  std::mutex mutex_;
  std::map<std::string, std::vector<std::byte>> pending_;
  std::map<std::string, std::vector<std::byte>, std::less<>> committed_;
};

}  // namespace

std::unique_ptr<transport::Bootstrap> make_singleton() {
  return std::make_unique<SingletonBootstrap>();
}

}  // namespace wv::bootstrap
