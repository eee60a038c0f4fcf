// Names of the API's enums, for messages, wv_info and test output.
#include <string>
#include <string_view>
#include <utility>

#include "wv/verbs/connect_endpoint.h"
#include "wv/verbs/types.h"

namespace wv::verbs {
namespace {

// The names of the flags set in `set`, separated by spaces, or "none".
template <typename Flags, size_t N>
std::string flag_names(Flags set, const std::pair<Flags, std::string_view> (&names)[N]) {
  std::string text;
  for (const auto& [flag, name] : names) {
    if (!has(set, flag)) continue;
    if (!text.empty()) text += ' ';
    text += name;
  }
  return text.empty() ? "none" : text;
}

}  // namespace

std::string_view to_string(Transport transport) {
  switch (transport) {
    case Transport::kInfiniband:
      return "InfiniBand";
    case Transport::kRoce:
      return "RoCE";
    case Transport::kIwarp:
      return "iWARP";
    case Transport::kSoftware:
      return "software";
  }
  return "unknown";
}

std::string to_string(Capability set) {
  static constexpr std::pair<Capability, std::string_view> kNames[] = {
      {Capability::kAtomics, "atomics"},
      {Capability::kImmediateData, "immediate_data"},
      {Capability::kDatagram, "datagram"},
      {Capability::kMulticast, "multicast"},
      {Capability::kMemoryWindowType1, "memory_window_type1"},
      {Capability::kMemoryWindowType2, "memory_window_type2"},
      {Capability::kSendWithInvalidate, "send_with_invalidate"},
      {Capability::kSharedReceiveQueue, "shared_receive_queue"},
      {Capability::kSrqLimitEvent, "srq_limit_event"},
      {Capability::kBatchNotify, "batch_notify"},
      {Capability::kResizeCompletionQueue, "resize_cq"},
      {Capability::kRemoteErrorsInCompletion, "remote_errors_in_completion"},
      {Capability::kReadSinkNeedsRemoteWrite, "read_sink_needs_remote_write"},
      {Capability::kInline, "inline"},
      {Capability::kOutOfBandConnect, "out_of_band_connect"},
      {Capability::kRemoteMapping, "remote_mapping"},
  };
  return flag_names(set, kNames);
}

std::string to_string(Limitation set) {
  static constexpr std::pair<Limitation, std::string_view> kNames[] = {
      {Limitation::kNoSendQueueDrain, "no_send_queue_drain"},
      {Limitation::kNoReceiverNotReadyRetry, "no_rnr_retry"},
      {Limitation::kReceiverNotReadyFailsOnlyTheRequester, "rnr_fails_only_the_requester"},
      {Limitation::kRefusedReadFlushed, "refused_read_flushed"},
      {Limitation::kLengthErrorAsOperationError, "length_error_as_operation_error"},
      {Limitation::kReadDepthsRaisedToPeer, "read_depths_raised_to_peer"},
      {Limitation::kNoSpecificListenBesideWildcard, "no_specific_listen_beside_wildcard"},
      {Limitation::kMemoryWindowsNotEnforced, "memory_windows_not_enforced"},
      {Limitation::kNoSolicitedNotification, "no_solicited_notification"},
      {Limitation::kOneSidedServedByDevice, "one_sided_served_by_device"},
      {Limitation::kLatePostsLostAfterError, "late_posts_lost_after_error"},
      {Limitation::kNoReconnectAfterError, "no_reconnect_after_error"},
      {Limitation::kActiveSendFailsOnModifyToError, "active_send_fails_on_modify_to_error"},
      {Limitation::kSendsOvertakeReads, "sends_overtake_reads"},
      {Limitation::kReadAccessNotChecked, "read_access_not_checked"},
      {Limitation::kRefusedWriteFailsLocally, "refused_write_fails_locally"},
      {Limitation::kMulticastGidIpv4Mapped, "multicast_gid_ipv4_mapped"},
      {Limitation::kReadsServedWithoutTarget, "reads_served_without_target"},
      {Limitation::kQueuedSendsLostOnConnectionLoss, "queued_sends_lost_on_connection_loss"},
  };
  return flag_names(set, kNames);
}

std::string to_string(const Gid& gid) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < gid.raw.size(); ++i) {
    if (i > 0 && i % 2 == 0) text += ':';
    text += kHex[gid.raw[i] >> 4];
    text += kHex[gid.raw[i] & 0xf];
  }
  return text;
}

std::string_view to_string(Opcode opcode) {
  switch (opcode) {
    case Opcode::kSend:
      return "send";
    case Opcode::kRdmaWrite:
      return "rdma_write";
    case Opcode::kRdmaRead:
      return "rdma_read";
    case Opcode::kCompareAndSwap:
      return "compare_and_swap";
    case Opcode::kFetchAndAdd:
      return "fetch_and_add";
    case Opcode::kBindMemoryWindow:
      return "bind_memory_window";
    case Opcode::kLocalInvalidate:
      return "local_invalidate";
    case Opcode::kReceive:
      return "receive";
    case Opcode::kReceiveRdmaWithImmediate:
      return "receive_rdma_with_immediate";
  }
  return "unknown";
}

std::string_view to_string(CompletionStatus status) {
  switch (status) {
    case CompletionStatus::kSuccess:
      return "success";
    case CompletionStatus::kLocalLengthError:
      return "local length error";
    case CompletionStatus::kLocalQpOperationError:
      return "local QP operation error";
    case CompletionStatus::kLocalProtectionError:
      return "local protection error";
    case CompletionStatus::kFlushed:
      return "flushed";
    case CompletionStatus::kMemoryWindowBindError:
      return "memory window bind error";
    case CompletionStatus::kRemoteAccessError:
      return "remote access error";
    case CompletionStatus::kRemoteOperationError:
      return "remote operation error";
    case CompletionStatus::kRemoteInvalidRequest:
      return "remote invalid request";
    case CompletionStatus::kReceiverNotReady:
      return "receiver not ready";
    case CompletionStatus::kTransportError:
      return "transport error";
    case CompletionStatus::kFatal:
      return "fatal error";
  }
  return "unknown";
}

std::string_view to_string(PortState state) {
  switch (state) {
    case PortState::kDown:
      return "down";
    case PortState::kInit:
      return "init";
    case PortState::kArmed:
      return "armed";
    case PortState::kActive:
      return "active";
  }
  return "unknown";
}

std::string_view to_string(QpState state) {
  switch (state) {
    case QpState::kReset:
      return "reset";
    case QpState::kInit:
      return "init";
    case QpState::kReadyToReceive:
      return "ready-to-receive";
    case QpState::kReadyToSend:
      return "ready-to-send";
    case QpState::kSendQueueDrained:
      return "send-queue-drained";
    case QpState::kError:
      return "error";
  }
  return "unknown";
}

std::string_view to_string(EventType type) {
  switch (type) {
    case EventType::kPortActive:
      return "port active";
    case EventType::kPortDown:
      return "port down";
    case EventType::kQpFatal:
      return "QP fatal";
    case EventType::kCompletionQueueError:
      return "CQ error";
    case EventType::kDeviceFatal:
      return "device fatal";
  }
  return "unknown";
}

std::string_view to_string(EndpointState state) {
  switch (state) {
    case EndpointState::kIdle:
      return "idle";
    case EndpointState::kBound:
      return "bound";
    case EndpointState::kListening:
      return "listening";
    case EndpointState::kAddressResolved:
      return "address resolved";
    case EndpointState::kRouteResolved:
      return "route resolved";
    case EndpointState::kConnecting:
      return "connecting";
    case EndpointState::kRequestReceived:
      return "request received";
    case EndpointState::kConnected:
      return "connected";
    case EndpointState::kRejected:
      return "rejected";
    case EndpointState::kDisconnected:
      return "disconnected";
    case EndpointState::kError:
      return "error";
  }
  return "unknown";
}

}  // namespace wv::verbs
