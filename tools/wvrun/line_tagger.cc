#include "line_tagger.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>

namespace wv::wvrun {

LineTagger::LineTagger(int rank, int out_fd)
    : prefix_(fmt::format("[{}] ", rank)), out_fd_(out_fd) {}

void LineTagger::feed(std::string_view data) {
  for (;;) {
    auto nl = data.find('\n');
    if (nl == std::string_view::npos) break;
    partial_.append(data.substr(0, nl + 1));
    write_line(partial_);
    partial_.clear();
    data = data.substr(nl + 1);
  }
  partial_.append(data);
  // A child that writes a huge line without a newline must not make wvrun hold all of it.
  if (partial_.size() > 64 * 1024) {
    partial_ += '\n';
    write_line(partial_);
    partial_.clear();
  }
}

void LineTagger::finish() {
  if (partial_.empty()) return;
  partial_ += '\n';
  write_line(partial_);
  partial_.clear();
}

void LineTagger::write_line(std::string_view line) {
  std::string out = prefix_;
  out.append(line);
  std::string_view rest = out;
  while (!rest.empty()) {
    ssize_t n = ::write(out_fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our own output is gone (closed pipe): drop, keep supervising
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace wv::wvrun
