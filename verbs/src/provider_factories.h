// The factory of each provider built into the library; the registry lists them by name.
#pragma once

#include <memory>

#include "wv/result.h"
#include "wv/verbs/provider.h"

namespace wv::verbs {

Result<std::shared_ptr<Provider>> open_tcp_provider();
Result<std::shared_ptr<Provider>> open_shm_provider();
Result<std::shared_ptr<Provider>> open_hybrid_provider();
#if WV_HAVE_IBVERBS
Result<std::shared_ptr<Provider>> open_ibverbs_provider();
#endif

}  // namespace wv::verbs
