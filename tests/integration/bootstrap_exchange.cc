// A job's smallest real use of Bootstrap, run by wvrun_test.sh and pmix_test.sh: every rank puts
// its rank (and a 4 KiB pattern), fences, reads every other rank's values and checks them.
// Exits non-zero on any mismatch or error. Options make a rank misbehave on purpose:
//   --expect-kind K         fail unless the bootstrap is of kind K (wvrun, pmix, singleton)
//   --exit-rank R --exit-code C   rank R exits with C after the exchange
//   --kill-rank R           rank R kills itself with SIGKILL after the exchange
//   --hang                  print "ready <rank>" after the exchange, then sleep (up to 300 s)
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "wv/transport/bootstrap.h"

namespace {

using namespace std::chrono_literals;

std::vector<std::byte> pattern(int rank) {
  std::vector<std::byte> out(4096);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>((i * 31 + static_cast<std::size_t>(rank) * 7) & 0xff);
  }
  return out;
}

std::vector<std::byte> bytes_of(const std::string& s) {
  auto b = std::as_bytes(std::span<const char>(s.data(), s.size()));
  return {b.begin(), b.end()};
}

int fail(int rank, const std::string& what) {
  std::fprintf(stderr, "bootstrap_exchange rank %d: FAIL: %s\n", rank, what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string expect_kind;
  int exit_rank = -1;
  int exit_code = 0;
  int kill_rank = -1;
  bool hang = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--expect-kind" && has_value) {
      expect_kind = argv[++i];
    } else if (arg == "--exit-rank" && has_value) {
      exit_rank = std::atoi(argv[++i]);
    } else if (arg == "--exit-code" && has_value) {
      exit_code = std::atoi(argv[++i]);
    } else if (arg == "--kill-rank" && has_value) {
      kill_rank = std::atoi(argv[++i]);
    } else if (arg == "--hang") {
      hang = true;
    } else {
      std::fprintf(stderr, "bootstrap_exchange: unknown argument '%s'\n", arg.c_str());
      return 2;
    }
  }

  auto made = wv::transport::Bootstrap::from_environment();
  if (!made) return fail(-1, "from_environment: " + made.status().to_string());
  auto& b = *made.value();
  const int rank = b.rank();
  const int size = b.size();
  if (!expect_kind.empty() && b.kind() != expect_kind) {
    return fail(rank, "kind is " + std::string(b.kind()) + ", expected " + expect_kind);
  }
  if (size < 1 || rank < 0 || rank >= size || b.local_rank() < 0 ||
      b.local_rank() >= b.local_size() || b.local_size() > size) {
    return fail(rank, "inconsistent rank/size/local rank/local size");
  }
  std::string id(b.job_id());
  if (wv::Status s = b.put("rank", bytes_of("rank=" + std::to_string(rank) + " job=" + id)); !s) {
    return fail(rank, "put: " + s.to_string());
  }
  if (wv::Status s = b.put("blob", pattern(rank)); !s) return fail(rank, "put: " + s.to_string());
  if (wv::Status s = b.fence(60s); !s) return fail(rank, "fence: " + s.to_string());
  for (int peer = 0; peer < size; ++peer) {
    auto v = b.get(peer, "rank", 30s);
    if (!v)
      return fail(rank, "get rank of " + std::to_string(peer) + ": " + v.status().to_string());
    std::string text(reinterpret_cast<const char*>(v->data()), v->size());
    if (text != "rank=" + std::to_string(peer) + " job=" + id) {
      return fail(rank, "rank " + std::to_string(peer) + " published '" + text + "'");
    }
    auto blob = b.get(peer, "blob", 30s);
    if (!blob || *blob != pattern(peer)) {
      return fail(rank, "blob of rank " + std::to_string(peer) + " missing or wrong");
    }
  }
  auto absent = b.get((rank + 1) % size, "never-put", 10s);
  if (absent.status().code() != wv::Errc::kNotFound) {
    return fail(rank, "a key nobody put gave " + absent.status().to_string());
  }
  if (wv::Status s = b.barrier(60s); !s) return fail(rank, "barrier: " + s.to_string());
  std::printf("rank %d of %d (%.*s, local %d of %d): exchange ok\n", rank, size,
              static_cast<int>(b.kind().size()), b.kind().data(), b.local_rank(), b.local_size());
  std::fflush(stdout);

  if (rank == exit_rank) return exit_code;
  if (rank == kill_rank) std::raise(SIGKILL);
  if (hang) {
    std::printf("ready %d\n", rank);
    std::fflush(stdout);
    ::sleep(300);  // bounded even if nobody ends it
  }
  return 0;
}
