// A worker in its own process for the failure tests: prints its address on one line, receives
// one message (so the connection is up), then keeps progressing until it is killed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "wv/transport/worker.h"

int main() {
  using namespace std::chrono_literals;
  wv::transport::WorkerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto worker = wv::transport::Worker::create(options);
  if (!worker.is_ok()) {
    std::fprintf(stderr, "transport_peer: %s\n", worker.status().to_string().c_str());
    return 2;
  }
  auto address = (*worker)->address();
  std::printf("%.*s\n", static_cast<int>(address.size()),
              reinterpret_cast<const char*>(address.data()));
  std::fflush(stdout);
  std::vector<std::byte> buffer(64);
  auto recv = (*worker)->irecv(wv::transport::kAnyPeer, 0, 0, buffer.data(), buffer.size());
  if (recv.is_ok()) (void)(*worker)->wait(*recv, nullptr, 30s);
  // Bounded: a parent that forgot to kill us does not leave us behind for long.
  for (int i = 0; i < 60000; ++i) {
    (*worker)->progress();
    usleep(1000);
  }
  return 0;
}
