// Bootstrap::from_environment(): which launcher started this process.
#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <string>

#include "wv/bootstrap/job_token.h"
#include "wv/bootstrap/pmix.h"
#include "wv/bootstrap/singleton.h"
#include "wv/bootstrap/store_client.h"
#include "wv/transport/bootstrap.h"

namespace wv::transport {
namespace {

using BootstrapResult = Result<std::unique_ptr<Bootstrap>>;

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

Result<int> env_int(const char* name) {
  const char* text = env(name);
  if (text == nullptr) {
    return Result<int>(Errc::kInvalidArgument,
                       fmt::format("WV_JOB_STORE is set but {} is not; start the job with "
                                   "wvrun, or unset the WV_JOB_* variables",
                                   name));
  }
  std::string_view view(text);
  int value = 0;
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (ec != std::errc() || end != view.data() + view.size() || value < 0) {
    return Result<int>(Errc::kInvalidArgument,
                       fmt::format("{}='{}' is not a non-negative integer", name, text));
  }
  return value;
}

BootstrapResult from_wvrun() {
  bootstrap::StoreClientOptions options;
  options.store = env("WV_JOB_STORE");
  const char* token = env("WV_JOB_TOKEN");
  if (token == nullptr) {
    return BootstrapResult(Errc::kInvalidArgument,
                           "WV_JOB_STORE is set but WV_JOB_TOKEN is not; start the job with "
                           "wvrun, or unset the WV_JOB_* variables");
  }
  auto parsed = bootstrap::parse_job_token(token);
  if (!parsed) {
    return BootstrapResult(Errc::kInvalidArgument, "WV_JOB_TOKEN: " + parsed.status().message());
  }
  options.token = *parsed;
  int* fields[] = {&options.rank, &options.size, &options.local_rank, &options.local_size};
  const char* names[] = {"WV_RANK", "WV_SIZE", "WV_LOCAL_RANK", "WV_LOCAL_SIZE"};
  for (int i = 0; i < 4; ++i) {
    auto value = env_int(names[i]);
    if (!value) return value.status();
    *fields[i] = *value;
  }
  const char* job_id = env("WV_JOB_ID");
  options.job_id = job_id != nullptr ? job_id : std::string("wvrun");
  return bootstrap::connect_store(options);
}

// PMIx servers hand their clients the namespace and rank (and the server's URI) this way.
bool started_by_pmix() {
  return env("PMIX_NAMESPACE") != nullptr && env("PMIX_RANK") != nullptr;
}

}  // namespace

BootstrapResult Bootstrap::from_environment() {
  if (env("WV_JOB_STORE") != nullptr) return from_wvrun();
  if (env("WV_RANK") != nullptr) {
    return BootstrapResult(Errc::kInvalidArgument,
                           "WV_RANK is set but WV_JOB_STORE is not: the process looks "
                           "launched by wvrun but cannot reach its store");
  }
  if (started_by_pmix()) return bootstrap::connect_pmix();
  return std::unique_ptr<Bootstrap>(bootstrap::make_singleton());
}

}  // namespace wv::transport
