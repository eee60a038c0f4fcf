#include "shm_peer_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace wv::verbs::shm {
namespace {

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_getfd(int pidfd, int fd) {
  return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0));
}

}  // namespace

PeerMemory::~PeerMemory() {
  for (Mapping& mapping : mappings_) drop(mapping);
  if (pidfd_ >= 0) ::close(pidfd_);
}

void PeerMemory::drop(Mapping& mapping) {
  if (mapping.base != nullptr) ::munmap(mapping.base, mapping.bytes);
  mapping = Mapping{};
}

std::byte* PeerMemory::map(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant,
                           uint64_t address, uint64_t length) {
  if (grant.shared_fd < 0 || refused_) return nullptr;
  Mapping& mapping = mappings_[key % kSlots];
  if (mapping.base != nullptr && (mapping.key != key || mapping.sequence != grant.sequence)) {
    drop(mapping);
  }
  if (mapping.base == nullptr && !attach(keys, key, grant, mapping)) return nullptr;
  // The key's bounds were checked against the mirror; the file must hold them too.
  const uint64_t offset = address - mapping.start;
  if (address < mapping.start || offset > mapping.bytes || length > mapping.bytes - offset) {
    return nullptr;
  }
  return mapping.base + offset;
}

bool PeerMemory::attach(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant,
                        Mapping& into) {
  if (pidfd_ < 0) {
    pidfd_ = pidfd_open(peer_);
    if (pidfd_ < 0) {
      refused_ = true;
      return false;
    }
  }
  const int fd = pidfd_getfd(pidfd_, grant.shared_fd);
  if (fd < 0) {
    if (errno == EPERM || errno == ENOSYS || errno == ESRCH) refused_ = true;
    return false;
  }
  struct stat info {};
  const int seals = ::fcntl(fd, F_GET_SEALS);
  const bool usable = keys.unchanged(key, grant.sequence) && ::fstat(fd, &info) == 0 &&
                      S_ISREG(info.st_mode) && info.st_size > 0 && seals >= 0 &&
                      (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW);
  void* base = usable ? ::mmap(nullptr, static_cast<size_t>(info.st_size), PROT_READ | PROT_WRITE,
                               MAP_SHARED, fd, 0)
                      : MAP_FAILED;
  ::close(fd);
  if (base == MAP_FAILED) return false;
  into = Mapping{key, grant.sequence, grant.start, static_cast<std::byte*>(base),
                 static_cast<size_t>(info.st_size)};
  return true;
}

}  // namespace wv::verbs::shm
