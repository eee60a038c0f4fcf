// Runs the job's processes and ends the job as a whole: the first rank that fails (non-zero
// exit or a signal), a signal to wvrun, or the --timeout makes every other rank get SIGTERM,
// then SIGKILL after the grace period. All ranks share one process group (not wvrun's), so the
// terminal's Ctrl-C reaches wvrun alone and wvrun's signal reaches the ranks' own children too.
#pragma once

#include <chrono>
#include <csignal>
#include <vector>

#include "launch_plan.h"

namespace wv::wvrun {

struct SuperviseOptions {
  bool tag_output = false;
  std::chrono::milliseconds timeout{0};  // 0: no limit
  std::chrono::milliseconds grace{3000};
};

// Exit status of wvrun's own giving up, as timeout(1) uses it.
inline constexpr int kTimeoutExit = 124;

// The signals wvrun handles through a signalfd; blocked in every thread before any starts.
sigset_t handled_signals();

// Starts every child, waits for the job to end, returns wvrun's exit status: 0, the failed
// rank's status (128+signal for a signal), 128+signal when wvrun was signalled, kTimeoutExit.
int supervise(const std::vector<ChildSpec>& children, const SuperviseOptions& options);

}  // namespace wv::wvrun
