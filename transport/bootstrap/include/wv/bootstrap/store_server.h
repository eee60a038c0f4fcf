// The job's key-value store that wvrun runs and its processes reach through WV_JOB_STORE.
//
// One thread serves every connection with epoll; nothing a client sends can make it block, crash
// or grow without bound:
//   - the first frame must be a hello with the job token, within hello_timeout, or the
//     connection is dropped (and counted in refused_connections());
//   - a frame longer than the protocol's limit, or one that does not parse, is answered with a
//     kProtocolError naming what was wrong and the connection is closed;
//   - a well-formed request that breaks a rule (value over 64 KiB, unknown rank, store full) is
//     answered with an error and the connection stays usable.
// Collectives (fence, barrier) are numbered per rank: every rank must make the same sequence of
// calls. A rank that disconnects while others wait in a collective it has not joined fails
// that collective for everyone (kDisconnected) rather than leaving them to time out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "wv/bootstrap/job_token.h"
#include "wv/result.h"

namespace wv::bootstrap {

struct StoreServerOptions {
  int size = 1;  // ranks in the job
  JobToken token{};
  // Loopback unless the job spans hosts; then an address the other hosts can reach.
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port
  std::chrono::milliseconds hello_timeout{10'000};
  std::size_t max_connections = 4096;
  std::size_t max_store_bytes = std::size_t{256} << 20;  // keys and values of all ranks
};

class StoreServer {
 public:
  // Binds, listens and starts the serving thread.
  static Result<std::unique_ptr<StoreServer>> start(const StoreServerOptions& options);
  ~StoreServer();  // stops the thread and closes every connection
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  std::uint16_t port() const;
  // The bound address as "host:port" ("[v6]:port" for IPv6), the WV_JOB_STORE value.
  std::string address() const;
  // Connections dropped for a bad or missing token, a hello after the deadline, or a
  // malformed frame: how tests see that hostile input was refused.
  std::size_t refused_connections() const;

  class Impl;

 private:
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wv::bootstrap
