// Translations between the verbs API's plain types and libibverbs' (flags, states, statuses).
// Kept in one place so that every object maps them the same way.
#pragma once

#include <infiniband/verbs.h>

#include <string>

#include "wv/result.h"
#include "wv/verbs/types.h"

namespace wv::verbs::ib {

int to_ibv_access(Access access);
ibv_qp_state to_ibv_state(QpState state);
QpState from_ibv_state(ibv_qp_state state);
CompletionStatus from_ibv_status(ibv_wc_status status);
Opcode from_ibv_opcode(ibv_wc_opcode opcode);
PortState from_ibv_port_state(ibv_port_state state);
uint32_t mtu_bytes(ibv_mtu mtu);
// The largest ibv_mtu not above `bytes` (at least IBV_MTU_256).
ibv_mtu mtu_of_bytes(uint32_t bytes);
// A Status for a failed libibverbs/librdmacm call that returned an errno value (or -1 and set
// errno, when `error` is -1).
Status verbs_status(int error, std::string_view what);

}  // namespace wv::verbs::ib
