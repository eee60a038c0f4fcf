// One rank of a wv::Comm job (run under wvrun or mpirun): point-to-point with every rank at
// eager and rendezvous sizes, any-source receives, probe, barrier, and an RMA window with puts,
// gets and atomics from every rank, on a window of its own memory and on an allocated one. Prints
// "comm ok" and exits 0, or says what broke.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "wv/comm.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "comm_job: %s\n", what.c_str());
    ++failures;
  }
}

void check(const wv::Status& status, const std::string& what) {
  check(status.is_ok(), what + ": " + status.to_string());
}

std::vector<unsigned char> payload(size_t length, int from, int to) {
  std::vector<unsigned char> bytes(length);
  for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<unsigned char>(i * 31 + from * 7 + to);
  return bytes;
}

// Every rank adds its rank+1 to a counter at rank 0 and puts its rank into slot rank+1 of
// `window`, whose memory here is `exposed` (size + 1 words), then reads its slot back.
void exercise_window(wv::Comm& comm, wv::Window& w, const uint64_t* exposed,
                     const std::string& kind) {
  const int rank = comm.rank();
  const int size = comm.size();
  const size_t words = static_cast<size_t>(size) + 1;
  uint64_t old = 0;
  auto add = w.fetch_add(0, 0, static_cast<uint64_t>(rank + 1), &old);
  if (add.is_ok()) {
    check(comm.wait(*add), kind + ": fetch_add");
  } else {
    check(add.status().code() == wv::Errc::kNotSupported,
          kind + ": fetch_add: " + add.status().to_string());
  }
  uint64_t mine = static_cast<uint64_t>(rank) + 1000;
  auto put = w.put(0, (static_cast<size_t>(rank) + 1) * 8, &mine, 8);
  check(put.status(), kind + ": put");
  check(w.flush(), kind + ": flush");
  if (put.is_ok()) check(comm.wait(*put), kind + ": put done");
  check(!w.put(0, words * 8, &mine, 8).is_ok(), kind + ": a put past the window was accepted");
  check(comm.barrier(), kind + ": barrier after puts");
  uint64_t remote_slot = 0;
  auto get = w.get(0, (static_cast<size_t>(rank) + 1) * 8, &remote_slot, 8);
  check(get.status(), kind + ": get");
  if (get.is_ok()) check(comm.wait(*get), kind + ": get done");
  check(remote_slot == mine, kind + ": get did not read back the put");
  check(comm.barrier(), kind + ": barrier after gets");
  if (rank == 0) {
    for (int r = 0; r < size; ++r) {
      check(exposed[r + 1] == static_cast<uint64_t>(r) + 1000,
            kind + ": slot " + std::to_string(r + 1) + " is " + std::to_string(exposed[r + 1]));
    }
    if (add.is_ok()) {
      const uint64_t expected = static_cast<uint64_t>(size) * (size + 1) / 2;
      check(exposed[0] == expected, kind + ": counter is " + std::to_string(exposed[0]) +
                                        ", expected " + std::to_string(expected));
    }
  }
}

}  // namespace

int main() {
  auto init = wv::Comm::init();
  if (!init.is_ok()) {
    std::fprintf(stderr, "comm_job: init: %s\n", init.status().to_string().c_str());
    return 2;
  }
  wv::Comm& comm = **init;
  const int rank = comm.rank();
  const int size = comm.size();

  // Every pair, both directions, small and large.
  for (size_t length : {size_t{0}, size_t{100}, size_t{300000}}) {
    std::vector<wv::transport::Request> requests;
    std::vector<std::vector<unsigned char>> sent, received(static_cast<size_t>(size));
    for (int peer = 0; peer < size; ++peer) {
      received[static_cast<size_t>(peer)].resize(length);
      auto r = comm.irecv(peer, 11, received[static_cast<size_t>(peer)].data(), length);
      check(r.status(), "irecv");
      if (r.is_ok()) requests.push_back(*r);
    }
    for (int peer = 0; peer < size; ++peer) {
      sent.push_back(payload(length, rank, peer));
      auto s = comm.isend(peer, 11, sent.back().data(), length);
      check(s.status(), "isend");
      if (s.is_ok()) requests.push_back(*s);
    }
    check(comm.wait_all(requests), "wait_all at " + std::to_string(length) + " bytes");
    for (int peer = 0; peer < size; ++peer) {
      check(received[static_cast<size_t>(peer)] == payload(length, peer, rank),
            "wrong data from rank " + std::to_string(peer));
    }
  }

  // Any-source: rank 0 collects one message from everyone else, in any order.
  if (rank == 0) {
    std::vector<bool> seen(static_cast<size_t>(size), false);
    for (int i = 1; i < size; ++i) {
      auto probed = comm.probe(wv::kAnySource, wv::kAnyTag);
      check(probed.status(), "probe");
      int value = -1;
      auto status = comm.recv(wv::kAnySource, wv::kAnyTag, &value, sizeof value);
      check(status.status(), "recv any");
      if (status.is_ok()) {
        check(status->source == value && status->tag == static_cast<uint64_t>(100 + value),
              "any-source status does not name the sender");
        if (value > 0 && value < size) seen[static_cast<size_t>(value)] = true;
      }
    }
    for (int i = 1; i < size; ++i) check(seen[static_cast<size_t>(i)], "no message from a rank");
  } else {
    check(comm.ssend(0, static_cast<uint64_t>(100 + rank), &rank, sizeof rank), "ssend");
  }
  check(comm.barrier(), "barrier");

  // RMA, on a window of the job's own memory and on one the library allocates.
  std::vector<uint64_t> exposed(static_cast<size_t>(size) + 1, 0);
  const size_t window_bytes = exposed.size() * sizeof(uint64_t);
  auto window = comm.create_window(exposed.data(), window_bytes);
  check(window.status(), "create_window");
  if (window.is_ok()) exercise_window(comm, **window, exposed.data(), "create_window");
  auto allocated = comm.allocate_window(window_bytes);
  check(allocated.status(), "allocate_window");
  if (allocated.is_ok()) {
    auto* base = static_cast<uint64_t*>((*allocated)->base());
    check(base != nullptr && base[0] == 0 && base[size] == 0, "allocate_window: not zeroed");
    check(comm.barrier(), "barrier before using the allocated window");  // nobody wrote yet
    if (base != nullptr) exercise_window(comm, **allocated, base, "allocate_window");
  }
  check(comm.barrier(), "final barrier");
  if (failures) return 1;
  std::printf("rank %d of %d: comm ok\n", rank, size);
  return 0;
}
