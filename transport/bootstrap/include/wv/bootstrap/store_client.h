// The Bootstrap of a process started by wvrun: rank and size from the launcher, the exchange
// through the job's store (see store_server.h). from_environment() builds one from WV_* variables;
// tests and tools can build one directly.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "wv/bootstrap/job_token.h"
#include "wv/result.h"
#include "wv/transport/bootstrap.h"

namespace wv::bootstrap {

struct StoreClientOptions {
  std::string store;  // "host:port" (WV_JOB_STORE)
  JobToken token{};
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string job_id;
  // Bounds connecting and every put (put() has no bound argument of its own).
  std::chrono::milliseconds request_bound{30'000};
};

// Connects and presents the token; an error when the store is unreachable, refuses the token,
// or already has a connection for this rank. The object is safe to use from several threads
// (calls are serialised).
Result<std::unique_ptr<transport::Bootstrap>> connect_store(const StoreClientOptions& options);

}  // namespace wv::bootstrap
