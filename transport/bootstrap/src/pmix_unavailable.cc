// Built instead of pmix_bootstrap.cc when pkg-config found no libpmix.
#include "wv/bootstrap/pmix.h"

namespace wv::bootstrap {

Result<std::unique_ptr<transport::Bootstrap>> connect_pmix() {
  return Result<std::unique_ptr<transport::Bootstrap>>(
      Errc::kNotSupported,
      "this process was started by a PMIx launcher (PMIX_* variables are set), but wv was built "
      "without PMIx support: install libpmix-dev and reconfigure, or start the job with wvrun");
}

bool pmix_built() {
  return false;
}

}  // namespace wv::bootstrap
