// The table file: opened before the measurement (an unwritable --out must not cost minutes of
// measuring first) and replaced atomically at the end, so a reader of the old table never
// sees half of the new one.
#pragma once

#include <string>
#include <string_view>

#include "wv/result.h"

namespace wv::tune {

class TableFile {
 public:
  // Creates a temporary file next to `path` (same file system, so rename() is atomic).
  static Result<TableFile> open(const std::string& path);
  TableFile(TableFile&& other) noexcept;
  TableFile& operator=(TableFile&&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~TableFile();

  // Writes `text`, syncs it and renames it over the path.
  Status commit(std::string_view text);

 private:
  TableFile(std::string path, std::string temporary, int fd);
  std::string path_;
  std::string temporary_;
  int fd_ = -1;
};

}  // namespace wv::tune
