#pragma once
// A read-only memory map of a whole file, for the token files the loaders read in place (llm.c
// shards, Megatron .bin/.idx). Opening checks that the path is a regular file; an empty file is
// "mapped" as zero bytes (mmap refuses length 0). Errors are InputError naming the path and
// `what` the file was expected to be. Move-only.
#include <cstdint>
#include <string>

namespace strata {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const std::string& path, const std::string& what);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Page-aligned, so any element type at an aligned offset can be read in place.
  const unsigned char* data() const { return static_cast<const unsigned char*>(map_); }
  int64_t size() const { return size_; }

 private:
  void release();

  void* map_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace strata
