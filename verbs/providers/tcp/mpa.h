// MPA connection setup (RFC 5044 §7.1) with the enhanced, revision 2 exchange of RFC 6581: the
// Request / Reply frames both sides send right after the TCP handshake, before any FPDU.
//
// Frame layout (all integers big-endian):
//   Key (16 bytes)   "MPA ID Req Frame" or "MPA ID Rep Frame", no terminator
//   flags (16 bits)  M(0x8000) markers, C(0x4000) CRC, R(0x2000) reject (replies only),
//                    Enhanced(0x1000, RFC 6581, revision 2 only), low byte = revision (1 or 2)
//   PD_Length (16)   private data bytes that follow, at most 512
//   private data     when Enhanced: first the IRD/ORD word (4 bytes), then the ULP's data
//
// IRD/ORD word (RFC 6581):
//   bits 31..16: P2P(0x8000) | zero-length Send RTR(0x4000) | IRD (14 bits)
//   bits 15..0:  zero-length Write RTR(0x8000) | zero-length Read RTR(0x4000) | ORD (14 bits)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "ddp_rdmap.h"
#include "wv/result.h"

namespace wv::verbs::tcp {

inline constexpr std::string_view kMpaKeyRequest = "MPA ID Req Frame";
inline constexpr std::string_view kMpaKeyReply = "MPA ID Rep Frame";
inline constexpr size_t kMpaKeyBytes = 16;
inline constexpr size_t kMpaFrameHeaderBytes = 20;  // key + flags + PD_Length
inline constexpr size_t kMpaMaxPrivateData = 512;   // RFC 5044 §7.1, IRD/ORD word included
inline constexpr size_t kMpaIrdOrdBytes = 4;        // RFC 6581
inline constexpr uint16_t kMpaMaxIrdOrd = 0x3FFF;   // 14-bit fields

// Ready-to-receive messages that RFC 6581 peer-to-peer mode can use to let the initiator speak
// first. In a request these are the types the initiator can send; in a reply, the one chosen.
struct RtrFlags {
  bool zero_length_send = false;   // "B" flag, in the IRD half-word
  bool zero_length_write = false;  // "C" flag, in the ORD half-word
  bool zero_length_read = false;   // "D" flag, in the ORD half-word

  bool any() const { return zero_length_send || zero_length_write || zero_length_read; }
  bool operator==(const RtrFlags&) const = default;
};

struct MpaFrame {
  bool is_reply = false;
  uint8_t revision = 2;   // 1 (RFC 5044) or 2 (RFC 6581)
  bool markers = false;   // M: wv never uses markers and refuses peers that demand them
  bool crc = false;       // C
  bool reject = false;    // R: replies only
  bool enhanced = false;  // revision 2 with the IRD/ORD word at the head of private data
  // The IRD/ORD word, meaningful when `enhanced`.
  uint16_t ird = 0;
  uint16_t ord = 0;
  bool peer_to_peer = false;  // "A" flag
  RtrFlags rtr;
  // The ULP's private data, after the IRD/ORD word when there is one.
  std::vector<std::byte> private_data;

  // PD_Length on the wire: private data plus the IRD/ORD word when enhanced.
  size_t private_data_length() const;
  bool operator==(const MpaFrame&) const = default;
};

// Appends the frame to `out`. kInvalidArgument when the revision is not 1 or 2, enhanced is set
// with revision 1, IRD/ORD exceed 14 bits, or the private data does not fit in 512 bytes.
Status encode_mpa_frame(const MpaFrame& frame, std::vector<std::byte>& out);

// The fixed 20 bytes of a frame, decoded first so the receiver learns how much private data to
// read next.
struct MpaFrameHeader {
  bool is_reply = false;
  uint8_t revision = 0;
  bool markers = false;
  bool crc = false;
  bool reject = false;  // always false for a request: R is reserved there and ignored
  bool enhanced = false;
  uint16_t private_data_length = 0;

  bool operator==(const MpaFrameHeader&) const = default;
};

// kProtocolError when the key is not the expected one (Reply key when `expect_reply`), the
// revision is not 1 or 2, PD_Length exceeds 512, or an enhanced frame has no room for IRD/ORD.
Result<MpaFrameHeader> decode_mpa_header(std::span<const std::byte, kMpaFrameHeaderBytes> bytes,
                                         bool expect_reply);

// Second step: `bytes` are exactly the header's private_data_length bytes that followed. Fills
// `out` completely (header fields, IRD/ORD word when enhanced, the ULP's private data).
Status decode_mpa_private_data(const MpaFrameHeader& header, std::span<const std::byte> bytes,
                               MpaFrame& out);

// Both steps over one buffer that holds exactly one frame (tests, fuzzing, small tools).
Result<MpaFrame> decode_mpa_frame(std::span<const std::byte> bytes, bool expect_reply);

// ---------------------------------------------------------------------------------------------
// Negotiation.

enum class CrcPolicy : uint8_t {
  kOff,      // do not ask for CRC; still use it when the peer asks (RFC 5044 §7.1 says we must)
  kRequest,  // ask for CRC; as initiator, accept a (non-conforming) reply that declines it
  kRequire,  // ask for CRC; as initiator, refuse a reply that declines it
};

struct MpaSettings {
  uint8_t revision = 2;  // 2: offer / accept RFC 6581 enhanced setup; 1: plain RFC 5044
  CrcPolicy crc = CrcPolicy::kRequest;
  // Inbound RDMA Read (and Atomic) requests we can have outstanding, and outbound ones we want.
  uint16_t ird = 16;
  uint16_t ord = 16;
  // Initiator only: ask for RFC 6581 peer-to-peer mode. A responder always honours a request for
  // it, since the initiator's RTR message is what lets the responder send first.
  bool peer_to_peer = true;
  // RTR messages we can send (initiator) or accept (responder). Zero-length Read needs ORD >= 1
  // at the initiator and IRD >= 1 at the responder; it is dropped from the offer otherwise.
  RtrFlags rtr{.zero_length_send = false, .zero_length_write = true, .zero_length_read = true};
};

enum class RtrType : uint8_t { kNone, kZeroLengthSend, kZeroLengthWrite, kZeroLengthRead };

std::string_view to_string(RtrType type);

// What both ends of a connection run with once the exchange is done.
struct MpaNegotiation {
  bool crc = false;
  bool enhanced = false;  // RFC 6581 IRD/ORD values were exchanged
  uint16_t ird = 0;       // inbound RDMA Read/Atomic requests to provision
  uint16_t ord = 0;       // outbound RDMA Read/Atomic requests allowed in flight
  // kNone: RFC 5044 rule, the responder sends no FPDU before the initiator's first one.
  // Otherwise the initiator sends this zero-length message first (RFC 6581), and the responder
  // waits for it before sending anything.
  RtrType rtr = RtrType::kNone;

  bool operator==(const MpaNegotiation&) const = default;
};

// The Request an initiator sends. kInvalidArgument if the private data is too long or IRD/ORD
// exceed 14 bits.
Result<MpaFrame> make_mpa_request(const MpaSettings& ours, std::span<const std::byte> private_data);

// A Reply refusing `request` (R flag), e.g. when the ULP declines the connection.
MpaFrame make_mpa_reject(const MpaFrame& request, std::span<const std::byte> private_data);

struct ResponderDecision {
  MpaFrame reply;             // send it in every case; reply.reject is set when refused
  Status status;              // why we refused, or ok
  MpaNegotiation negotiated;  // valid when status is ok
};

// Responder side: turns the peer's Request and our settings into the Reply and the connection
// parameters. Refuses (reject reply + error status) a peer that demands markers (kNotSupported),
// peer-to-peer mode with no RTR type we can accept (kNotSupported), or reply private data that
// does not fit (kInvalidArgument). IRD/ORD follow RFC 6581: our ORD is capped by the peer's IRD,
// our IRD by the peer's ORD and our own limit; the initiator lowers its ORD to our IRD.
ResponderDecision negotiate_as_responder(const MpaSettings& ours, const MpaFrame& request,
                                         std::span<const std::byte> reply_private_data);

// Initiator side: checks the Reply against the Request we sent. kRejected when the peer set R,
// kNotSupported for markers or a CRC refusal under kRequire, kProtocolError for a reply that does
// not fit the request (revision or enhanced mode it did not ask for, responder ORD above our IRD,
// no matching RTR). On error, *terminate_code (if given) is the code for the Terminate the
// initiator should send, per RFC 6581.
Result<MpaNegotiation> negotiate_as_initiator(const MpaSettings& ours, const MpaFrame& request,
                                              const MpaFrame& reply,
                                              TerminateCode* terminate_code = nullptr);

}  // namespace wv::verbs::tcp
