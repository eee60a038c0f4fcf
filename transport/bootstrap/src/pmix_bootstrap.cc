#include <fmt/format.h>
#include <pmix.h>

#include <cstring>
#include <mutex>

#include "wv/bootstrap/pmix.h"
#include "wv/bootstrap/store_protocol.h"

namespace wv::bootstrap {
namespace {

constexpr std::string_view kKeyPrefix = "wv.";

Errc errc_of(pmix_status_t rc) {
  switch (rc) {
    case PMIX_ERR_TIMEOUT:
      return Errc::kTimedOut;
    case PMIX_ERR_NOT_FOUND:
      return Errc::kNotFound;
    case PMIX_ERR_BAD_PARAM:
      return Errc::kInvalidArgument;
    case PMIX_ERR_UNREACH:
    case PMIX_ERR_LOST_CONNECTION:
      return Errc::kDisconnected;
    case PMIX_ERR_NOT_SUPPORTED:
      return Errc::kNotSupported;
    default:
      return Errc::kIoError;
  }
}

Status pmix_status(pmix_status_t rc, std::string_view what) {
  return Status(errc_of(rc), fmt::format("{}: {}", what, PMIx_Error_string(rc)));
}

// PMIx takes timeouts in whole seconds; round up so a bound is never cut short.
int timeout_seconds(std::chrono::milliseconds bound) {
  auto s = std::chrono::ceil<std::chrono::seconds>(bound).count();
  return static_cast<int>(std::max<long long>(s, 1));
}

class PmixBootstrap final : public transport::Bootstrap {
 public:
  ~PmixBootstrap() override {
    if (initialized_) PMIx_Finalize(nullptr, 0);
  }

  Status init() {
    pmix_status_t rc = PMIx_Init(&self_, nullptr, 0);
    if (rc != PMIX_SUCCESS) return pmix_status(rc, "PMIx_Init");
    initialized_ = true;
    job_id_ = self_.nspace;
    rank_ = static_cast<int>(self_.rank);
    pmix_proc_t job;
    PMIX_LOAD_PROCID(&job, self_.nspace, PMIX_RANK_WILDCARD);
    auto size = get_u32(job, PMIX_JOB_SIZE);
    if (!size) return size.status();
    size_ = static_cast<int>(*size);
    auto local_size = get_u32(job, PMIX_LOCAL_SIZE);
    if (!local_size) return local_size.status();
    local_size_ = static_cast<int>(*local_size);
    auto local_rank = get_u32(self_, PMIX_LOCAL_RANK);
    if (!local_rank) return local_rank.status();
    local_rank_ = static_cast<int>(*local_rank);
    return Status::ok();
  }

  std::string_view kind() const override { return "pmix"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string_view job_id() const override { return job_id_; }

  Status put(std::string_view key, std::span<const std::byte> value) override {
    auto full = full_key(key);
    if (!full) return full.status();
    if (value.size() > store::kMaxValueBytes) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("value of {} bytes exceeds the {}-byte limit", value.size(),
                                store::kMaxValueBytes));
    }
    pmix_value_t v;
    PMIX_VALUE_CONSTRUCT(&v);
    v.type = PMIX_BYTE_OBJECT;
    // PMIx_Put copies the value; it does not keep this pointer.
    v.data.bo.bytes = const_cast<char*>(reinterpret_cast<const char*>(value.data()));
    v.data.bo.size = value.size();
    std::lock_guard lock(mutex_);
    pmix_status_t rc = PMIx_Put(PMIX_GLOBAL, full->c_str(), &v);
    if (rc != PMIX_SUCCESS) return pmix_status(rc, fmt::format("PMIx_Put of '{}'", key));
    return Status::ok();
  }

  Status fence(std::chrono::milliseconds bound) override {
    std::lock_guard lock(mutex_);
    pmix_status_t rc = PMIx_Commit();
    if (rc != PMIX_SUCCESS) return pmix_status(rc, "PMIx_Commit");
    return run_fence(true, bound, "fence");
  }

  Status barrier(std::chrono::milliseconds bound) override {
    std::lock_guard lock(mutex_);
    return run_fence(false, bound, "barrier");
  }

  Result<std::vector<std::byte>> get(int rank, std::string_view key,
                                     std::chrono::milliseconds bound) override {
    using R = Result<std::vector<std::byte>>;
    if (rank < 0 || rank >= size_) {
      return R(Errc::kInvalidArgument,
               fmt::format("rank {} is out of range for {} ranks", rank, size_));
    }
    auto full = full_key(key);
    if (!full) return full.status();
    pmix_proc_t proc;
    PMIX_LOAD_PROCID(&proc, self_.nspace, static_cast<pmix_rank_t>(rank));
    pmix_info_t info[2];
    int seconds = timeout_seconds(bound);
    PMIX_INFO_LOAD(&info[0], PMIX_TIMEOUT, &seconds, PMIX_INT);
    // The fence collected every rank's data; a key missing after it is missing, and asking
    // the server for it would only wait.
    bool optional = true;
    PMIX_INFO_LOAD(&info[1], PMIX_OPTIONAL, &optional, PMIX_BOOL);
    pmix_value_t* v = nullptr;
    pmix_status_t rc;
    {
      std::lock_guard lock(mutex_);
      rc = PMIx_Get(&proc, full->c_str(), info, 2, &v);
    }
    PMIX_INFO_DESTRUCT(&info[0]);
    PMIX_INFO_DESTRUCT(&info[1]);
    if (rc == PMIX_ERR_NOT_FOUND) {
      return R(Errc::kNotFound,
               fmt::format("rank {} put no value under '{}' before the last fence", rank, key));
    }
    if (rc != PMIX_SUCCESS) {
      return R(pmix_status(rc, fmt::format("PMIx_Get of '{}' from rank {}", key, rank)));
    }
    R out = R(Errc::kProtocolError, fmt::format("PMIx returned '{}' from rank {} with type {}, "
                                                "not bytes",
                                                key, rank, static_cast<int>(v->type)));
    if (v->type == PMIX_BYTE_OBJECT) {
      const auto* data = reinterpret_cast<const std::byte*>(v->data.bo.bytes);
      out = std::vector<std::byte>(data, data + v->data.bo.size);
    }
    PMIX_VALUE_RELEASE(v);
    return out;
  }

 private:
  static Result<std::string> full_key(std::string_view key) {
    if (key.empty() || key.size() + kKeyPrefix.size() > PMIX_MAX_KEYLEN) {
      return Result<std::string>(Errc::kInvalidArgument,
                                 fmt::format("key of {} bytes: PMIx keys are 1 to {} bytes",
                                             key.size(), PMIX_MAX_KEYLEN - kKeyPrefix.size()));
    }
    return std::string(kKeyPrefix) + std::string(key);
  }

  Result<std::uint32_t> get_u32(const pmix_proc_t& proc, const char* key) {
    pmix_value_t* v = nullptr;
    pmix_status_t rc = PMIx_Get(&proc, key, nullptr, 0, &v);
    if (rc != PMIX_SUCCESS) {
      return Result<std::uint32_t>(pmix_status(rc, fmt::format("PMIx_Get of {}", key)));
    }
    std::uint32_t out = 0;
    bool ok = true;
    switch (v->type) {
      case PMIX_UINT32:
        out = v->data.uint32;
        break;
      case PMIX_UINT16:
        out = v->data.uint16;
        break;
      case PMIX_PROC_RANK:
        out = v->data.rank;
        break;
      case PMIX_INT:
        out = static_cast<std::uint32_t>(v->data.integer);
        break;
      default:
        ok = false;
    }
    int type = v->type;
    PMIX_VALUE_RELEASE(v);
    if (!ok) {
      return Result<std::uint32_t>(
          Errc::kProtocolError, fmt::format("PMIx returned {} with unexpected type {}", key, type));
    }
    return out;
  }

  Status run_fence(bool collect, std::chrono::milliseconds bound, std::string_view what) {
    pmix_proc_t job;
    PMIX_LOAD_PROCID(&job, self_.nspace, PMIX_RANK_WILDCARD);
    pmix_info_t info[2];
    int seconds = timeout_seconds(bound);
    PMIX_INFO_LOAD(&info[0], PMIX_TIMEOUT, &seconds, PMIX_INT);
    PMIX_INFO_LOAD(&info[1], PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
    pmix_status_t rc = PMIx_Fence(&job, 1, info, 2);
    PMIX_INFO_DESTRUCT(&info[0]);
    PMIX_INFO_DESTRUCT(&info[1]);
    if (rc != PMIX_SUCCESS) return pmix_status(rc, fmt::format("PMIx_Fence ({})", what));
    return Status::ok();
  }

  pmix_proc_t self_{};
  bool initialized_ = false;
  std::string job_id_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  // PMIx is thread-safe, but a put racing a fence's commit would make "puts before the fence"
  // ambiguous; serialising keeps the contract simple.
  std::mutex mutex_;
};

}  // namespace

Result<std::unique_ptr<transport::Bootstrap>> connect_pmix() {
  auto bootstrap = std::make_unique<PmixBootstrap>();
  if (Status s = bootstrap->init(); !s) return s;
  return std::unique_ptr<transport::Bootstrap>(std::move(bootstrap));
}

bool pmix_built() {
  return true;
}

}  // namespace wv::bootstrap
