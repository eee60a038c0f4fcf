// `wv_perf coll`: every collective of wv::coll from 8 B to 64 MiB under wvrun -n N, with the
// loops of coll_driver (shared with wv_mpi_perf coll). --algorithm forces one algorithm name
// for every collective that has it; otherwise the decision table chooses per size.
#include <fmt/format.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "coll_driver.h"
#include "subcommand.h"
#include "wv/collectives/communicator.h"
#include "wv/comm.h"

namespace wv::perf {
namespace {

class WvCollLink final : public CollLink {
 public:
  WvCollLink(coll::Communicator& c, std::string algorithm, bool shared)
      : c_(c), algorithm_(std::move(algorithm)), shared_(shared) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }

  Status run(CollKind kind, const CollShape& shape, float* send, float* recv) override {
    using coll::DataType;
    const DataType f = DataType::kFloat;
    switch (kind) {
      case CollKind::kAllreduce:
        return c_.allreduce(send, recv, shape.total, f, coll::Op::kSum, name(kind));
      case CollKind::kBcast:
        return c_.bcast(send, shape.total, f, 0, name(kind));
      case CollKind::kReduce:
        return c_.reduce(send, recv, shape.total, f, coll::Op::kSum, 0, name(kind));
      case CollKind::kAllgather:
        return c_.allgather(send, recv, shape.per_rank, f, name(kind));
      case CollKind::kReduceScatter:
        return c_.reduce_scatter_block(send, recv, shape.per_rank, f, coll::Op::kSum, name(kind));
      case CollKind::kAlltoall:
        return c_.alltoall(send, recv, shape.per_rank, f, name(kind));
      case CollKind::kGather:
        return c_.gather(send, recv, shape.per_rank, f, 0, name(kind));
      case CollKind::kScatter:
        return c_.scatter(send, recv, shape.per_rank, f, 0, name(kind));
      case CollKind::kBarrier:
        return c_.barrier(name(kind));
    }
    return Status::ok();
  }
  Status barrier() override { return c_.barrier(); }
  Result<float*> allocate(size_t floats) override {
    if (!shared_) return static_cast<float*>(nullptr);
    auto buffer = c_.allocate_buffer(floats * sizeof(float));
    if (!buffer.is_ok()) return buffer.status();
    buffers_.push_back(std::move(buffer).value());
    return static_cast<float*>(buffers_.back().data());
  }
  Result<double> max(double value) override {
    double out = 0;
    if (Status s = c_.allreduce(&value, &out, 1, coll::DataType::kDouble, coll::Op::kMax);
        !s.is_ok()) {
      return s;
    }
    return out;
  }
  std::string algorithm(CollKind kind, const CollShape& shape) const override {
    auto collective = coll::parse_collective(to_string(kind));
    if (!collective.is_ok()) return "";
    if (!name(kind).empty()) return algorithm_;
    const bool per_rank = kind != CollKind::kAllreduce && kind != CollKind::kBcast &&
                          kind != CollKind::kReduce && kind != CollKind::kReduceScatter;
    return std::string(c_.select(*collective, (per_rank ? shape.per_rank : shape.total) * 4));
  }

 private:
  // The forced algorithm when this collective has one by that name, else the table's choice.
  std::string_view name(CollKind kind) const {
    if (algorithm_.empty()) return {};
    auto collective = coll::parse_collective(to_string(kind));
    if (!collective.is_ok() || !coll::check_algorithm(*collective, algorithm_).is_ok()) return {};
    return algorithm_;
  }
  coll::Communicator& c_;
  std::string algorithm_;
  bool shared_;
  std::vector<coll::SharedBuffer> buffers_;
};

class CollSubcommand final : public Subcommand {
 public:
  std::string_view name() const override { return "coll"; }
  std::string_view description() const override {
    return "Collectives of wv::coll (time, algbw, busbw per NCCL) from 8 B to 64 MiB; run "
           "under wvrun -n N";
  }
  void add_options(CLI::App& command) override {
    add_coll_options(command, options_);
    command.add_option("--algorithm", algorithm_,
                       "Force this algorithm for the collectives that have one of that name");
    command.add_option("--provider", provider_, "Provider of this process's worker");
    command
        .add_option("--memory", memory_,
                    "Buffers: heap (the process's own memory) or shared (SharedBuffers from "
                    "Communicator::allocate_buffer, which the host's ranks read in place)")
        ->check(CLI::IsMember({"heap", "shared"}))
        ->capture_default_str();
  }
  int run(const CommonOptions& common) override {
    signal(SIGPIPE, SIG_IGN);
    Comm::Options comm_options;
    comm_options.worker.provider = provider_;
    comm_options.timeout = common.timeout();
    auto init = Comm::init(comm_options);
    if (!init) {
      fmt::print(stderr, "wv_perf coll: joining the job: {}\n", init.status().to_string());
      return kExitFailure;
    }
    coll::Communicator::Options options;
    options.timeout = common.timeout();
    auto communicator = coll::Communicator::create(**init, options);
    if (!communicator) {
      fmt::print(stderr, "wv_perf coll: {}\n", communicator.status().to_string());
      return kExitFailure;
    }
    WvCollLink link(**communicator, algorithm_, memory_ == "shared");
    CollRun run;
    run.common = &common;
    run.options = &options_;
    run.benchmark = "coll (wv_perf)";
    run.transport = "wv " + std::string((*init)->worker().provider_name());
    run.notes =
        fmt::format("{} host(s){}; table {}; {} memory", (*communicator)->topology().host_count(),
                    (*communicator)->topology().fake_hosts > 0 ? " (virtual)" : "",
                    (*communicator)->table().origin(), memory_);
    if (Status s = run_coll(link, run); !s.is_ok()) {
      fmt::print(stderr, "wv_perf coll rank {}: {}\n", link.rank(), s.to_string());
      return kExitFailure;
    }
    return kExitOk;
  }

 private:
  CollOptions options_;
  std::string algorithm_;
  std::string provider_;
  std::string memory_ = "heap";
};

}  // namespace

std::unique_ptr<Subcommand> make_coll_subcommand() {
  return std::make_unique<CollSubcommand>();
}

}  // namespace wv::perf
