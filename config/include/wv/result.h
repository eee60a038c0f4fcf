// Status and Result<T>: how every wv layer reports failure without exceptions.
//
// A Status is an error code plus a human-readable message that names what was wrong
// (the parameter, the key, the state). Success carries no message and costs one word,
// so data-path calls (post, poll) can return it cheaply.
#pragma once

#include <cassert>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace wv {

enum class Errc {
  kOk = 0,
  kInvalidArgument,    // a parameter is out of range or malformed
  kInvalidState,       // the object is not in a state that allows the call
  kNotFound,           // no such device, parameter, address, key
  kNotSupported,       // the provider or device lacks the capability
  kNoMemory,           // allocation or registration failed
  kBusy,               // the object is still in use (e.g. a CQ with QPs attached)
  kQueueFull,          // a work queue or completion queue has no room
  kTimedOut,           // a bounded wait ran out
  kCancelled,          // a pending operation was cancelled
  kConnectionRefused,  // nobody listens at the address
  kRejected,           // the peer rejected the connection (private data attached)
  kUnreachable,        // address or route resolution failed
  kDisconnected,       // the peer went away
  kProtocolError,      // malformed or hostile wire data
  kPermissionDenied,   // access flags or keys forbid the operation
  kIoError,            // a system call failed
};

std::string_view to_string(Errc code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message)
      : error_(code == Errc::kOk
                   ? nullptr
                   : std::make_shared<const Detail>(Detail{code, std::move(message)})) {}

  static Status ok() { return {}; }

  bool is_ok() const { return error_ == nullptr; }
  explicit operator bool() const { return is_ok(); }
  Errc code() const { return error_ ? error_->code : Errc::kOk; }
  const std::string& message() const;
  // "code: message", for logs and test failure output.
  std::string to_string() const;

 private:
  struct Detail {
    Errc code;
    std::string message;
  };
  // Shared so that copying a Status on an error path never allocates again.
  std::shared_ptr<const Detail> error_;
};

// `code` with "what: strerror(errno)", for a failed system call; reads errno at the call.
Status errno_status(Errc code, std::string_view what);

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(state_).is_ok() && "a Result built from a Status must be an error");
  }
  Result(Errc code, std::string message) : Result(Status(code, std::move(message))) {}

  bool is_ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return is_ok(); }

  T& value() & {
    assert(is_ok());
    return std::get<T>(state_);
  }
  const T& value() const& {
    assert(is_ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    assert(is_ok());
    return std::get<T>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(state_); }

 private:
  std::variant<T, Status> state_;
};

// Result<void>: success or the Status explaining the failure.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Status status) : status_(std::move(status)) {}  // NOLINT(google-explicit-constructor)
  Result(Errc code, std::string message) : status_(code, std::move(message)) {}

  bool is_ok() const { return status_.is_ok(); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const { return status_; }

 private:
  Status status_;
};

}  // namespace wv
