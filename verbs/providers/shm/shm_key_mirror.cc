#include "shm_key_mirror.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace wv::verbs::shm {
namespace {

// A slot's words; the slot is one cache line.
// kSharedFd: the region's memfd + 1 (0: none).
enum Word : size_t {
  kSequence,
  kKey,
  kAccess,
  kAddress,
  kLength,
  kDomain,
  kBoundQp,
  kSharedFd,
  kWords
};
static_assert(kWords * sizeof(uint64_t) == 64, "a slot is one cache line");
constexpr size_t kMirrorBytes = size_t{kMirrorSlots} * kWords * sizeof(uint64_t);

#ifndef F_SEAL_FUTURE_WRITE
constexpr int F_SEAL_FUTURE_WRITE = 0x0010;  // Linux 5.1
#endif

std::atomic_ref<uint64_t> word(const uint64_t* base, uint32_t key, Word w) {
  const size_t slot = key & (kMirrorSlots - 1);
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(base[slot * kWords + w]));
}

std::mutex& creation_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

Result<std::shared_ptr<KeyMirror>> KeyMirror::of(soft::SoftDevice& device) {
  std::lock_guard lock(creation_mutex());
  if (auto existing = std::dynamic_pointer_cast<KeyMirror>(device.keys().listener())) {
    return existing;
  }
  auto mirror = create();
  if (mirror.is_ok()) device.keys().set_listener(mirror.value());
  return mirror;
}

Result<std::shared_ptr<KeyMirror>> KeyMirror::create() {
  std::shared_ptr<KeyMirror> mirror(new KeyMirror());
  mirror->fd_ = ::memfd_create("wv-shm-keys", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mirror->fd_ < 0) return errno_status(Errc::kIoError, "memfd_create for the key mirror");
  if (::ftruncate(mirror->fd_, static_cast<off_t>(kMirrorBytes)) != 0 ||
      ::fcntl(mirror->fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    return errno_status(Errc::kIoError, "sizing and sealing the key mirror");
  }
  void* base = ::mmap(nullptr, kMirrorBytes, PROT_READ | PROT_WRITE, MAP_SHARED, mirror->fd_, 0);
  if (base == MAP_FAILED) return errno_status(Errc::kIoError, "mmap of the key mirror");
  mirror->base_ = static_cast<uint64_t*>(base);
  // Peers get no writable mapping (older kernels lack the seal: harmless, see the header).
  (void)::fcntl(mirror->fd_, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
  return mirror;
}

KeyMirror::~KeyMirror() {
  if (base_ != nullptr) ::munmap(base_, kMirrorBytes);
  if (fd_ >= 0) ::close(fd_);
}

void KeyMirror::key_changed(uint32_t key, const soft::KeyEntry* entry) {
  const uint64_t holder = word(base_, key, kKey).load(std::memory_order_relaxed);
  if (holder != 0 && holder != key) return;  // the slot is another key's: not published
  if (holder == 0 && entry == nullptr) return;
  auto sequence = word(base_, key, kSequence);
  const uint64_t before = sequence.load(std::memory_order_relaxed);
  sequence.store(before + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  if (entry == nullptr) {
    word(base_, key, kKey).store(0, std::memory_order_relaxed);
  } else {
    word(base_, key, kKey).store(key, std::memory_order_relaxed);
    word(base_, key, kAccess)
        .store(static_cast<uint64_t>(entry->access), std::memory_order_relaxed);
    word(base_, key, kAddress).store(entry->address, std::memory_order_relaxed);
    word(base_, key, kLength).store(entry->length, std::memory_order_relaxed);
    word(base_, key, kDomain)
        .store(reinterpret_cast<uint64_t>(entry->protection_domain), std::memory_order_relaxed);
    word(base_, key, kBoundQp).store(entry->bound_qp, std::memory_order_relaxed);
    word(base_, key, kSharedFd)
        .store(static_cast<uint64_t>(static_cast<int64_t>(entry->shared_fd) + 1),
               std::memory_order_relaxed);
  }
  sequence.store(before + 2, std::memory_order_release);
}

Result<std::unique_ptr<PeerKeys>> PeerKeys::attach(int fd) {
  std::unique_ptr<PeerKeys> keys(new PeerKeys());
  const auto close_fd = [fd] { ::close(fd); };
  const int seals = ::fcntl(fd, F_GET_SEALS);
  struct stat info {};
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || ::fstat(fd, &info) != 0 ||
      static_cast<uint64_t>(info.st_size) != kMirrorBytes) {
    close_fd();
    return Status(Errc::kProtocolError, "the peer's key mirror is not a sealed mirror");
  }
  void* base = ::mmap(nullptr, kMirrorBytes, PROT_READ, MAP_SHARED, fd, 0);
  close_fd();
  if (base == MAP_FAILED) return errno_status(Errc::kIoError, "mmap of the peer's key mirror");
  keys->base_ = static_cast<const uint64_t*>(base);
  return keys;
}

PeerKeys::~PeerKeys() {
  if (base_ != nullptr) ::munmap(const_cast<uint64_t*>(base_), kMirrorBytes);
}

bool PeerKeys::check(uint32_t key, uint64_t address, uint64_t length, Access access,
                     uint64_t domain, uint32_t qp_number, Grant* grant) const {
  if (key == 0) return false;
  const uint64_t before = word(base_, key, kSequence).load(std::memory_order_acquire);
  if ((before & 1) != 0) return false;
  const uint64_t holder = word(base_, key, kKey).load(std::memory_order_relaxed);
  const auto granted =
      static_cast<Access>(word(base_, key, kAccess).load(std::memory_order_relaxed));
  const uint64_t start = word(base_, key, kAddress).load(std::memory_order_relaxed);
  const uint64_t size = word(base_, key, kLength).load(std::memory_order_relaxed);
  const uint64_t owner = word(base_, key, kDomain).load(std::memory_order_relaxed);
  const uint64_t bound = word(base_, key, kBoundQp).load(std::memory_order_relaxed);
  const uint64_t shared = word(base_, key, kSharedFd).load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (word(base_, key, kSequence).load(std::memory_order_relaxed) != before) return false;
  // Written to avoid overflow: address + length may wrap.
  if (holder != key || owner != domain || (bound != 0 && bound != qp_number) ||
      !has(granted, access) || address < start || length > size ||
      address - start > size - length) {
    return false;
  }
  grant->sequence = before;
  grant->start = start;
  grant->shared_fd =
      shared > 0 && shared <= uint64_t{INT32_MAX} ? static_cast<int>(shared - 1) : -1;
  return true;
}

bool PeerKeys::unchanged(uint32_t key, uint64_t sequence) const {
  // The copy (a system call) is ordered before this load.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return word(base_, key, kSequence).load(std::memory_order_acquire) == sequence;
}

}  // namespace wv::verbs::shm
