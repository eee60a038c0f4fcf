#include "wv/verbs/operation.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace wv::verbs::detail {

OperationSignal::~OperationSignal() {
  if (fd_ >= 0) ::close(fd_);
}

int OperationSignal::get(bool done) {
  if (fd_ < 0) {
    fd_ = ::eventfd(done ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  return fd_;
}

void OperationSignal::raise() {
  if (fd_ < 0) return;
  const uint64_t one = 1;
  // The eventfd counter cannot overflow from a single raise; a failure here leaves the fd
  // unreadable, which wait() and ready() do not depend on.
  [[maybe_unused]] ssize_t written = ::write(fd_, &one, sizeof(one));
}

}  // namespace wv::verbs::detail
