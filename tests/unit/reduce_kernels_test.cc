// reduce_into against a scalar reference for every type and built-in op, into a third buffer
// and in place, at lengths that leave a vector loop's remainder, and with a user op.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "wv/collectives/types.h"

namespace wv::coll {
namespace {

// One element as a double (exact for every integer here; 16-bit floats widened).
double value(DataType type, const std::byte* at) {
  const auto load = [at]<typename T>(T) {
    T v;
    std::memcpy(&v, at, sizeof v);
    return v;
  };
  switch (type) {
    case DataType::kInt8:
      return load(int8_t{});
    case DataType::kInt16:
      return load(int16_t{});
    case DataType::kInt32:
      return load(int32_t{});
    case DataType::kInt64:
      return static_cast<double>(load(int64_t{}));
    case DataType::kUint8:
      return load(uint8_t{});
    case DataType::kUint16:
      return load(uint16_t{});
    case DataType::kUint32:
      return load(uint32_t{});
    case DataType::kUint64:
      return static_cast<double>(load(uint64_t{}));
    case DataType::kFloat16:
      return half_to_float(load(uint16_t{}));
    case DataType::kBfloat16:
      return bfloat16_to_float(load(uint16_t{}));
    case DataType::kFloat:
      return load(float{});
    case DataType::kDouble:
      return load(double{});
  }
  return 0;
}

// Small positive values: every op is exact (no overflow, products fit each type).
std::vector<std::byte> random_vector(DataType type, size_t count, std::mt19937& rng) {
  std::vector<std::byte> bytes(count * size_of(type));
  std::uniform_int_distribution<int> small(1, 7);
  for (size_t i = 0; i < count; ++i) {
    std::byte* at = bytes.data() + i * size_of(type);
    const int v = small(rng);
    const auto store = [at](auto x) { std::memcpy(at, &x, sizeof x); };
    switch (type) {
      case DataType::kFloat16:
        store(float_to_half(static_cast<float>(v)));
        break;
      case DataType::kBfloat16:
        store(float_to_bfloat16(static_cast<float>(v)));
        break;
      case DataType::kFloat:
        store(static_cast<float>(v));
        break;
      case DataType::kDouble:
        store(static_cast<double>(v));
        break;
      default:  // integers: little-endian low byte carries the value
        std::memset(at, 0, size_of(type));
        *at = static_cast<std::byte>(v);
    }
  }
  return bytes;
}

double reference(Op op, double a, double b) {
  const auto i = [](double x) { return static_cast<int64_t>(x); };
  switch (op) {
    case Op::kSum:
      return a + b;
    case Op::kProd:
      return a * b;
    case Op::kMin:
      return a < b ? a : b;
    case Op::kMax:
      return a < b ? b : a;
    case Op::kBand:
      return static_cast<double>(i(a) & i(b));
    case Op::kBor:
      return static_cast<double>(i(a) | i(b));
    case Op::kBxor:
      return static_cast<double>(i(a) ^ i(b));
    case Op::kUser:
      break;
  }
  return 0;
}

TEST(ReduceKernels, IntoAThirdBufferAndInPlaceMatchTheReference) {
  std::mt19937 rng(7);
  for (DataType type : kAllDataTypes) {
    for (Op op : kBuiltinOps) {
      if (!check_op(op, type).is_ok()) continue;
      for (size_t count : {size_t{1}, size_t{31}, size_t{1027}}) {
        SCOPED_TRACE(std::string(to_string(type)) + " " + std::string(to_string(op)) + " x" +
                     std::to_string(count));
        const auto a = random_vector(type, count, rng);
        const auto b = random_vector(type, count, rng);
        std::vector<std::byte> out(a.size(), std::byte{0xee});
        reduce_into(a.data(), b.data(), out.data(), count, type, op);
        auto in_place = a;
        reduce_into(in_place.data(), b.data(), in_place.data(), count, type, op);
        auto local = a;
        reduce_local(b.data(), local.data(), count, type, op);
        const size_t e = size_of(type);
        for (size_t k = 0; k < count; ++k) {
          const double want =
              reference(op, value(type, a.data() + k * e), value(type, b.data() + k * e));
          ASSERT_EQ(value(type, out.data() + k * e), want) << "element " << k;
        }
        EXPECT_EQ(in_place, out);
        EXPECT_EQ(local, out);
      }
    }
  }
}

TEST(ReduceKernels, UserOpIntoAThirdBufferLeavesTheInputsAlone) {
  // Not commutative, so a swapped operand order shows: out = 10 * a + b.
  const ReduceOp op(UserFunction([](const void* in, void* inout, size_t count, DataType) {
    const auto* b = static_cast<const int32_t*>(in);
    auto* acc = static_cast<int32_t*>(inout);
    for (size_t i = 0; i < count; ++i) acc[i] = acc[i] * 10 + b[i];
  }));
  const std::vector<int32_t> a{1, 2, 3};
  const std::vector<int32_t> b{4, 5, 6};
  std::vector<int32_t> out(3, -1);
  reduce_into(a.data(), b.data(), out.data(), 3, DataType::kInt32, op);
  EXPECT_EQ(out, (std::vector<int32_t>{14, 25, 36}));
  EXPECT_EQ(a, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(b, (std::vector<int32_t>{4, 5, 6}));
}

}  // namespace
}  // namespace wv::coll
