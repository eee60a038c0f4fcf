// THE parameter table of the whole project. A layer that needs a new knob adds it here (and
// its name to names.h), so that every source and every tool knows it.
#include <algorithm>

#include "wv/config/definition.h"
#include "wv/config/names.h"

namespace wv::config {
namespace {

constexpr std::string_view kProviderChoices[] = {"auto", "tcp", "shm", "hybrid", "ibverbs"};
constexpr std::string_view kLogLevelChoices[] = {"error", "warn", "info", "debug"};
constexpr std::string_view kTcpCrcChoices[] = {"off", "request", "require"};
constexpr std::string_view kTransportRendezvousChoices[] = {"auto", "read", "write"};
constexpr std::string_view kTransportProgressChoices[] = {"poll", "block", "hybrid"};
constexpr std::string_view kShmCmaChoices[] = {"auto", "on", "off"};
constexpr std::string_view kFakeLayoutChoices[] = {"block", "cyclic"};
constexpr std::string_view kFakeNicChoices[] = {"none", "last"};

constexpr Definition kDefinitions[] = {
    {.name = names::kProvider,
     .type = Type::kChoice,
     .default_value = "auto",
     .description = "Which verbs provider to open; auto lets wv choose.",
     .level = Level::kUser,
     .choices = kProviderChoices},
    {.name = names::kDevice,
     .type = Type::kString,
     .default_value = "",
     .description = "Device to open (e.g. rxe0); empty means the provider's first device.",
     .level = Level::kUser},
    {.name = names::kLogLevel,
     .type = Type::kChoice,
     .default_value = "warn",
     .description = "Least severe kind of message that is logged.",
     .level = Level::kUser,
     .choices = kLogLevelChoices},
    {.name = names::kTcpCrc,
     .type = Type::kChoice,
     .default_value = "off",
     .description = "Whether tcp connections negotiate MPA CRC32c: off accepts the peer's wish, "
                    "request asks for it, require refuses peers without it.",
     .level = Level::kTuner,
     .choices = kTcpCrcChoices},
    {.name = names::kTcpSegmentSize,
     .type = Type::kSize,
     .default_value = "64K",
     .description = "Largest DDP segment payload on the tcp wire; the provider clamps it to "
                    "the real frame limit.",
     .level = Level::kTuner,
     .min = 1024,
     .max = 65536},
    {.name = names::kTcpReadDepth,
     .type = Type::kInteger,
     .default_value = "16",
     .description = "RDMA reads in flight per QP in each direction (the MPA v2 IRD/ORD offered).",
     .level = Level::kTuner,
     .min = 1,
     .max = 1024},
    {.name = names::kTcpPortBase,
     .type = Type::kInteger,
     .default_value = "0",
     .description = "First TCP port that endpoints bind when none is given; 0 means ephemeral.",
     .level = Level::kDeveloper,
     .min = 0,
     .max = 65535},
    {.name = names::kShmCma,
     .type = Type::kChoice,
     .default_value = "auto",
     .description =
         "shm RDMA read/write of 16 KiB and more as one copy with "
         "process_vm_readv/writev (the kernel permitting): on for every peer; auto "
         "only between processes confined to the same single CPU, where the ring's "
         "two copies would take turns, or for a read or write of 32 KiB and more with nothing "
         "else outstanding on its QP (one copy ends sooner than the pipeline); a lone read of "
         "up to 1 MiB to a target that does not poll is copied by the reader against the "
         "target's published keys, without the target's CPU; reads and writes of "
         "32 KiB and more in a stream take whichever of a pull (by the reader, or by the "
         "write's target) and the ring (whose two copies run side by side on two cores) the "
         "connection measured faster, re-measuring the other every 64th; off never.",
     .level = Level::kTuner,
     .choices = kShmCmaChoices},
    {.name = names::kShmRingSize,
     .type = Type::kSize,
     .default_value = "256K",
     .description = "Bytes of each direction's shared-memory ring of an shm connection.",
     .level = Level::kTuner,
     .min = 16384,
     .max = 67108864},
    {.name = names::kConnectTimeoutMs,
     .type = Type::kInteger,
     .default_value = "10000",
     .description = "Bound in milliseconds on address and route resolution, connect and accept.",
     .level = Level::kUser,
     .min = 1},
    {.name = names::kRnrTimeoutMs,
     .type = Type::kInteger,
     .default_value = "2000",
     .description = "Milliseconds a receiver waits for a receive to be posted before failing "
                    "a send with receiver-not-ready.",
     .level = Level::kTuner,
     .min = 0},
    {.name = names::kProgressSpinUs,
     .type = Type::kInteger,
     .default_value = "0",
     .description = "Microseconds the provider's progress thread polls before sleeping in "
                    "epoll.",
     .level = Level::kTuner,
     .min = 0,
     .max = 1000000},
    {.name = names::kTransportAddress,
     .type = Type::kString,
     .default_value = "",
     .description = "ip[:port] a worker listens on for peers; empty means the provider's first "
                    "non-loopback address (else loopback) and an ephemeral port.",
     .level = Level::kUser},
    {.name = names::kTransportEagerLimit,
     .type = Type::kSize,
     .default_value = "0",
     .description = "Largest message sent eagerly (copied through pre-registered buffers); "
                    "larger ones use rendezvous. 0 chooses from the device and a measured "
                    "cost model.",
     .level = Level::kTuner,
     .min = 0,
     .max = 1048576},
    {.name = names::kTransportZeroCopyMin,
     .type = Type::kSize,
     .default_value = "16K",
     .description = "Smallest active-message payload sent from the caller's memory (registered "
                    "through the registration cache, no copy) by am_send_zcopy, btl/wv's "
                    "in-place sends; smaller ones are copied. 0 turns zero-copy sends off.",
     .level = Level::kTuner,
     .min = 0,
     .max = 1073741824},
    {.name = names::kTransportInlineLimit,
     .type = Type::kInteger,
     .default_value = "-1",
     .description = "Largest message (with its header, 8-32 bytes) posted inline; -1 uses the "
                    "device's inline size, 0 disables inline sends.",
     .level = Level::kTuner,
     .min = -1,
     .max = 65536},
    {.name = names::kTransportRendezvous,
     .type = Type::kChoice,
     .default_value = "auto",
     .description = "Rendezvous scheme: read (the receiver RDMA-reads the sender's buffer), "
                    "write (the sender RDMA-writes the receiver's), or auto from the device.",
     .level = Level::kTuner,
     .choices = kTransportRendezvousChoices},
    {.name = names::kTransportFragmentSize,
     .type = Type::kSize,
     .default_value = "0",
     .description = "Size of the RDMA operations a rendezvous transfer is cut into; 0 chooses "
                    "from the device.",
     .level = Level::kTuner,
     .min = 0,
     .max = 1073741824},
    {.name = names::kTransportCredits,
     .type = Type::kInteger,
     .default_value = "32",
     .description = "Messages a worker may send to one peer before the peer returns credits.",
     .level = Level::kTuner,
     .min = 2,
     .max = 4096},
    {.name = names::kTransportReceiveBuffers,
     .type = Type::kInteger,
     .default_value = "256",
     .description = "Eager receive buffers in the shared receive queue (shared by all peers).",
     .level = Level::kTuner,
     .min = 8,
     .max = 65536},
    {.name = names::kTransportSendBuffers,
     .type = Type::kInteger,
     .default_value = "256",
     .description = "Pre-registered eager send buffers per worker.",
     .level = Level::kTuner,
     .min = 8,
     .max = 65536},
    {.name = names::kTransportSendDepth,
     .type = Type::kInteger,
     .default_value = "128",
     .description = "Work requests in flight per connection.",
     .level = Level::kTuner,
     .min = 8,
     .max = 16384},
    {.name = names::kTransportUnexpectedLimit,
     .type = Type::kSize,
     .default_value = "1G",
     .description = "Bytes of received but not yet matched messages a worker keeps; beyond "
                    "it tagged calls fail with queue-full until receives drain the queue.",
     .level = Level::kUser,
     .min = 4096},
    {.name = names::kTransportRegistrationCache,
     .type = Type::kInteger,
     .default_value = "1024",
     .description = "Registrations of user buffers kept for reuse (least recently used go).",
     .level = Level::kTuner,
     .min = 1,
     .max = 1048576},
    {.name = names::kTransportProgress,
     .type = Type::kChoice,
     .default_value = "hybrid",
     .description = "How waits progress: poll (spin), block (sleep on the completion queue's "
                    "fd), hybrid (spin transport_spin_us, then sleep).",
     .level = Level::kUser,
     .choices = kTransportProgressChoices},
    {.name = names::kTransportSpinUs,
     .type = Type::kInteger,
     .default_value = "1000",
     .description = "Microseconds a hybrid wait spins before sleeping (longer than a wake-up, "
                    "or a ping-pong pays one per message).",
     .level = Level::kTuner,
     .min = 0,
     .max = 10000000},
    {.name = names::kTransportYieldUs,
     .type = Type::kInteger,
     .default_value = "2000",
     .description = "Microseconds a hybrid wait keeps polling after its spin, handing the core "
                    "to other runnable processes (sched_yield) between passes, before it sleeps. "
                    "On a host with more processes than cores the spin is skipped.",
     .level = Level::kTuner,
     .min = 0,
     .max = 10000000},
    {.name = names::kTransportMailbox,
     .type = Type::kBool,
     .default_value = "true",
     .description = "On connections whose peer memory can be mapped (the shm provider, and the "
                    "hybrid provider's on one host), send messages of up to 1136 bytes by storing "
                    "them in a 16 KiB mailbox ring in the receiver's memory, which it polls, "
                    "instead of through the queue pair.",
     .level = Level::kTuner},
    {.name = names::kCollectivesTable,
     .type = Type::kString,
     .default_value = "",
     .description = "Path of a JSON decision table (collective -> algorithm by message size, "
                    "process count and hosts) replacing the built-in one; empty: built-in.",
     .level = Level::kUser},
    {.name = names::kCollectivesSharedMemory,
     .type = Type::kBool,
     .default_value = "true",
     .description = "Run the intra-host steps of blocking collectives through a segment of "
                    "shared memory the host's ranks map (false: through the transport).",
     .level = Level::kTuner},
    {.name = names::kCollectivesPull,
     .type = Type::kBool,
     .default_value = "false",
     .description = "Read large allgather and alltoall blocks between ranks of a host straight "
                    "from the sender's memory (process_vm_readv, one copy) where every rank may, "
                    "instead of through the host segment (two copies in cache). Off by default: "
                    "on the project's VMs the kernel's copy is the slower one.",
     .level = Level::kTuner},
    {.name = names::kCollectivesStreamCache,
     .type = Type::kSize,
     .default_value = "0",
     .description = "Last-level cache size the host segment plans with (0: the size hwloc "
                    "reports). Collectives whose inputs and outputs on the host would fill it "
                    "write their outputs with non-temporal stores.",
     .level = Level::kTuner},
    {.name = names::kTopologyFakeHosts,
     .type = Type::kInteger,
     .default_value = "0",
     .description = "Testing: split the ranks of each real host into this many virtual hosts "
                    "(in rank order) so hierarchical collectives run on one machine; 0: off.",
     .level = Level::kDeveloper,
     .min = 0,
     .max = 65536},
    {.name = names::kTopologyFakeLayout,
     .type = Type::kChoice,
     .default_value = "block",
     .description = "Testing: how topology_fake_hosts deals a host's ranks to its virtual hosts: "
                    "block (contiguous runs) or cyclic (rank i to virtual host i mod F, so no "
                    "host's ranks are adjacent).",
     .level = Level::kDeveloper,
     .choices = kFakeLayoutChoices},
    {.name = names::kTopologyFakeNic,
     .type = Type::kChoice,
     .default_value = "none",
     .description = "Testing: none (each host's leader is its lowest rank near a network device, "
                    "as hwloc reports) or last (declare each host's network device near its "
                    "highest rank, so the hierarchical algorithms run with a leader that is not "
                    "the host's lowest rank).",
     .level = Level::kDeveloper,
     .choices = kFakeNicChoices},
};

}  // namespace

std::span<const Definition> definitions() {
  return kDefinitions;
}

const Definition* find_definition(std::string_view name) {
  auto it = std::find_if(std::begin(kDefinitions), std::end(kDefinitions),
                         [name](const Definition& d) { return d.name == name; });
  return it == std::end(kDefinitions) ? nullptr : &*it;
}

std::string environment_variable(std::string_view name) {
  std::string variable = "WV_";
  for (char c : name) variable += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  return variable;
}

std::string_view to_string(Type type) {
  switch (type) {
    case Type::kBool:
      return "bool";
    case Type::kInteger:
      return "integer";
    case Type::kSize:
      return "size";
    case Type::kString:
      return "string";
    case Type::kChoice:
      return "choice";
  }
  return "unknown";
}

std::string_view to_string(Level level) {
  switch (level) {
    case Level::kUser:
      return "user";
    case Level::kTuner:
      return "tuner";
    case Level::kDeveloper:
      return "developer";
  }
  return "unknown";
}

}  // namespace wv::config
