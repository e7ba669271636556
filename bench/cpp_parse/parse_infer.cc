// Parses ModelInferRequest wire bytes with the C++ protobuf library and prints what it read.
//
// Input (a file path, or stdin): records, each a 4-byte little-endian length and that many
// bytes of one serialized fastload.kserve.ModelInferRequest (wire-identical to Triton's
// inference.ModelInferRequest). Output: one JSON object per record, one per line.
//
// Each record is parsed twice: from one flat array (ParseFromArray) and, as gRPC C++ hands a
// request to Triton, from a ZeroCopyInputStream (grpc's ProtoBufferReader feeds
// ParseFromZeroCopyStream one slice at a time) cut into 5-byte blocks, so that every varint
// can straddle a block boundary. The two parses must be equal; "chunked_equal" says so.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/util/message_differencer.h>

#include "kserve.pb.h"

using fastload::kserve::InferParameter;
using fastload::kserve::ModelInferRequest;

namespace {

constexpr int kChunk = 5;  // ZeroCopyInputStream block size for the chunked parse.

// A JSON string literal for s (escapes quotes, backslashes and control bytes).
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// {"case": <oneof field name>, "value": <value>} for one InferParameter.
std::string Param(const InferParameter& p) {
  std::ostringstream o;
  switch (p.parameter_choice_case()) {
    case InferParameter::kBoolParam:
      o << "{\"case\":\"bool_param\",\"value\":" << (p.bool_param() ? "true" : "false") << "}";
      break;
    case InferParameter::kInt64Param:
      o << "{\"case\":\"int64_param\",\"value\":" << p.int64_param() << "}";
      break;
    case InferParameter::kStringParam:
      o << "{\"case\":\"string_param\",\"value\":" << Quote(p.string_param()) << "}";
      break;
    case InferParameter::kDoubleParam:
      o.precision(17);
      o << "{\"case\":\"double_param\",\"value\":" << p.double_param() << "}";
      break;
    case InferParameter::kUint64Param:
      o << "{\"case\":\"uint64_param\",\"value\":" << p.uint64_param() << "}";
      break;
    default:
      o << "{\"case\":null,\"value\":null}";
  }
  return o.str();
}

// The JSON line describing one parsed request.
std::string Describe(const ModelInferRequest& r, bool chunked_equal) {
  std::ostringstream o;
  o << "{\"model_name\":" << Quote(r.model_name())
    << ",\"model_version\":" << Quote(r.model_version()) << ",\"id\":" << Quote(r.id())
    << ",\"n_inputs\":" << r.inputs_size() << ",\"n_outputs\":" << r.outputs_size();
  if (r.inputs_size() > 0) {
    const auto& in = r.inputs(0);
    o << ",\"input_name\":" << Quote(in.name()) << ",\"datatype\":" << Quote(in.datatype())
      << ",\"shape\":[";
    for (int i = 0; i < in.shape_size(); ++i) o << (i ? "," : "") << in.shape(i);
    o << "]";
  }
  o << ",\"parameters\":{";
  // Map iteration order is unspecified; the reader compares the object, not its text.
  bool first = true;
  for (const auto& kv : r.parameters()) {
    o << (first ? "" : ",") << Quote(kv.first) << ":" << Param(kv.second);
    first = false;
  }
  o << "},\"n_raw\":" << r.raw_input_contents_size();
  if (r.raw_input_contents_size() > 0) {
    const std::string& raw = r.raw_input_contents(0);
    o << ",\"raw_size\":" << raw.size() << ",\"first_floats\":[";
    for (size_t i = 0; i < 3 && (i + 1) * 4 <= raw.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, raw.data() + i * 4, 4);  // little-endian host (x86-64)
      char buf[16];
      std::snprintf(buf, sizeof buf, "\"%08x\"", bits);
      o << (i ? "," : "") << buf;
    }
    o << "]";
  }
  o << ",\"unknown_bytes\":" << r.GetReflection()->GetUnknownFields(r).SpaceUsedExcludingSelf()
    << ",\"chunked_equal\":" << (chunked_equal ? "true" : "false") << "}";
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::cout << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION) << "\n";
    return 0;
  }
  std::ifstream file;
  if (argc == 2) {
    file.open(argv[1], std::ios::binary);
    if (!file) {
      std::cerr << "cannot open " << argv[1] << "\n";
      return 2;
    }
  }
  std::istream& in = argc == 2 ? static_cast<std::istream&>(file) : std::cin;
  unsigned char len_le[4];
  std::vector<char> buf;
  int index = 0;
  while (in.read(reinterpret_cast<char*>(len_le), 4)) {
    uint32_t n = len_le[0] | len_le[1] << 8 | len_le[2] << 16 | uint32_t{len_le[3]} << 24;
    buf.resize(n);
    if (!in.read(buf.data(), n)) {
      std::cerr << "record " << index << ": truncated\n";
      return 2;
    }
    ModelInferRequest flat, chunked;
    if (!flat.ParseFromArray(buf.data(), static_cast<int>(n))) {
      std::cout << "{\"parse_error\":true}\n";
    } else {
      google::protobuf::io::ArrayInputStream stream(buf.data(), static_cast<int>(n), kChunk);
      bool ok = chunked.ParseFromZeroCopyStream(&stream);
      bool same = ok && google::protobuf::util::MessageDifferencer::Equals(flat, chunked);
      std::cout << Describe(flat, same) << "\n";
    }
    ++index;
  }
  return 0;
}
