// Element types and reduction operations of wv's collectives.
//
// Buffers are untyped (void*) plus a count of elements of a DataType, like MPI. Reductions
// combine element-wise with an Op; the built-in ops are associative and commutative (floating
// point only up to rounding: algorithms that combine in different orders differ in the last
// bits, see communicator.h). A user operation must be associative and commutative too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "wv/result.h"

namespace wv::coll {

enum class DataType : uint8_t {
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kFloat16,   // IEEE 754 binary16, stored as uint16_t bits
  kBfloat16,  // bfloat16 (the top 16 bits of a float), stored as uint16_t bits
  kFloat,
  kDouble,
};
inline constexpr DataType kAllDataTypes[] = {
    DataType::kInt8,    DataType::kInt16,    DataType::kInt32,  DataType::kInt64,
    DataType::kUint8,   DataType::kUint16,   DataType::kUint32, DataType::kUint64,
    DataType::kFloat16, DataType::kBfloat16, DataType::kFloat,  DataType::kDouble};

size_t size_of(DataType type);
bool is_floating(DataType type);
std::string_view to_string(DataType type);
Result<DataType> parse_data_type(std::string_view name);

enum class Op : uint8_t { kSum, kProd, kMin, kMax, kBand, kBor, kBxor, kUser };
inline constexpr Op kBuiltinOps[] = {Op::kSum,  Op::kProd, Op::kMin, Op::kMax,
                                     Op::kBand, Op::kBor,  Op::kBxor};
std::string_view to_string(Op op);
Result<Op> parse_op(std::string_view name);

// inout[i] = inout[i] (op) in[i] for i < count. Called with pieces of the vector (any
// count, any element offset), possibly from a helper thread for non-blocking collectives.
using UserFunction = std::function<void(const void* in, void* inout, size_t count, DataType type)>;

// What a reduction combines with: a built-in Op (implicitly) or a user function.
struct ReduceOp {
  ReduceOp(Op built_in) : op(built_in) {}  // NOLINT(google-explicit-constructor)
  ReduceOp(UserFunction function) : op(Op::kUser), user(std::move(function)) {}  // NOLINT
  Op op;
  UserFunction user;
};

// kInvalidArgument for a bitwise op on a floating type or a user op without a function.
Status check_op(const ReduceOp& op, DataType type);

// inout[i] = inout[i] (op) in[i]; kernels are plain loops the compiler vectorises (float16
// and bfloat16 through float in blocks). check_op() first: an invalid pair is a no-op here.
void reduce_local(const void* in, void* inout, size_t count, DataType type, const ReduceOp& op);
// out[i] = a[i] (op) b[i]: one pass where reduce_local would need a copy first. `out` may be
// `a`; otherwise it overlaps neither input.
void reduce_into(const void* a, const void* b, void* out, size_t count, DataType type,
                 const ReduceOp& op);

// Marks an in-place call (the MPI_IN_PLACE rule of each collective, see communicator.h).
inline const void* const kInPlace = reinterpret_cast<const void*>(uintptr_t{1});

// float16/bfloat16 <-> float conversions (round to nearest even), also used by tests.
float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);
float bfloat16_to_float(uint16_t bits);
uint16_t float_to_bfloat16(float value);

}  // namespace wv::coll
