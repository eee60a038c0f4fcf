// The Bootstrap of a process started by a PMIx launcher (mpirun, prterun, srun): PMIx_Init, and
// the exchange through PMIx_Put/Commit/Fence/Get. Keys are stored under "wv." so that they never
// collide with PMIx's own "pmix." attributes.
#pragma once

#include <memory>

#include "wv/result.h"
#include "wv/transport/bootstrap.h"

namespace wv::bootstrap {

// kNotSupported when wv was built without libpmix; otherwise whatever PMIx_Init reports.
Result<std::unique_ptr<transport::Bootstrap>> connect_pmix();

// Whether this build can talk PMIx (libpmix was found at configure time).
bool pmix_built();

}  // namespace wv::bootstrap
