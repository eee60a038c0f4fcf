// One rank of a collectives job under wvrun: every collective x algorithm x datatype (x op for
// reductions) against a straightforward reference, counts 0, 1, a prime and a larger prime,
// every root in turn, in-place and not; bad input must give a clear Status. Prints
// "coll ok <cases>" and exits 0, or names each failing case.
//
// Floating-point tolerance: every algorithm combines each element along a chain of at most
// n-1 combinations (ring: n-1; recursive doubling/halving, Rabenseifner, binomial,
// hierarchical: fewer), each rounding once to the type, so results are compared with
// |got - ref| <= (n + 1) * eps(type) * sum|x| (sum) and (n + 1) * eps * |ref| * 2 (prod), where
// ref is the sequential double-precision reduction of the (already rounded) inputs and eps is
// 2^-10 (float16), 2^-7 (bfloat16), 2^-23 (float), 2^-52 (double). min/max and integers are
// exact (integers wrap like the type).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "wv/collectives/communicator.h"
#include "wv/comm.h"

using namespace wv::coll;

namespace {

int failures = 0;
int cases = 0;
int rank = 0;
int nprocs = 1;

void fail(const std::string& what) {
  if (++failures <= 30) std::fprintf(stderr, "coll_job rank %d: %s\n", rank, what.c_str());
}

bool is_signed(DataType t) {
  return t == DataType::kInt8 || t == DataType::kInt16 || t == DataType::kInt32 ||
         t == DataType::kInt64;
}

double eps(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return std::ldexp(1.0, -10);
    case DataType::kBfloat16:
      return std::ldexp(1.0, -7);
    case DataType::kFloat:
      return std::ldexp(1.0, -23);
    default:
      return std::ldexp(1.0, -52);
  }
}

// Integers travel as int64 (sign- or zero-extended); floating types as double.
void store(DataType t, void* buffer, size_t i, double v) {
  auto* b = static_cast<unsigned char*>(buffer);
  const int64_t w = static_cast<int64_t>(v);
  switch (t) {
    case DataType::kInt8:
    case DataType::kUint8: {
      uint8_t x = static_cast<uint8_t>(w);
      std::memcpy(b + i, &x, 1);
      return;
    }
    case DataType::kInt16:
    case DataType::kUint16: {
      uint16_t x = static_cast<uint16_t>(w);
      std::memcpy(b + 2 * i, &x, 2);
      return;
    }
    case DataType::kInt32:
    case DataType::kUint32: {
      uint32_t x = static_cast<uint32_t>(w);
      std::memcpy(b + 4 * i, &x, 4);
      return;
    }
    case DataType::kInt64:
    case DataType::kUint64: {
      uint64_t x = static_cast<uint64_t>(w);
      std::memcpy(b + 8 * i, &x, 8);
      return;
    }
    case DataType::kFloat16: {
      uint16_t x = float_to_half(static_cast<float>(v));
      std::memcpy(b + 2 * i, &x, 2);
      return;
    }
    case DataType::kBfloat16: {
      uint16_t x = float_to_bfloat16(static_cast<float>(v));
      std::memcpy(b + 2 * i, &x, 2);
      return;
    }
    case DataType::kFloat: {
      float x = static_cast<float>(v);
      std::memcpy(b + 4 * i, &x, 4);
      return;
    }
    case DataType::kDouble:
      std::memcpy(b + 8 * i, &v, 8);
      return;
  }
}

double load(DataType t, const void* buffer, size_t i) {
  const auto* b = static_cast<const unsigned char*>(buffer);
  switch (t) {
    case DataType::kInt8: {
      int8_t x;
      std::memcpy(&x, b + i, 1);
      return x;
    }
    case DataType::kUint8: {
      uint8_t x;
      std::memcpy(&x, b + i, 1);
      return x;
    }
    case DataType::kInt16: {
      int16_t x;
      std::memcpy(&x, b + 2 * i, 2);
      return x;
    }
    case DataType::kUint16: {
      uint16_t x;
      std::memcpy(&x, b + 2 * i, 2);
      return x;
    }
    case DataType::kInt32: {
      int32_t x;
      std::memcpy(&x, b + 4 * i, 4);
      return x;
    }
    case DataType::kUint32: {
      uint32_t x;
      std::memcpy(&x, b + 4 * i, 4);
      return x;
    }
    case DataType::kInt64: {
      int64_t x;
      std::memcpy(&x, b + 8 * i, 8);
      return static_cast<double>(x);
    }
    case DataType::kUint64: {
      uint64_t x;
      std::memcpy(&x, b + 8 * i, 8);
      return static_cast<double>(x);
    }
    case DataType::kFloat16: {
      uint16_t x;
      std::memcpy(&x, b + 2 * i, 2);
      return half_to_float(x);
    }
    case DataType::kBfloat16: {
      uint16_t x;
      std::memcpy(&x, b + 2 * i, 2);
      return bfloat16_to_float(x);
    }
    case DataType::kFloat: {
      float x;
      std::memcpy(&x, b + 4 * i, 4);
      return x;
    }
    case DataType::kDouble: {
      double x;
      std::memcpy(&x, b + 8 * i, 8);
      return x;
    }
  }
  return 0;
}

// Input element i of `r` for operation `op` (small values: integer results stay exact in
// double; products stay near 1 for floating types).
double input(DataType t, Op op, int r, size_t i) {
  if (is_floating(t)) {
    if (op == Op::kProd)
      return 1.0 + (static_cast<double>((r + static_cast<int>(i)) % 5) - 2) / 64.0;
    return (static_cast<double>((r * 7 + static_cast<int>(i) * 3) % 13) - 6) * 0.25 + 0.1;
  }
  if (op == Op::kProd)
    return static_cast<double>((r + static_cast<int>(i)) % 3) + (is_signed(t) ? -1 : 0);
  const int v = (r * 37 + static_cast<int>(i) * 11 + 5) % 101;
  return is_signed(t) ? v - 50 : v;
}

// The sequential reduction over ranks 0..n-1 of element i, as the value the type holds.
struct Expected {
  double value;
  double tolerance;
};

Expected reference(DataType t, Op op, size_t i, int n) {
  std::vector<unsigned char> cell(8);
  if (!is_floating(t)) {
    auto as_int = [&](int r) {
      store(t, cell.data(), 0, input(t, op, r, i));
      return static_cast<int64_t>(load(t, cell.data(), 0));
    };
    uint64_t acc = static_cast<uint64_t>(as_int(0));
    for (int r = 1; r < n; ++r) {
      const int64_t x = as_int(r);
      const int64_t a = static_cast<int64_t>(acc);
      switch (op) {
        case Op::kSum:
          acc += static_cast<uint64_t>(x);
          break;
        case Op::kProd:
          acc *= static_cast<uint64_t>(x);
          break;
        case Op::kMin:
          acc = static_cast<uint64_t>(x < a ? x : a);
          break;
        case Op::kMax:
          acc = static_cast<uint64_t>(x > a ? x : a);
          break;
        case Op::kBand:
          acc &= static_cast<uint64_t>(x);
          break;
        case Op::kBor:
          acc |= static_cast<uint64_t>(x);
          break;
        case Op::kBxor:
        case Op::kUser:
          acc ^= static_cast<uint64_t>(x);
          break;
      }
    }
    // Wrap to the type's width the way the type does.
    store(t, cell.data(), 0, static_cast<double>(static_cast<int64_t>(acc)));
    if (size_of(t) == 8) return {static_cast<double>(static_cast<int64_t>(acc)), 0};
    return {load(t, cell.data(), 0), 0};
  }
  auto as_float = [&](int r) {
    store(t, cell.data(), 0, input(t, op, r, i));
    return load(t, cell.data(), 0);
  };
  double acc = as_float(0);
  double magnitude = std::fabs(acc);
  for (int r = 1; r < n; ++r) {
    const double x = as_float(r);
    magnitude += std::fabs(x);
    switch (op) {
      case Op::kSum:
      case Op::kUser:
        acc += x;
        break;
      case Op::kProd:
        acc *= x;
        break;
      case Op::kMin:
        acc = x < acc ? x : acc;
        break;
      case Op::kMax:
        acc = x > acc ? x : acc;
        break;
      default:
        break;
    }
  }
  const double k = (n + 1) * eps(t);
  if (op == Op::kMin || op == Op::kMax) return {acc, 0};
  if (op == Op::kProd) return {acc, k * std::fabs(acc) * 2};
  return {acc, k * magnitude + eps(t) * std::fabs(acc)};
}

bool close(double got, const Expected& e) {
  if (e.tolerance == 0) return got == e.value;
  return std::fabs(got - e.value) <= e.tolerance;
}

std::string name(std::string_view what, std::string_view algorithm, DataType t, size_t count,
                 const std::string& extra = "") {
  return std::string(what) + "/" + std::string(algorithm) + " " + std::string(to_string(t)) +
         " count " + std::to_string(count) + extra;
}

void check_status(const wv::Status& s, const std::string& what) {
  ++cases;
  if (!s.is_ok()) fail(what + ": " + s.to_string());
}

// A user operation: element-wise sum for int32 and double, written out by hand.
UserFunction user_sum() {
  return [](const void* in, void* inout, size_t count, DataType type) {
    if (type == DataType::kInt32) {
      const auto* a = static_cast<const int32_t*>(in);
      auto* b = static_cast<int32_t*>(inout);
      for (size_t i = 0; i < count; ++i)
        b[i] = static_cast<int32_t>(static_cast<uint32_t>(a[i]) + static_cast<uint32_t>(b[i]));
    } else {
      const auto* a = static_cast<const double*>(in);
      auto* b = static_cast<double*>(inout);
      for (size_t i = 0; i < count; ++i) b[i] += a[i];
    }
  };
}

std::vector<Op> ops_for(DataType t) {
  if (is_floating(t)) return {Op::kSum, Op::kProd, Op::kMin, Op::kMax};
  return {Op::kSum, Op::kProd, Op::kMin, Op::kMax, Op::kBand, Op::kBor, Op::kBxor};
}

const size_t kCounts[] = {0, 1, 13, 1031};

// Larger counts only for a few types: enough to split into many blocks at 8 ranks.
bool wanted(DataType t, size_t count) {
  return count < 1000 || t == DataType::kInt32 || t == DataType::kFloat16 ||
         t == DataType::kDouble || t == DataType::kUint8;
}

void test_allreduce(Communicator& c, bool nonblocking) {
  int variant = 0;
  for (std::string_view algorithm : algorithm_names(Collective::kAllreduce)) {
    for (DataType t : kAllDataTypes) {
      std::vector<std::pair<Op, ReduceOp>> ops;
      for (Op op : ops_for(t)) ops.emplace_back(op, ReduceOp(op));
      if (t == DataType::kInt32 || t == DataType::kDouble)
        ops.emplace_back(Op::kSum, ReduceOp(user_sum()));
      for (auto& [op, reduce_op] : ops) {
        for (size_t count : kCounts) {
          if (!wanted(t, count)) continue;
          if (nonblocking && (count == 1031 || op != Op::kSum)) continue;
          const bool in_place = (variant++ % 2) == 1;
          const size_t element = size_of(t);
          std::vector<unsigned char> send(count * element + 1), recv(count * element + 1, 0xee);
          std::vector<unsigned char>& input_buffer = in_place ? recv : send;
          for (size_t i = 0; i < count; ++i)
            store(t, input_buffer.data(), i, input(t, op, rank, i));
          const std::string what =
              name(nonblocking ? "iallreduce" : "allreduce", algorithm, t, count,
                   " op " + std::string(reduce_op.op == Op::kUser ? "user" : to_string(op)) +
                       (in_place ? " in-place" : ""));
          wv::Status s;
          if (nonblocking) {
            auto request = c.iallreduce(in_place ? kInPlace : send.data(), recv.data(), count, t,
                                        reduce_op, algorithm);
            s = request.is_ok() ? request->wait() : request.status();
          } else {
            s = c.allreduce(in_place ? kInPlace : send.data(), recv.data(), count, t, reduce_op,
                            algorithm);
          }
          check_status(s, what);
          if (!s.is_ok()) continue;
          for (size_t i = 0; i < count; ++i) {
            const Expected e = reference(t, op, i, nprocs);
            const double got = load(t, recv.data(), i);
            if (!close(got, e)) {
              fail(what + ": element " + std::to_string(i) + " = " + std::to_string(got) +
                   ", expected " + std::to_string(e.value));
              break;
            }
          }
          if (recv[count * element] != 0xee) fail(what + ": wrote past the end");
        }
      }
    }
  }
}

// Vectors of several chunks of every algorithm's pipeline (the host segment moves 64 KiB at a
// time), with a ragged tail; int64 sums are exact, so every element is checked.
void test_large(Communicator& c) {
  const size_t count = 300007;  // 2.4 MB of int64
  for (std::string_view algorithm : algorithm_names(Collective::kAllreduce)) {
    std::vector<int64_t> data(count);
    for (size_t i = 0; i < count; ++i) data[i] = static_cast<int64_t>(i * 7 + 1) * (rank + 1);
    const std::string what = name("allreduce", algorithm, DataType::kInt64, count, " large");
    wv::Status s = c.allreduce(kInPlace, data.data(), count, DataType::kInt64, Op::kSum, algorithm);
    check_status(s, what);
    const int64_t ranks_sum = static_cast<int64_t>(nprocs) * (nprocs + 1) / 2;
    for (size_t i = 0; i < count && s.is_ok(); ++i) {
      if (data[i] != static_cast<int64_t>(i * 7 + 1) * ranks_sum) {
        fail(what + ": element " + std::to_string(i));
        break;
      }
    }
  }
  const size_t block = 150001;  // bytes per rank
  for (std::string_view algorithm : algorithm_names(Collective::kAllgather)) {
    std::vector<unsigned char> send(block), recv(block * static_cast<size_t>(nprocs));
    for (size_t i = 0; i < block; ++i) send[i] = static_cast<unsigned char>(i * 31 + rank);
    const std::string what = name("allgather", algorithm, DataType::kUint8, block, " large");
    wv::Status s = c.allgather(send.data(), recv.data(), block, DataType::kUint8, algorithm);
    check_status(s, what);
    for (size_t i = 0; i < recv.size() && s.is_ok(); ++i) {
      const auto from = static_cast<int>(i / block);
      if (recv[i] != static_cast<unsigned char>((i % block) * 31 + static_cast<size_t>(from))) {
        fail(what + ": byte " + std::to_string(i));
        break;
      }
    }
  }
}

void test_large_alltoall(Communicator& c) {
  // Bytes from each rank to each rank: one size read straight from the sender where every
  // rank may (collectives_pull), one below that in several pieces through the segment.
  for (const size_t block : {size_t{70001}, size_t{40001}}) {
    const auto n = static_cast<size_t>(nprocs);
    const auto me = static_cast<size_t>(rank);
    for (std::string_view algorithm : algorithm_names(Collective::kAlltoall)) {
      std::vector<unsigned char> send(block * n), recv(block * n);
      for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<unsigned char>(i * 7 + me);
      const std::string what = name("alltoall", algorithm, DataType::kUint8, block, " large");
      wv::Status s = c.alltoall(send.data(), recv.data(), block, DataType::kUint8, algorithm);
      check_status(s, what);
      for (size_t i = 0; i < recv.size() && s.is_ok(); ++i) {
        const size_t from = i / block;  // rank `from` sent its block `me` here
        if (recv[i] != static_cast<unsigned char>((me * block + i % block) * 7 + from)) {
          fail(what + ": byte " + std::to_string(i));
          break;
        }
      }
    }
  }
}

// Collectives over SharedBuffers (Communicator::allocate_buffer), which the host's ranks read in
// place: every rank's, only the even ranks' (the others' heap memory goes through the segment),
// and none; in rounds, so the peers have mapped the buffers (they map them in the first call and
// expose them from the next); in the last round every rank frees its buffers and allocates new
// ones with other contents, which the peers must map afresh. Where the host has a segment and
// more than one rank, the all-shared rounds must have been read in place.
class Memory {
 public:
  Memory(Communicator& c, size_t bytes, bool shared) {
    if (shared) {
      auto buffer = c.allocate_buffer(bytes);
      check_status(buffer.status(), "allocate_buffer");
      if (buffer.is_ok()) {
        shared_ = std::move(buffer).value();
        data_ = static_cast<unsigned char*>(shared_.data());
        return;
      }
    }
    heap_.resize(bytes);
    data_ = heap_.data();
  }
  unsigned char* data() const { return data_; }
  int64_t* int64s() const { return reinterpret_cast<int64_t*>(data_); }

 private:
  SharedBuffer shared_;
  std::vector<unsigned char> heap_;
  unsigned char* data_;
};

// Fails `what` (the call's status, or its first of `count` values that is not expected(i)).
template <typename T, typename Expected>
void expect_values(const wv::Status& s, const T* got, size_t count, Expected expected,
                   const std::string& what) {
  check_status(s, what);
  for (size_t i = 0; i < count && s.is_ok(); ++i) {
    if (got[i] != static_cast<T>(expected(i))) {
      fail(what + ": element " + std::to_string(i));
      return;
    }
  }
}

void test_shared_buffers_round(Communicator& c, bool shared, int round) {
  const auto n = static_cast<size_t>(nprocs);
  const auto me = static_cast<size_t>(rank);
  const size_t count = 100003;  // int64: several segment chunks and a ragged tail
  const size_t block = 150001;  // allgather bytes per rank
  const size_t pair = 70001;    // alltoall bytes per pair
  const size_t large_bcast = (size_t{1} << 20) + 1;
  const size_t each = 30011;  // reduce_scatter int64 per rank
  const size_t bytes = std::max({count * 8, block * n, pair * n, large_bcast, each * n * 8});
  Memory send(c, bytes, shared), recv(c, bytes, shared);
  const auto salt = static_cast<size_t>(round) * 13;
  const auto ranks_sum = static_cast<int64_t>(nprocs * (nprocs + 1) / 2);
  const auto mine = [&](size_t i) { return static_cast<int64_t>(i + salt) * (rank + 1); };
  const auto summed = [&](size_t i) { return static_cast<int64_t>(i + salt) * ranks_sum; };
  for (std::string_view algorithm : {"shared_memory", "hierarchical"}) {
    const std::string suffix =
        std::string(shared ? " shared" : " heap") + " round " + std::to_string(round);
    // allreduce, out of place and in place
    for (const bool in_place : {false, true}) {
      int64_t* in = in_place ? recv.int64s() : send.int64s();
      int64_t* out = recv.int64s();
      for (size_t i = 0; i < count; ++i) in[i] = mine(i);
      wv::Status s =
          c.allreduce(in_place ? kInPlace : in, out, count, DataType::kInt64, Op::kSum, algorithm);
      expect_values(s, out, count, summed,
                    name("allreduce", algorithm, DataType::kInt64, count,
                         (in_place ? " in place" : "") + suffix));
    }
    // bcast from every root in turn; root 0's is large enough to be exposed even with more
    // ranks than CPUs
    for (int root = 0; root < nprocs; ++root) {
      unsigned char* data = send.data();
      const size_t length = root == 0 ? large_bcast : block;
      const auto sent = [&](size_t i) { return i * 3 + salt + static_cast<size_t>(root); };
      for (size_t i = 0; i < length; ++i) {
        data[i] = rank == root ? static_cast<unsigned char>(sent(i)) : 0;
      }
      wv::Status s = c.bcast(data, length, DataType::kUint8, root, algorithm);
      expect_values(s, data, length, sent,
                    name("bcast", algorithm, DataType::kUint8, length, suffix) + " root " +
                        std::to_string(root));
    }
    // allgather, this rank's block in place in recv
    {
      unsigned char* out = recv.data();
      for (size_t i = 0; i < block; ++i)
        out[me * block + i] = static_cast<unsigned char>(i * 31 + me + salt);
      wv::Status s = c.allgather(kInPlace, out, block, DataType::kUint8, algorithm);
      expect_values(
          s, out, block * n, [&](size_t i) { return (i % block) * 31 + i / block + salt; },
          name("allgather", algorithm, DataType::kUint8, block, suffix));
    }
    // rooted: reduce, gather and scatter to and from the first and the last rank (they have no
    // hierarchical algorithm); only the root checks what only it receives
    for (const int root : {0, nprocs - 1}) {
      if (algorithm != "shared_memory") break;
      const std::string at_root = suffix + " root " + std::to_string(root);
      const bool is_root = rank == root;
      int64_t* in = send.int64s();
      int64_t* out = recv.int64s();
      for (size_t i = 0; i < count; ++i) in[i] = mine(i);
      wv::Status s = c.reduce(in, out, count, DataType::kInt64, Op::kSum, root, algorithm);
      expect_values(s, out, is_root ? count : 0, summed,
                    name("reduce", algorithm, DataType::kInt64, count, at_root));
      unsigned char* bytes_in = send.data();
      unsigned char* bytes_out = recv.data();
      for (size_t i = 0; i < block; ++i)
        bytes_in[i] = static_cast<unsigned char>(i * 11 + me + salt);
      s = c.gather(bytes_in, bytes_out, block, DataType::kUint8, root, algorithm);
      expect_values(
          s, bytes_out, is_root ? block * n : 0,
          [&](size_t i) { return (i % block) * 11 + i / block + salt; },
          name("gather", algorithm, DataType::kUint8, block, at_root));
      for (size_t i = 0; i < block * n && is_root; ++i) {
        bytes_in[i] = static_cast<unsigned char>(i * 13 + salt);
      }
      s = c.scatter(bytes_in, bytes_out, block, DataType::kUint8, root, algorithm);
      expect_values(
          s, bytes_out, block, [&](size_t i) { return (me * block + i) * 13 + salt; },
          name("scatter", algorithm, DataType::kUint8, block, at_root));
    }
    // reduce_scatter_block of several segment steps, out of place and in place
    for (const bool in_place : {false, true}) {
      int64_t* in = in_place ? recv.int64s() : send.int64s();
      int64_t* out = recv.int64s();
      for (size_t i = 0; i < each * n; ++i) in[i] = mine(i);
      wv::Status s = c.reduce_scatter_block(in_place ? kInPlace : in, out, each, DataType::kInt64,
                                            Op::kSum, algorithm == "hierarchical" ? "" : algorithm);
      expect_values(
          s, out, each, [&](size_t i) { return summed(me * each + i); },
          name("reduce_scatter", algorithm, DataType::kInt64, each,
               (in_place ? " in place" : "") + suffix));
    }
    // alltoall, then blocks too small to be exposed right after a large one that was
    for (const size_t size : {pair, size_t{100}, size_t{1000}}) {
      unsigned char* in = send.data();
      unsigned char* out = recv.data();
      for (size_t i = 0; i < size * n; ++i) in[i] = static_cast<unsigned char>(i * 7 + me + salt);
      wv::Status s = c.alltoall(in, out, size, DataType::kUint8, algorithm);
      expect_values(
          s, out, size * n, [&](size_t i) { return (me * size + i % size) * 7 + i / size + salt; },
          name("alltoall", algorithm, DataType::kUint8, size, suffix));
    }
    for (const size_t size : {size_t{100}, size_t{1000}}) {
      unsigned char* in = send.data();
      unsigned char* out = recv.data();
      for (size_t i = 0; i < size; ++i) in[i] = static_cast<unsigned char>(i * 5 + me + salt);
      wv::Status s = c.allgather(in, out, size, DataType::kUint8, algorithm);
      expect_values(
          s, out, size * n, [&](size_t i) { return (i % size) * 5 + i / size + salt; },
          name("allgather", algorithm, DataType::kUint8, size, suffix));
    }
  }
}

void test_shared_buffers(Communicator& c) {
  const size_t host_ranks =
      c.topology()
          .host_ranks[static_cast<size_t>(c.topology().host_of_rank[static_cast<size_t>(rank)])]
          .size();
  ++cases;
  if (auto empty = c.allocate_buffer(0);
      empty.is_ok() || empty.status().code() != wv::Errc::kInvalidArgument) {
    fail("allocate_buffer(0) must be refused as an invalid argument");
  }
  // Broadcasts alone: the readers, which expose nothing, must still map the root's buffer so
  // that the root may expose it (first thing here, before other collectives map anything).
  const bool in_place_possible = c.shared_memory_status().empty() && host_ranks > 1;
  {
    const size_t length = (size_t{1} << 20) + 1;
    Memory buffer(c, length, true);
    const uint64_t exposed_before = c.shared_buffer_counters().exposed_calls;
    for (int round = 0; round < 3; ++round) {
      for (size_t i = 0; i < length; ++i) {
        buffer.data()[i] = rank == 0 ? static_cast<unsigned char>(i * 7 + round) : 0;
      }
      const std::string what = "bcast shared buffer alone, round " + std::to_string(round);
      wv::Status s = c.bcast(buffer.data(), length, DataType::kUint8, 0, "shared_memory");
      check_status(s, what);
      for (size_t i = 0; i < length && s.is_ok(); ++i) {
        if (buffer.data()[i] != static_cast<unsigned char>(i * 7 + round)) {
          fail(what + ": byte " + std::to_string(i));
          break;
        }
      }
    }
    ++cases;
    if (rank == 0 && in_place_possible && nprocs == static_cast<int>(host_ranks) &&
        c.shared_buffer_counters().exposed_calls == exposed_before) {
      fail("bcast alone: the root's shared buffer was never exposed (readers did not map it)");
    }
  }
  const Communicator::SharedBufferCounters before = c.shared_buffer_counters();
  for (int round = 0; round < 3; ++round) test_shared_buffers_round(c, true, round);
  const Communicator::SharedBufferCounters after = c.shared_buffer_counters();
  ++cases;
  if (in_place_possible) {
    if (after.exposed_calls == before.exposed_calls ||
        after.peer_buffers_read == before.peer_buffers_read) {
      fail("shared buffers: nothing was read in place (" + std::to_string(after.exposed_calls) +
           " calls exposed, " + std::to_string(after.peer_buffers_read) + " peer buffers read)");
    }
  } else if (after.exposed_calls != 0 || after.peer_buffers_read != 0) {
    fail("shared buffers: read in place without a host segment");
  }
  for (int round = 0; round < 2; ++round) test_shared_buffers_round(c, rank % 2 == 0, round);
  const Communicator::SharedBufferCounters heap_before = c.shared_buffer_counters();
  test_shared_buffers_round(c, false, 0);
  ++cases;
  if (c.shared_buffer_counters().exposed_calls != heap_before.exposed_calls) {
    fail("shared buffers: heap memory was exposed");
  }
}

void test_reduce(Communicator& c) {
  int variant = 0;
  for (DataType t : kAllDataTypes) {
    for (Op op : ops_for(t)) {
      for (size_t count : kCounts) {
        if (!wanted(t, count)) continue;
        const int root = variant % nprocs;
        const bool in_place = rank == root && (variant / nprocs) % 2 == 1;
        ++variant;
        const size_t element = size_of(t);
        std::vector<unsigned char> send(count * element), recv(count * element);
        for (size_t i = 0; i < count; ++i)
          store(t, in_place ? recv.data() : send.data(), i, input(t, op, rank, i));
        const std::string what =
            name("reduce", "binomial", t, count,
                 " op " + std::string(to_string(op)) + " root " + std::to_string(root));
        wv::Status s = c.reduce(in_place ? kInPlace : send.data(), recv.data(), count, t, op, root);
        check_status(s, what);
        if (!s.is_ok() || rank != root) continue;
        for (size_t i = 0; i < count; ++i) {
          const Expected e = reference(t, op, i, nprocs);
          if (!close(load(t, recv.data(), i), e)) {
            fail(what + ": element " + std::to_string(i));
            break;
          }
        }
      }
    }
  }
}

void test_reduce_scatter(Communicator& c) {
  int variant = 0;
  for (std::string_view algorithm : algorithm_names(Collective::kReduceScatter)) {
    for (DataType t : kAllDataTypes) {
      for (Op op : ops_for(t)) {
        for (int shape = 0; shape < 4; ++shape) {
          // Shapes: blocks of 0, 1 and 7 elements, and irregular counts (some zero).
          std::vector<size_t> counts(static_cast<size_t>(nprocs));
          for (int r = 0; r < nprocs; ++r) {
            counts[static_cast<size_t>(r)] = shape == 0   ? 0
                                             : shape == 1 ? 1
                                             : shape == 2 ? 7
                                                          : static_cast<size_t>((r * 5 + 2) % 4);
          }
          size_t total = 0, before = 0;
          for (int r = 0; r < nprocs; ++r) {
            if (r < rank) before += counts[static_cast<size_t>(r)];
            total += counts[static_cast<size_t>(r)];
          }
          const bool in_place = (variant++ % 2) == 1;
          const size_t element = size_of(t);
          std::vector<unsigned char> send(total * element), recv(total * element);
          for (size_t i = 0; i < total; ++i)
            store(t, in_place ? recv.data() : send.data(), i, input(t, op, rank, i));
          const std::string what = name("reduce_scatter", algorithm, t, total,
                                        " op " + std::string(to_string(op)) + " shape " +
                                            std::to_string(shape) + (in_place ? " in-place" : ""));
          wv::Status s = shape < 3
                             ? c.reduce_scatter_block(in_place ? kInPlace : send.data(),
                                                      recv.data(), counts[0], t, op, algorithm)
                             : c.reduce_scatter(in_place ? kInPlace : send.data(), recv.data(),
                                                counts, t, op, algorithm);
          check_status(s, what);
          if (!s.is_ok()) continue;
          for (size_t i = 0; i < counts[static_cast<size_t>(rank)]; ++i) {
            const Expected e = reference(t, op, before + i, nprocs);
            if (!close(load(t, recv.data(), i), e)) {
              fail(what + ": element " + std::to_string(i));
              break;
            }
          }
        }
      }
    }
  }
}

// Data-movement collectives: the element type only changes the byte count, but every type
// is run. Element i of rank r's block for rank d carries value(r, d, i).
double value(DataType t, int from, int to, size_t i) {
  const int v = (from * 31 + to * 17 + static_cast<int>(i) * 7) % 97;
  return is_floating(t) ? v * 0.5 : v;
}

bool same(DataType t, const void* buffer, size_t at, double v) {
  std::vector<unsigned char> cell(8);
  store(t, cell.data(), 0, v);
  return load(t, buffer, at) == load(t, cell.data(), 0);
}

void test_bcast(Communicator& c, bool nonblocking) {
  int variant = 0;
  for (std::string_view algorithm : algorithm_names(Collective::kBcast)) {
    for (DataType t : kAllDataTypes) {
      for (size_t count : kCounts) {
        if (nonblocking && count == 1031) continue;
        const int root = variant++ % nprocs;
        std::vector<unsigned char> buffer(count * size_of(t) + 1, 0xee);
        if (rank == root)
          for (size_t i = 0; i < count; ++i) store(t, buffer.data(), i, value(t, root, 0, i));
        const std::string what = name(nonblocking ? "ibcast" : "bcast", algorithm, t, count,
                                      " root " + std::to_string(root));
        wv::Status s;
        if (nonblocking) {
          auto request = c.ibcast(buffer.data(), count, t, root, algorithm);
          s = request.is_ok() ? request->wait() : request.status();
        } else {
          s = c.bcast(buffer.data(), count, t, root, algorithm);
        }
        check_status(s, what);
        if (!s.is_ok()) continue;
        for (size_t i = 0; i < count; ++i) {
          if (!same(t, buffer.data(), i, value(t, root, 0, i))) {
            fail(what + ": element " + std::to_string(i));
            break;
          }
        }
        if (buffer.back() != 0xee) fail(what + ": wrote past the end");
      }
    }
  }
  // A large message, so chain and scatter_allgather run several chunks/blocks.
  for (std::string_view algorithm : algorithm_names(Collective::kBcast)) {
    const size_t count = 600011;
    std::vector<unsigned char> buffer(count, 0);
    const int root = nprocs - 1;
    if (rank == root)
      for (size_t i = 0; i < count; ++i) buffer[i] = static_cast<unsigned char>(i * 13 + 5);
    wv::Status s = c.bcast(buffer.data(), count, DataType::kUint8, root, algorithm);
    check_status(s, name("bcast", algorithm, DataType::kUint8, count));
    for (size_t i = 0; i < count && s.is_ok(); ++i) {
      if (buffer[i] != static_cast<unsigned char>(i * 13 + 5)) {
        fail(name("bcast", algorithm, DataType::kUint8, count) + ": byte " + std::to_string(i));
        break;
      }
    }
  }
}

// Small broadcasts back to back while the last rank starts late: the root runs ahead by as
// many broadcasts as the host segment has slots and must then wait before it writes a slot
// again (one rewritten early hands the late reader a later broadcast's value).
void test_bcast_burst(Communicator& c) {
  if (nprocs < 2) return;
  constexpr int kCalls = 300;    // several laps of the slots
  constexpr int kRootRun = 100;  // broadcasts in a row from one root
  if (rank == nprocs - 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int wrong = 0;
  for (int call = 0; call < kCalls; ++call) {
    const int root = (call / kRootRun) % nprocs;
    uint64_t value[4] = {};
    if (rank == root) {
      for (uint64_t i = 0; i < 4; ++i) value[i] = static_cast<uint64_t>(call) * 1000003 + i;
    }
    wv::Status s = c.bcast(value, 4, DataType::kUint64, root);
    check_status(s, "bcast burst call " + std::to_string(call));
    if (!s.is_ok()) return;
    for (uint64_t i = 0; i < 4; ++i) {
      if (value[i] != static_cast<uint64_t>(call) * 1000003 + i && wrong++ == 0) {
        fail("bcast burst call " + std::to_string(call) + ": got the value of call " +
             std::to_string(value[i] / 1000003));
      }
    }
  }
}

void test_allgather(Communicator& c) {
  int variant = 0;
  const size_t n = static_cast<size_t>(nprocs);
  for (std::string_view algorithm : algorithm_names(Collective::kAllgather)) {
    for (DataType t : kAllDataTypes) {
      for (size_t count : kCounts) {
        if (!wanted(t, count)) continue;
        const size_t element = size_of(t);
        const bool in_place = (variant++ % 2) == 1;
        std::vector<unsigned char> send(count * element), recv(n * count * element + 1, 0xee);
        for (size_t i = 0; i < count; ++i) {
          store(t, in_place ? recv.data() : send.data(), in_place ? rank * count + i : i,
                value(t, rank, 0, i));
        }
        const std::string what =
            name("allgather", algorithm, t, count, in_place ? " in-place" : "");
        wv::Status s =
            c.allgather(in_place ? kInPlace : send.data(), recv.data(), count, t, algorithm);
        check_status(s, what);
        for (size_t r = 0; r < n && s.is_ok(); ++r) {
          for (size_t i = 0; i < count; ++i) {
            if (!same(t, recv.data(), r * count + i, value(t, static_cast<int>(r), 0, i))) {
              fail(what + ": block " + std::to_string(r));
              r = n;
              break;
            }
          }
        }
        if (recv.back() != 0xee) fail(what + ": wrote past the end");
      }
      // allgatherv with irregular counts (some 0) and gaps between blocks (not packed).
      std::vector<size_t> counts(n), displacements(n);
      size_t at = 0;
      for (size_t r = 0; r < n; ++r) {
        counts[r] = (r * 3 + 1) % 5;
        displacements[r] = at + 2;
        at += counts[r] + 2;
      }
      std::vector<unsigned char> send(counts[static_cast<size_t>(rank)] * size_of(t)),
          recv(at * size_of(t));
      for (size_t i = 0; i < counts[static_cast<size_t>(rank)]; ++i)
        store(t, send.data(), i, value(t, rank, 1, i));
      const std::string what = name("allgatherv", algorithm, t, at);
      wv::Status s = c.allgatherv(send.data(), counts[static_cast<size_t>(rank)], recv.data(),
                                  counts, displacements, t, algorithm);
      check_status(s, what);
      for (size_t r = 0; r < n && s.is_ok(); ++r) {
        for (size_t i = 0; i < counts[r]; ++i) {
          if (!same(t, recv.data(), displacements[r] + i, value(t, static_cast<int>(r), 1, i))) {
            fail(what + ": block " + std::to_string(r));
            r = n;
            break;
          }
        }
      }
    }
  }
}

void test_alltoall(Communicator& c) {
  int variant = 0;
  const size_t n = static_cast<size_t>(nprocs);
  for (std::string_view algorithm : algorithm_names(Collective::kAlltoall)) {
    for (DataType t : kAllDataTypes) {
      for (size_t count : kCounts) {
        if (!wanted(t, count) || count == 1031) continue;
        const size_t element = size_of(t);
        const bool in_place = (variant++ % 2) == 1;
        std::vector<unsigned char> send(n * count * element), recv(n * count * element);
        for (size_t d = 0; d < n; ++d) {
          for (size_t i = 0; i < count; ++i) {
            store(t, in_place ? recv.data() : send.data(), d * count + i,
                  value(t, rank, static_cast<int>(d), i));
          }
        }
        const std::string what = name("alltoall", algorithm, t, count, in_place ? " in-place" : "");
        wv::Status s =
            c.alltoall(in_place ? kInPlace : send.data(), recv.data(), count, t, algorithm);
        check_status(s, what);
        for (size_t r = 0; r < n && s.is_ok(); ++r) {
          for (size_t i = 0; i < count; ++i) {
            if (!same(t, recv.data(), r * count + i, value(t, static_cast<int>(r), rank, i))) {
              fail(what + ": block from " + std::to_string(r));
              r = n;
              break;
            }
          }
        }
      }
    }
    // Equal blocks only.
    if (algorithm == "bruck" || algorithm == "hierarchical" || algorithm == "shared_memory") {
      continue;
    }
    // alltoallv: rank r sends (r + d) % 3 elements to d, blocks in reverse order in send.
    const DataType t = DataType::kInt32;
    std::vector<size_t> sc(n), sd(n), rc(n), rd(n);
    size_t s_total = 0, r_total = 0;
    for (size_t d = n; d-- > 0;) {
      sc[d] = (static_cast<size_t>(rank) + d) % 3;
      sd[d] = s_total;
      s_total += sc[d];
    }
    for (size_t r = 0; r < n; ++r) {
      rc[r] = (r + static_cast<size_t>(rank)) % 3;
      rd[r] = r_total + 1;
      r_total += rc[r] + 1;
    }
    std::vector<int32_t> send(s_total), recv(r_total, -1);
    for (size_t d = 0; d < n; ++d) {
      for (size_t i = 0; i < sc[d]; ++i)
        send[sd[d] + i] = static_cast<int32_t>(value(t, rank, static_cast<int>(d), i));
    }
    const std::string what = name("alltoallv", algorithm, t, s_total);
    wv::Status s = c.alltoallv(send.data(), sc, sd, recv.data(), rc, rd, t, algorithm);
    check_status(s, what);
    for (size_t r = 0; r < n && s.is_ok(); ++r) {
      for (size_t i = 0; i < rc[r]; ++i) {
        if (recv[rd[r] + i] != static_cast<int32_t>(value(t, static_cast<int>(r), rank, i))) {
          fail(what + ": block from " + std::to_string(r));
          r = n;
          break;
        }
      }
    }
    // In place (MPI's rule: the receive counts and displacements serve for sending too; rank r
    // and d exchange (r + d) % 3 elements either way): each block goes out and is replaced by
    // the peer's, and the gaps between blocks stay as they were.
    std::vector<int32_t> both(r_total, -1);
    for (size_t d = 0; d < n; ++d) {
      for (size_t i = 0; i < rc[d]; ++i)
        both[rd[d] + i] = static_cast<int32_t>(value(t, rank, static_cast<int>(d), i));
    }
    const std::string in_place_what = what + " in place";
    s = c.alltoallv(kInPlace, rc, rd, both.data(), rc, rd, t, algorithm);
    check_status(s, in_place_what);
    for (size_t r = 0; r < n && s.is_ok(); ++r) {
      if (both[rd[r] - 1] != -1) fail(in_place_what + ": gap before block " + std::to_string(r));
      for (size_t i = 0; i < rc[r]; ++i) {
        if (both[rd[r] + i] != static_cast<int32_t>(value(t, static_cast<int>(r), rank, i))) {
          fail(in_place_what + ": block from " + std::to_string(r));
          r = n;
          break;
        }
      }
    }
  }
}

void test_gather_scatter(Communicator& c) {
  int variant = 0;
  const size_t n = static_cast<size_t>(nprocs);
  for (std::string_view algorithm : algorithm_names(Collective::kGather)) {
    for (DataType t : kAllDataTypes) {
      for (size_t count : kCounts) {
        if (!wanted(t, count)) continue;
        const size_t element = size_of(t);
        const int root = variant % nprocs;
        const bool in_place = rank == root && (variant / nprocs) % 2 == 1;
        ++variant;
        // gather
        std::vector<unsigned char> send(count * element), recv(n * count * element);
        for (size_t i = 0; i < count; ++i) {
          store(t, in_place ? recv.data() : send.data(),
                in_place ? static_cast<size_t>(root) * count + i : i, value(t, rank, root, i));
        }
        std::string what = name("gather", algorithm, t, count,
                                " root " + std::to_string(root) + (in_place ? " in-place" : ""));
        wv::Status s =
            c.gather(in_place ? kInPlace : send.data(), recv.data(), count, t, root, algorithm);
        check_status(s, what);
        if (s.is_ok() && rank == root) {
          for (size_t r = 0; r < n; ++r) {
            for (size_t i = 0; i < count; ++i) {
              if (!same(t, recv.data(), r * count + i, value(t, static_cast<int>(r), root, i))) {
                fail(what + ": block " + std::to_string(r));
                r = n;
                break;
              }
            }
          }
        }
        // scatter
        std::vector<unsigned char> all(n * count * element), mine(count * element);
        if (rank == root) {
          for (size_t d = 0; d < n; ++d) {
            for (size_t i = 0; i < count; ++i)
              store(t, all.data(), d * count + i, value(t, root, static_cast<int>(d), i));
          }
        }
        what = name("scatter", algorithm, t, count,
                    " root " + std::to_string(root) + (in_place ? " in-place" : ""));
        s = c.scatter(all.data(), in_place ? const_cast<void*>(kInPlace) : mine.data(), count, t,
                      root, algorithm);
        check_status(s, what);
        if (s.is_ok() && !in_place) {
          for (size_t i = 0; i < count; ++i) {
            if (!same(t, mine.data(), i, value(t, root, rank, i))) {
              fail(what + ": element " + std::to_string(i));
              break;
            }
          }
        }
      }
    }
  }
  // gatherv / scatterv (linear): irregular counts, gaps.
  for (int root = 0; root < nprocs; ++root) {
    const DataType t = DataType::kInt16;
    std::vector<size_t> counts(n), displacements(n);
    size_t at = 0;
    for (size_t r = 0; r < n; ++r) {
      counts[r] = (r + 2) % 4;
      displacements[r] = at + 1;
      at += counts[r] + 1;
    }
    const size_t mine_count = counts[static_cast<size_t>(rank)];
    std::vector<int16_t> send(mine_count), recv(at, -1);
    for (size_t i = 0; i < mine_count; ++i) send[i] = static_cast<int16_t>(value(t, rank, root, i));
    wv::Status s = c.gatherv(send.data(), mine_count, recv.data(), counts, displacements, t, root);
    check_status(s, "gatherv root " + std::to_string(root));
    if (s.is_ok() && rank == root) {
      for (size_t r = 0; r < n; ++r) {
        for (size_t i = 0; i < counts[r]; ++i) {
          if (recv[displacements[r] + i] !=
              static_cast<int16_t>(value(t, static_cast<int>(r), root, i))) {
            fail("gatherv root " + std::to_string(root) + ": block " + std::to_string(r));
          }
        }
      }
    }
    std::vector<int16_t> got(mine_count, -1);
    s = c.scatterv(recv.data(), counts, displacements, got.data(), mine_count, t, root);
    check_status(s, "scatterv root " + std::to_string(root));
    if (s.is_ok() && rank == root) {
      // recv at the root holds what everyone sent it; scattering it back returns our own.
    }
  }
}

void test_barriers(Communicator& c) {
  for (std::string_view algorithm : algorithm_names(Collective::kBarrier)) {
    for (int i = 0; i < 5; ++i)
      check_status(c.barrier(algorithm), "barrier/" + std::string(algorithm));
    auto request = c.ibarrier(algorithm);
    check_status(request.is_ok() ? request->wait() : request.status(),
                 "ibarrier/" + std::string(algorithm));
  }
}

// Bad input: a clear Status on every rank, no communication, nothing left behind.
void test_errors(Communicator& c) {
  auto expect_invalid = [](const wv::Status& s, const std::string& what) {
    ++cases;
    if (s.code() != wv::Errc::kInvalidArgument)
      fail(what + ": expected invalid-argument, got " + s.to_string());
  };
  float f[4] = {1, 2, 3, 4};
  float g[4];
  expect_invalid(c.allreduce(f, g, 4, DataType::kFloat, Op::kBxor), "bxor on float");
  expect_invalid(c.allreduce(f, g, 4, DataType::kFloat, Op::kSum, "no_such_algorithm"),
                 "unknown algorithm");
  expect_invalid(c.bcast(f, 4, DataType::kFloat, nprocs), "root out of range");
  expect_invalid(c.reduce(f, g, 4, DataType::kFloat, Op::kSum, -1), "negative root");
  expect_invalid(c.allreduce(f, g, 4, DataType::kFloat, ReduceOp(UserFunction{})), "empty user op");
  std::vector<size_t> wrong(static_cast<size_t>(nprocs) + 1, 1);
  expect_invalid(c.reduce_scatter(f, g, wrong, DataType::kFloat, Op::kSum),
                 "counts of the wrong length");
  std::vector<size_t> ones(static_cast<size_t>(nprocs), 1);
  expect_invalid(c.alltoallv(f, ones, ones, g, ones, ones, DataType::kFloat, "bruck"),
                 "alltoallv bruck");
  expect_invalid(c.alltoallv(f, ones, ones, g, ones, ones, DataType::kFloat, "shared_memory"),
                 "alltoallv shared_memory");
  auto request = c.iallreduce(f, g, 4, DataType::kDouble, Op::kBand);
  expect_invalid(request.status(), "iallreduce band on double");
  // Mismatched counts between two ranks: both must get an error, not hang.
  if (nprocs == 2) {
    int32_t a[8] = {}, b[8] = {};
    wv::Status s =
        c.allreduce(a, b, rank == 0 ? 4 : 5, DataType::kInt32, Op::kSum, "recursive_doubling");
    ++cases;
    if (s.is_ok()) fail("mismatched counts: no error");
    check_status(c.barrier(), "barrier after mismatched counts");
  }
}

// Cancelling a non-blocking collective that cannot finish (its peers never join it).
void test_cancel(wv::Comm& comm) {
  Communicator::Options options;
  options.timeout = std::chrono::seconds(20);
  auto other = Communicator::create(comm, options);
  check_status(other.status(), "second communicator");
  if (!other.is_ok() || nprocs < 2 || rank != 1) return;
  auto request = (*other)->ibarrier();
  check_status(request.status(), "ibarrier to cancel");
  if (!request.is_ok()) return;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  wv::Status early;
  auto done = request->test(&early);
  ++cases;
  if (done.is_ok() && *done) {
    fail("ibarrier finished without peers: " + early.to_string());
    return;
  }
  request->cancel();
  wv::Status s = request->wait(std::chrono::seconds(5));
  ++cases;
  if (s.code() != wv::Errc::kCancelled) fail("cancelled ibarrier: " + s.to_string());
}

// `coll_job vanished` (2 ranks, one host): rank 1 ends its process; rank 0's allreduce through
// the host segment must end with kDisconnected well before its 5-minute step timeout.
int test_vanished(Communicator& c) {
  if (!c.shared_memory_status().empty()) {
    std::fprintf(stderr, "coll_job vanished: no host segment: %s\n",
                 c.shared_memory_status().c_str());
    return 1;
  }
  if (rank == 1) {
    std::fflush(stdout);
    std::_Exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  float in = 1, out = 0;
  wv::Status s = c.allreduce(&in, &out, 1, DataType::kFloat, Op::kSum, "shared_memory");
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  if (s.code() != wv::Errc::kDisconnected || took > std::chrono::seconds(10)) {
    std::fprintf(stderr, "coll_job vanished: got %s after %lld ms\n", s.to_string().c_str(),
                 static_cast<long long>(took.count()));
    return 1;
  }
  std::printf("vanished ok rank 0: %s after %lld ms\n", s.message().c_str(),
              static_cast<long long>(took.count()));
  std::fflush(stdout);
  std::_Exit(0);  // the peer is gone: no orderly goodbye to wait for
}

}  // namespace

int main(int argc, char** argv) {
  auto init = wv::Comm::init();
  if (!init.is_ok()) {
    std::fprintf(stderr, "coll_job: init: %s\n", init.status().to_string().c_str());
    return 2;
  }
  wv::Comm& comm = **init;
  rank = comm.rank();
  nprocs = comm.size();
  auto created = Communicator::create(comm);
  if (!created.is_ok()) {
    std::fprintf(stderr, "coll_job: create: %s\n", created.status().to_string().c_str());
    return 2;
  }
  Communicator& c = **created;
  if (rank == 0) {
    std::printf("coll_job: %d ranks, %d hosts\n%s", nprocs, c.topology().host_count(),
                c.topology().describe().c_str());
    std::printf("host segment: %s\n", c.shared_memory_status().empty()
                                          ? "mapped (or alone on the host)"
                                          : c.shared_memory_status().c_str());
  }
  const std::string only = argc > 1 ? argv[1] : "";
  if (only == "vanished") return test_vanished(c);
  auto run = [&](const char* what, auto&& body) {
    if (!only.empty() && only != what) return;
    body();
  };
  run("barrier", [&] { test_barriers(c); });
  run("allreduce", [&] { test_allreduce(c, false); });
  run("iallreduce", [&] { test_allreduce(c, true); });
  run("large", [&] {
    test_large(c);
    test_large_alltoall(c);
  });
  run("shared_buffers", [&] { test_shared_buffers(c); });
  run("reduce", [&] { test_reduce(c); });
  run("reduce_scatter", [&] { test_reduce_scatter(c); });
  run("bcast", [&] { test_bcast(c, false); });
  run("ibcast", [&] { test_bcast(c, true); });
  run("bcast_burst", [&] { test_bcast_burst(c); });
  run("allgather", [&] { test_allgather(c); });
  run("alltoall", [&] { test_alltoall(c); });
  run("gather", [&] { test_gather_scatter(c); });
  run("errors", [&] { test_errors(c); });
  check_status(c.barrier(), "final barrier");
  run("cancel", [&] { test_cancel(comm); });
  // Rank 0 must not leave (disconnect) while rank 1 still waits in the cancel test.
  check_status(comm.barrier(), "comm barrier");
  if (failures > 0) {
    std::fprintf(stderr, "coll_job rank %d: %d of %d cases failed\n", rank, failures, cases);
    return 1;
  }
  std::printf("coll ok rank %d: %d cases\n", rank, cases);
  return 0;
}
