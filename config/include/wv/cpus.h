// CPU sets as Linux hands them out: the CPUs this process may run on, and the kernel's list
// format ("0-3,8,10-11") of sysfs files such as a PCI device's local_cpulist.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string_view>
#include <vector>

namespace wv {

// sched_getaffinity of the calling thread (pid 0) or of process `pid`'s main thread,
// ascending; empty if the kernel refuses (no such process).
std::vector<int> allowed_cpus(pid_t pid = 0);

// "0-3,8,10-11" (a trailing newline allowed) -> {0,1,2,3,8,10,11}; nullopt for anything else.
std::optional<std::vector<int>> parse_cpu_list(std::string_view text);

}  // namespace wv
