#include "shm_group_directory.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <new>

namespace wv::verbs::shm {
namespace {

constexpr size_t kDirectoryBytes = sizeof(GroupDirectoryHeader);

bool process_gone(int32_t pid) {
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string group_name(const Gid& group) {
  std::string name(kGroupNames);
  char hex[3];
  for (uint8_t byte : group.raw) {
    std::snprintf(hex, sizeof(hex), "%02x", byte);
    name += hex;
  }
  return name;
}

Result<std::unique_ptr<GroupDirectory>> GroupDirectory::create(const Gid& group) {
  const int fd = ::memfd_create("wv-shm-group", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_status(Errc::kIoError, "memfd_create");
  std::unique_ptr<GroupDirectory> directory(new GroupDirectory());
  directory->fd_ = fd;
  if (::ftruncate(fd, kDirectoryBytes) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_status(Errc::kIoError, "sizing and sealing a multicast group directory");
  }
  void* base = ::mmap(nullptr, kDirectoryBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno_status(Errc::kIoError, "mmap of a group directory");
  auto* header = new (base) GroupDirectoryHeader();
  if (::getrandom(&header->id, sizeof(header->id), 0) != sizeof(header->id)) {
    header->id = static_cast<uint64_t>(::getpid()) << 32 ^ reinterpret_cast<uintptr_t>(base);
  }
  header->group = group;
  header->capacity = kMaxGroupMembers;
  header->version = kGroupVersion;
  header->magic = kGroupMagic;
  directory->header_ = header;
  directory->id_ = header->id;
  return directory;
}

Result<std::unique_ptr<GroupDirectory>> GroupDirectory::attach(int fd, const Gid& group) {
  std::unique_ptr<GroupDirectory> directory(new GroupDirectory());
  directory->fd_ = fd;
  const int seals = ::fcntl(fd, F_GET_SEALS);
  struct stat info {};
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || ::fstat(fd, &info) != 0 ||
      static_cast<size_t>(info.st_size) != kDirectoryBytes) {
    return Status(Errc::kProtocolError, "a multicast group directory that is not sealed at " +
                                            std::to_string(kDirectoryBytes) + " bytes");
  }
  void* base = ::mmap(nullptr, kDirectoryBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno_status(Errc::kIoError, "mmap of a group directory");
  directory->header_ = static_cast<GroupDirectoryHeader*>(base);
  const GroupDirectoryHeader& header = *directory->header_;
  if (header.magic != kGroupMagic || header.version != kGroupVersion ||
      header.capacity != kMaxGroupMembers || header.group != group) {
    return Status(Errc::kProtocolError,
                  "the directory of multicast group " + to_string(group) + " is not one");
  }
  directory->id_ = header.id;
  return directory;
}

GroupDirectory::~GroupDirectory() {
  if (header_ != nullptr) ::munmap(header_, kDirectoryBytes);
  if (fd_ >= 0) ::close(fd_);
}

Status GroupDirectory::add(uint16_t port) {
  const int32_t self = ::getpid();
  for (GroupMember& member : header_->members) {
    if (member.pid.load(std::memory_order_acquire) == self &&
        member.port.load(std::memory_order_acquire) == port) {
      return Status::ok();
    }
  }
  for (GroupMember& member : header_->members) {
    int32_t free = 0;
    if (member.pid.compare_exchange_strong(free, self, std::memory_order_acq_rel)) {
      member.port.store(port, std::memory_order_release);
      header_->generation.fetch_add(1, std::memory_order_acq_rel);
      return Status::ok();
    }
  }
  return Status(Errc::kNoMemory, "multicast group " + to_string(header_->group) +
                                     " has its limit of " + std::to_string(kMaxGroupMembers) +
                                     " member devices on this host");
}

void GroupDirectory::remove(uint16_t port) {
  const int32_t self = ::getpid();
  for (GroupMember& member : header_->members) {
    if (member.pid.load(std::memory_order_acquire) == self &&
        member.port.load(std::memory_order_acquire) == port) {
      member.port.store(0, std::memory_order_release);
      member.pid.store(0, std::memory_order_release);
      header_->generation.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

size_t GroupDirectory::members(std::span<uint16_t> out) const {
  size_t count = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const uint64_t before = header_->generation.load(std::memory_order_acquire);
    count = 0;
    for (const GroupMember& member : header_->members) {
      const uint32_t port = member.port.load(std::memory_order_acquire);
      if (member.pid.load(std::memory_order_acquire) == 0 || port == 0 || port > 0xffff) continue;
      if (count < out.size()) out[count++] = static_cast<uint16_t>(port);
    }
    if (header_->generation.load(std::memory_order_acquire) == before) break;
  }
  return count;
}

void GroupDirectory::prune() {
  for (GroupMember& member : header_->members) {
    int32_t pid = member.pid.load(std::memory_order_acquire);
    if (process_gone(pid) && member.pid.compare_exchange_strong(pid, 0)) {
      header_->generation.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace wv::verbs::shm
