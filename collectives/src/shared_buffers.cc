#include "shared_buffers.h"

#include <unistd.h>

#include <algorithm>

namespace wv::coll::detail {

size_t SharedTable::bytes(int members) {
  return static_cast<size_t>(members) * SharedTable(nullptr, members).rank_bytes();
}

std::atomic<uint64_t>& SharedTable::version(int rank) const {
  return *reinterpret_cast<std::atomic<uint64_t>*>(base_ +
                                                   static_cast<size_t>(rank) * rank_bytes());
}

SharedTable::Entry& SharedTable::entry(int rank, int slot) const {
  static_assert(sizeof(Entry) % 8 == 0);
  return *reinterpret_cast<Entry*>(base_ + static_cast<size_t>(rank) * rank_bytes() + 8 +
                                   static_cast<size_t>(slot) * words_per_entry() * 8);
}

std::atomic<uint64_t>& SharedTable::mapped_by(int rank, int slot, int reader) const {
  auto* words = reinterpret_cast<std::atomic<uint64_t>*>(&entry(rank, slot) + 1);
  return words[reader];
}

Result<SharedBuffers::Allocated> SharedBuffers::allocate(size_t bytes) {
  auto memory = HostMemory::allocate(bytes, "wv-coll-buffer");
  if (!memory.is_ok()) return memory.status();
  std::lock_guard lock(mutex_);
  Buffer& buffer = buffers_.emplace_back(Buffer{next_id_++, -1, std::move(memory).value()});
  if (table_) publish_locked(buffer);
  return Allocated{buffer.id, buffer.memory->address()};
}

void SharedBuffers::publish_locked(Buffer& buffer) {
  for (int slot = 0; slot < SharedTable::kSlots; ++slot) {
    SharedTable::Entry& entry = table_->entry(rank_, slot);
    if (entry.id.load(std::memory_order_relaxed) != 0) continue;
    for (int reader = 0; reader < table_->members(); ++reader) {
      table_->mapped_by(rank_, slot, reader).store(0, std::memory_order_relaxed);
    }
    const HostMemory& memory = *buffer.memory;
    entry.address.store(reinterpret_cast<uint64_t>(memory.address()), std::memory_order_relaxed);
    entry.bytes.store(memory.length(), std::memory_order_relaxed);
    entry.inode.store(memory.inode(), std::memory_order_relaxed);
    entry.fd.store(memory.fd(), std::memory_order_relaxed);
    entry.id.store(buffer.id, std::memory_order_release);
    table_->version(rank_).fetch_add(1, std::memory_order_release);
    buffer.slot = slot;
    tabled_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
}

void SharedBuffers::release(uint64_t id) {
  std::unique_ptr<HostMemory> memory;  // freed after the lock, the entry withdrawn before
  {
    std::lock_guard lock(mutex_);
    const auto it = std::find_if(buffers_.begin(), buffers_.end(),
                                 [id](const Buffer& b) { return b.id == id; });
    if (it == buffers_.end()) return;
    if (table_ && it->slot >= 0) {
      table_->entry(rank_, it->slot).id.store(0, std::memory_order_release);
      table_->version(rank_).fetch_add(1, std::memory_order_release);
      tabled_.fetch_sub(1, std::memory_order_relaxed);
    }
    memory = std::move(it->memory);
    buffers_.erase(it);
  }
}

SharedBuffers::Found SharedBuffers::find(const void* address, size_t length) const {
  if (tabled_.load(std::memory_order_relaxed) == 0) return {};
  const auto at = reinterpret_cast<uint64_t>(address);
  std::lock_guard lock(mutex_);
  for (const Buffer& buffer : buffers_) {
    const auto start = reinterpret_cast<uint64_t>(buffer.memory->address());
    if (buffer.slot >= 0 && at >= start && at - start <= buffer.memory->length() &&
        length <= buffer.memory->length() - (at - start)) {
      return {buffer.slot, buffer.id, start};
    }
  }
  return {};
}

void SharedBuffers::attach(const SharedTable& table, int rank) {
  std::lock_guard lock(mutex_);
  table_ = table;
  rank_ = rank;
  for (Buffer& buffer : buffers_) publish_locked(buffer);
}

void SharedBuffers::detach() {
  std::lock_guard lock(mutex_);
  table_.reset();
  tabled_.store(0, std::memory_order_relaxed);
  for (Buffer& buffer : buffers_) buffer.slot = -1;
}

PeerMappings::PeerMappings(const SharedTable& table, int rank)
    : table_(table),
      rank_(rank),
      versions_(static_cast<size_t>(table.members()), 0),
      mappings_(new Mapping[static_cast<size_t>(table.members()) * SharedTable::kSlots]),
      files_(static_cast<size_t>(table.members())) {}

PeerMappings::~PeerMappings() {
  for (int rank = 0; rank < table_.members(); ++rank) {
    for (int slot = 0; slot < SharedTable::kSlots; ++slot) mapping(rank, slot).mapping.unmap();
  }
}

void PeerMappings::refresh(std::span<const pid_t> pids) {
  for (int rank = 0; rank < table_.members(); ++rank) {
    if (rank == rank_) continue;
    const uint64_t version = table_.version(rank).load(std::memory_order_acquire);
    if (version == versions_[static_cast<size_t>(rank)]) continue;
    versions_[static_cast<size_t>(rank)] = version;
    for (int slot = 0; slot < SharedTable::kSlots; ++slot) {
      const uint64_t id = table_.entry(rank, slot).id.load(std::memory_order_acquire);
      Mapping& held = mapping(rank, slot);
      if (id == held.id) continue;
      held.mapping.unmap();
      held.id = id;
      if (id != 0) map(rank, slot, id, pids[static_cast<size_t>(rank)]);
    }
  }
}

void PeerMappings::map(int rank, int slot, uint64_t id, pid_t pid) {
  auto& files = files_[static_cast<size_t>(rank)];
  if (!files) files = std::make_unique<PeerFiles>(pid);
  const SharedTable::Entry& entry = table_.entry(rank, slot);
  const uint64_t start = entry.address.load(std::memory_order_relaxed);
  const uint64_t bytes = entry.bytes.load(std::memory_order_relaxed);
  const uint64_t inode = entry.inode.load(std::memory_order_relaxed);
  const int fd = files->take(static_cast<int>(entry.fd.load(std::memory_order_relaxed)));
  if (fd < 0) return;
  std::atomic_thread_fence(std::memory_order_acquire);  // the fields' loads before the id's
  // The owner withdraws an entry before it closes the memfd: the same id after taking the
  // descriptor means the number (and the fields read before) were this buffer's.
  SealedMapping mapped = entry.id.load(std::memory_order_acquire) == id
                             ? SealedMapping::map(fd, inode)
                             : SealedMapping{};
  ::close(fd);
  if (mapped.base == nullptr || mapped.bytes < bytes) {
    mapped.unmap();
    return;
  }
  Mapping& held = mapping(rank, slot);
  held.start = start;
  held.mapping = mapped;
  table_.mapped_by(rank, slot, rank_).store(id, std::memory_order_release);
}

std::byte* PeerMappings::find(int rank, uint32_t slot, uint64_t address, size_t length) const {
  if (slot >= SharedTable::kSlots) return nullptr;
  const Mapping& held = mapping(rank, static_cast<int>(slot));
  const size_t bytes = held.mapping.bytes;
  if (held.mapping.base == nullptr || address < held.start || address - held.start > bytes ||
      length > bytes - (address - held.start)) {
    return nullptr;
  }
  return held.mapping.base + (address - held.start);
}

}  // namespace wv::coll::detail
