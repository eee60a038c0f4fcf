// `wv_perf verbs`: raw verbs latency, bandwidth and message rate of one provider, in the manner
// of perftest (ib_send_lat, ib_write_lat, ib_read_lat, ib_*_bw), with a plain TCP floor measured
// between the same two processes in the same run.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "memcpy_floor.h"
#include "process.h"
#include "report.h"
#include "shm_baseline.h"
#include "stats.h"
#include "subcommand.h"
#include "verbs_session.h"
#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/verbs.h"

namespace wv::perf {
namespace {

using verbs_bench::Op;
using verbs_bench::OpInfo;

constexpr uint64_t kDefaultMaxSize = uint64_t{1} << 20;
constexpr int64_t kDefaultLatencyIterations = 1000;
constexpr int64_t kDefaultWarmup = 100;
// Bandwidth runs without --iterations are sized to take about this long; the sizing runs
// double as the warm-up.
constexpr double kBandwidthSeconds = 0.2;
constexpr double kSizingSeconds = 0.02;
constexpr uint64_t kMaxBandwidthCount = uint64_t{1} << 28;
constexpr std::string_view kDefaultOps = "send_lat,write_lat,read_lat,send_bw,write_bw,read_bw";
constexpr std::string_view kDefaultServerBind = "*:18515";

std::string describe(Op op, uint32_t window, uint32_t read_window) {
  switch (op) {
    case Op::kSendLat:
      return "send/receive ping-pong, half round trip";
    case Op::kWriteLat:
      return "RDMA write ping-pong, each side polling the last byte of its buffer (like "
             "ib_write_lat; the send CQ is polled in the same loop), half round trip";
    case Op::kMappedLat:
      return "stores through ConnectQueuePair::map_remote into the peer's allocated memory, each "
             "side polling the last byte of its buffer (a mailbox: no work request, no "
             "completion; the send CQ is polled in the same loop; shm with --memory allocated), "
             "half "
             "round trip";
    case Op::kReadLat:
      return "one RDMA read at a time, full round trip";
    case Op::kSendBw:
      return fmt::format("sends, {} outstanding, until the receiver acknowledges the last", window);
    case Op::kWriteBw:
      return fmt::format("RDMA writes, {} outstanding, until a send after the last is acknowledged",
                         window);
    case Op::kReadBw:
      return fmt::format("RDMA reads, {} outstanding, until the last completes", read_window);
    case Op::kTcpLat:
      return "floor: plain TCP ping-pong (TCP_NODELAY, send and a spinning non-blocking recv of "
             "size bytes each way, as wv's pollers spin), half round trip";
    case Op::kTcpBw:
      return "floor: plain TCP stream (blocking send of size bytes each), until the receiver "
             "acknowledges the last byte";
  }
  return "";
}

struct Plan {
  std::vector<Op> latency_ops;
  std::vector<Op> bandwidth_ops;
  std::vector<uint64_t> sizes;
  uint64_t max_size = 1;
};

Result<Plan> make_plan(const std::string& ops_text, const CommonOptions& common) {
  Plan plan;
  std::vector<Op> chosen;
  size_t start = 0;
  const std::string text = ops_text == "all" ? std::string(kDefaultOps) : ops_text;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string name = text.substr(start, end - start);
    const auto ops = verbs_bench::all_ops();
    const auto found = std::find_if(ops.begin(), ops.end(), [&](const OpInfo& info) {
      return info.name == name && info.op != Op::kTcpLat && info.op != Op::kTcpBw;
    });
    if (found == ops.end()) {
      return Status(
          Errc::kInvalidArgument,
          fmt::format("unknown operation '{}' in --ops (choose from {}, mapped_lat, or all; the "
                      "TCP floor is --baseline)",
                      name, kDefaultOps));
    }
    if (std::find(chosen.begin(), chosen.end(), found->op) == chosen.end()) {
      chosen.push_back(found->op);
    }
    start = end + 1;
  }
  // Fixed order: latencies first, then bandwidths, each after its floor.
  for (const OpInfo& info : verbs_bench::all_ops()) {
    if (std::find(chosen.begin(), chosen.end(), info.op) == chosen.end()) continue;
    (info.metric == Metric::kLatency ? plan.latency_ops : plan.bandwidth_ops).push_back(info.op);
  }
  if (common.sizes.empty()) {
    plan.sizes = power_of_two_sizes(kDefaultMaxSize);
  } else {
    auto sizes = parse_sizes(common.sizes);
    if (!sizes) return sizes.status();
    plan.sizes = std::move(sizes).value();
  }
  for (uint64_t size : plan.sizes) plan.max_size = std::max(plan.max_size, size);
  return plan;
}

// The sizes an operation runs at: those asked for, raised to its minimum, each once.
std::vector<uint64_t> sizes_for(const OpInfo& info, const std::vector<uint64_t>& sizes) {
  std::vector<uint64_t> out;
  for (uint64_t size : sizes) {
    const uint64_t effective = std::max(size, info.min_size);
    if (std::find(out.begin(), out.end(), effective) == out.end()) out.push_back(effective);
  }
  return out;
}

// A bandwidth measurement: `count` operations in `seconds`.
struct Throughput {
  uint64_t count = 0;
  double seconds = 0;
};

// Runs `run(count) -> Result<double seconds>` with --iterations, or sized to last about
// kBandwidthSeconds: grow the count until a run takes kSizingSeconds, then scale it.
template <typename Run>
Result<Throughput> measure_throughput(Run&& run, uint64_t window, const CommonOptions& common) {
  if (common.iterations > 0) {
    const int64_t warmup = common.warmup >= 0 ? common.warmup : kDefaultWarmup;
    if (warmup > 0) {
      if (auto r = run(static_cast<uint64_t>(warmup)); !r) return r.status();
    }
    auto seconds = run(static_cast<uint64_t>(common.iterations));
    if (!seconds) return seconds.status();
    return Throughput{static_cast<uint64_t>(common.iterations), seconds.value()};
  }
  uint64_t count = std::max<uint64_t>(window, 16);
  double seconds = 0;
  for (;;) {
    auto r = run(count);
    if (!r) return r.status();
    seconds = r.value();
    if (seconds >= kSizingSeconds || count >= kMaxBandwidthCount) break;
    count = std::min(count * (seconds * 16 < kSizingSeconds ? 16 : 4), kMaxBandwidthCount);
  }
  const double scaled = static_cast<double>(count) * kBandwidthSeconds / std::max(seconds, 1e-9);
  count = std::clamp<uint64_t>(static_cast<uint64_t>(scaled), std::max<uint64_t>(window, 1),
                               kMaxBandwidthCount);
  auto r = run(count);
  if (!r) return r.status();
  return Throughput{count, r.value()};
}

class VerbsSubcommand final : public Subcommand {
 public:
  std::string_view name() const override { return "verbs"; }
  std::string_view description() const override {
    return "Raw verbs latency, bandwidth and message rate of one provider (like perftest), "
           "with a plain TCP floor from the same run";
  }
  void add_options(CLI::App& command) override;
  int run(const CommonOptions& common) override;

 private:
  int run_server(const verbs::SocketAddress& bind, int port_fd);
  int run_client(const verbs::SocketAddress& server, const Plan& plan, Child* child,
                 const std::string& mode);
  // Takes the shm floor's pong process and ends it once the floors are measured: it spins
  // while it waits, on the CPU of the verbs pair's second process.
  Status measure(verbs_bench::Session& session, const Plan& plan, const std::string& floor,
                 std::unique_ptr<ShmPingPong> shm_floor, Reporter& reporter);

  std::string ops_ = std::string(kDefaultOps);
  uint32_t window_ = 64;
  bool out_of_band_ = false;
  std::string memory_ = "registered";
  std::string provider_;
  std::string device_;
  std::string baseline_ = "auto";
  bool server_ = false;
  std::string bind_;
  std::string client_;

  CommonOptions common_;
  std::optional<config::Config> config_;
  std::vector<int> cpus_;
};

void VerbsSubcommand::add_options(CLI::App& command) {
  command
      .add_option("--ops", ops_,
                  "Operations, comma-separated, or all (the default list; mapped_lat only when "
                  "named: shm with --memory allocated)")
      ->capture_default_str();
  command.add_option("--window", window_, "Outstanding operations in bandwidth runs")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  command.add_option(
      "--provider", provider_,
      "Provider (auto|tcp|shm|hybrid|ibverbs); overrides WV_PROVIDER and the config file");
  command.add_option("--device", device_, "Device; overrides WV_DEVICE and the config file");
  command
      .add_option("--baseline", baseline_,
                  "Measure a floor and print wv/floor ratios: tcp (plain TCP), shm (two-process "
                  "shared-memory ping-pong and memcpy), none, or auto (the provider's own)")
      ->check(CLI::IsMember({"auto", "tcp", "shm", "none"}))
      ->capture_default_str();
  command
      .add_option("--memory", memory_,
                  "Buffers: registered (the benchmark's own memory, registered) or allocated "
                  "(ProtectionDomain::allocate_memory, which shm peers read and write "
                  "themselves); a --server uses its own choice")
      ->check(CLI::IsMember({"registered", "allocated"}))
      ->capture_default_str();
  command.add_flag("--out-of-band", out_of_band_,
                   "Connect the QPs from addresses exchanged over TCP (InfiniBand/RoCE without "
                   "rdma_cm, as perftest without -R); both sides must say so");
  auto* server = command.add_flag("--server", server_,
                                  "Run only the server side and serve one client (which chooses "
                                  "the operations, sizes and iterations)");
  command.add_option("--bind", bind_, "Server address to listen on (default *:18515)")
      ->needs(server);
  command
      .add_option("--client", client_, "Run only the client side, against a --server at ADDR:PORT")
      ->excludes(server);
}

int VerbsSubcommand::run(const CommonOptions& common) {
  common_ = common;
  // A peer that vanishes must surface as an error from a call, not kill us while we write.
  signal(SIGPIPE, SIG_IGN);

  auto loaded = config::Config::load(config::Sources::from_process());
  if (!loaded) {
    fmt::print(stderr, "wv_perf: configuration error: {}\n", loaded.status().message());
    return kExitConfigError;
  }
  config_.emplace(std::move(loaded).value());
  if (!provider_.empty()) {
    if (Status s =
            config_->set(config::names::kProvider, provider_, "command line option --provider");
        !s) {
      fmt::print(stderr, "wv_perf: configuration error: {}\n", s.message());
      return kExitConfigError;
    }
  }
  if (!device_.empty()) {
    if (Status s = config_->set(config::names::kDevice, device_, "command line option --device");
        !s) {
      fmt::print(stderr, "wv_perf: configuration error: {}\n", s.message());
      return kExitConfigError;
    }
  }

  auto plan = make_plan(ops_, common_);
  if (!plan) {
    fmt::print(stderr, "wv_perf: {}\n", plan.status().message());
    return kExitFailure;
  }
  cpus_ = allowed_cpus();

  if (server_) {
    auto bind = verbs::SocketAddress::parse(bind_.empty() ? kDefaultServerBind : bind_);
    if (!bind) {
      fmt::print(stderr, "wv_perf: --bind: {}\n", bind.status().message());
      return kExitFailure;
    }
    if (common_.pin && !cpus_.empty()) {
      if (Status s = pin_to_cpu(cpus_[cpus_.size() > 1 ? 1 : 0]); !s) {
        fmt::print(stderr, "wv_perf: {}\n", s.message());
        return kExitFailure;
      }
    }
    return run_server(bind.value(), -1);
  }
  if (!client_.empty()) {
    auto server = verbs::SocketAddress::parse(client_);
    if (!server) {
      fmt::print(stderr, "wv_perf: --client: {}\n", server.status().message());
      return kExitFailure;
    }
    if (common_.pin && !cpus_.empty()) {
      if (Status s = pin_to_cpu(cpus_[0]); !s) {
        fmt::print(stderr, "wv_perf: {}\n", s.message());
        return kExitFailure;
      }
    }
    return run_client(server.value(), plan.value(), nullptr, "client of " + client_);
  }

  // Both sides here: the server is a child on loopback. Fork before any provider is opened, so
  // that the child does not inherit a provider whose threads did not survive the fork.
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    fmt::print(stderr, "wv_perf: pipe: {}\n", std::strerror(errno));
    return kExitFailure;
  }
  Fd port_reader(pipe_fds[0]);
  Fd port_writer(pipe_fds[1]);
  const bool pin = common_.pin && cpus_.size() >= 2;
  auto child = Child::spawn([&]() {
    port_reader.reset();
    if (pin) {
      if (Status s = pin_to_cpu(cpus_[1]); !s) {
        fmt::print(stderr, "wv_perf server: {}\n", s.message());
        return kExitFailure;
      }
    }
    return run_server(verbs::SocketAddress::ipv4_loopback(0), port_writer.release());
  });
  if (!child) {
    fmt::print(stderr, "wv_perf: {}\n", child.status().message());
    return kExitFailure;
  }
  port_writer.reset();
  if (pin) {
    if (Status s = pin_to_cpu(cpus_[0]); !s) {
      fmt::print(stderr, "wv_perf: {}\n", s.message());
      return kExitFailure;
    }
  }
  if (common_.pin && !pin) {
    fmt::print(stderr, "wv_perf: --pin needs two CPUs; only {} allowed, not pinning\n",
               cpu_list(cpus_));
  }
  uint16_t port = 0;
  if (Status s = read_exact(port_reader.get(), &port, sizeof(port), common_.timeout()); !s) {
    fmt::print(stderr, "wv_perf: the server process did not start listening: {}\n", s.message());
    return kExitFailure;  // ~Child kills and reaps it
  }
  return run_client(verbs::SocketAddress::ipv4_loopback(port), plan.value(), &child.value(),
                    "one host: the server is a forked child, connected on loopback");
}

int VerbsSubcommand::run_server(const verbs::SocketAddress& bind, int port_fd) {
  Fd port_writer(port_fd);
  auto fail = [](const Status& s) {
    fmt::print(stderr, "wv_perf server: {}\n", s.message());
    return kExitFailure;
  };
  auto provider = verbs::Provider::open(config_->get_string(config::names::kProvider));
  if (!provider) return fail(provider.status());
  auto listener = verbs_bench::Listener::listen(provider.value(), bind, out_of_band_);
  if (!listener) return fail(listener.status());
  const verbs::SocketAddress listening = listener.value().address();
  if (port_writer.get() >= 0) {
    const uint16_t port = listening.port();
    if (Status s = write_exact(port_writer.get(), &port, sizeof(port)); !s) return fail(s);
    port_writer.reset();
  } else {
    fmt::print("wv_perf verbs server: provider {}, listening on {}\n", provider.value()->name(),
               listening.to_string());
    std::fflush(stdout);
  }
  verbs_bench::SessionOptions options{.device = config_->get_string(config::names::kDevice),
                                      .area_size = 1,
                                      .window = window_,
                                      .timeout = common_.timeout(),
                                      .out_of_band = out_of_band_,
                                      .allocated_memory = memory_ == "allocated"};
  auto session = listener.value().accept(options);
  if (!session) return fail(session.status());
  verbs_bench::PeerDescription self{.process = {.role = "server",
                                                .host = host_name(),
                                                .pid = getpid(),
                                                .cpus = cpu_list(allowed_cpus())},
                                    .provider = std::string(provider.value()->name()),
                                    .device = session.value()->device_attributes().name};
  if (Status s = session.value()->serve(self); !s) return fail(s);
  return kExitOk;
}

int VerbsSubcommand::run_client(const verbs::SocketAddress& server, const Plan& plan, Child* child,
                                const std::string& mode) {
  auto fail = [&](const Status& s) {
    fmt::print(stderr, "wv_perf: {}\n", s.message());
    if (child != nullptr) child->kill();
    return kExitFailure;
  };
  auto provider = verbs::Provider::open(config_->get_string(config::names::kProvider));
  if (!provider) return fail(provider.status());
  uint64_t area_size = plan.max_size;
  verbs_bench::SessionOptions options{.device = config_->get_string(config::names::kDevice),
                                      .area_size = std::max<uint64_t>(area_size, 1),
                                      .window = window_,
                                      .timeout = common_.timeout(),
                                      .out_of_band = out_of_band_,
                                      .allocated_memory = memory_ == "allocated"};
  auto connected = verbs_bench::Session::connect(provider.value(), server, options);
  if (!connected) return fail(connected.status());
  verbs_bench::Session& session = *connected.value();
  auto peer = session.hello();
  if (!peer) return fail(peer.status());

  std::string floor = baseline_;
  if (floor == "auto") {
    floor = session.provider_name() == "tcp" || session.provider_name() == "shm"
                ? std::string(session.provider_name())
                : "none";
  }
  const bool baseline = floor != "none";
  const verbs::DeviceAttributes& device = session.device_attributes();

  RunHeader header;
  header.provider = std::string(session.provider_name());
  header.device = device.name;
  header.processes.push_back(
      {.role = "client", .host = host_name(), .pid = getpid(), .cpus = cpu_list(allowed_cpus())});
  header.processes.push_back(peer.value().process);
  header.details["mode"] = mode;
  if (peer.value().provider != header.provider || peer.value().device != header.device) {
    header.details["server_provider"] =
        fmt::format("{} device {}", peer.value().provider, peer.value().device);
  }
  // Threads a provider starts (a progress thread) inherit their process's CPUs.
  header.details["pinned"] = common_.pin && cpus_.size() >= 2;
  header.details["connection"] =
      out_of_band_ ? "out of band (QP addresses over TCP)" : "the provider's endpoint";
  header.details["window"] = session.window();
  header.details["read_window"] = session.read_window();
  header.details["max_inline"] = session.max_inline();
  header.details["timeout_s"] = common_.timeout_seconds;
  header.details["write_lat_method"] = describe(Op::kWriteLat, 0, 0);
  header.details["latency"] =
      "min/median/p99 of per-iteration steady_clock times; send_lat, write_lat and tcp_lat are "
      "half round trips, read_lat a full round trip";
  header.details["units"] = "us; MB/s = 10^6 bytes/s; Mops/s = 10^6 operations/s";
  header.details["baseline"] = floor;
  if (floor == "shm") {
    header.details["ratio"] =
        "wv / floor at the same size: latency median / median of the two-process shared-memory "
        "ping-pong (shm_lat; read_lat against its full round trip), bandwidth MB/s / single-"
        "threaded memcpy MB/s (memcpy_bw)";
  } else if (baseline) {
    header.details["ratio"] =
        "wv / TCP floor at the same size: latency median / median (read_lat against the TCP "
        "round trip, 2 x tcp_lat), bandwidth MB/s / MB/s; the floor sends 1 byte for size 0";
  }
  Reporter reporter("verbs", common_.json ? Format::kJson : Format::kTable, stdout);
  reporter.header(header);

  std::unique_ptr<ShmPingPong> shm_floor;
  if (floor == "tcp") {
    if (Status s = session.tcp_connect(); !s) return fail(s);
  } else if (floor == "shm") {
    // Pinned like the verbs pair: this process on the first CPU, its pong on the second. The
    // pong process is also the other process the CMA reference reads from.
    const int cpu = common_.pin && cpus_.size() >= 2 ? cpus_[1] : -1;
    auto started = ShmPingPong::start(plan.max_size, cpu, common_.timeout());
    if (!started) return fail(started.status());
    shm_floor = std::move(started).value();
  }
  if (Status s = measure(session, plan, floor, std::move(shm_floor), reporter); !s) return fail(s);
  if (Status s = session.quit(); !s) return fail(s);
  connected.value().reset();
  if (child != nullptr) {
    auto status = child->wait(common_.timeout());
    if (!status) return fail(status.status());
    if (status.value() != 0) {
      fmt::print(stderr, "wv_perf: the server process exited with status {}\n", status.value());
      return kExitFailure;
    }
  }
  return kExitOk;
}

Status VerbsSubcommand::measure(verbs_bench::Session& session, const Plan& plan,
                                const std::string& floor_kind,
                                std::unique_ptr<ShmPingPong> shm_floor, Reporter& reporter) {
  const bool baseline = floor_kind != "none";
  const int64_t iterations =
      common_.iterations > 0 ? common_.iterations : kDefaultLatencyIterations;
  const auto warmup = static_cast<uint64_t>(common_.warmup >= 0 ? common_.warmup : kDefaultWarmup);
  // Allocated once, before anything is timed.
  std::vector<int64_t> samples(static_cast<size_t>(iterations));
  const uint32_t max_message = session.device_attributes().max_message_size;
  std::map<uint64_t, double> floor_latency_us;  // by size, median half round trip
  std::map<uint64_t, double> floor_mbps;

  auto too_large = [&](const OpInfo& info, uint64_t size) {
    if (max_message == 0 || size <= max_message) return false;
    reporter.note(fmt::format("{}: {} bytes skipped, above the device's max_message_size {}",
                              info.name, size, max_message));
    return true;
  };
  auto latency_section = [&](Op op) -> Status {
    const OpInfo& info = verbs_bench::op_info(op);
    const bool floor = op == Op::kTcpLat;
    reporter.begin_section({.op = std::string(info.name),
                            .description = describe(op, 0, 0),
                            .metric = Metric::kLatency,
                            .has_ratio = baseline && !floor});
    for (uint64_t size : sizes_for(info, plan.sizes)) {
      if (!floor && too_large(info, size)) continue;
      if (Status s = session.latency(op, size, warmup, samples); !s) {
        return Status(s.code(), fmt::format("{} at {} bytes: {}", info.name, size, s.message()));
      }
      Measurement m;
      m.size = size;
      m.iterations = samples.size();
      m.latency = summarize(samples, info.divisor);
      if (floor) floor_latency_us[size] = m.latency->median_us;
      if (baseline && !floor) {
        auto it = floor_latency_us.find(std::max<uint64_t>(size, 1));
        if (it != floor_latency_us.end() && it->second > 0) {
          // read_lat is a full round trip; so is twice the floor's half round trip.
          const double reference = op == Op::kReadLat ? 2 * it->second : it->second;
          m.ratio = m.latency->median_us / reference;
        }
      }
      reporter.add(m);
    }
    reporter.end_section();
    return Status::ok();
  };
  auto bandwidth_section = [&](Op op) -> Status {
    const OpInfo& info = verbs_bench::op_info(op);
    const bool floor = op == Op::kTcpBw;
    const uint32_t window = op == Op::kReadBw ? session.read_window() : session.window();
    reporter.begin_section({.op = std::string(info.name),
                            .description = describe(op, session.window(), session.read_window()),
                            .metric = Metric::kBandwidth,
                            .has_ratio = baseline && !floor});
    for (uint64_t size : sizes_for(info, plan.sizes)) {
      if (!floor && too_large(info, size)) continue;
      auto measured = measure_throughput(
          [&](uint64_t count) { return session.bandwidth(op, size, count); }, window, common_);
      if (!measured) {
        return Status(measured.status().code(), fmt::format("{} at {} bytes: {}", info.name, size,
                                                            measured.status().message()));
      }
      const Throughput& t = measured.value();
      Measurement m;
      m.size = size;
      m.iterations = t.count;
      m.bandwidth_mbps = static_cast<double>(size) * static_cast<double>(t.count) / t.seconds / 1e6;
      m.msg_rate_mops = static_cast<double>(t.count) / t.seconds / 1e6;
      if (floor) floor_mbps[size] = *m.bandwidth_mbps;
      if (baseline && !floor && size > 0) {
        auto it = floor_mbps.find(size);
        if (it != floor_mbps.end() && it->second > 0) m.ratio = *m.bandwidth_mbps / it->second;
      }
      reporter.add(m);
    }
    reporter.end_section();
    return Status::ok();
  };

  // The shm floors: measured here, not by the session (they involve no verbs).
  auto shm_latency_floor = [&]() -> Status {
    reporter.begin_section({.op = "shm_lat",
                            .description = "floor: two-process shared-memory ping-pong (copy size "
                                           "bytes in, publish a flag, the peer spins, copies out "
                                           "and answers), half round trip",
                            .metric = Metric::kLatency,
                            .has_ratio = false});
    for (uint64_t size : plan.sizes) {
      if (Status s = shm_floor->ping(size, warmup, samples); !s) return s;
      Measurement m;
      m.size = size;
      m.iterations = samples.size();
      m.latency = summarize(samples, 2);
      floor_latency_us[std::max<uint64_t>(size, 1)] = m.latency->median_us;
      reporter.add(m);
    }
    reporter.end_section();
    return Status::ok();
  };
  auto memcpy_floor = [&]() {
    reporter.begin_section({.op = "memcpy_bw",
                            .description = "floor: single-threaded memcpy of size bytes",
                            .metric = Metric::kBandwidth,
                            .has_ratio = false});
    for (uint64_t size : plan.sizes) {
      if (size == 0) continue;
      Measurement m;
      m.size = size;
      m.bandwidth_mbps = memcpy_mbps(size, 0.1);
      m.msg_rate_mops = *m.bandwidth_mbps / static_cast<double>(size);
      floor_mbps[size] = *m.bandwidth_mbps;
      reporter.add(m);
    }
    reporter.end_section();
  };
  auto cma_floor = [&]() -> Status {
    reporter.begin_section({.op = "cma_bw",
                            .description = "reference: one process_vm_readv of size bytes from "
                                           "another process (the single copy of shm's RDMA read "
                                           "and write of 16 KiB and more, with shm_cma=on or "
                                           "between processes on one CPU)",
                            .metric = Metric::kBandwidth,
                            .has_ratio = false});
    for (uint64_t size : plan.sizes) {
      if (size == 0) continue;
      auto mbps = shm_floor->cma_mbps(size, 0.1);
      if (!mbps) {
        reporter.end_section();
        return mbps.status();
      }
      Measurement m;
      m.size = size;
      m.bandwidth_mbps = *mbps;
      m.msg_rate_mops = *mbps / static_cast<double>(size);
      reporter.add(m);
    }
    reporter.end_section();
    return Status::ok();
  };

  if (floor_kind == "tcp" && !plan.latency_ops.empty()) {
    if (Status s = latency_section(Op::kTcpLat); !s) return s;
  }
  // The shm floors all come first: the pong process spins between its pings, and left running
  // it took half of a CPU from the verbs pair for the rest of the run (wv's numbers 2x slower
  // in runs where the scheduler shared that CPU).
  if (floor_kind == "shm" && shm_floor != nullptr) {
    if (Status s = shm_latency_floor(); !s) return s;
  }
  if (floor_kind == "shm" && !plan.bandwidth_ops.empty()) {
    memcpy_floor();
    // Where cross-memory attach is refused there is no such reference; wv falls back to the ring.
    if (shm_floor != nullptr) {
      if (Status s = cma_floor(); !s)
        std::fprintf(stderr, "# no CMA reference: %s\n", s.to_string().c_str());
    }
  }
  shm_floor.reset();
  for (Op op : plan.latency_ops) {
    if (Status s = latency_section(op); !s) return s;
  }
  if (floor_kind == "tcp" && !plan.bandwidth_ops.empty()) {
    if (Status s = bandwidth_section(Op::kTcpBw); !s) return s;
  }
  for (Op op : plan.bandwidth_ops) {
    if (Status s = bandwidth_section(op); !s) return s;
  }
  return Status::ok();
}

}  // namespace

std::unique_ptr<Subcommand> make_verbs_subcommand() {
  return std::make_unique<VerbsSubcommand>();
}

}  // namespace wv::perf
