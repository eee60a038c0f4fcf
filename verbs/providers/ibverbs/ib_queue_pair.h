// Connected (RC) and datagram (UD) queue pairs on ibv_qp.
//
// What both kinds share lives in QpCore: SGE checks at post time (region of this domain, inside
// its region, not too many), the state the endpoint or the user last set, and the fallback for
// a device that refuses posts to a QP in error (the request is completed as kFlushed in software,
// which is what the API promises).
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <memory>

#include "ib_completion_queue.h"
#include "ib_memory.h"
#include "ib_protection_domain.h"
#include "wv/verbs/queue_pair.h"
#include "wv/verbs/remote_mapping.h"

namespace wv::verbs::ib {

class IbSharedReceiveQueue;

inline constexpr uint32_t kMaxPostSge = 32;
// The port every QP of the provider uses (devices with more ports are reached as port 1).
inline constexpr uint8_t kQpPort = 1;

class QpCore {
 public:
  QpCore(std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options, bool datagram)
      : domain_(std::move(domain)), options_(options), datagram_(datagram) {}
  ~QpCore();
  QpCore(const QpCore&) = delete;
  QpCore& operator=(const QpCore&) = delete;

  // Creates the ibv_qp and registers it with its CQs; the QP is left in RESET.
  Status create(ibv_qp_type type, void* context);
  ibv_qp* qp() const { return qp_; }
  uint32_t number() const { return qp_->qp_num; }
  void* context() const { return options_.context; }
  QpState state() const { return shared_->state.load(std::memory_order_acquire); }
  void set_state(QpState state) { shared_->state.store(state, std::memory_order_release); }
  // The read depths the connection settled on, for devices whose ibv_query_qp omits them.
  void set_read_depths(uint32_t inbound, uint32_t outbound) {
    shared_->inbound_read_depth.store(inbound, std::memory_order_relaxed);
    shared_->outbound_read_depth.store(outbound, std::memory_order_relaxed);
  }
  void set_peer(uint32_t peer_qp_number);
  uint32_t peer() const { return peer_qp_number_; }
  const std::shared_ptr<IbProtectionDomain>& domain() const { return domain_; }
  const QueuePairOptions& options() const { return options_; }
  uint32_t max_inline() const { return max_inline_; }
  uint32_t send_sge() const { return send_sge_; }
  uint32_t qkey() const { return qkey_; }
  void set_qkey(uint32_t qkey) { qkey_ = qkey; }

  // Fills `out` from `sges`; refuses SGEs the device must never see.
  Status convert(std::span<const Sge> sges, uint32_t max, bool inline_data, ibv_sge* out,
                 uint32_t* total) const;
  Status post_send(ibv_send_wr& wr, Opcode opcode);
  Status post_receive(uint64_t wr_id, std::span<const Sge> sges, const ibv_sge* prefix);
  QpAttributes query() const;
  // A raw transition with the attributes a QP of this kind needs for it.
  Status transition(QpState target);
  Status user_modify(QpState target);

 private:
  void flush_in_software(uint64_t wr_id, Opcode opcode, bool receive);

  std::shared_ptr<IbProtectionDomain> domain_;
  QueuePairOptions options_;
  bool datagram_;
  ibv_qp* qp_ = nullptr;
  std::shared_ptr<IbCompletionQueue> send_cq_;
  std::shared_ptr<IbCompletionQueue> receive_cq_;
  IbSharedReceiveQueue* srq_ = nullptr;
  std::shared_ptr<QpShared> shared_ = std::make_shared<QpShared>();
  uint32_t peer_qp_number_ = 0;
  uint32_t max_inline_ = 0;
  uint32_t send_depth_ = 0;
  uint32_t receive_depth_ = 0;
  uint32_t send_sge_ = 0;
  uint32_t receive_sge_ = 0;
  uint32_t qkey_ = 0;
};

class IbConnectQueuePair final : public ConnectQueuePair {
 public:
  static Result<std::shared_ptr<IbConnectQueuePair>> create(
      std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options);

  uint32_t number() const override { return core_.number(); }
  void* context() const override { return core_.context(); }
  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  QpAttributes query() const override { return core_.query(); }
  Status modify(QpState state) override { return core_.user_modify(state); }
  Result<OutOfBandAddress> out_of_band_address() override;
  Status connect_out_of_band(const OutOfBandAddress& peer,
                             const ConnectParameters& parameters) override;

  Status send(uint64_t wr_id, std::span<const Sge> sges, SendFlags flags) override;
  Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges, uint32_t immediate,
                             SendFlags flags) override;
  Status send_with_invalidate(uint64_t wr_id, std::span<const Sge> sges, uint32_t rkey,
                              SendFlags flags) override;
  Status rdma_write(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                    SendFlags flags) override;
  Status rdma_write_with_immediate(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                                   uint32_t immediate, SendFlags flags) override;
  Status rdma_read(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                   SendFlags flags) override;
  Status compare_and_swap(uint64_t wr_id, const Sge& result, RemoteAddress remote, uint64_t compare,
                          uint64_t swap, SendFlags flags) override;
  Status fetch_and_add(uint64_t wr_id, const Sge& result, RemoteAddress remote, uint64_t add,
                       SendFlags flags) override;
  Result<uint32_t> bind_memory_window(uint64_t wr_id, MemoryWindow& window,
                                      const MemoryRegion& region, void* address, uint64_t length,
                                      Access access, SendFlags flags) override;
  Status invalidate(uint64_t wr_id, uint32_t rkey, SendFlags flags) override;
  Result<std::unique_ptr<RemoteMapping>> map_remote(RemoteAddress remote, uint64_t length,
                                                    Access access) override;

  QpCore& core() { return core_; }

 private:
  IbConnectQueuePair(std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options)
      : core_(std::move(domain), options, false) {}
  Status post(uint64_t wr_id, std::span<const Sge> sges, ibv_wr_opcode opcode, Opcode api_opcode,
              SendFlags flags, ibv_send_wr& wr);

  QpCore core_;
  uint32_t out_of_band_psn_ = 0;  // chosen by out_of_band_address(), sent from at kReadyToSend
};

class IbDatagramQueuePair final : public DatagramQueuePair {
 public:
  static Result<std::shared_ptr<IbDatagramQueuePair>> create(
      std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options, uint32_t qkey);
  ~IbDatagramQueuePair() override;

  uint32_t number() const override { return core_.number(); }
  void* context() const override { return core_.context(); }
  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  QpAttributes query() const override { return core_.query(); }
  Status modify(QpState state) override { return core_.user_modify(state); }

  Status send(uint64_t wr_id, std::span<const Sge> sges, const AddressHandle& destination,
              uint32_t remote_qp_number, uint32_t qkey, SendFlags flags) override;
  Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                             const AddressHandle& destination, uint32_t remote_qp_number,
                             uint32_t qkey, uint32_t immediate, SendFlags flags) override;
  Status attach_multicast(const Gid& group, uint16_t lid) override;
  Status detach_multicast(const Gid& group, uint16_t lid) override;

  QpCore& core() { return core_; }

 private:
  IbDatagramQueuePair(std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options)
      : core_(std::move(domain), options, true) {}
  Status post(uint64_t wr_id, std::span<const Sge> sges, const AddressHandle& destination,
              uint32_t remote_qp_number, uint32_t qkey, bool with_immediate, uint32_t immediate,
              SendFlags flags);

  QpCore core_;
  // Every receive starts with the 40-byte GRH of UD; the API hides it, so all receives of
  // this QP scatter it into one scratch area that nobody reads.
  alignas(64) uint8_t grh_[64] = {};
  ibv_mr* grh_mr_ = nullptr;
  uint32_t mtu_ = 0;
};

}  // namespace wv::verbs::ib
