#include "ib_convert.h"

#include <cerrno>
#include <cstring>

namespace wv::verbs::ib {

int to_ibv_access(Access access) {
  int flags = 0;
  if (has(access, Access::kLocalWrite)) flags |= IBV_ACCESS_LOCAL_WRITE;
  if (has(access, Access::kRemoteRead)) flags |= IBV_ACCESS_REMOTE_READ;
  if (has(access, Access::kRemoteWrite)) flags |= IBV_ACCESS_REMOTE_WRITE;
  if (has(access, Access::kRemoteAtomic)) flags |= IBV_ACCESS_REMOTE_ATOMIC;
  if (has(access, Access::kBindMemoryWindow)) flags |= IBV_ACCESS_MW_BIND;
  // Verbs requires local write with remote write or atomic access; the API does not.
  if ((flags & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) != 0) {
    flags |= IBV_ACCESS_LOCAL_WRITE;
  }
  return flags;
}

ibv_qp_state to_ibv_state(QpState state) {
  switch (state) {
    case QpState::kReset:
      return IBV_QPS_RESET;
    case QpState::kInit:
      return IBV_QPS_INIT;
    case QpState::kReadyToReceive:
      return IBV_QPS_RTR;
    case QpState::kReadyToSend:
      return IBV_QPS_RTS;
    case QpState::kSendQueueDrained:
      return IBV_QPS_SQD;
    case QpState::kError:
      return IBV_QPS_ERR;
  }
  return IBV_QPS_ERR;
}

QpState from_ibv_state(ibv_qp_state state) {
  switch (state) {
    case IBV_QPS_RESET:
      return QpState::kReset;
    case IBV_QPS_INIT:
      return QpState::kInit;
    case IBV_QPS_RTR:
      return QpState::kReadyToReceive;
    case IBV_QPS_RTS:
      return QpState::kReadyToSend;
    case IBV_QPS_SQD:
      return QpState::kSendQueueDrained;
    default:
      return QpState::kError;  // SQE and ERR: the QP no longer carries traffic
  }
}

CompletionStatus from_ibv_status(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS:
      return CompletionStatus::kSuccess;
    case IBV_WC_LOC_LEN_ERR:
      return CompletionStatus::kLocalLengthError;
    case IBV_WC_LOC_QP_OP_ERR:
      return CompletionStatus::kLocalQpOperationError;
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_ACCESS_ERR:
      return CompletionStatus::kLocalProtectionError;
    case IBV_WC_WR_FLUSH_ERR:
      return CompletionStatus::kFlushed;
    case IBV_WC_MW_BIND_ERR:
      return CompletionStatus::kMemoryWindowBindError;
    case IBV_WC_REM_ACCESS_ERR:
      return CompletionStatus::kRemoteAccessError;
    case IBV_WC_REM_OP_ERR:
    case IBV_WC_REM_ABORT_ERR:
      return CompletionStatus::kRemoteOperationError;
    case IBV_WC_REM_INV_REQ_ERR:
    case IBV_WC_REM_INV_RD_REQ_ERR:
      return CompletionStatus::kRemoteInvalidRequest;
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return CompletionStatus::kReceiverNotReady;
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_BAD_RESP_ERR:
    case IBV_WC_RESP_TIMEOUT_ERR:
      return CompletionStatus::kTransportError;
    default:
      return CompletionStatus::kFatal;
  }
}

Opcode from_ibv_opcode(ibv_wc_opcode opcode) {
  switch (opcode) {
    case IBV_WC_SEND:
      return Opcode::kSend;
    case IBV_WC_RDMA_WRITE:
      return Opcode::kRdmaWrite;
    case IBV_WC_RDMA_READ:
      return Opcode::kRdmaRead;
    case IBV_WC_COMP_SWAP:
      return Opcode::kCompareAndSwap;
    case IBV_WC_FETCH_ADD:
      return Opcode::kFetchAndAdd;
    case IBV_WC_BIND_MW:
      return Opcode::kBindMemoryWindow;
    case IBV_WC_LOCAL_INV:
      return Opcode::kLocalInvalidate;
    case IBV_WC_RECV_RDMA_WITH_IMM:
      return Opcode::kReceiveRdmaWithImmediate;
    case IBV_WC_RECV:
    default:
      return Opcode::kReceive;
  }
}

PortState from_ibv_port_state(ibv_port_state state) {
  switch (state) {
    case IBV_PORT_ACTIVE:
    case IBV_PORT_ACTIVE_DEFER:
      return PortState::kActive;
    case IBV_PORT_ARMED:
      return PortState::kArmed;
    case IBV_PORT_INIT:
      return PortState::kInit;
    default:
      return PortState::kDown;
  }
}

uint32_t mtu_bytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256:
      return 256;
    case IBV_MTU_512:
      return 512;
    case IBV_MTU_1024:
      return 1024;
    case IBV_MTU_2048:
      return 2048;
    case IBV_MTU_4096:
      return 4096;
  }
  return 0;
}

ibv_mtu mtu_of_bytes(uint32_t bytes) {
  if (bytes >= 4096) return IBV_MTU_4096;
  if (bytes >= 2048) return IBV_MTU_2048;
  if (bytes >= 1024) return IBV_MTU_1024;
  if (bytes >= 512) return IBV_MTU_512;
  return IBV_MTU_256;
}

Status verbs_status(int error, std::string_view what) {
  if (error == -1) error = errno;
  if (error < 0) error = -error;
  Errc code = Errc::kIoError;
  switch (error) {
    case ENOMEM:
      code = Errc::kNoMemory;
      break;
    case EINVAL:
      code = Errc::kInvalidArgument;
      break;
    case EOPNOTSUPP:
    case ENOSYS:
      code = Errc::kNotSupported;
      break;
    case ENOENT:
    case ENODEV:
      code = Errc::kNotFound;
      break;
    case EBUSY:
      code = Errc::kBusy;
      break;
    case EPERM:
    case EACCES:
      code = Errc::kPermissionDenied;
      break;
    case ETIMEDOUT:
      code = Errc::kTimedOut;
      break;
    case ECONNREFUSED:
      code = Errc::kConnectionRefused;
      break;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
      code = Errc::kInvalidState;
      break;
    case ENETUNREACH:
    case EHOSTUNREACH:
      code = Errc::kUnreachable;
      break;
    default:
      break;
  }
  return Status(code, std::string(what) + ": " + std::strerror(error));
}

}  // namespace wv::verbs::ib
