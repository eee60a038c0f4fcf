#include "crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace wv::verbs::tcp {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // 0x1EDC6F41 bit-reversed (RFC 3720 §12.1)

// Slicing-by-8 tables: kTables[k][b] is the CRC contribution of byte b followed by k zero bytes, so
// eight input bytes fold into the state with eight independent lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) != 0 ? kPolynomial : 0);
    tables[0][byte] = crc;
  }
  for (size_t k = 1; k < tables.size(); ++k) {
    for (size_t byte = 0; byte < 256; ++byte) {
      const uint32_t previous = tables[k - 1][byte];
      tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xFF];
    }
  }
  return tables;
}

constexpr Tables kTables = make_tables();

uint32_t byte_at(const std::byte* p, size_t i) {
  return std::to_integer<uint32_t>(p[i]);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t crc, const std::byte* p,
                                                        size_t size) {
  uint64_t state = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));  // unaligned load; x86 is little-endian like the CRC
    state = _mm_crc32_u64(state, word);
  }
  auto state32 = static_cast<uint32_t>(state);
  for (; size > 0; ++p, --size) state32 = _mm_crc32_u8(state32, std::to_integer<uint8_t>(*p));
  return ~state32;
}

bool detect_sse42() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
}
#else
bool detect_sse42() {
  return false;
}
#endif

using UpdateFn = uint32_t (*)(uint32_t, std::span<const std::byte>);

}  // namespace

uint32_t crc32c_update_table(uint32_t crc, std::span<const std::byte> data) {
  uint32_t state = ~crc;
  const std::byte* p = data.data();
  size_t size = data.size();
  for (; size >= 8; p += 8, size -= 8) {
    const uint32_t low =
        state ^ (byte_at(p, 0) | byte_at(p, 1) << 8 | byte_at(p, 2) << 16 | byte_at(p, 3) << 24);
    state = kTables[7][low & 0xFF] ^ kTables[6][(low >> 8) & 0xFF] ^
            kTables[5][(low >> 16) & 0xFF] ^ kTables[4][low >> 24] ^ kTables[3][byte_at(p, 4)] ^
            kTables[2][byte_at(p, 5)] ^ kTables[1][byte_at(p, 6)] ^ kTables[0][byte_at(p, 7)];
  }
  for (; size > 0; ++p, --size) state = (state >> 8) ^ kTables[0][(state ^ byte_at(p, 0)) & 0xFF];
  return ~state;
}

bool crc32c_sse42_available() {
  static const bool available = detect_sse42();
  return available;
}

uint32_t crc32c_update_sse42(uint32_t crc, std::span<const std::byte> data) {
#if defined(__x86_64__)
  if (crc32c_sse42_available()) return update_sse42(crc, data.data(), data.size());
#endif
  return crc32c_update_table(crc, data);
}

uint32_t crc32c_update(uint32_t crc, std::span<const std::byte> data) {
  // Chosen once: the CPU cannot change under us, and a function-local static is initialised
  // thread-safely even when the first calls race.
  static const UpdateFn update =
      crc32c_sse42_available() ? &crc32c_update_sse42 : &crc32c_update_table;
  return update(crc, data);
}

}  // namespace wv::verbs::tcp
