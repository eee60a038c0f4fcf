#include "wv/result.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace wv {

std::string_view to_string(Errc code) {
  switch (code) {
    case Errc::kOk:
      return "ok";
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kInvalidState:
      return "invalid state";
    case Errc::kNotFound:
      return "not found";
    case Errc::kNotSupported:
      return "not supported";
    case Errc::kNoMemory:
      return "no memory";
    case Errc::kBusy:
      return "busy";
    case Errc::kQueueFull:
      return "queue full";
    case Errc::kTimedOut:
      return "timed out";
    case Errc::kCancelled:
      return "cancelled";
    case Errc::kConnectionRefused:
      return "connection refused";
    case Errc::kRejected:
      return "rejected";
    case Errc::kUnreachable:
      return "unreachable";
    case Errc::kDisconnected:
      return "disconnected";
    case Errc::kProtocolError:
      return "protocol error";
    case Errc::kPermissionDenied:
      return "permission denied";
    case Errc::kIoError:
      return "I/O error";
  }
  return "unknown error";
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return error_ ? error_->message : kEmpty;
}

std::string Status::to_string() const {
  if (is_ok()) return std::string(wv::to_string(Errc::kOk));
  return fmt::format("{}: {}", wv::to_string(error_->code), error_->message);
}

Status errno_status(Errc code, std::string_view what) {
  const int error = errno;
  return Status(code, fmt::format("{}: {}", what, std::strerror(error)));
}

}  // namespace wv
