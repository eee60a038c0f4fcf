// How a stream of large RDMA reads moves between two processes: through the ring (the target
// copies in, the requester copies out, the two overlapping on two cores) or by one
// process_vm_readv of the requester once the target has checked the key (a pull). Which is
// faster depends on the machine and changes under a VM: on the project's 2-vCPU VMs the ring
// ran at 7.5-8.5 GB/s and CMA at 11-12.6 at 1 MiB most of the time, but whenever the host placed
// the two vCPUs far apart (the two-process flag ping-pong went from 0.075 to 0.27-0.31 us) the
// ring fell to 2.1-2.3 GB/s while CMA stayed at 11.7-12.5; earlier sessions measured CMA itself
// at 1.3-2.3 GB/s. So the requester measures both and takes the faster, re-measuring the other
// now and then.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace wv::verbs::shm {

class TransferPathChooser {
 public:
  enum class Path : uint8_t { kRing, kCma };

  // One transfer in kExploreEvery takes the slower path, so that a change of the machine's
  // phase is seen within that many transfers (64 MiB of 1 MiB reads) at a cost of at most one
  // slow transfer in 64.
  static constexpr uint32_t kExploreEvery = 64;

  // The path for the next transfer of `bytes`; every path is measured once before choosing.
  Path next(uint64_t bytes) {
    Bucket& bucket = bucket_of(bytes);
    ++bucket.transfers;
    for (Path path : {Path::kRing, Path::kCma}) {
      if (bucket.rate[index(path)] == 0) return path;
    }
    const Path faster =
        bucket.rate[index(Path::kCma)] > bucket.rate[index(Path::kRing)] ? Path::kCma : Path::kRing;
    if (bucket.transfers % kExploreEvery != 0) return faster;
    return faster == Path::kCma ? Path::kRing : Path::kCma;
  }

  // A transfer of `bytes` that took `nanoseconds` on `path`: in a busy stream, the time since
  // the previous transfer finished.
  void record(Path path, uint64_t bytes, uint64_t nanoseconds) {
    if (bytes == 0) return;
    const double rate = static_cast<double>(bytes) / static_cast<double>(nanoseconds + 1);
    double& average = bucket_of(bytes).rate[index(path)];
    // Recent transfers weigh most: a phase change shows within a few measurements.
    average = average == 0 ? rate : 0.5 * average + 0.5 * rate;
  }

  // A transfer of `bytes` of the stream completed at `now_ns`; `path` when its time measures
  // that path. Its time is the time since the previous completion, recorded when the stream
  // stayed busy in between (`busy_after`: more of the stream is outstanding now).
  void finished(std::optional<Path> path, uint64_t bytes, int64_t now_ns, bool busy_after) {
    if (path && busy_) record(*path, bytes, static_cast<uint64_t>(now_ns - last_done_ns_));
    last_done_ns_ = now_ns;
    busy_ = busy_after;
  }
  // When the stream's last transfer completed (0: never).
  int64_t last_done_ns() const { return last_done_ns_; }

  // Bytes per nanosecond measured for `path` at `bytes`; 0 before the first measurement.
  double rate(Path path, uint64_t bytes) const {
    return buckets_[bucket_index(bytes)].rate[index(path)];
  }

 private:
  // Transfers of different sizes pay a system call's fixed cost differently: one measurement
  // per size class, a factor of four apart from 32 KiB.
  struct Bucket {
    std::array<double, 2> rate{};  // bytes per ns, by Path
    uint32_t transfers = 0;
  };
  static constexpr size_t kBuckets = 4;

  static size_t index(Path path) { return static_cast<size_t>(path); }
  static size_t bucket_index(uint64_t bytes) {
    size_t at = 0;
    for (uint64_t limit = uint64_t{128} * 1024; at + 1 < kBuckets && bytes >= limit; limit *= 4) {
      ++at;
    }
    return at;
  }
  Bucket& bucket_of(uint64_t bytes) { return buckets_[bucket_index(bytes)]; }

  std::array<Bucket, kBuckets> buckets_{};
  int64_t last_done_ns_ = 0;
  bool busy_ = false;
};

}  // namespace wv::verbs::shm
