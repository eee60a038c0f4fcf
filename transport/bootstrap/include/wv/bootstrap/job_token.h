// The secret that admits a process to a job's store: 128 random bits, passed as 32 hex digits
// in WV_JOB_TOKEN. Anyone who can reach the store's port but was not started by wvrun (another
// user on the host, another job) cannot read or disturb this job's exchange.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "wv/bootstrap/store_protocol.h"
#include "wv/result.h"

namespace wv::bootstrap {

using JobToken = std::array<std::byte, store::kTokenBytes>;

// A fresh token from getrandom(2); an error only when the kernel cannot supply randomness.
Result<JobToken> generate_job_token();
// `bytes` random bytes as lower-case hex (job ids and tokens).
Result<std::string> random_hex(std::size_t bytes);

std::string to_hex(const JobToken& token);
// kInvalidArgument unless `hex` is exactly 32 hex digits.
Result<JobToken> parse_job_token(std::string_view hex);

// Compares in time independent of where the tokens differ.
bool tokens_equal(const JobToken& a, const JobToken& b);

}  // namespace wv::bootstrap
