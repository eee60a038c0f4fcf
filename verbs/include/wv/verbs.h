// The wv verbs API in one include: the WinVerbs object model on Linux.
#pragma once

#include "wv/verbs/address_handle.h"
#include "wv/verbs/completion_queue.h"
#include "wv/verbs/connect_endpoint.h"
#include "wv/verbs/datagram_endpoint.h"
#include "wv/verbs/device.h"
#include "wv/verbs/memory_region.h"
#include "wv/verbs/memory_window.h"
#include "wv/verbs/operation.h"
#include "wv/verbs/protection_domain.h"
#include "wv/verbs/provider.h"
#include "wv/verbs/queue_pair.h"
#include "wv/verbs/remote_mapping.h"
#include "wv/verbs/shared_receive_queue.h"
#include "wv/verbs/socket_address.h"
#include "wv/verbs/types.h"
