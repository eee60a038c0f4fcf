// Names, sizes and checks of the element types and operations.
#include "wv/collectives/types.h"

#include <string>

namespace wv::coll {

size_t size_of(DataType type) {
  switch (type) {
    case DataType::kInt8:
    case DataType::kUint8:
      return 1;
    case DataType::kInt16:
    case DataType::kUint16:
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return 2;
    case DataType::kInt32:
    case DataType::kUint32:
    case DataType::kFloat:
      return 4;
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kDouble:
      return 8;
  }
  return 1;
}

bool is_floating(DataType type) {
  return type == DataType::kFloat16 || type == DataType::kBfloat16 || type == DataType::kFloat ||
         type == DataType::kDouble;
}

std::string_view to_string(DataType type) {
  switch (type) {
    case DataType::kInt8:
      return "int8";
    case DataType::kInt16:
      return "int16";
    case DataType::kInt32:
      return "int32";
    case DataType::kInt64:
      return "int64";
    case DataType::kUint8:
      return "uint8";
    case DataType::kUint16:
      return "uint16";
    case DataType::kUint32:
      return "uint32";
    case DataType::kUint64:
      return "uint64";
    case DataType::kFloat16:
      return "float16";
    case DataType::kBfloat16:
      return "bfloat16";
    case DataType::kFloat:
      return "float";
    case DataType::kDouble:
      return "double";
  }
  return "unknown";
}

Result<DataType> parse_data_type(std::string_view name) {
  for (DataType type : kAllDataTypes) {
    if (to_string(type) == name) return type;
  }
  return Status(Errc::kInvalidArgument, "unknown data type '" + std::string(name) + "'");
}

std::string_view to_string(Op op) {
  switch (op) {
    case Op::kSum:
      return "sum";
    case Op::kProd:
      return "prod";
    case Op::kMin:
      return "min";
    case Op::kMax:
      return "max";
    case Op::kBand:
      return "band";
    case Op::kBor:
      return "bor";
    case Op::kBxor:
      return "bxor";
    case Op::kUser:
      return "user";
  }
  return "unknown";
}

Result<Op> parse_op(std::string_view name) {
  for (Op op : kBuiltinOps) {
    if (to_string(op) == name) return op;
  }
  return Status(Errc::kInvalidArgument, "unknown operation '" + std::string(name) + "'");
}

Status check_op(const ReduceOp& op, DataType type) {
  const bool bitwise = op.op == Op::kBand || op.op == Op::kBor || op.op == Op::kBxor;
  if (bitwise && is_floating(type)) {
    return Status(Errc::kInvalidArgument, "operation " + std::string(to_string(op.op)) +
                                              " is bitwise: integer types only, not " +
                                              std::string(to_string(type)));
  }
  if (op.op == Op::kUser && !op.user) {
    return Status(Errc::kInvalidArgument, "user operation without a function");
  }
  if (static_cast<uint8_t>(op.op) > static_cast<uint8_t>(Op::kUser)) {
    return Status(Errc::kInvalidArgument, "not an operation");
  }
  return Status::ok();
}

}  // namespace wv::coll
