#include "wv/host_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace wv {

Result<std::unique_ptr<HostMemory>> HostMemory::allocate(size_t length, const char* name) {
  if (length == 0) return Status(Errc::kInvalidArgument, "cannot allocate a region of 0 bytes");
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (length > (size_t{1} << 46)) {
    return Status(Errc::kInvalidArgument,
                  "cannot allocate a region of " + std::to_string(length) + " bytes");
  }
  std::unique_ptr<HostMemory> memory(new HostMemory());
  memory->length_ = length;
  memory->mapped_ = (length + page - 1) / page * page;
  memory->fd_ = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memory->fd_ < 0) return errno_status(Errc::kIoError, "memfd_create for a region");
  // Sealed at its size: a peer that maps it can trust every page to stay (no SIGBUS).
  struct stat info {};
  if (::ftruncate(memory->fd_, static_cast<off_t>(memory->mapped_)) != 0 ||
      ::fcntl(memory->fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
      ::fstat(memory->fd_, &info) != 0) {
    return errno_status(Errc::kNoMemory, "sizing and sealing a region's memfd");
  }
  memory->inode_ = info.st_ino;
  void* at = ::mmap(nullptr, memory->mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, memory->fd_, 0);
  if (at == MAP_FAILED) return errno_status(Errc::kNoMemory, "mapping a region's memfd");
  memory->address_ = at;
  return memory;
}

HostMemory::~HostMemory() {
  if (address_ != nullptr) ::munmap(address_, mapped_);
  if (fd_ >= 0) ::close(fd_);
}

PeerFiles::~PeerFiles() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

int PeerFiles::take(int fd) {
  if (refused_ || fd < 0) return -1;
  if (pidfd_ < 0) {
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, peer_, 0));
    if (pidfd_ < 0) {
      refused_ = true;
      return -1;
    }
  }
  const int taken = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd_, fd, 0));
  if (taken < 0 && (errno == EPERM || errno == ENOSYS || errno == ESRCH)) refused_ = true;
  return taken;
}

SealedMapping SealedMapping::map(int fd, uint64_t inode) {
  struct stat info {};
  const int seals = ::fcntl(fd, F_GET_SEALS);
  constexpr int kSized = F_SEAL_SHRINK | F_SEAL_GROW;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size <= 0 || seals < 0 ||
      (seals & kSized) != kSized || (inode != 0 && info.st_ino != inode)) {
    return {};
  }
  const auto bytes = static_cast<size_t>(info.st_size);
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return {};
  return {static_cast<std::byte*>(base), bytes};
}

void SealedMapping::unmap() {
  if (base != nullptr) ::munmap(base, bytes);
  *this = {};
}

}  // namespace wv
