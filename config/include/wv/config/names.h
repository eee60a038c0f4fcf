// Parameter names, so that a typo in code is a compile error rather than a failed lookup.
// Every constant here names an entry of definitions().
#pragma once

#include <string_view>

namespace wv::config::names {

inline constexpr std::string_view kProvider = "provider";
inline constexpr std::string_view kDevice = "device";
inline constexpr std::string_view kLogLevel = "log_level";
inline constexpr std::string_view kTcpCrc = "tcp_crc";
inline constexpr std::string_view kTcpSegmentSize = "tcp_segment_size";
inline constexpr std::string_view kTcpReadDepth = "tcp_read_depth";
inline constexpr std::string_view kTcpPortBase = "tcp_port_base";
inline constexpr std::string_view kShmCma = "shm_cma";
inline constexpr std::string_view kShmRingSize = "shm_ring_size";
inline constexpr std::string_view kConnectTimeoutMs = "connect_timeout_ms";
inline constexpr std::string_view kRnrTimeoutMs = "rnr_timeout_ms";
inline constexpr std::string_view kProgressSpinUs = "progress_spin_us";
inline constexpr std::string_view kTransportAddress = "transport_address";
inline constexpr std::string_view kTransportEagerLimit = "transport_eager_limit";
inline constexpr std::string_view kTransportInlineLimit = "transport_inline_limit";
inline constexpr std::string_view kTransportRendezvous = "transport_rendezvous";
inline constexpr std::string_view kTransportFragmentSize = "transport_fragment_size";
inline constexpr std::string_view kTransportZeroCopyMin = "transport_zero_copy_min";
inline constexpr std::string_view kTransportCredits = "transport_credits";
inline constexpr std::string_view kTransportReceiveBuffers = "transport_receive_buffers";
inline constexpr std::string_view kTransportSendBuffers = "transport_send_buffers";
inline constexpr std::string_view kTransportSendDepth = "transport_send_depth";
inline constexpr std::string_view kTransportUnexpectedLimit = "transport_unexpected_limit";
inline constexpr std::string_view kTransportRegistrationCache = "transport_registration_cache";
inline constexpr std::string_view kTransportProgress = "transport_progress";
inline constexpr std::string_view kTransportSpinUs = "transport_spin_us";
inline constexpr std::string_view kTransportYieldUs = "transport_yield_us";
inline constexpr std::string_view kTransportMailbox = "transport_mailbox";
inline constexpr std::string_view kCollectivesTable = "collectives_table";
inline constexpr std::string_view kCollectivesSharedMemory = "collectives_shared_memory";
inline constexpr std::string_view kCollectivesPull = "collectives_pull";
inline constexpr std::string_view kCollectivesStreamCache = "collectives_stream_cache";
inline constexpr std::string_view kTopologyFakeHosts = "topology_fake_hosts";
inline constexpr std::string_view kTopologyFakeLayout = "topology_fake_layout";
inline constexpr std::string_view kTopologyFakeNic = "topology_fake_nic";

}  // namespace wv::config::names
