// The Bootstrap of a process started on its own: rank 0 of 1. It follows the same rules as the
// others (a put becomes visible at the next fence) so code tested alone behaves the same in a job.
#pragma once

#include <memory>

#include "wv/transport/bootstrap.h"

namespace wv::bootstrap {

std::unique_ptr<transport::Bootstrap> make_singleton();

}  // namespace wv::bootstrap
