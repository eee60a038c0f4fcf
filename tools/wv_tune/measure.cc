#include "measure.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace wv::tune {

namespace {

using coll::Collective;
using coll::DataType;
using Clock = std::chrono::steady_clock;

// Fixed algorithms for the tool's own steps, so that no table (least of all the one being
// replaced) takes part in the measurement.
constexpr std::string_view kSyncBarrier = "dissemination";
constexpr std::string_view kSyncAllreduce = "recursive_doubling";

// Large sizes get about this much data per algorithm (and at least kMinIterations calls), so
// that the default run on 2-4 ranks takes minutes, not hours.
constexpr uint64_t kBytesPerMeasurement = uint64_t{64} << 20;
constexpr int kMinIterations = 3;

// The sizes a collective is measured at: the barrier moves no data.
std::vector<uint64_t> sizes_for(Collective collective, const Options& options) {
  if (collective == Collective::kBarrier) return {0};
  return options.sizes;
}

int iterations_for(uint64_t bytes, const Options& options) {
  const int floor = std::min(kMinIterations, options.iterations);
  const uint64_t fit = kBytesPerMeasurement / std::max<uint64_t>(bytes, 1);
  return static_cast<int>(std::clamp<uint64_t>(fit, static_cast<uint64_t>(floor),
                                               static_cast<uint64_t>(options.iterations)));
}

// One call of `collective` at `bytes` as decision_table.h counts them: the whole vector for
// bcast and the reductions (floats, the common case), one rank's block for the others (bytes,
// so that every size is exact). empty() when the shape holds no element.
class Call {
 public:
  Call(coll::Communicator& c, Collective collective, uint64_t bytes, std::byte* send,
       std::byte* recv)
      : c_(c), collective_(collective), send_(send), recv_(recv) {
    const size_t n = static_cast<size_t>(c.size());
    switch (collective) {
      case Collective::kBarrier:
        count_ = 1;
        break;
      case Collective::kReduce:
      case Collective::kAllreduce:
        count_ = bytes / sizeof(float);
        break;
      case Collective::kReduceScatter:
        count_ = bytes / sizeof(float) / n;
        break;
      default:
        count_ = bytes;
    }
  }
  bool empty() const { return count_ == 0; }

  Status run(std::string_view algorithm) {
    const DataType f = DataType::kFloat;
    const DataType b = DataType::kUint8;
    switch (collective_) {
      case Collective::kBarrier:
        return c_.barrier(algorithm);
      case Collective::kBcast:
        return c_.bcast(send_, count_, b, 0, algorithm);
      case Collective::kReduce:
        return c_.reduce(send_, recv_, count_, f, coll::Op::kSum, 0, algorithm);
      case Collective::kAllreduce:
        return c_.allreduce(send_, recv_, count_, f, coll::Op::kSum, algorithm);
      case Collective::kAllgather:
        return c_.allgather(send_, recv_, count_, b, algorithm);
      case Collective::kReduceScatter:
        return c_.reduce_scatter_block(send_, recv_, count_, f, coll::Op::kSum, algorithm);
      case Collective::kAlltoall:
        return c_.alltoall(send_, recv_, count_, b, algorithm);
      case Collective::kGather:
        return c_.gather(send_, recv_, count_, b, 0, algorithm);
      case Collective::kScatter:
        return c_.scatter(send_, recv_, count_, b, 0, algorithm);
    }
    return Status::ok();
  }

 private:
  coll::Communicator& c_;
  Collective collective_;
  std::byte* send_;
  std::byte* recv_;
  size_t count_ = 0;
};

// This rank's median seconds per call. Each call is timed on its own, so a descheduled rank
// (2 cores, several ranks) spoils one sample, not the result.
Result<double> median_time(Call& call, std::string_view algorithm, int iterations,
                           coll::Communicator& c) {
  const int warmup = iterations >= 10 ? 2 : 1;
  for (int i = 0; i < warmup; ++i) {
    if (Status s = call.run(algorithm); !s.is_ok()) return s;
  }
  if (Status s = c.barrier(kSyncBarrier); !s.is_ok()) return s;
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    if (Status s = call.run(algorithm); !s.is_ok()) return s;
    samples.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  const size_t middle = samples.size() / 2;
  std::nth_element(samples.begin(), samples.begin() + static_cast<ptrdiff_t>(middle),
                   samples.end());
  double median = samples[middle];
  if (samples.size() % 2 == 0) {
    median = (median + *std::max_element(samples.begin(),
                                         samples.begin() + static_cast<ptrdiff_t>(middle))) /
             2;
  }
  return median;
}

}  // namespace

Result<Measurements> measure(coll::Communicator& c, const Options& options,
                             const SizeDone& size_done) {
  const size_t n = static_cast<size_t>(c.size());
  const uint64_t largest = options.sizes.empty() ? 0 : options.sizes.back();
  // alltoall sends and receives n blocks; gather and allgather receive n, scatter sends n.
  std::vector<std::byte> send(n * largest + sizeof(float)), recv(n * largest + sizeof(float));

  Measurements result;
  const auto start = Clock::now();
  for (Collective collective : options.collectives) {
    if (result.stopped_early) break;
    CollectiveTiming timing{collective, {}};
    const auto names = coll::algorithm_names(collective);
    if (names.size() == 1) {
      // Nothing to choose between: one rule for every size, no time spent.
      timing.sizes.push_back({0, {{std::string(names.front()), 0}}});
      size_done(timing, timing.sizes.back());
      result.timings.push_back(std::move(timing));
      continue;
    }
    for (uint64_t bytes : sizes_for(collective, options)) {
      Call call(c, collective, bytes, send.data(), recv.data());
      if (call.empty()) continue;
      const int iterations = iterations_for(bytes, options);
      std::vector<double> medians;
      for (std::string_view algorithm : names) {
        auto median = median_time(call, algorithm, iterations, c);
        if (!median.is_ok()) {
          return Status(median.status().code(),
                        fmt::format("{} {} at {} bytes: {}", coll::to_string(collective), algorithm,
                                    bytes, median.status().message()));
        }
        medians.push_back(*median);
      }
      // The elapsed time rides along, so every rank takes the same decision at the limit.
      medians.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      std::vector<double> slowest(medians.size());
      if (Status s = c.allreduce(medians.data(), slowest.data(), medians.size(), DataType::kDouble,
                                 coll::Op::kMax, kSyncAllreduce);
          !s.is_ok()) {
        return Status(s.code(), "agreeing on the times: " + s.message());
      }
      SizeTiming size{bytes, {}};
      for (size_t i = 0; i < names.size(); ++i) {
        size.times.push_back({std::string(names[i]), slowest[i]});
      }
      timing.sizes.push_back(std::move(size));
      size_done(timing, timing.sizes.back());
      result.seconds = slowest.back();
      if (options.time_limit > 0 && result.seconds > options.time_limit) {
        result.stopped_early = true;
        break;
      }
    }
    result.timings.push_back(std::move(timing));
  }
  return result;
}

}  // namespace wv::tune
