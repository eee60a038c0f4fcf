#include "pt2pt_driver.h"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "process.h"
#include "stats.h"

namespace wv::perf {
namespace {

// Tags of the driver's own messages; data never shares a tag with control.
constexpr int kDataTag = 1;
constexpr int kAckTag = 2;
constexpr int kControlTag = 3;
constexpr int kSyncTag = 4;
constexpr size_t kAckBytes = 4;  // as osu_bw

constexpr int64_t kDefaultLatencyIterations = 1000;
// Large ping-pongs are cut to about this many bytes each way, so 64 MiB does not take minutes.
constexpr uint64_t kLatencyBytes = uint64_t{256} << 20;
constexpr int64_t kMinLatencyIterations = 10;
// A window never holds more than this many bytes: 64 x 64 MiB would need 4 GiB per side.
constexpr uint64_t kMaxBytesInFlight = uint64_t{256} << 20;
// Bandwidth runs without --iterations are sized to take about this long; the sizing runs
// double as the warm-up.
constexpr double kBandwidthSeconds = 0.2;
constexpr double kSizingSeconds = 0.02;
constexpr uint64_t kMaxRounds = uint64_t{1} << 24;
constexpr size_t kPeerInfoBytes = 512;

enum class Op { kLatency, kBandwidth, kBidirectional, kRate };

struct OpInfo {
  Op op;
  std::string_view name;
};
constexpr std::array<OpInfo, 4> kOps{{{Op::kLatency, "lat"},
                                      {Op::kBandwidth, "bw"},
                                      {Op::kBidirectional, "bibw"},
                                      {Op::kRate, "rate"}}};

// Page-aligned memory, touched once so that no page fault lands in a timed loop.
class Buffer {
 public:
  void ensure(size_t bytes) {
    if (bytes <= size_) return;
    const size_t rounded = (std::max<size_t>(bytes, 1) + 4095) & ~size_t{4095};
    data_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, rounded)));
    if (!data_) throw std::bad_alloc();
    std::memset(data_.get(), 0xa5, rounded);
    size_ = rounded;
  }
  std::byte* get() const { return data_.get(); }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

Status with_context(const Status& s, std::string_view op, uint64_t size) {
  if (s.is_ok()) return s;
  return Status(s.code(), fmt::format("{} at {} bytes: {}", op, size, s.message()));
}

class Driver {
 public:
  Driver(Pt2ptLink& link, const Pt2ptRun& run) : link_(link), run_(run) {}
  Status run();

 private:
  Status parse();
  uint32_t window_for(Op op, uint64_t size) const {
    const uint32_t window = op == Op::kRate ? run_.options->rate_window : run_.options->window;
    const uint64_t fits = std::max<uint64_t>(1, kMaxBytesInFlight / std::max<uint64_t>(size, 1));
    return static_cast<uint32_t>(std::min<uint64_t>(window, fits));
  }
  std::vector<uint64_t> sizes_for(Op op) const;
  std::string describe(Op op) const;

  Status sync();
  Status send_value(uint64_t value) { return link_.send(&value, sizeof(value), kControlTag); }
  Status recv_value(uint64_t* value) { return link_.recv(value, sizeof(*value), kControlTag); }
  Status exchange_header(RunHeader* header);

  Status latency(uint64_t size, uint64_t warmup, std::span<int64_t> samples);
  // `rounds` windows of `window` messages; seconds as seen by rank 0.
  Result<double> stream(Op op, uint64_t size, uint32_t window, uint64_t rounds);
  struct Throughput {
    uint64_t rounds = 0;
    double seconds = 0;
  };
  Result<Throughput> measure_stream(Op op, uint64_t size, uint32_t window);

  Status latency_section();
  Status stream_section(Op op);

  Pt2ptLink& link_;
  const Pt2ptRun& run_;
  std::vector<Op> ops_;
  std::vector<uint64_t> sizes_;
  uint64_t rate_max_size_ = 0;
  std::optional<Reporter> reporter_;  // rank 0 only
  Buffer send_buffer_;
  Buffer recv_buffer_;  // one slot per window entry: receives never share memory
  std::array<std::byte, kAckBytes> ack_{};
};

Status Driver::parse() {
  const std::string& text = run_.options->ops;
  size_t start = 0;
  std::vector<Op> chosen;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view name = std::string_view(text).substr(start, end - start);
    auto found = std::find_if(kOps.begin(), kOps.end(),
                              [&](const OpInfo& info) { return info.name == name; });
    if (found == kOps.end()) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("unknown operation '{}' in --ops (lat, bw, bibw, rate)", name));
    }
    chosen.push_back(found->op);
    start = end + 1;
  }
  for (const OpInfo& info : kOps) {  // fixed order, each once
    if (std::find(chosen.begin(), chosen.end(), info.op) != chosen.end()) ops_.push_back(info.op);
  }
  const CommonOptions& common = *run_.common;
  if (common.sizes.empty()) {
    sizes_ = default_pt2pt_sizes();
  } else {
    auto sizes = parse_sizes(common.sizes);
    if (!sizes) return sizes.status();
    sizes_ = std::move(sizes).value();
  }
  auto rate_max = parse_sizes(run_.options->rate_max_size);
  if (!rate_max || rate_max.value().size() != 1) {
    return Status(Errc::kInvalidArgument, "--rate-max-size: one size, e.g. 64K");
  }
  rate_max_size_ = rate_max.value()[0];
  if (run_.options->window == 0 || run_.options->rate_window == 0) {
    return Status(Errc::kInvalidArgument, "--window and --rate-window must be at least 1");
  }
  return Status::ok();
}

std::vector<uint64_t> Driver::sizes_for(Op op) const {
  if (op != Op::kRate) return sizes_;
  std::vector<uint64_t> out;
  for (uint64_t size : sizes_) {
    if (size <= rate_max_size_) out.push_back(size);
  }
  return out;
}

std::string Driver::describe(Op op) const {
  const auto limit = [](uint32_t window) {
    return fmt::format("{} outstanding (fewer above {} MiB: at most {} MiB in flight)", window,
                       kMaxBytesInFlight / window >> 20, kMaxBytesInFlight >> 20);
  };
  switch (op) {
    case Op::kLatency:
      return "blocking send/recv ping-pong, half round trip";
    case Op::kBandwidth:
      return fmt::format("non-blocking sends, {}; the receiver acknowledges each window",
                         limit(run_.options->window));
    case Op::kBidirectional:
      return fmt::format("both ranks post {} receives and sends at once; MB/s of both directions",
                         limit(run_.options->window));
    case Op::kRate:
      return fmt::format("as bw with {} outstanding; read Mops/s as million messages/s",
                         run_.options->rate_window);
  }
  return "";
}

// A zero-byte round trip: both ranks leave it at about the same time.
Status Driver::sync() {
  if (link_.rank() == 0) {
    if (Status s = link_.send(nullptr, 0, kSyncTag); !s) return s;
    return link_.recv(nullptr, 0, kSyncTag);
  }
  if (Status s = link_.recv(nullptr, 0, kSyncTag); !s) return s;
  return link_.send(nullptr, 0, kSyncTag);
}

// Rank 1 tells rank 0 where it runs, for the header.
Status Driver::exchange_header(RunHeader* header) {
  std::array<char, kPeerInfoBytes> text{};
  if (link_.rank() == 1) {
    const std::string info =
        fmt::format("{}\n{}\n{}", host_name(), getpid(), cpu_list(allowed_cpus()));
    std::memcpy(text.data(), info.data(), std::min(info.size(), text.size() - 1));
    return link_.send(text.data(), text.size(), kControlTag);
  }
  if (Status s = link_.recv(text.data(), text.size(), kControlTag); !s) return s;
  const std::string info(text.data());
  const size_t a = info.find('\n');
  const size_t b = info.find('\n', a + 1);
  ProcessInfo peer;
  peer.role = "rank 1";
  if (a != std::string::npos && b != std::string::npos) {
    peer.host = info.substr(0, a);
    peer.pid = std::atoi(info.substr(a + 1, b - a - 1).c_str());
    peer.cpus = info.substr(b + 1);
  }
  header->processes.push_back(std::move(peer));
  return Status::ok();
}

Status Driver::latency(uint64_t size, uint64_t warmup, std::span<int64_t> samples) {
  std::byte* out = send_buffer_.get();
  std::byte* in = recv_buffer_.get();
  const uint64_t total = warmup + samples.size();
  if (Status s = sync(); !s) return s;
  if (link_.rank() == 0) {
    for (uint64_t i = 0; i < total; ++i) {
      const Clock::time_point start = Clock::now();
      if (Status s = link_.send(out, size, kDataTag); !s) return s;
      if (Status s = link_.recv(in, size, kDataTag); !s) return s;
      if (i >= warmup) samples[i - warmup] = (Clock::now() - start).count();
    }
    return Status::ok();
  }
  for (uint64_t i = 0; i < total; ++i) {
    if (Status s = link_.recv(in, size, kDataTag); !s) return s;
    if (Status s = link_.send(out, size, kDataTag); !s) return s;
  }
  return Status::ok();
}

Result<double> Driver::stream(Op op, uint64_t size, uint32_t window, uint64_t rounds) {
  const std::byte* out = send_buffer_.get();
  std::byte* in = recv_buffer_.get();
  const size_t slot = std::max<size_t>(size, 1);
  if (Status s = sync(); !s) return s;
  const Clock::time_point start = Clock::now();
  for (uint64_t round = 0; round < rounds; ++round) {
    if (op == Op::kBidirectional) {
      for (uint32_t j = 0; j < window; ++j) {
        if (Status s = link_.post_recv(in + j * slot, size, kDataTag); !s) return s;
      }
      for (uint32_t j = 0; j < window; ++j) {
        if (Status s = link_.post_send(out, size, kDataTag); !s) return s;
      }
      if (Status s = link_.wait_posted(); !s) return s;
    } else if (link_.rank() == 0) {
      for (uint32_t j = 0; j < window; ++j) {
        if (Status s = link_.post_send(out, size, kDataTag); !s) return s;
      }
      if (Status s = link_.wait_posted(); !s) return s;
      if (Status s = link_.recv(ack_.data(), ack_.size(), kAckTag); !s) return s;
    } else {
      for (uint32_t j = 0; j < window; ++j) {
        if (Status s = link_.post_recv(in + j * slot, size, kDataTag); !s) return s;
      }
      if (Status s = link_.wait_posted(); !s) return s;
      if (Status s = link_.send(ack_.data(), ack_.size(), kAckTag); !s) return s;
    }
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Rank 0 chooses every run's round count and sends it first (0 ends the measurement); rank 1
// runs whatever it is told. With --iterations (messages), one warm-up and one timed run;
// otherwise the count grows until a run takes kSizingSeconds and is then scaled to
// kBandwidthSeconds.
Result<Driver::Throughput> Driver::measure_stream(Op op, uint64_t size, uint32_t window) {
  if (link_.rank() != 0) {
    for (;;) {
      uint64_t rounds = 0;
      if (Status s = recv_value(&rounds); !s) return s;
      if (rounds == 0) return Throughput{};
      if (auto r = stream(op, size, window, rounds); !r) return r.status();
    }
  }
  auto go = [&](uint64_t rounds) -> Result<double> {
    if (Status s = send_value(rounds); !s) return s;
    return stream(op, size, window, rounds);
  };
  const CommonOptions& common = *run_.common;
  Throughput result;
  if (common.iterations > 0) {
    const uint64_t warmup = common.warmup >= 0 ? static_cast<uint64_t>(common.warmup) : 0;
    if (warmup > 0) {
      if (auto r = go((warmup + window - 1) / window); !r) return r.status();
    }
    result.rounds = (static_cast<uint64_t>(common.iterations) + window - 1) / window;
    auto r = go(result.rounds);
    if (!r) return r.status();
    result.seconds = r.value();
  } else {
    uint64_t rounds = 1;
    double seconds = 0;
    for (;;) {
      auto r = go(rounds);
      if (!r) return r.status();
      seconds = r.value();
      if (seconds >= kSizingSeconds || rounds >= kMaxRounds) break;
      rounds = std::min(rounds * (seconds * 16 < kSizingSeconds ? 16 : 4), kMaxRounds);
    }
    const double scaled = static_cast<double>(rounds) * kBandwidthSeconds / std::max(seconds, 1e-9);
    result.rounds = std::clamp<uint64_t>(static_cast<uint64_t>(scaled), 1, kMaxRounds);
    auto r = go(result.rounds);
    if (!r) return r.status();
    result.seconds = r.value();
  }
  if (Status s = send_value(0); !s) return s;
  return result;
}

Status Driver::latency_section() {
  if (reporter_) {
    reporter_->begin_section({.op = "lat",
                              .description = describe(Op::kLatency),
                              .metric = Metric::kLatency,
                              .has_ratio = false},
                             run_.path_of ? "path" : "");
  }
  const CommonOptions& common = *run_.common;
  std::vector<int64_t> samples;
  for (uint64_t size : sizes_) {
    int64_t iterations = common.iterations;
    if (iterations <= 0) {
      iterations =
          std::clamp<int64_t>(static_cast<int64_t>(kLatencyBytes / std::max<uint64_t>(size, 1)),
                              kMinLatencyIterations, kDefaultLatencyIterations);
    }
    const uint64_t warmup = common.warmup >= 0 ? static_cast<uint64_t>(common.warmup)
                                               : static_cast<uint64_t>(iterations / 10 + 1);
    samples.assign(static_cast<size_t>(iterations), 0);  // before the timed loop
    if (Status s = latency(size, warmup, samples); !s) return with_context(s, "lat", size);
    if (!reporter_) continue;
    Measurement m;
    m.size = size;
    m.iterations = samples.size();
    m.latency = summarize(samples, 2);
    if (run_.path_of) m.label = run_.path_of(size);
    reporter_->add(m);
  }
  if (reporter_) reporter_->end_section();
  return Status::ok();
}

Status Driver::stream_section(Op op) {
  const std::string_view name = op == Op::kBandwidth       ? "bw"
                                : op == Op::kBidirectional ? "bibw"
                                                           : "rate";
  if (reporter_) {
    reporter_->begin_section({.op = std::string(name),
                              .description = describe(op),
                              .metric = Metric::kBandwidth,
                              .has_ratio = false},
                             run_.path_of ? "path" : "");
  }
  for (uint64_t size : sizes_for(op)) {
    const uint32_t window = window_for(op, size);
    auto measured = measure_stream(op, size, window);
    if (!measured) return with_context(measured.status(), name, size);
    if (!reporter_) continue;
    const Throughput& t = measured.value();
    const double messages = static_cast<double>(t.rounds) * window;
    // bibw moves `messages` each way.
    const double directions = op == Op::kBidirectional ? 2 : 1;
    Measurement m;
    m.size = size;
    m.iterations = static_cast<uint64_t>(messages);
    m.bandwidth_mbps = directions * static_cast<double>(size) * messages / t.seconds / 1e6;
    m.msg_rate_mops = directions * messages / t.seconds / 1e6;
    if (run_.path_of) m.label = run_.path_of(size);
    reporter_->add(m);
  }
  if (reporter_) reporter_->end_section();
  return Status::ok();
}

Status Driver::run() {
  if (Status s = parse(); !s) return s;
  uint64_t max_size = 1;
  uint64_t max_window_bytes = 1;
  for (uint64_t size : sizes_) {
    max_size = std::max(max_size, size);
    for (Op op : ops_) {
      if (op == Op::kLatency || (op == Op::kRate && size > rate_max_size_)) continue;
      max_window_bytes =
          std::max(max_window_bytes, window_for(op, size) * std::max<uint64_t>(size, 1));
    }
  }
  send_buffer_.ensure(max_size);
  recv_buffer_.ensure(std::max(max_size, max_window_bytes));

  RunHeader header = run_.header;
  if (Status s = exchange_header(&header); !s) return s;
  if (link_.rank() == 0) {
    const CommonOptions& common = *run_.common;
    reporter_.emplace(run_.benchmark, common.json ? Format::kJson : Format::kTable, stdout);
    header.details["window"] = run_.options->window;
    header.details["rate_window"] = run_.options->rate_window;
    header.details["timeout_s"] = common.timeout_seconds;
    header.details["pinned"] = common.pin;
    header.details["latency"] =
        "min/median/p99 of per-iteration steady_clock times of a round trip, halved";
    header.details["units"] = "us; MB/s = 10^6 bytes/s; Mops/s = 10^6 messages/s";
    reporter_->header(header);
  }
  for (Op op : ops_) {
    Status s = op == Op::kLatency ? latency_section() : stream_section(op);
    if (!s) return s;
  }
  return sync();  // neither rank leaves while the other still needs it
}

}  // namespace

void add_pt2pt_options(CLI::App& command, Pt2ptOptions& options) {
  command.add_option("--ops", options.ops, "Measurements, comma-separated: lat, bw, bibw, rate")
      ->capture_default_str();
  command.add_option("--window", options.window, "Outstanding messages in bw and bibw")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  command.add_option("--rate-window", options.rate_window, "Outstanding messages in rate")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  command.add_option("--rate-max-size", options.rate_max_size, "Largest size rate runs at")
      ->capture_default_str();
}

std::vector<uint64_t> default_pt2pt_sizes() {
  std::vector<uint64_t> sizes{0, 8};
  for (uint64_t size = 64; size <= (uint64_t{64} << 20); size *= 4) sizes.push_back(size);
  return sizes;
}

Status run_pt2pt(Pt2ptLink& link, const Pt2ptRun& run) {
  Driver driver(link, run);
  return driver.run();
}

}  // namespace wv::perf
