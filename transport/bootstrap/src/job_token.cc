#include "wv/bootstrap/job_token.h"

#include <fmt/format.h>
#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace wv::bootstrap {
namespace {

Status fill_random(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(Errc::kIoError, "getrandom");
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string hex_of(std::span<const std::byte> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) out += fmt::format("{:02x}", static_cast<unsigned>(b));
  return out;
}

}  // namespace

Result<JobToken> generate_job_token() {
  JobToken token{};
  if (Status s = fill_random(token); !s) return s;
  return token;
}

Result<std::string> random_hex(std::size_t bytes) {
  std::vector<std::byte> raw(bytes);
  if (Status s = fill_random(raw); !s) return s;
  return hex_of(raw);
}

std::string to_hex(const JobToken& token) {
  return hex_of(token);
}

Result<JobToken> parse_job_token(std::string_view hex) {
  if (hex.size() != 2 * store::kTokenBytes) {
    return Result<JobToken>(Errc::kInvalidArgument,
                            fmt::format("a job token is {} hex digits, got {} characters",
                                        2 * store::kTokenBytes, hex.size()));
  }
  JobToken token{};
  for (std::size_t i = 0; i < token.size(); ++i) {
    int hi = hex_digit(hex[2 * i]);
    int lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Result<JobToken>(Errc::kInvalidArgument,
                              "a job token must consist of hex digits only");
    }
    token[i] = static_cast<std::byte>(hi << 4 | lo);
  }
  return token;
}

bool tokens_equal(const JobToken& a, const JobToken& b) {
  unsigned diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace wv::bootstrap
