// Which RDMA device is nearest: the kernel publishes the CPUs local to each PCI device
// (/sys/class/infiniband/<device>/device/local_cpulist). A process bound to CPUs that all lie
// there (mpirun's --bind-to core/socket) reaches that NIC without crossing a socket link; the
// provider's default device is the nearest one, as UCX and NCCL choose theirs.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace wv::verbs::ib {

// The CPUs local to the device, or nullopt when the kernel names none (a software device such
// as rxe or siw has no PCI parent).
std::optional<std::vector<int>> device_local_cpus(const std::string& device_name);

// Device indexes, nearest first: devices whose local CPUs include every CPU of `allowed`, then
// the other hardware devices, then those without locality; each group in its original order.
std::vector<size_t> nearest_first(const std::vector<std::optional<std::vector<int>>>& local_cpus,
                                  const std::vector<int>& allowed);

}  // namespace wv::verbs::ib
