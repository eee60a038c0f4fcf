#include "wv/collectives/collective.h"

#include <algorithm>
#include <string>

namespace wv::coll {

namespace {
constexpr std::string_view kBarrier[] = {"dissemination", "hierarchical", "shared_memory"};
constexpr std::string_view kBcast[] = {"binomial", "scatter_allgather", "chain", "hierarchical",
                                       "shared_memory"};
constexpr std::string_view kReduce[] = {"binomial", "shared_memory"};
constexpr std::string_view kAllreduce[] = {"recursive_doubling", "rabenseifner", "ring",
                                           "hierarchical", "shared_memory"};
constexpr std::string_view kAllgather[] = {"recursive_doubling", "bruck", "ring", "hierarchical",
                                           "shared_memory"};
constexpr std::string_view kReduceScatter[] = {"recursive_halving", "ring", "shared_memory"};
constexpr std::string_view kAlltoall[] = {"pairwise", "bruck", "linear", "hierarchical",
                                          "shared_memory"};
constexpr std::string_view kGather[] = {"binomial", "linear", "shared_memory"};
constexpr std::string_view kScatter[] = {"binomial", "linear", "shared_memory"};
}  // namespace

std::string_view to_string(Collective collective) {
  switch (collective) {
    case Collective::kBarrier:
      return "barrier";
    case Collective::kBcast:
      return "bcast";
    case Collective::kReduce:
      return "reduce";
    case Collective::kAllreduce:
      return "allreduce";
    case Collective::kAllgather:
      return "allgather";
    case Collective::kReduceScatter:
      return "reduce_scatter";
    case Collective::kAlltoall:
      return "alltoall";
    case Collective::kGather:
      return "gather";
    case Collective::kScatter:
      return "scatter";
  }
  return "unknown";
}

Result<Collective> parse_collective(std::string_view name) {
  for (Collective c : kAllCollectives) {
    if (to_string(c) == name) return c;
  }
  return Status(Errc::kInvalidArgument, "unknown collective '" + std::string(name) + "'");
}

std::span<const std::string_view> algorithm_names(Collective collective) {
  switch (collective) {
    case Collective::kBarrier:
      return kBarrier;
    case Collective::kBcast:
      return kBcast;
    case Collective::kReduce:
      return kReduce;
    case Collective::kAllreduce:
      return kAllreduce;
    case Collective::kAllgather:
      return kAllgather;
    case Collective::kReduceScatter:
      return kReduceScatter;
    case Collective::kAlltoall:
      return kAlltoall;
    case Collective::kGather:
      return kGather;
    case Collective::kScatter:
      return kScatter;
  }
  return {};
}

Status check_algorithm(Collective collective, std::string_view name) {
  auto names = algorithm_names(collective);
  if (std::find(names.begin(), names.end(), name) != names.end()) return Status::ok();
  std::string choices;
  for (std::string_view n : names) choices += (choices.empty() ? "" : ", ") + std::string(n);
  return Status(Errc::kInvalidArgument, "unknown " + std::string(to_string(collective)) +
                                            " algorithm '" + std::string(name) +
                                            "' (choices: " + choices + ")");
}

}  // namespace wv::coll
