#include "mpa.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string>

namespace wv::verbs::tcp {
namespace {

constexpr uint16_t kFlagMarkers = 0x8000;
constexpr uint16_t kFlagCrc = 0x4000;
constexpr uint16_t kFlagReject = 0x2000;
constexpr uint16_t kFlagEnhanced = 0x1000;  // RFC 6581: first of the formerly reserved bits
constexpr uint16_t kRevisionMask = 0x00FF;
// IRD/ORD word, RFC 6581.
constexpr uint16_t kIrdPeerToPeer = 0x8000;
constexpr uint16_t kIrdZeroLengthSendRtr = 0x4000;
constexpr uint16_t kOrdZeroLengthWriteRtr = 0x8000;
constexpr uint16_t kOrdZeroLengthReadRtr = 0x4000;
constexpr uint16_t kIrdOrdMask = 0x3FFF;

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out.append(part);
  return out;
}

std::string num(uint64_t value) {
  return std::to_string(value);
}

bool key_matches(const std::byte* p, std::string_view key) {
  return std::memcmp(p, key.data(), kMpaKeyBytes) == 0;
}

bool valid_revision(uint8_t revision) {
  return revision == 1 || revision == 2;
}

std::string describe_rtr(const RtrFlags& flags) {
  std::string out;
  auto add = [&out](std::string_view name) {
    if (!out.empty()) out += ", ";
    out += name;
  };
  if (flags.zero_length_write) add("zero-length Write");
  if (flags.zero_length_read) add("zero-length Read");
  if (flags.zero_length_send) add("zero-length Send");
  return out.empty() ? std::string("none") : out;
}

// Preference when several RTR types are possible: a zero-length Write needs no resources at the
// receiver, a Read needs an IRD slot, a Send needs a posted receive buffer.
RtrType pick_rtr(const RtrFlags& candidates) {
  if (candidates.zero_length_write) return RtrType::kZeroLengthWrite;
  if (candidates.zero_length_read) return RtrType::kZeroLengthRead;
  if (candidates.zero_length_send) return RtrType::kZeroLengthSend;
  return RtrType::kNone;
}

RtrFlags flags_for(RtrType type) {
  RtrFlags flags;
  flags.zero_length_write = type == RtrType::kZeroLengthWrite;
  flags.zero_length_read = type == RtrType::kZeroLengthRead;
  flags.zero_length_send = type == RtrType::kZeroLengthSend;
  return flags;
}

RtrFlags intersect(const RtrFlags& a, const RtrFlags& b) {
  RtrFlags out;
  out.zero_length_send = a.zero_length_send && b.zero_length_send;
  out.zero_length_write = a.zero_length_write && b.zero_length_write;
  out.zero_length_read = a.zero_length_read && b.zero_length_read;
  return out;
}

uint16_t clamp_ird_ord(uint16_t value) {
  return std::min(value, kMpaMaxIrdOrd);
}

}  // namespace

size_t MpaFrame::private_data_length() const {
  return private_data.size() + (enhanced ? kMpaIrdOrdBytes : 0);
}

Status encode_mpa_frame(const MpaFrame& frame, std::vector<std::byte>& out) {
  if (!valid_revision(frame.revision)) {
    return Status(Errc::kInvalidArgument,
                  cat({"MPA revision ", num(frame.revision), " cannot be sent; use 1 or 2"}));
  }
  if (frame.enhanced && frame.revision != 2) {
    return Status(Errc::kInvalidArgument, "enhanced MPA setup (RFC 6581) needs revision 2");
  }
  if (frame.enhanced && (frame.ird > kMpaMaxIrdOrd || frame.ord > kMpaMaxIrdOrd)) {
    return Status(Errc::kInvalidArgument,
                  cat({"MPA IRD ", num(frame.ird), " / ORD ", num(frame.ord),
                       " do not fit the 14-bit fields (max 16383)"}));
  }
  if (frame.reject && !frame.is_reply) {
    return Status(Errc::kInvalidArgument, "the MPA reject flag only exists in a Reply");
  }
  const size_t pd_length = frame.private_data_length();
  if (pd_length > kMpaMaxPrivateData) {
    return Status(Errc::kInvalidArgument,
                  cat({"MPA private data is ", num(frame.private_data.size()), " bytes",
                       frame.enhanced ? " plus the 4-byte IRD/ORD word" : "",
                       "; at most 512 fit in a frame"}));
  }

  const size_t start = out.size();
  out.resize(start + kMpaFrameHeaderBytes + pd_length);
  std::byte* p = out.data() + start;
  const std::string_view key = frame.is_reply ? kMpaKeyReply : kMpaKeyRequest;
  std::memcpy(p, key.data(), kMpaKeyBytes);
  const uint16_t flags = static_cast<uint16_t>(
      (frame.markers ? kFlagMarkers : 0) | (frame.crc ? kFlagCrc : 0) |
      (frame.reject ? kFlagReject : 0) | (frame.enhanced ? kFlagEnhanced : 0) | frame.revision);
  store_be16(p + 16, flags);
  store_be16(p + 18, static_cast<uint16_t>(pd_length));
  p += kMpaFrameHeaderBytes;
  if (frame.enhanced) {
    store_be16(p, static_cast<uint16_t>((frame.peer_to_peer ? kIrdPeerToPeer : 0) |
                                        (frame.rtr.zero_length_send ? kIrdZeroLengthSendRtr : 0) |
                                        frame.ird));
    store_be16(p + 2, static_cast<uint16_t>(
                          (frame.rtr.zero_length_write ? kOrdZeroLengthWriteRtr : 0) |
                          (frame.rtr.zero_length_read ? kOrdZeroLengthReadRtr : 0) | frame.ord));
    p += kMpaIrdOrdBytes;
  }
  std::copy(frame.private_data.begin(), frame.private_data.end(), p);
  return Status::ok();
}

Result<MpaFrameHeader> decode_mpa_header(std::span<const std::byte, kMpaFrameHeaderBytes> bytes,
                                         bool expect_reply) {
  const std::byte* p = bytes.data();
  const std::string_view expected = expect_reply ? kMpaKeyReply : kMpaKeyRequest;
  if (!key_matches(p, expected)) {
    const std::string_view other = expect_reply ? kMpaKeyRequest : kMpaKeyReply;
    if (key_matches(p, other)) {
      return Status(Errc::kProtocolError,
                    cat({"got an MPA ", expect_reply ? "Request" : "Reply", " where a ",
                         expect_reply ? "Reply" : "Request", " was expected"}));
    }
    return Status(Errc::kProtocolError,
                  cat({"not an MPA frame: the first 16 bytes are not the key \"", expected,
                       "\" (RFC 5044 §7.1)"}));
  }
  const uint16_t flags = load_be16(p + 16);
  MpaFrameHeader header;
  header.is_reply = expect_reply;
  header.revision = static_cast<uint8_t>(flags & kRevisionMask);
  header.private_data_length = load_be16(p + 18);
  if (!valid_revision(header.revision)) {
    return Status(Errc::kProtocolError, cat({"MPA revision ", num(header.revision),
                                             " is not supported (wv speaks 1 and 2)"}));
  }
  if (header.private_data_length > kMpaMaxPrivateData) {
    return Status(Errc::kProtocolError,
                  cat({"MPA private data length ", num(header.private_data_length),
                       " exceeds the 512-byte limit (RFC 5044 §7.1)"}));
  }
  header.markers = (flags & kFlagMarkers) != 0;
  header.crc = (flags & kFlagCrc) != 0;
  header.reject = expect_reply && (flags & kFlagReject) != 0;
  // The Enhanced bit is reserved in revision 1 and ignored there.
  header.enhanced = header.revision == 2 && (flags & kFlagEnhanced) != 0;
  if (header.enhanced && header.private_data_length < kMpaIrdOrdBytes) {
    return Status(Errc::kProtocolError,
                  cat({"enhanced MPA frame (RFC 6581) with ", num(header.private_data_length),
                       " bytes of private data; the IRD/ORD word alone needs 4"}));
  }
  return header;
}

Status decode_mpa_private_data(const MpaFrameHeader& header, std::span<const std::byte> bytes,
                               MpaFrame& out) {
  if (bytes.size() != header.private_data_length) {
    return Status(Errc::kInvalidArgument,
                  cat({"the MPA header announces ", num(header.private_data_length),
                       " bytes of private data, got ", num(bytes.size())}));
  }
  if (header.private_data_length > kMpaMaxPrivateData ||
      (header.enhanced && header.private_data_length < kMpaIrdOrdBytes)) {
    return Status(Errc::kProtocolError,
                  cat({"MPA private data length ", num(header.private_data_length),
                       " is impossible for this frame"}));
  }
  out = MpaFrame{};
  out.is_reply = header.is_reply;
  out.revision = header.revision;
  out.markers = header.markers;
  out.crc = header.crc;
  out.reject = header.reject;
  out.enhanced = header.enhanced;
  size_t offset = 0;
  if (header.enhanced) {
    const uint16_t ird_word = load_be16(bytes.data());
    const uint16_t ord_word = load_be16(bytes.data() + 2);
    out.ird = ird_word & kIrdOrdMask;
    out.ord = ord_word & kIrdOrdMask;
    out.peer_to_peer = (ird_word & kIrdPeerToPeer) != 0;
    out.rtr.zero_length_send = (ird_word & kIrdZeroLengthSendRtr) != 0;
    out.rtr.zero_length_write = (ord_word & kOrdZeroLengthWriteRtr) != 0;
    out.rtr.zero_length_read = (ord_word & kOrdZeroLengthReadRtr) != 0;
    offset = kMpaIrdOrdBytes;
  }
  out.private_data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset), bytes.end());
  return Status::ok();
}

Result<MpaFrame> decode_mpa_frame(std::span<const std::byte> bytes, bool expect_reply) {
  if (bytes.size() < kMpaFrameHeaderBytes) {
    return Status(Errc::kProtocolError,
                  cat({"an MPA frame has at least 20 bytes, got ", num(bytes.size())}));
  }
  auto header = decode_mpa_header(bytes.first<kMpaFrameHeaderBytes>(), expect_reply);
  if (!header) return header.status();
  if (bytes.size() != kMpaFrameHeaderBytes + header->private_data_length) {
    return Status(Errc::kProtocolError,
                  cat({"MPA frame of ", num(bytes.size()), " bytes, its header announces ",
                       num(kMpaFrameHeaderBytes + header->private_data_length)}));
  }
  MpaFrame frame;
  if (Status status = decode_mpa_private_data(*header, bytes.subspan(kMpaFrameHeaderBytes), frame);
      !status) {
    return status;
  }
  return frame;
}

// ---------------------------------------------------------------------------------------------
// Negotiation.

std::string_view to_string(RtrType type) {
  switch (type) {
    case RtrType::kNone:
      return "none";
    case RtrType::kZeroLengthSend:
      return "zero-length Send";
    case RtrType::kZeroLengthWrite:
      return "zero-length Write";
    case RtrType::kZeroLengthRead:
      return "zero-length Read";
  }
  return "unknown";
}

Result<MpaFrame> make_mpa_request(const MpaSettings& ours,
                                  std::span<const std::byte> private_data) {
  if (!valid_revision(ours.revision)) {
    return Status(Errc::kInvalidArgument,
                  cat({"MPA revision ", num(ours.revision), " is not 1 or 2"}));
  }
  MpaFrame request;
  request.revision = ours.revision;
  request.crc = ours.crc != CrcPolicy::kOff;
  request.enhanced = ours.revision == 2;
  if (request.enhanced) {
    if (ours.ird > kMpaMaxIrdOrd || ours.ord > kMpaMaxIrdOrd) {
      return Status(Errc::kInvalidArgument, cat({"IRD ", num(ours.ird), " / ORD ", num(ours.ord),
                                                 " do not fit MPA's 14-bit fields (max 16383)"}));
    }
    request.ird = ours.ird;
    request.ord = ours.ord;
    if (ours.peer_to_peer) {
      request.peer_to_peer = true;
      request.rtr = ours.rtr;
      // The RTR Read is a real Read Request: it needs an ORD slot here.
      if (ours.ord == 0) request.rtr.zero_length_read = false;
      if (!request.rtr.any()) {
        return Status(Errc::kInvalidArgument,
                      "peer-to-peer MPA needs at least one RTR type the initiator can send");
      }
    }
  }
  if (private_data.size() + (request.enhanced ? kMpaIrdOrdBytes : 0) > kMpaMaxPrivateData) {
    return Status(
        Errc::kInvalidArgument,
        cat({"MPA request private data is ", num(private_data.size()), " bytes; at most ",
             num(kMpaMaxPrivateData - (request.enhanced ? kMpaIrdOrdBytes : 0)), " fit"}));
  }
  request.private_data.assign(private_data.begin(), private_data.end());
  return request;
}

MpaFrame make_mpa_reject(const MpaFrame& request, std::span<const std::byte> private_data) {
  MpaFrame reply;
  reply.is_reply = true;
  reply.reject = true;
  reply.revision = valid_revision(request.revision) ? request.revision : 1;
  reply.crc = request.crc;
  reply.enhanced = request.enhanced && reply.revision == 2;
  const size_t room = kMpaMaxPrivateData - (reply.enhanced ? kMpaIrdOrdBytes : 0);
  const size_t keep = std::min(private_data.size(), room);  // a reject must still be sendable
  reply.private_data.assign(private_data.begin(),
                            private_data.begin() + static_cast<std::ptrdiff_t>(keep));
  return reply;
}

ResponderDecision negotiate_as_responder(const MpaSettings& ours, const MpaFrame& request,
                                         std::span<const std::byte> reply_private_data) {
  ResponderDecision decision;
  MpaFrame& reply = decision.reply;
  reply.is_reply = true;
  reply.revision = std::min(valid_revision(request.revision) ? request.revision : uint8_t{1},
                            valid_revision(ours.revision) ? ours.revision : uint8_t{1});
  reply.enhanced = request.enhanced && reply.revision == 2;
  // RFC 5044 §7.1: CRC is used when either side asks for it, and the Reply states the outcome.
  reply.crc = request.crc || ours.crc != CrcPolicy::kOff;
  const uint16_t our_ird = clamp_ird_ord(ours.ird);
  const uint16_t our_ord = clamp_ird_ord(ours.ord);
  if (reply.enhanced) {
    reply.ird = our_ird;
    reply.ord = our_ord;
  }

  auto refuse = [&decision](Errc code, std::string message) {
    decision.reply.reject = true;
    decision.reply.peer_to_peer = false;
    decision.reply.rtr = {};
    decision.reply.private_data.clear();
    decision.status = Status(code, std::move(message));
    return decision;
  };

  if (request.is_reply) {
    return refuse(Errc::kInvalidArgument,
                  "negotiate_as_responder was given a Reply, not a Request");
  }
  if (request.markers) {
    return refuse(Errc::kNotSupported,
                  "the peer demands MPA markers (M flag); wv never uses markers, so the "
                  "connection is refused");
  }
  const size_t room = kMpaMaxPrivateData - (reply.enhanced ? kMpaIrdOrdBytes : 0);
  if (reply_private_data.size() > room) {
    return refuse(Errc::kInvalidArgument,
                  cat({"MPA reply private data is ", num(reply_private_data.size()),
                       " bytes; at most ", num(room), " fit"}));
  }

  MpaNegotiation& negotiated = decision.negotiated;
  negotiated.crc = reply.crc;
  negotiated.enhanced = reply.enhanced;
  if (reply.enhanced) {
    // RFC 6581: never issue more Reads than the initiator can take (its IRD), and provision no
    // more inbound Reads than it will issue (its ORD). The initiator then lowers its ORD to our
    // IRD if ours is smaller.
    negotiated.ird = std::min(our_ird, request.ord);
    negotiated.ord = std::min(our_ord, request.ird);
    reply.ird = negotiated.ird;
    reply.ord = negotiated.ord;
    if (request.peer_to_peer) {
      // An initiator that sets P2P without naming an RTR type gets a zero-length Write, as siw
      // does.
      const RtrFlags offered =
          request.rtr.any() ? request.rtr : RtrFlags{.zero_length_write = true};
      RtrFlags usable = intersect(offered, ours.rtr);
      if (negotiated.ird == 0) usable.zero_length_read = false;  // the RTR Read needs an IRD slot
      const RtrType chosen = pick_rtr(usable);
      if (chosen == RtrType::kNone) {
        return refuse(Errc::kNotSupported,
                      cat({"peer-to-peer MPA: the initiator offers RTR ", describe_rtr(offered),
                           ", we accept ", describe_rtr(ours.rtr),
                           negotiated.ird == 0 ? " (a Read needs IRD >= 1)" : "",
                           ": no matching RTR option"}));
      }
      reply.peer_to_peer = true;
      reply.rtr = flags_for(chosen);
      negotiated.rtr = chosen;
    }
  } else {
    // No IRD/ORD exchange (revision 1, or revision 2 without the Enhanced flag): the ULP agreed
    // on them out of band, e.g. in its private data as rdma_cm does.
    negotiated.ird = our_ird;
    negotiated.ord = our_ord;
  }
  reply.private_data.assign(reply_private_data.begin(), reply_private_data.end());
  return decision;
}

Result<MpaNegotiation> negotiate_as_initiator(const MpaSettings& ours, const MpaFrame& request,
                                              const MpaFrame& reply,
                                              TerminateCode* terminate_code) {
  auto fail = [terminate_code](Errc code, TerminateCode term, std::string message) {
    if (terminate_code != nullptr) *terminate_code = term;
    return Status(code, std::move(message));
  };
  if (!reply.is_reply || request.is_reply) {
    return Status(Errc::kInvalidArgument,
                  "negotiate_as_initiator needs the Request we sent and the Reply we got");
  }
  if (reply.reject) {
    return Status(Errc::kRejected,
                  cat({"the peer rejected the MPA request (", num(reply.private_data.size()),
                       " bytes of private data attached)"}));
  }
  if (reply.markers) {
    return fail(Errc::kNotSupported, TerminateCode::kMpaInvalidRequestReply,
                "the peer's MPA reply demands markers (M flag); wv never uses markers");
  }
  if (reply.revision > request.revision) {
    return fail(Errc::kProtocolError, TerminateCode::kMpaInvalidRequestReply,
                cat({"MPA reply has revision ", num(reply.revision), " but we requested ",
                     num(request.revision)}));
  }
  if (reply.enhanced && !request.enhanced) {
    return fail(Errc::kProtocolError, TerminateCode::kMpaInvalidRequestReply,
                "MPA reply carries an IRD/ORD word (Enhanced flag) that we did not offer");
  }
  if (request.crc && !reply.crc && ours.crc == CrcPolicy::kRequire) {
    return fail(Errc::kNotSupported, TerminateCode::kMpaInvalidRequestReply,
                "the peer's MPA reply declines CRC, which we require");
  }

  MpaNegotiation negotiated;
  // A conforming Reply states the outcome (CRC when either side asked). Under kRequest we also
  // follow a peer that declines CRC in spite of our request rather than fail the connection.
  negotiated.crc = reply.crc;
  negotiated.enhanced = reply.enhanced;
  if (!reply.enhanced) {
    // The responder does not speak RFC 6581 (or chose not to): no IRD/ORD exchange and no RTR,
    // so RFC 5044's rule applies: we send the first FPDU.
    negotiated.ird = clamp_ird_ord(ours.ird);
    negotiated.ord = clamp_ird_ord(ours.ord);
    return negotiated;
  }
  if (reply.ord > request.ird) {
    return fail(Errc::kProtocolError, TerminateCode::kMpaInsufficientIrd,
                cat({"the responder's ORD ", num(reply.ord), " exceeds our IRD ", num(request.ird),
                     " (RFC 6581: insufficient IRD)"}));
  }
  negotiated.ird = reply.ord;
  negotiated.ord = std::min(request.ord, reply.ird);
  if (request.peer_to_peer) {
    RtrFlags usable = intersect(reply.rtr, request.rtr);
    if (negotiated.ord == 0) usable.zero_length_read = false;
    negotiated.rtr = pick_rtr(usable);
    if (negotiated.rtr == RtrType::kNone) {
      return fail(
          Errc::kProtocolError, TerminateCode::kMpaNoMatchingRtr,
          cat({"peer-to-peer MPA: we offered RTR ", describe_rtr(request.rtr),
               ", the responder chose ", describe_rtr(reply.rtr),
               negotiated.ord == 0 ? " (a Read needs ORD >= 1)" : "", ": no matching RTR option"}));
    }
  }
  return negotiated;
}

}  // namespace wv::verbs::tcp
