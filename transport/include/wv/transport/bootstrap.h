// How the processes of one job find each other: rank, size, and a key-value exchange.
//
// A job's processes each publish a few bytes (their endpoint addresses) under a key, then read
// the other ranks' values. Three sources, picked by from_environment():
//   - wvrun: WV_RANK/WV_SIZE/WV_LOCAL_RANK/WV_LOCAL_SIZE/WV_JOB_STORE/WV_JOB_TOKEN/WV_JOB_ID set
//     by the launcher; the values live in its TCP store.
//   - PMIx: a job started by mpirun/prterun/srun (PMIx_Init succeeds).
//   - singleton: neither; rank 0 of 1, values only visible to the process itself.
// Every call that waits for other processes takes a bound and returns kTimedOut past it.
//
// Rules every source keeps (implementations: transport/bootstrap/):
//   - One Bootstrap per process: the wvrun store admits one connection per rank (a second
//     from_environment() in the same process gets kBusy); share the object. Its calls may come
//     from several threads (they are serialised).
//   - Keys are 1 to 1024 bytes (PMIx: 1 to 508), values at most 64 KiB; a put is visible only
//     after the next fence (the wvrun store and singleton hide it even from its own rank
//     until then; do not rely on either behaviour with PMIx); a later put under the same key
//     replaces the value at the next fence. barrier() does not publish puts.
//   - fence() and barrier() are collective: every rank makes the same sequence of them. After
//     one times out the job's collectives cannot resume (later ones return kInvalidState);
//     treat it as fatal. A rank that goes away before joining fails the others' fence with
//     kDisconnected (wvrun store) rather than leaving them to wait out the bound.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"

namespace wv::transport {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;

  // The first source that applies (see above); an error when a source is announced by the
  // environment but does not work (e.g. WV_JOB_STORE unreachable, wrong token).
  static Result<std::unique_ptr<Bootstrap>> from_environment();

  virtual std::string_view kind() const = 0;  // "wvrun", "pmix" or "singleton"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // among the processes of this host
  virtual int local_size() const = 0;
  virtual std::string_view job_id() const = 0;

  // Publishes this rank's `value` under `key` (at most 64 KiB). Visible to others after fence().
  virtual Status put(std::string_view key, std::span<const std::byte> value) = 0;
  // Collective: every rank's puts before the fence are visible to all after it.
  virtual Status fence(std::chrono::milliseconds bound) = 0;
  // The value `rank` put under `key`; kNotFound when it put none before the last fence.
  virtual Result<std::vector<std::byte>> get(int rank, std::string_view key,
                                             std::chrono::milliseconds bound) = 0;
  // Collective: returns once every rank has called it.
  virtual Status barrier(std::chrono::milliseconds bound) = 0;
};

}  // namespace wv::transport
