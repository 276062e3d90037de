#pragma once
// safetensors export/import (https://github.com/huggingface/safetensors): the format other
// tools load, so a trained Strata model leaves the framework as one self-describing file.
//
// Layout: u64 little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string value"}}
// padded with spaces so the data starts 8-byte aligned, then the tensors' bytes (offsets are
// relative to the data start).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "core/bf16.h"  // fp32_to_bf16, bf16_to_fp32

namespace strata {

// fp16 -> fp32, exact (subnormals, infinities, NaN included).
float fp16_to_fp32(uint16_t h);

enum class SafetensorsDType { F32, BF16 };

struct SafeTensor {
  std::string name;
  std::vector<int64_t> shape;  // row-major; {} is a scalar
  const float* data = nullptr;
};

// Writes `tensors` in the given order, converted to `dtype`, plus string metadata (e.g.
// "strata_config" holding the model config as JSON). Written atomically.
void export_safetensors(const std::string& path, const std::vector<SafeTensor>& tensors,
                        const std::map<std::string, std::string>& metadata,
                        SafetensorsDType dtype = SafetensorsDType::F32);

struct LoadedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;        // as stored in the file: F32, BF16 or F16
  std::vector<float> data;  // converted to fp32
};

struct SafetensorsFile {
  std::vector<LoadedTensor> tensors;  // in file (data offset) order
  std::map<std::string, std::string> metadata;
  // nullptr when absent.
  const LoadedTensor* find(const std::string& name) const;
};

// Reads F32, BF16 and F16 tensors. A malformed file (bad header length, invalid JSON, unknown
// dtype, offsets out of range or not matching the shape) is an InputError naming the file.
SafetensorsFile load_safetensors(const std::string& path);
// The same on a whole file's bytes in memory (load_safetensors maps the file and calls it);
// `source` names it in errors.
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source);

}  // namespace strata
