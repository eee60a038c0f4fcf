#include "table_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace wv::tune {

namespace {

Status failure(const std::string& what, const std::string& path) {
  return Status(Errc::kIoError, "cannot " + what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

TableFile::TableFile(std::string path, std::string temporary, int fd)
    : path_(std::move(path)), temporary_(std::move(temporary)), fd_(fd) {}

TableFile::TableFile(TableFile&& other) noexcept
    : path_(std::move(other.path_)),
      temporary_(std::move(other.temporary_)),
      fd_(std::exchange(other.fd_, -1)) {}

TableFile::~TableFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temporary_.c_str());
  }
}

Result<TableFile> TableFile::open(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
    return Status(Errc::kIoError, "cannot write " + path + ": it is a directory");
  }
  std::string temporary = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    return Status(Errc::kIoError, "cannot write " + path + " (creating " + temporary +
                                      " next to it: " + std::strerror(errno) + ")");
  }
  return TableFile(path, std::move(temporary), fd);
}

Status TableFile::commit(std::string_view text) {
  while (!text.empty()) {
    const ssize_t written = ::write(fd_, text.data(), text.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return failure("write", temporary_);
    text.remove_prefix(static_cast<size_t>(written));
  }
  if (::fsync(fd_) != 0) return failure("sync", temporary_);
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) return failure("rename over", path_);
  ::close(std::exchange(fd_, -1));
  return Status::ok();
}

}  // namespace wv::tune
