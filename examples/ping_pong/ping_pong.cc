// ping_pong: the smallest complete wv program. Rank 0 sends a message to every other rank,
// each answers with it doubled, and everybody meets at a barrier; then rank 0 times a
// ping-pong with rank 1 and every rank adds itself into a counter in rank 0's window.
//
//   wvrun -n 4 ./ping_pong          (or: mpirun -n 4 ./ping_pong, through PMIx)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "wv/comm.h"

namespace {

// Every wv call returns a Status or Result; a real program decides what to do with errors.
int fail(const char* what, const wv::Status& status) {
  std::fprintf(stderr, "ping_pong: %s: %s\n", what, status.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  auto init = wv::Comm::init();
  if (!init.is_ok()) return fail("init", init.status());
  wv::Comm& comm = **init;
  const int rank = comm.rank();
  const int size = comm.size();
  constexpr uint64_t kTag = 1;

  if (rank == 0) {
    for (int peer = 1; peer < size; ++peer) {
      int64_t value = peer * 100;
      if (auto s = comm.send(peer, kTag, &value, sizeof value); !s.is_ok()) return fail("send", s);
    }
    for (int i = 1; i < size; ++i) {
      int64_t answer = 0;
      auto got = comm.recv(wv::kAnySource, kTag, &answer, sizeof answer);
      if (!got.is_ok()) return fail("recv", got.status());
      std::printf("rank 0: rank %d answered %lld\n", got->source, static_cast<long long>(answer));
    }
  } else {
    int64_t value = 0;
    auto got = comm.recv(0, kTag, &value, sizeof value);
    if (!got.is_ok()) return fail("recv", got.status());
    value *= 2;
    if (auto s = comm.send(0, kTag, &value, sizeof value); !s.is_ok()) return fail("send", s);
  }
  if (auto s = comm.barrier(); !s.is_ok()) return fail("barrier", s);

  if (size > 1 && rank < 2) {
    constexpr int kRounds = 1000;
    std::vector<char> message(8);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRounds; ++i) {
      if (rank == 0) {
        if (auto s = comm.send(1, 2, message.data(), message.size()); !s.is_ok())
          return fail("ping", s);
        if (auto r = comm.recv(1, 2, message.data(), message.size()); !r.is_ok())
          return fail("pong", r.status());
      } else {
        if (auto r = comm.recv(0, 2, message.data(), message.size()); !r.is_ok())
          return fail("ping", r.status());
        if (auto s = comm.send(0, 2, message.data(), message.size()); !s.is_ok())
          return fail("pong", s);
      }
    }
    std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
    if (rank == 0) {
      std::printf("rank 0: 8-byte half round trip %.2f us over %s\n", elapsed.count() / kRounds / 2,
                  std::string(comm.worker().provider_name()).c_str());
    }
  }

  // One-sided: every rank adds rank + 1 into rank 0's counter.
  uint64_t counter = 0;
  auto window = comm.create_window(&counter, sizeof counter);
  if (!window.is_ok()) return fail("create_window", window.status());
  uint64_t before = 0;
  auto add = (*window)->fetch_add(0, 0, static_cast<uint64_t>(rank + 1), &before);
  if (!add.is_ok()) return fail("fetch_add", add.status());
  if (auto s = comm.wait(*add); !s.is_ok()) return fail("fetch_add", s);
  if (auto s = comm.barrier(); !s.is_ok()) return fail("barrier", s);
  if (rank == 0) {
    std::printf("rank 0: counter %llu (expected %d)\n", static_cast<unsigned long long>(counter),
                size * (size + 1) / 2);
    if (counter != static_cast<uint64_t>(size * (size + 1) / 2)) return 1;
  }
  if (auto s = comm.barrier(); !s.is_ok()) return fail("barrier", s);
  return 0;
}
