// CRC32c (Castagnoli, reflected polynomial 0x82F63B78): the MPA FPDU checksum.
//
// RFC 5044 §4 (FPDU format) takes the CRC from iSCSI (RFC 3720 §12.1 and appendix B.4). The value
// returned here is the conventional one (32 zero bytes -> 0x8A9136AA); on the wire MPA carries it
// least significant byte first (AA 36 91 8A), which is what Linux siw sends and expects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace wv::verbs::tcp {

// Chains like zlib's crc32(): `crc` is the CRC32c of everything before `data` (0 for nothing yet),
// the result is the CRC32c of that prefix followed by `data`. So for byte strings a and b,
// crc32c(a + b) == crc32c_update(crc32c(a), b), and an FPDU gathered from several iovecs can be
// checksummed piece by piece. Uses SSE4.2 when the CPU has it (checked once, at the first call).
uint32_t crc32c_update(uint32_t crc, std::span<const std::byte> data);

inline uint32_t crc32c(std::span<const std::byte> data) {
  return crc32c_update(0, data);
}

// The two implementations behind crc32c_update, exposed so tests and benchmarks can exercise both.
uint32_t crc32c_update_table(uint32_t crc, std::span<const std::byte> data);
// Falls back to the table when the CPU lacks SSE4.2 (or is not x86-64), so it is always callable.
uint32_t crc32c_update_sse42(uint32_t crc, std::span<const std::byte> data);
bool crc32c_sse42_available();

}  // namespace wv::verbs::tcp
