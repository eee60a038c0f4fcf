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
inline constexpr std::string_view kConnectTimeoutMs = "connect_timeout_ms";
inline constexpr std::string_view kRnrTimeoutMs = "rnr_timeout_ms";
inline constexpr std::string_view kProgressSpinUs = "progress_spin_us";

}  // namespace wv::config::names
