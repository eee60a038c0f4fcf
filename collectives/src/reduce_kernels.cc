// The element-wise reduction kernels.
//
// Each is a plain loop over __restrict pointers with a branch-free body so that GCC's
// auto-vectoriser turns it into SIMD code at -O2 and above (checked with -fopt-info-vec-optimized,
// see CMakeLists.txt option WV_COLL_VEC_REPORT; the bench measures GB/s). Integer arithmetic is
// done in the unsigned type so that overflow wraps instead of being undefined. float16 and
// bfloat16 are widened to float in blocks, combined, and narrowed with round-to-nearest-even.
#include <cstring>
#include <type_traits>

#include "wv/collectives/types.h"
#include "wv/copy.h"

namespace wv::coll {

namespace {

template <typename T>
using Arith = std::conditional_t<
    std::is_integral_v<T>,
    std::common_type_t<std::make_unsigned_t<std::conditional_t<std::is_integral_v<T>, T, int>>,
                       unsigned>,
    T>;

template <typename T>
struct SumOp {
  static T apply(T a, T b) {
    return static_cast<T>(static_cast<Arith<T>>(a) + static_cast<Arith<T>>(b));
  }
};
template <typename T>
struct ProdOp {
  static T apply(T a, T b) {
    return static_cast<T>(static_cast<Arith<T>>(a) * static_cast<Arith<T>>(b));
  }
};
template <typename T>
struct MinOp {
  static T apply(T a, T b) { return b < a ? b : a; }
};
template <typename T>
struct MaxOp {
  static T apply(T a, T b) { return a < b ? b : a; }
};
template <typename T>
struct BandOp {
  static T apply(T a, T b) { return static_cast<T>(a & b); }
};
template <typename T>
struct BorOp {
  static T apply(T a, T b) { return static_cast<T>(a | b); }
};
template <typename T>
struct BxorOp {
  static T apply(T a, T b) { return static_cast<T>(a ^ b); }
};

// out[i] = a[i] (op) b[i], as two loops over __restrict pointers: the in-place form (out is a)
// would break the three-pointer loop's promise that out aliases nothing.
template <typename T, template <typename> class O>
__attribute__((noinline)) void accumulate(const T* __restrict b, T* __restrict out, size_t count) {
  for (size_t i = 0; i < count; ++i) out[i] = O<T>::apply(out[i], b[i]);
}
template <typename T, template <typename> class O>
__attribute__((noinline)) void combine(const T* __restrict a, const T* __restrict b,
                                       T* __restrict out, size_t count) {
  for (size_t i = 0; i < count; ++i) out[i] = O<T>::apply(a[i], b[i]);
}
template <typename T, template <typename> class O>
void loop(const T* a, const T* b, T* out, size_t count) {
  if (out == a) return accumulate<T, O>(b, out, count);
  combine<T, O>(a, b, out, count);
}

template <typename T>
void arithmetic(const void* first, const void* second, void* result, size_t count, Op op) {
  const T* a = static_cast<const T*>(first);
  const T* b = static_cast<const T*>(second);
  T* out = static_cast<T*>(result);
  switch (op) {
    case Op::kSum:
      return loop<T, SumOp>(a, b, out, count);
    case Op::kProd:
      return loop<T, ProdOp>(a, b, out, count);
    case Op::kMin:
      return loop<T, MinOp>(a, b, out, count);
    case Op::kMax:
      return loop<T, MaxOp>(a, b, out, count);
    default:
      break;
  }
  if constexpr (std::is_integral_v<T>) {
    switch (op) {
      case Op::kBand:
        return loop<T, BandOp>(a, b, out, count);
      case Op::kBor:
        return loop<T, BorOp>(a, b, out, count);
      case Op::kBxor:
        return loop<T, BxorOp>(a, b, out, count);
      default:
        break;
    }
  }
}

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Widen/narrow in blocks small enough to stay in L1, so the 16-bit types cost one pass.
template <float (*Widen)(uint16_t), uint16_t (*Narrow)(float)>
void sixteen_bit(const void* first, const void* second, void* result, size_t count, Op op) {
  constexpr size_t kBlock = 512;
  float a[kBlock];
  float b[kBlock];
  const uint16_t* x = static_cast<const uint16_t*>(first);
  const uint16_t* y = static_cast<const uint16_t*>(second);
  uint16_t* out = static_cast<uint16_t*>(result);
  for (size_t start = 0; start < count; start += kBlock) {
    const size_t n = count - start < kBlock ? count - start : kBlock;
    for (size_t i = 0; i < n; ++i) a[i] = Widen(x[start + i]);
    for (size_t i = 0; i < n; ++i) b[i] = Widen(y[start + i]);
    arithmetic<float>(a, b, a, n, op);
    for (size_t i = 0; i < n; ++i) out[start + i] = Narrow(a[i]);
  }
}

}  // namespace

// Branch-free conversions (F. Giesen's half <-> float), so the block loops vectorise.
float half_to_float(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const uint32_t inf_nan = exp == shifted_exp ? (128u - 16u) << 23 : 0u;
  o += inf_nan;
  const bool denormal = exp == 0;
  const float renormal = float_of(o + (1u << 23)) - float_of(113u << 23);
  o = denormal ? bits_of(renormal) : o;
  return float_of(o | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

uint16_t float_to_half(float value) {
  const uint32_t f32infty = 255u << 23;
  const uint32_t f16max = (127u + 16u) << 23;
  const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t f = bits_of(value);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  uint32_t o;
  if (f >= f16max) {
    o = f > f32infty ? 0x7e00u : 0x7c00u;
  } else if (f < (113u << 23)) {
    o = bits_of(float_of(f) + float_of(denorm_magic)) - denorm_magic;
  } else {
    const uint32_t mant_odd = (f >> 13) & 1u;
    f += ((15u - 127u) << 23) + 0xfffu;
    f += mant_odd;
    o = f >> 13;
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float bfloat16_to_float(uint16_t bits) {
  return float_of(static_cast<uint32_t>(bits) << 16);
}

uint16_t float_to_bfloat16(float value) {
  const uint32_t bits = bits_of(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void reduce_into(const void* a, const void* b, void* out, size_t count, DataType type,
                 const ReduceOp& op) {
  if (count == 0 || !check_op(op, type).is_ok()) return;
  if (op.op == Op::kUser) {
    if (out != a) copy_bytes(out, a, count * size_of(type));
    return op.user(b, out, count, type);
  }
  switch (type) {
    case DataType::kInt8:
      return arithmetic<int8_t>(a, b, out, count, op.op);
    case DataType::kInt16:
      return arithmetic<int16_t>(a, b, out, count, op.op);
    case DataType::kInt32:
      return arithmetic<int32_t>(a, b, out, count, op.op);
    case DataType::kInt64:
      return arithmetic<int64_t>(a, b, out, count, op.op);
    case DataType::kUint8:
      return arithmetic<uint8_t>(a, b, out, count, op.op);
    case DataType::kUint16:
      return arithmetic<uint16_t>(a, b, out, count, op.op);
    case DataType::kUint32:
      return arithmetic<uint32_t>(a, b, out, count, op.op);
    case DataType::kUint64:
      return arithmetic<uint64_t>(a, b, out, count, op.op);
    case DataType::kFloat16:
      return sixteen_bit<half_to_float, float_to_half>(a, b, out, count, op.op);
    case DataType::kBfloat16:
      return sixteen_bit<bfloat16_to_float, float_to_bfloat16>(a, b, out, count, op.op);
    case DataType::kFloat:
      return arithmetic<float>(a, b, out, count, op.op);
    case DataType::kDouble:
      return arithmetic<double>(a, b, out, count, op.op);
  }
}

void reduce_local(const void* in, void* inout, size_t count, DataType type, const ReduceOp& op) {
  reduce_into(inout, in, inout, count, type, op);
}

}  // namespace wv::coll
