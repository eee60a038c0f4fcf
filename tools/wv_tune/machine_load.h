// How busy this machine's cores are right now, so that wv_tune can say when other programs
// will turn its times into scheduling noise.
#pragma once

#include <chrono>
#include <optional>

namespace wv::tune {

// Cores' worth of time spent outside the idle task during `window` (from /proc/stat), e.g. 1.8
// when a parallel build runs on 2 cores; nullopt where /proc/stat cannot be read.
std::optional<double> busy_cores(std::chrono::milliseconds window);

}  // namespace wv::tune
