#include "host_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace wv::verbs {

Result<std::unique_ptr<HostMemory>> HostMemory::allocate(size_t length) {
  if (length == 0) return Status(Errc::kInvalidArgument, "cannot allocate a region of 0 bytes");
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (length > (size_t{1} << 46)) {
    return Status(Errc::kInvalidArgument,
                  "cannot allocate a region of " + std::to_string(length) + " bytes");
  }
  std::unique_ptr<HostMemory> memory(new HostMemory());
  memory->length_ = length;
  memory->mapped_ = (length + page - 1) / page * page;
  memory->fd_ = ::memfd_create("wv-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memory->fd_ < 0) return errno_status(Errc::kIoError, "memfd_create for a region");
  // Sealed at its size: a peer that maps it can trust every page to stay (no SIGBUS).
  if (::ftruncate(memory->fd_, static_cast<off_t>(memory->mapped_)) != 0 ||
      ::fcntl(memory->fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_status(Errc::kNoMemory, "sizing and sealing a region's memfd");
  }
  void* at = ::mmap(nullptr, memory->mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, memory->fd_, 0);
  if (at == MAP_FAILED) return errno_status(Errc::kNoMemory, "mapping a region's memfd");
  memory->address_ = at;
  return memory;
}

HostMemory::~HostMemory() {
  if (address_ != nullptr) ::munmap(address_, mapped_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace wv::verbs
